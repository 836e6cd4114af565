"""The status page under 100 concurrent viewers, against the demo's Prometheus and scheduler series.

Starts ``powerplane demo`` and, beside it, ``powerplane status-page`` (its own process) reading
the demo's Prometheus with a short data interval, then loads the page from this process, N
viewers each on its own keep-alive connection, as N browsers would be:

- cached: rounds of N concurrent requests (overview, the system tab, its fragment, the JSON)
  while the data is fresh, so every answer comes from the cache;
- revalidated: the same rounds with the ETag each viewer got (``If-None-Match``): 304s;
- miss: rounds started just after the data interval ran out, so every request of the round
  waits for the one refresh they share;
- requests per second: N viewers in a closed loop for a while (misses included);
- CPU per request of the page's process (its service time: one thread serves every request)
  and of this load generator, from /proc, over the closed loop: what a round costs the server
  alone, and whether the load generator is the bottleneck; beside it, as the anchor, the same
  loop on ``/-/healthy`` (the runtime's smallest answer) and the ratio of the two;
- Prometheus queries per minute with 1, 10 and N viewers, from the page's own counter and from
  Prometheus's ``prometheus_http_requests_total{handler="/api/v1/query"}`` (which also counts
  the demo's other clients: the figure with no viewer is printed as the baseline).

    .venv/bin/python bench/statuspage.py [--viewers 100] [--cycles 10] [--load-seconds 10] [--rate-seconds 30]

The load generator is a minimal HTTP/1.1 client on asyncio streams (uvloop where installed):
a request is one prepared write and a response one read of its head and ``Content-Length``
bytes, so the client's share of a round is small beside the server's (it is printed).  It runs
on the same machine as the page and the demo: on a 2-core machine the three share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from powerplane.exporters.runtime.server import event_loop_factory
from powerplane.lab import procs

VIEWS = ("/", "/system/demo", "/system/demo?fragment=1", "/api/v1/status")
DATA_SECONDS = 5.0
#: The console script of the interpreter running the bench.
POWERPLANE = str(Path(sys.executable).parent / "powerplane")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Viewer:
    """One keep-alive connection; ``get`` sends one GET and reads the whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host
        #: The ETag last received for each path (sent back in the revalidated rounds).
        self.etags: dict[str, bytes] = {}
        #: Whether the last revalidation found the page changed (a 200, not a 304).
        self.changed = False

    @classmethod
    async def connect(cls, base: str) -> Viewer:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer, f"{host}:{port}")

    async def get(self, path: str, revalidate: bool = False) -> float:
        etag = self.etags.get(path) if revalidate else None
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n".encode() + REQUEST_HEADERS
        if etag is not None:
            request += b"If-None-Match: " + etag + b"\r\n"
        start = time.perf_counter()
        self.writer.write(request + b"\r\n")
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = CONTENT_LENGTH.search(head)
        if length:
            await self.reader.readexactly(int(length.group(1)))
        elapsed = time.perf_counter() - start
        status = int(head[9:12])
        # A revalidation may get 200: the page changed (a new minute on the clock it shows).
        if status not in ((304, 200) if etag is not None else (200,)):
            raise RuntimeError(f"{path}: HTTP {status}")
        self.changed = etag is not None and status == 200
        found = ETAG.search(head)
        if found:
            self.etags[path] = found.group(1)
        return elapsed

    def close(self) -> None:
        self.writer.close()


REQUEST_HEADERS = b"Accept-Encoding: gzip\r\nAccept: text/html,application/json\r\n"
CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")
ETAG = re.compile(rb"(?im)^etag:\s*(\S+)")


async def text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        return await response.text()


async def round_of(viewers: list[Viewer], revalidate: bool = False) -> list[float]:
    return await asyncio.gather(*(v.get(VIEWS[i % len(VIEWS)], revalidate) for i, v in enumerate(viewers)))


async def refreshes(session: aiohttp.ClientSession, base: str) -> float:
    return metric(await text(session, base + "/metrics"), "powerplane_statuspage_refreshes_total")


async def connect(base: str, count: int) -> list[Viewer]:
    return list(await asyncio.gather(*(Viewer.connect(base) for _ in range(count))))


async def latencies(base: str, viewers: int, cycles: int) -> dict[str, list[float]]:
    """Latencies in seconds: cached, revalidated (304) and miss."""
    found: dict[str, list[float]] = {"cached": [], "revalidated": [], "miss": []}
    clients = await connect(base, viewers)
    async with aiohttp.ClientSession() as session:
        await round_of(clients)  # connections open, templates warm
        for _ in range(cycles):
            # A refresh now, then rounds while the data is fresh.
            await asyncio.sleep(DATA_SECONDS + 0.2)
            before = await refreshes(session, base)
            found["miss"] += await round_of(clients)
            if await refreshes(session, base) != before + 1:
                raise RuntimeError("the miss round did not share one refresh")
            started = time.monotonic()
            while time.monotonic() - started < DATA_SECONDS - 1.5:
                before = await refreshes(session, base)
                cached = await round_of(clients)
                revalidated = await round_of(clients, revalidate=True)
                turned = any(client.changed for client in clients)  # not a 304 round
                if await refreshes(session, base) == before and not turned:
                    found["cached"] += cached
                    found["revalidated"] += revalidated
    for client in clients:
        client.close()
    return found


async def closed_loop(base: str, viewers: int, seconds: float, views: tuple[str, ...] = VIEWS) -> int:
    """Requests answered by ``viewers`` clients each asking again as soon as answered."""
    done = 0
    end = time.monotonic() + seconds
    clients = await connect(base, viewers)

    async def viewer(i: int, client: Viewer) -> None:
        nonlocal done
        while time.monotonic() < end:
            await client.get(views[(i + done) % len(views)])
            done += 1

    await asyncio.gather(*(viewer(i, c) for i, c in enumerate(clients)))
    for client in clients:
        client.close()
    return done


async def service_time(
    base: str, pid: int, viewers: int, seconds: float, views: tuple[str, ...] = VIEWS
) -> dict[str, float]:
    """The closed loop's rate and the CPU per request of the page (``pid``) and of this process."""
    page0, own0 = procs.stat_cpu_seconds(pid), time.process_time()
    count = await closed_loop(base, viewers, seconds, views)
    page1, own1 = procs.stat_cpu_seconds(pid), time.process_time()
    return {
        "rps": count / seconds,
        "server_cpu_us_per_request": (page1 - page0) / count * 1e6,
        "client_cpu_us_per_request": (own1 - own0) / count * 1e6,
    }


async def query_rate(base: str, prometheus: str, viewers: int, seconds: float) -> tuple[float, float]:
    """(page's Prometheus requests per minute, Prometheus's query requests per minute)."""
    async with aiohttp.ClientSession() as session:
        page0 = metric(
            await text(session, base + "/metrics"),
            "powerplane_statuspage_upstream_requests_total",
            source="prometheus",
        )
        prom0 = metric(
            await text(session, prometheus + "/metrics"),
            "prometheus_http_requests_total",
            handler="/api/v1/query",
        )
        if viewers:
            await closed_loop(base, viewers, seconds)
        else:
            await asyncio.sleep(seconds)
        page1 = metric(
            await text(session, base + "/metrics"),
            "powerplane_statuspage_upstream_requests_total",
            source="prometheus",
        )
        prom1 = metric(
            await text(session, prometheus + "/metrics"),
            "prometheus_http_requests_total",
            handler="/api/v1/query",
        )
    return (page1 - page0) * 60 / seconds, (prom1 - prom0) * 60 / seconds


def start_demo(workdir: Path) -> tuple[procs.Process, str]:
    log = workdir / "demo.log"
    demo = procs.Process(
        [POWERPLANE, "demo", "--workdir", str(workdir / "demo")],
        log,
        env={"PYTHONUNBUFFERED": "1"},
    )

    def prometheus_url() -> str | None:
        if not demo.alive():
            raise RuntimeError(f"the demo exited:\n{demo.log_tail()}")
        found = re.search(r"Prometheus(?: graph)?\s+(http://[^/\s]+)/", log.read_text())
        return found.group(1) if found else None

    try:
        return demo, procs.wait_until(prometheus_url, 300, 0.5, "the demo's Prometheus")
    except BaseException:
        demo.stop(timeout=30)  # a demo that never printed its Prometheus is not left running
        raise


def start_page(workdir: Path, prometheus: str) -> tuple[procs.Process, str]:
    config = {
        "title": "bench",
        "prometheus": {"url": prometheus},
        "refresh": {"data_seconds": DATA_SECONDS, "page_seconds": 300},
        "power": {"enabled": True},
        "systems": [{"name": "demo", "title": "Demo cluster", "partitions": ["cpu", "gpu"]}],
    }
    path = workdir / "status.yml"
    path.write_text(yaml.safe_dump(config))
    port = procs.free_port()
    page = procs.Process(
        [POWERPLANE, "status-page", "--config", str(path), f"--web.listen-address=127.0.0.1:{port}"],
        workdir / "status-page.log",
    )
    base = f"http://127.0.0.1:{port}"
    page.wait_ready(base + "/-/ready")
    # Wait until the demo's scheduler series are in Prometheus.
    procs.wait_until(
        lambda: (
            b'"available":' in procs.http_get(base + "/api/v1/status/demo")[1]
            and b'"nodes":null' not in procs.http_get(base + "/api/v1/status/demo")[1]
        ),
        120,
        1.0,
        "the demo's series on the page",
    )
    return page, base


async def measure(args: argparse.Namespace, base: str, prometheus: str, pid: int) -> dict[str, float]:
    found = await latencies(base, args.viewers, args.cycles)
    result: dict[str, float] = {}
    for name, values in found.items():
        p50, p99 = percentile(values, 50) * 1e3, percentile(values, 99) * 1e3
        result[f"{name}_p50_ms"], result[f"{name}_p99_ms"] = p50, p99
        print(f"{name:<11} {len(values)} requests  p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    result.update(await service_time(base, pid, args.viewers, args.load_seconds))
    # The anchor, run just after on the same server: the runtime's smallest answer, so the ratio
    # says what the page's own handling adds to aiohttp's cost of any request.
    anchor = await service_time(base, pid, args.viewers, args.load_seconds, ("/-/healthy",))
    result["healthy_server_cpu_us_per_request"] = anchor["server_cpu_us_per_request"]
    result["server_cpu_ratio_vs_healthy"] = (
        result["server_cpu_us_per_request"] / anchor["server_cpu_us_per_request"]
    )
    print(
        f"closed loop, {args.viewers} viewers: {result['rps']:.0f} requests/s; CPU per request: "
        f"page {result['server_cpu_us_per_request']:.0f} µs "
        f"(/-/healthy {anchor['server_cpu_us_per_request']:.0f} µs, "
        f"ratio {result['server_cpu_ratio_vs_healthy']:.2f}), "
        f"load generator {result['client_cpu_us_per_request']:.0f} µs"
    )
    for viewers in (0, 1, 10, args.viewers):
        page_rate, prom_rate = await query_rate(base, prometheus, viewers, args.rate_seconds)
        print(
            f"{viewers:>4} viewers: page → Prometheus {page_rate:.1f}/min; Prometheus saw {prom_rate:.1f}/min"
        )
        result[f"queries_per_min_{viewers}"] = page_rate
        result[f"prometheus_queries_per_min_{viewers}"] = prom_rate
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--rate-seconds", type=float, default=30.0)
    args = parser.parse_args()
    if procs.find_binary("prometheus") is None:
        print("prometheus is not installed (Debian package 'prometheus')", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-statuspage-") as tmp:
        workdir = Path(tmp)
        demo, prometheus = start_demo(workdir)
        page = None
        try:
            page, base = start_page(workdir, prometheus)
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                result = runner.run(measure(args, base, prometheus, page.pid))
        finally:
            if page is not None:
                page.stop()
            demo.stop(timeout=30)
    print(
        f"RESULT viewers={args.viewers} cpus={os.cpu_count()} loadavg={os.getloadavg()[0]:.1f} "
        + " ".join(f"{k}={v:.1f}" for k, v in result.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
