"""Benchmark: CPU per request of the lean HTTP/1.1 client against aiohttp's client, side by side.

One aiohttp server on 127.0.0.1 answers every request with the same JSON document (1.5 KB, about
an iDRAC resource); each client makes ``--requests`` sequential requests on a kept connection,
in alternating rounds, and the process's CPU per request is printed for each.  The server runs
in the same process, so its cost is in both figures alike: the ratio understates the clients'
own difference.  On a loaded machine say so when quoting.

    .venv/bin/python bench/http_client.py
    .venv/bin/python bench/http_client.py --requests 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import aiohttp
from aiohttp import web
from yarl import URL

from powerplane.exporters.runtime.http import read_body
from powerplane.exporters.runtime.http1 import HttpClient
from powerplane.exporters.runtime.server import event_loop_factory

BODY = b'{"@odata.id": "/redfish/v1/Chassis/1/ThermalSubsystem", "Pad": "' + b"x" * 1440 + b'"}'
LIMIT = 4 << 20


async def serve() -> tuple[web.AppRunner, URL]:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/x", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, URL(f"http://127.0.0.1:{port}/x")


async def aiohttp_round(url: URL, n: int) -> float:
    async with aiohttp.ClientSession(headers={"Accept": "application/json"}) as session:
        start = time.process_time()
        for _ in range(n):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5), allow_redirects=False) as r:
                await read_body(r, LIMIT)
        return (time.process_time() - start) / n


async def lean_round(url: URL, n: int) -> float:
    client = HttpClient({"Accept": "application/json"})
    try:
        start = time.process_time()
        for _ in range(n):
            await client.request("GET", url, limit=LIMIT, seconds=5.0)
        return (time.process_time() - start) / n
    finally:
        await client.close()


async def bench(args: argparse.Namespace) -> None:
    runner, url = await serve()
    try:
        anchor: list[float] = []
        lean: list[float] = []
        for _ in range(args.rounds):
            anchor.append(await aiohttp_round(url, args.requests))
            lean.append(await lean_round(url, args.requests))
    finally:
        await runner.cleanup()
    a, b = statistics.median(anchor), statistics.median(lean)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; server in the same process")
    print(f"aiohttp client: {a * 1e6:.0f} µs CPU per request (median of {args.rounds} rounds)")
    print(f"lean client:    {b * 1e6:.0f} µs CPU per request")
    print(f"RESULT aiohttp_us_per_request={a * 1e6:.0f} lean_us_per_request={b * 1e6:.0f} ratio={b / a:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per client (default 3)")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=event_loop_factory()) as loop:
        loop.run(bench(args))


if __name__ == "__main__":
    main()
