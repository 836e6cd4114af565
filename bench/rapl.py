"""Scrape latency of the RAPL exporter against node_exporter's rapl collector, side by side.

Both exporters run as their own processes on the same simulated powercap tree (two sockets,
package/core/dram, counters advancing) and are scraped alternately over keep-alive
connections with the headers Prometheus sends.  Prints p50/p99 per exporter and the ratios.

    .venv/bin/python bench/rapl.py [--scrapes 2000] [--sockets 2]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path

from powerplane.lab import procs
from powerplane.lab.powercap import PowercapLab, intel_server

HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


def scrape(conn: http.client.HTTPConnection) -> float:
    start = time.perf_counter()
    conn.request("GET", "/metrics", headers=HEADERS)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200 or not body:
        raise RuntimeError(f"scrape failed: {response.status}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--sockets", type=int, default=2)
    args = parser.parse_args()
    node_exporter = procs.find_binary("node_exporter")
    if node_exporter is None:
        print("node_exporter is not installed (Debian prometheus-node-exporter)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-rapl-") as tmp:
        workdir = Path(tmp)
        lab = PowercapLab(workdir / "sys", intel_server(sockets=args.sockets)).create().start(interval=0.1)
        ours_port, theirs_port = procs.free_port(), procs.free_port()
        ours = procs.Process(
            [
                sys.executable,
                "-m",
                "powerplane.cli",
                "exporter",
                "rapl",
                f"--path.sysfs={workdir / 'sys'}",
                f"--web.listen-address=127.0.0.1:{ours_port}",
                "--log.level=warn",
            ],
            workdir / "ours.log",
        )
        theirs = procs.Process(
            [
                node_exporter,
                "--collector.disable-defaults",
                "--collector.rapl",
                f"--path.sysfs={workdir / 'sys'}",
                f"--web.listen-address=127.0.0.1:{theirs_port}",
            ],
            workdir / "node_exporter.log",
        )
        try:
            ours.wait_ready(f"http://127.0.0.1:{ours_port}/-/ready")
            theirs.wait_ready(f"http://127.0.0.1:{theirs_port}/metrics")
            conns = {
                "powerplane": http.client.HTTPConnection("127.0.0.1", ours_port, timeout=10),
                "node_exporter": http.client.HTTPConnection("127.0.0.1", theirs_port, timeout=10),
            }
            times: dict[str, list[float]] = {name: [] for name in conns}
            for _ in range(50):  # warm-up: connections, caches, first discovery
                for conn in conns.values():
                    scrape(conn)
            for i in range(args.scrapes):
                order = list(conns) if i % 2 == 0 else list(reversed(conns))
                for name in order:
                    times[name].append(scrape(conns[name]))
        finally:
            ours.stop()
            theirs.stop()
            lab.stop()
    figures = {}
    for name, values in times.items():
        p50, p99 = percentile(values, 50) * 1e3, percentile(values, 99) * 1e3
        figures[name] = (p50, p99)
        print(f"{name:>14}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({len(values)} scrapes)")
    (o50, o99), (t50, t99) = figures["powerplane"], figures["node_exporter"]
    print(
        f"RESULT rapl_p50_ratio={o50 / t50:.2f} rapl_p99_ratio={o99 / t99:.2f} "
        f"rapl_p50_ms={o50:.3f} node_exporter_p50_ms={t50:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
