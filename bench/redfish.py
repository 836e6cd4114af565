"""Benchmark: one Redfish exporter process probing a fleet of slow simulated BMCs.

A fleet of simulated iDRACs (``powerplane.lab.redfish``, in a process of its own) answers every
request after a latency drawn uniformly from 200-800 ms.  One exporter process
(``powerplane exporter redfish``) is probed the way Prometheus would: every BMC once per
interval, probes spread evenly over the interval, each with the scrape-timeout header.  The first
interval pays for discovery and logins; the figures in RESULT are from the last interval.

Printed side by side: probes completed in time, p50/p99 probe duration, exporter CPU seconds and
peak RSS, and the latency bounds: requests per probe x mean latency (what an exporter that makes
its requests one after another pays per BMC) and the critical path (what this exporter pays).

    .venv/bin/python bench/redfish.py                       # 1000 BMCs, 60 s interval, 2 intervals
    .venv/bin/python bench/redfish.py --bmcs 200 --interval 20 --intervals 2
    .venv/bin/python bench/redfish.py --bmcs 300 --interval 20 --intervals 3 --profile /tmp/rf.prof

``--profile FILE`` runs the exporter under cProfile timed by CPU time (the whole run, first
interval included; its CPU figures then include the profiler's cost) and prints the functions
with the most own time.

After the last interval, one more probes every BMC at once (``busy``): the exporter then works
from the first probe to the last instead of waking for each answer, and its CPU per probe is the
probes' own work.  Beside it, the anchor: a minimal server on the same event loop (an echo, in a
process of its own) answering requests at the interval's spacing and then back to back, its CPU
per request in each case.  Where the two differ much, the machine charges a process for waking
after an idle moment, and the spread figure carries that charge once per answer (docs/scale.md,
"Where a Redfish probe's CPU goes").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from powerplane.lab import procs

PASSWORD = "calvin"  # the simulated fleet's default
#: The anchor: what a server on the same event loop does per request at the least, an echo.
ECHO = """
import asyncio, uvloop
class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)
async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""
#: The exporter's command line under cProfile, timed by CPU time: wall time would charge the
#: profiled functions for every moment another process held the core.
PROFILED = """
import cProfile, sys, time
from powerplane.cli import main
profile = cProfile.Profile(time.process_time)
out, sys.argv = sys.argv[1], ["powerplane", *sys.argv[2:]]
try:
    profile.runcall(main)
finally:
    profile.dump_stats(out)
"""


async def echo_anchor(gap: float, count: int) -> tuple[float, float]:
    """The echo server's CPU µs per request: ``count`` requests ``gap`` seconds apart, then back to back."""
    # Blocking start-up of the anchor, before it is timed.
    server = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        per_request = []
        for pause, n in ((gap, count), (0.0, 10 * count)):
            before = procs.cpu_seconds(server.pid)
            for _ in range(n):
                writer.write(b"x" * 256)
                await reader.readexactly(256)
                if pause:
                    await asyncio.sleep(pause)
            per_request.append((procs.cpu_seconds(server.pid) - before) / n * 1e6)
        writer.close()
        return per_request[0], per_request[1]
    finally:
        server.kill()
        server.wait()


def exporter_counter(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_interval(
    http: aiohttp.ClientSession,
    exporter: str,
    targets: list[str],
    interval: float,
    scrape_timeout: float,
    busy: bool = False,
) -> tuple[list[float], int, int]:
    """Probe every target once, spread over ``interval`` (``busy``: all at once); (durations, up, in time)."""
    timeout = scrape_timeout
    durations: list[float] = []
    up = 0
    in_time = 0
    start = time.monotonic()

    async def one(i: int, target: str) -> None:
        nonlocal up, in_time
        if not busy:
            await asyncio.sleep(max(0.0, start + i * interval / len(targets) - time.monotonic()))
        t0 = time.monotonic()
        try:
            async with http.get(
                f"http://{exporter}/probe",
                params={"target": target},
                headers={"X-Prometheus-Scrape-Timeout-Seconds": str(timeout)},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                text = await response.text()
        except (TimeoutError, aiohttp.ClientError):
            durations.append(timeout)
            return
        elapsed = time.monotonic() - t0
        durations.append(elapsed)
        if response.status == 200 and elapsed <= timeout:
            in_time += 1
            if 'powerplane_target_up{exporter="redfish"} 1.0' in text:
                up += 1

    await asyncio.gather(*(one(i, t) for i, t in enumerate(targets)))
    return durations, up, in_time


async def bench(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="powerplane-bench-redfish-"))
    # Blocking start-up before any probe is timed: nothing else runs on the loop yet.
    fleet = subprocess.Popen(  # noqa: ASYNC220
        [
            sys.executable,
            "-m",
            "powerplane.lab.redfish",
            "--count",
            str(args.bmcs),
            "--model",
            args.model,
            "--latency",
            str(args.latency[0]),
            str(args.latency[1]),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    exporter_proc: procs.Process | None = None
    try:
        assert fleet.stdout is not None
        targets = [fleet.stdout.readline().strip().removeprefix("http://") for _ in range(args.bmcs)]
        if not all(targets):
            raise RuntimeError("the simulated fleet did not start")
        config = workdir / "redfish.yml"
        config.write_text(
            "auths: {idrac: {username: root, password: {env: BENCH_BMC_PASSWORD}}}\n"
            f"modules: {{default: {{timeout: {args.timeout}}}}}\n"
            "defaults: {scheme: http}\nallow: ['127.0.0.0/8:*']\n"
        )
        port = procs.free_port()
        exporter = f"127.0.0.1:{port}"
        command = [str(Path(sys.executable).parent / "powerplane")]
        if args.profile:
            command = [sys.executable, "-c", PROFILED, args.profile]
        exporter_proc = procs.Process(
            [
                *command,
                "exporter",
                "redfish",
                f"--config={config}",
                f"--web.listen-address={exporter}",
                "--log.level=error",
            ],
            workdir / "exporter.log",
            env={"BENCH_BMC_PASSWORD": PASSWORD},
        )
        exporter_proc.wait_ready(f"http://{exporter}/-/ready")
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            rows = []
            requests_before = 0.0
            for n in range(args.intervals + 1):
                busy = n == args.intervals
                cpu_before = procs.stat_cpu_seconds(exporter_proc.pid)
                durations, up, in_time = await run_interval(
                    http, exporter, targets, args.interval, args.timeout, busy
                )
                cpu = procs.stat_cpu_seconds(exporter_proc.pid) - cpu_before
                async with http.get(f"http://{exporter}/metrics") as response:
                    own = await response.text()
                requests_total = exporter_counter(own, "powerplane_redfish_requests_total")
                per_probe = (requests_total - requests_before) / max(1, len(durations))
                requests_before = requests_total
                rows.append((n + 1, durations, up, in_time, cpu, per_probe))
                label = "cold (discovery, logins)" if n == 0 else "busy: all at once" if busy else "steady"
                print(
                    f"interval {n + 1} [{label}]: {in_time}/{len(targets)} probes in time, {up} up, "
                    f"p50 {statistics.median(durations):.2f}s p99 {percentile(durations, 0.99):.2f}s "
                    f"max {max(durations):.2f}s, exporter CPU {cpu:.1f}s, {per_probe:.1f} requests/probe",
                    flush=True,
                )
        rss = procs.rss_mb(exporter_proc.pid, "VmHWM")
        _n, busy_durations, _up, _in_time, busy_cpu, _per_probe = rows[-1]
        _n, durations, up, in_time, cpu, per_probe = rows[-2]
        cpu_ms, busy_cpu_ms = 1000 * cpu / len(durations), 1000 * busy_cpu / len(busy_durations)
        anchor_spread, anchor_busy = await echo_anchor(min(0.05, args.interval / args.bmcs), 200)
        mean_latency = sum(args.latency) / 2
        p50, p99 = statistics.median(durations), percentile(durations, 0.99)
        sequential_p50, sequential_p99 = per_probe * mean_latency, per_probe * args.latency[1]
        # Without latency there is no sequential bound: any number of BMCs fits an interval.
        sequential_bmcs = f"{args.interval // sequential_p50:.0f}" if sequential_p50 > 0 else "-"
        low, high = args.latency
        print()
        print(f"fleet: {args.bmcs} simulated {args.model} BMCs, latency {low}-{high} s per request")
        print(f"probing: every BMC once per {args.interval:.0f} s, scrape timeout {args.timeout:.0f} s")
        print(f"{'':34}{'this exporter':>16}{'sequential bound':>20}")
        print(f"{'probe duration p50 (s)':34}{p50:>16.2f}{sequential_p50:>20.2f}")
        print(f"{'probe duration p99 (s)':34}{p99:>16.2f}{sequential_p99:>20.2f}")
        print(f"{'critical path lower bound (s)':34}{2 * args.latency[0]:>16.2f}")
        print(f"{'BMCs per interval (in time)':34}{in_time:>16d}{sequential_bmcs:>20}")
        print(f"{'exporter CPU s per interval':34}{cpu:>16.1f}")
        print(f"{'exporter peak RSS (MB)':34}{rss:>16.1f}")
        print(
            "anchor: existing iDRAC exporters are reported at 25-55 s per BMC scrape (not run here); "
            "the sequential bound is requests/probe x latency, one request after another"
        )
        print(f"{'exporter CPU ms per probe':34}{cpu_ms:>16.2f}")
        print(f"{'... all probes at once (busy)':34}{busy_cpu_ms:>16.2f}")
        print(
            f"anchor: an echo server on the same loop, CPU per request {anchor_spread:.0f} µs at the "
            f"interval's spacing, {anchor_busy:.0f} µs back to back"
        )
        print(f"{'requests per probe':34}{per_probe:>16.1f}")
        print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(
            f"RESULT redfish_bmcs_per_interval={in_time} redfish_p99_probe_s={p99:.2f} "
            f"redfish_peak_rss_mb={rss:.0f} redfish_cpu_ms_per_probe={cpu_ms:.2f} "
            f"redfish_requests_per_probe={per_probe:.1f} "
            f"redfish_cpu_ms_per_probe_busy={busy_cpu_ms:.2f} "
            f"anchor_echo_us_spread={anchor_spread:.1f} anchor_echo_us_busy={anchor_busy:.1f}"
        )
    finally:
        if exporter_proc is not None:
            exporter_proc.stop()  # SIGTERM: the exporter shuts down cleanly and cProfile writes
        fleet.terminate()
        fleet.wait(10)
    if args.profile:
        print()
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description="Redfish exporter fleet benchmark")
    parser.add_argument("--bmcs", type=int, default=1000, help="simulated BMCs (default 1000)")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="scrape interval in seconds (default 60)"
    )
    parser.add_argument("--timeout", type=float, default=50.0, help="scrape timeout in seconds (default 50)")
    parser.add_argument("--intervals", type=int, default=2, help="intervals to run; the last is reported")
    parser.add_argument("--latency", type=float, nargs=2, default=(0.2, 0.8), metavar=("MIN", "MAX"))
    parser.add_argument("--model", default="idrac9-r760", help="simulated model (see powerplane.lab.redfish)")
    parser.add_argument("--profile", metavar="FILE", help="run the exporter under cProfile, writing FILE")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
