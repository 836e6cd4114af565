"""Figures for the hardening of the multi-target exporters (not a test: it prints what it sees).

``logins``: a Redfish exporter process probes a BMC that refuses every login, once per
``--interval`` seconds for ``--seconds``; printed: the logins the BMC saw, per minute.

``scan``: a Redfish exporter process (``state_ttl`` short) is probed once for each of
``--targets`` distinct allowed targets (127.x.y.z:1, where nothing listens), then left alone
past the TTL; printed: its RSS at start, at its peak and after the TTL, and the state entries
its /metrics reports.  The goal: RSS after the TTL within ``RSS_GOAL_MB`` of the start
(``rss_after_ttl_delta_mb``, and ``rss_goal_met`` in the RESULT line).  The exporter runs on the
C library's allocator (``PYTHONMALLOC=malloc``) as the shipped units run it; ``--allocator
pymalloc`` measures CPython's own.  Memory figures hold under load; times do not, so the load
average is printed with them (a scan slower than ``--ttl`` holds fewer targets at its peak).

    .venv/bin/python bench/hostile.py logins --seconds 120
    .venv/bin/python bench/hostile.py scan --targets 25000 [--allocator pymalloc]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from powerplane.lab import procs
from powerplane.lab.hostile import HostileBMC, HostileLab
from powerplane.lab.redfish import IDRAC9_R760

PASSWORD = "bench-bmc-password"
#: RSS after the TTL may exceed the RSS at start by this much (MB).
RSS_GOAL_MB = 20.0


def start_exporter(workdir: Path, state_ttl: float, allocator: str = "malloc") -> tuple[procs.Process, str]:
    config = workdir / "redfish.yml"
    config.write_text(
        "auths: {idrac: {username: root, password: {env: BENCH_BMC_PASSWORD}}}\n"
        "defaults: {scheme: http}\nmodules: {default: {timeout: 5}}\n"
        f"allow: ['127.0.0.0/8:*']\nstate_ttl: {state_ttl}\n"
    )
    port = procs.free_port()
    process = procs.Process(
        [
            str(Path(sys.executable).parent / "powerplane"),
            "exporter",
            "redfish",
            "--config",
            str(config),
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=error",
        ],
        workdir / "exporter.log",
        # The shipped units run the multi-target exporters on the C library's allocator.
        env={"BENCH_BMC_PASSWORD": PASSWORD, "PYTHONMALLOC": allocator},
    )
    process.wait_ready(f"http://127.0.0.1:{port}/-/ready", timeout=60)
    return process, f"127.0.0.1:{port}"


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


async def logins(args: argparse.Namespace, workdir: Path) -> None:
    lab = HostileLab()
    bmc = lab.add(HostileBMC("refuses", IDRAC9_R760, password=PASSWORD, refuse_logins=True))
    await lab.start()
    process, exporter = start_exporter(workdir, 600)
    try:
        async with aiohttp.ClientSession() as http:
            start = time.monotonic()
            probes = 0
            while time.monotonic() - start < args.seconds:
                async with http.get(f"http://{exporter}/probe", params={"target": bmc.address}) as response:
                    await response.read()
                probes += 1
                await asyncio.sleep(max(0.0, start + probes * args.interval - time.monotonic()))
            async with http.get(f"http://{exporter}/metrics") as response:
                own = await response.text()
    finally:
        process.stop()
        await lab.stop()
    minutes = args.seconds / 60
    first = sum(1 for t in bmc.logins if t - bmc.logins[0] < 60) if bmc.logins else 0
    print(f"{probes} probes in {args.seconds:.0f} s against a BMC refusing every login")
    rate = len(bmc.logins) / minutes
    print(f"logins seen by the BMC: {len(bmc.logins)} ({rate:.1f} per minute), {first} in the first minute")
    print(f"exporter: logins deferred {metric(own, 'powerplane_redfish_logins_deferred_total'):.0f}")
    print(f"RESULT redfish_refused_logins_per_minute={rate:.2f} redfish_refused_logins_first_minute={first}")


async def scan(args: argparse.Namespace, workdir: Path) -> None:
    process, exporter = start_exporter(workdir, args.ttl, args.allocator)
    pid = process.proc.pid
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as http:

            async def probe(target: str) -> None:
                async with http.get(f"http://{exporter}/probe", params={"target": target}) as response:
                    await response.read()

            async def scan(first: int) -> tuple[float, float, str]:
                """(seconds, RSS after the scan in MB, /metrics) for ``--targets`` new targets."""
                targets = [
                    f"127.{1 + i // 65025}.{i // 255 % 255}.{i % 255 + 1}:1"
                    for i in range(first, first + args.targets)
                ]
                began = time.monotonic()
                for offset in range(0, len(targets), 1000):
                    await asyncio.gather(*(probe(t) for t in targets[offset : offset + 1000]))
                took = time.monotonic() - began
                async with http.get(f"http://{exporter}/metrics") as response:
                    return took, procs.rss_mb(pid), await response.text()

            async def rest() -> tuple[float, str]:
                await asyncio.sleep(args.ttl * 1.5)  # the runner sweeps four times per TTL
                async with http.get(f"http://{exporter}/metrics") as response:
                    return procs.rss_mb(pid), await response.text()

            await probe("127.254.254.254:1")  # imports and first allocations
            start_rss = procs.rss_mb(pid)
            took, loaded, during = await scan(0)
            peak = procs.rss_mb(pid, "VmHWM")
            after, later = await rest()
            # A second scan of as many other targets: is what stayed reused, or does it grow?
            _took2, loaded2, _during2 = await scan(args.targets)
            peak2 = procs.rss_mb(pid, "VmHWM")
            after2, _later2 = await rest()
    finally:
        process.stop()
    print(
        f"{args.targets} distinct allowed targets probed once in {took:.0f} s; state_ttl {args.ttl:g} s; "
        f"PYTHONMALLOC={args.allocator}"
    )
    print(f"RSS at start {start_rss:.1f} MB, after the scan {loaded:.1f} MB, peak {peak:.1f} MB")
    print(f"RSS after the TTL {after:.1f} MB")
    print(f"a second scan of {args.targets} other targets: {loaded2:.1f} MB, peak {peak2:.1f} MB")
    print(f"RSS after its TTL {after2:.1f} MB")
    entries = "powerplane_probe_state_entries"
    held, left = metric(during, entries), metric(later, entries)
    print(f"state entries: {held:.0f} after the scan, {left:.0f} after the TTL")
    print("load average (1, 5, 15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    delta = after - start_rss
    print(
        f"RESULT scan_targets={args.targets} allocator={args.allocator} "
        f"rss_start_mb={start_rss:.1f} rss_peak_mb={peak:.1f} "
        f"rss_after_ttl_mb={after:.1f} rss_after_ttl_delta_mb={delta:.1f} "
        f"rss_after_ttl_goal_mb={RSS_GOAL_MB:g} rss_goal_met={'yes' if delta <= RSS_GOAL_MB else 'no'} "
        f"rss_after_second_ttl_mb={after2:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    one = sub.add_parser("logins")
    one.add_argument("--seconds", type=float, default=120.0)
    one.add_argument("--interval", type=float, default=1.0)
    two = sub.add_parser("scan")
    two.add_argument("--targets", type=int, default=25000)
    two.add_argument("--ttl", type=float, default=30.0)
    two.add_argument("--concurrency", type=int, default=200)
    two.add_argument(
        "--allocator", choices=["malloc", "pymalloc"], default="malloc", help="the exporter's PYTHONMALLOC"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="powerplane-bench-hostile-") as tmp:
        asyncio.run((logins if args.figure == "logins" else scan)(args, Path(tmp)))


if __name__ == "__main__":
    main()
