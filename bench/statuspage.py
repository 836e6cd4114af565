"""The status page under 100 concurrent viewers, against the demo's Prometheus and scheduler series.

Starts ``powerplane demo`` and, beside it, ``powerplane status-page`` (its own process) reading
the demo's Prometheus with a short data interval, then loads the page from this process:

- cached: rounds of N concurrent requests (overview, the system tab, its fragment, the JSON)
  while the data is fresh, so every answer comes from the cache;
- miss: rounds started just after the data interval ran out, so every request of the round
  waits for the one refresh they share;
- requests per second: N viewers in a closed loop for a while (misses included);
- Prometheus queries per minute with 1, 10 and N viewers, from the page's own counter and from
  Prometheus's ``prometheus_http_requests_total{handler="/api/v1/query"}`` (which also counts
  the demo's other clients: the figure with no viewer is printed as the baseline).

    .venv/bin/python bench/statuspage.py [--viewers 100] [--cycles 10] [--load-seconds 10] [--rate-seconds 30]
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

from powerplane.lab import procs

VIEWS = ("/", "/system/demo", "/system/demo?fragment=1", "/api/v1/status")
DATA_SECONDS = 5.0
#: The console script of the interpreter running the bench.
POWERPLANE = str(Path(sys.executable).parent / "powerplane")
HEADERS = {"Accept-Encoding": "gzip", "Accept": "text/html,application/json"}


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def get(session: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    async with session.get(url, headers=HEADERS) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - start


async def text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        return await response.text()


async def round_of(session: aiohttp.ClientSession, base: str, viewers: int) -> list[float]:
    return await asyncio.gather(*(get(session, base + VIEWS[i % len(VIEWS)]) for i in range(viewers)))


async def refreshes(session: aiohttp.ClientSession, base: str) -> float:
    return metric(await text(session, base + "/metrics"), "powerplane_statuspage_refreshes_total")


async def latencies(base: str, viewers: int, cycles: int) -> tuple[list[float], list[float]]:
    """(cached, miss) latencies in seconds."""
    cached: list[float] = []
    miss: list[float] = []
    connector = aiohttp.TCPConnector(limit=viewers)
    async with aiohttp.ClientSession(connector=connector) as session:
        await round_of(session, base, viewers)  # connections open, templates warm
        for _ in range(cycles):
            # A refresh now, then rounds while the data is fresh.
            await asyncio.sleep(DATA_SECONDS + 0.2)
            before = await refreshes(session, base)
            miss += await round_of(session, base, viewers)
            if await refreshes(session, base) != before + 1:
                raise RuntimeError("the miss round did not share one refresh")
            started = time.monotonic()
            while time.monotonic() - started < DATA_SECONDS - 1.5:
                before = await refreshes(session, base)
                found = await round_of(session, base, viewers)
                if await refreshes(session, base) == before:
                    cached += found
    return cached, miss


async def closed_loop(base: str, viewers: int, seconds: float) -> int:
    """Requests answered by ``viewers`` clients each asking again as soon as answered."""
    done = 0
    end = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=viewers)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def viewer(i: int) -> None:
            nonlocal done
            while time.monotonic() < end:
                await get(session, base + VIEWS[(i + done) % len(VIEWS)])
                done += 1

        await asyncio.gather(*(viewer(i) for i in range(viewers)))
    return done


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
        found = re.search(r"Prometheus\s+(http://\S+)/", log.read_text())
        return found.group(1) if found else None

    return demo, procs.wait_until(prometheus_url, 300, 0.5, "the demo's Prometheus")


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


async def measure(args: argparse.Namespace, base: str, prometheus: str) -> dict[str, float]:
    cached, miss = await latencies(base, args.viewers, args.cycles)
    count = await closed_loop(base, args.viewers, args.load_seconds)
    result = {
        "cached_p50_ms": percentile(cached, 50) * 1e3,
        "cached_p99_ms": percentile(cached, 99) * 1e3,
        "miss_p50_ms": percentile(miss, 50) * 1e3,
        "miss_p99_ms": percentile(miss, 99) * 1e3,
        "rps": count / args.load_seconds,
    }
    for name, values in (("cached", cached), ("miss", miss)):
        p50, p99 = result[f"{name}_p50_ms"], result[f"{name}_p99_ms"]
        print(f"{name:<7} {len(values)} requests  p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    print(f"closed loop, {args.viewers} viewers: {result['rps']:.0f} requests/s")
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
            result = asyncio.run(measure(args, base, prometheus))
        finally:
            if page is not None:
                page.stop()
            demo.stop(timeout=30)
    print(
        f"RESULT viewers={args.viewers} cpus={os.cpu_count()} "
        + " ".join(f"{k}={v:.1f}" for k, v in result.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
