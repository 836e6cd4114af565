"""Scrape latency of the RAPL exporter against node_exporter's rapl collector, side by side.

Both exporters run as their own processes on the same simulated powercap tree (two sockets,
package/core/uncore/dram, counters advancing) and are scraped alternately over keep-alive
connections with the headers Prometheus sends (gzip, OpenMetrics preferred, text accepted).
Each of ``--runs`` runs starts both afresh and prints p50/p99 per exporter, their ratios and
the CPU time each process spent per scrape (from /proc/PID/stat: less sensitive to a loaded
machine than latency).  The RESULT line gives the median ratio of the runs and their spread
(min-max), and the worst run's ratios.

    .venv/bin/python bench/rapl.py [--runs 5] [--scrapes 2000] [--sockets 2]

``--reads`` measures instead, in this process, the CPU of the collectors' sysfs reads alone
(both collectors' fetch, no HTTP, no rendering): descriptors held open and ``pread`` at offset
0 against ``open``/``read``/``close`` per value, alternating, ``--runs`` rounds of ``--scrapes``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import math
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


def one_run(workdir: Path, node_exporter: str, scrapes: int, sockets: int) -> dict[str, tuple[float, ...]]:
    """(p50 ms, p99 ms, CPU ms per scrape) of each exporter, scraped alternately."""
    lab = PowercapLab(workdir / "sys", intel_server(sockets=sockets)).create().start(interval=0.1)
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
            "powerplane": (http.client.HTTPConnection("127.0.0.1", ours_port, timeout=10), ours.pid),
            "node_exporter": (http.client.HTTPConnection("127.0.0.1", theirs_port, timeout=10), theirs.pid),
        }
        times: dict[str, list[float]] = {name: [] for name in conns}
        for _ in range(50):  # warm-up: connections, caches, first discovery
            for conn, _pid in conns.values():
                scrape(conn)
        cpu_before = {name: procs.stat_cpu_seconds(pid) for name, (_conn, pid) in conns.items()}
        for i in range(scrapes):
            order = list(conns) if i % 2 == 0 else list(reversed(conns))
            for name in order:
                times[name].append(scrape(conns[name][0]))
        cpu = {name: procs.stat_cpu_seconds(pid) - cpu_before[name] for name, (_conn, pid) in conns.items()}
    finally:
        ours.stop()
        theirs.stop()
        lab.stop()
    return {
        name: (percentile(values, 50) * 1e3, percentile(values, 99) * 1e3, cpu[name] / scrapes * 1e3)
        for name, values in times.items()
    }


def reads(workdir: Path, runs: int, scrapes: int, sockets: int) -> int:
    """CPU per scrape of the two RAPL collectors' fetch, held descriptors against reopening."""
    from powerplane.exporters.rapl import powercap
    from powerplane.exporters.rapl.exporter import make_server
    from powerplane.exporters.runtime import Deadline, run_collectors

    PowercapLab(workdir / "sys", intel_server(sockets=sockets)).create()
    server = make_server(workdir / "sys")
    held = powercap.HeldFiles.read

    def reopen(_files: powercap.HeldFiles, path: str) -> bytes:
        return powercap.read_bytes(path)  # the reader before: open, read, close per value

    figures: dict[str, list[float]] = {"held": [], "reopen": []}

    async def measure() -> None:
        for _ in range(runs):
            for name, read in (("held", held), ("reopen", reopen)):
                powercap.HeldFiles.read = read  # type: ignore[method-assign]
                start = time.process_time()
                for _ in range(scrapes):
                    await run_collectors("rapl", server.collectors, Deadline.after(5), server.failures)
                figures[name].append((time.process_time() - start) / scrapes * 1e6)
        powercap.HeldFiles.read = held  # type: ignore[method-assign]

    asyncio.run(measure())
    ratios = [h / r for h, r in zip(figures["held"], figures["reopen"], strict=True)]
    for name, values in figures.items():
        print(f"{name:6} CPU us per scrape: " + " ".join(f"{v:.0f}" for v in values))
    print(
        f"RESULT rapl_reads_held_us={statistics.median(figures['held']):.0f} "
        f"rapl_reads_reopen_us={statistics.median(figures['reopen']):.0f} "
        f"rapl_reads_ratio={statistics.median(ratios):.2f} "
        f"rapl_reads_ratio_spread={min(ratios):.2f}-{max(ratios):.2f} runs={runs} scrapes={scrapes}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--sockets", type=int, default=2)
    parser.add_argument("--reads", action="store_true", help="the sysfs reads alone, in process")
    args = parser.parse_args()
    if args.reads:
        with tempfile.TemporaryDirectory(prefix="bench-rapl-") as tmp:
            return reads(Path(tmp), args.runs, args.scrapes, args.sockets)
    node_exporter = procs.find_binary("node_exporter")
    if node_exporter is None:
        print("node_exporter is not installed (Debian prometheus-node-exporter)", file=sys.stderr)
        return 1
    ratios: dict[str, list[float]] = {"p50": [], "p99": [], "cpu": []}
    ours_p50 = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="bench-rapl-") as tmp:
            figures = one_run(Path(tmp), node_exporter, args.scrapes, args.sockets)
        (o50, o99, ocpu), (t50, t99, tcpu) = figures["powerplane"], figures["node_exporter"]
        cpu_ratio = ocpu / tcpu if tcpu else math.nan  # nan: fewer scrapes than a clock tick
        for key, ratio in (("p50", o50 / t50), ("p99", o99 / t99), ("cpu", cpu_ratio)):
            ratios[key].append(ratio)
        ours_p50.append(o50)
        print(
            f"run {run}: powerplane p50 {o50:.3f} ms p99 {o99:.3f} ms cpu {ocpu:.3f} ms/scrape | "
            f"node_exporter p50 {t50:.3f} ms p99 {t99:.3f} ms cpu {tcpu:.3f} ms/scrape | "
            f"ratios p50 {o50 / t50:.2f} p99 {o99 / t99:.2f} cpu {ratios['cpu'][-1]:.2f}",
            flush=True,
        )
    fields = []
    for key, values in ratios.items():
        fields += [
            f"rapl_{key}_ratio={statistics.median(values):.2f}",
            f"rapl_{key}_ratio_spread={min(values):.2f}-{max(values):.2f}",
        ]
    fields.append(f"rapl_p50_ms={statistics.median(ours_p50):.3f}")
    fields.append(f"runs={args.runs} scrapes={args.scrapes}")
    print("RESULT " + " ".join(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main())
