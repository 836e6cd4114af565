"""powerplane report over a month of a large cluster, powerplane measure's overhead, XLSX writers.

1. Report: ``--days`` (30) x ``--nodes`` (1,000) nodes at one sample every ``--interval`` (30 s)
   of each node's BMC energy counter, plus the inventory, the cluster's market area, a price and a
   carbon curve, backfilled with ``promtool tsdb create-blocks-from openmetrics`` a day at a time
   (the text is streamed to a file of one day, never held; the backfill time is printed too).
   ``powerplane report --by cluster --by rack --by node`` runs as its own process against the real
   Prometheus; its wall time and peak RSS are printed.  The anchor is fetching the one query no
   report can avoid (every node's energy per step over the month, through the same chunked client,
   as many chunks at a time as the report asks) and decoding it, nothing else; the same fetched one
   chunk at a time is printed too (``anchor_serial_s``, run first: it also warms the server).
2. Measure: ``powerplane measure --interval 0.1s -- sleep SECONDS`` on the lab's two-socket
   powercap tree and ``--gpus`` fake-NVML GPUs; the sampling thread's CPU time over the run's
   duration is its overhead in % of one core (the process's start-up is printed apart).
3. XLSX: XlsxWriter (constant memory) against openpyxl's write-only mode, the same five sheets.

Last line: ``RESULT report_s=... report_cpu_s=... report_rss_mib=... report_prometheus_cpu_s=...
anchor_s=... anchor_cpu_s=... anchor_prometheus_cpu_s=... anchor_serial_s=... report_over_anchor=...
report_over_anchor_cpu=... backfill_s=... measure_overhead_pct_core=... xlsxwriter_cpu_s=...
openpyxl_cpu_s=... load=...`` (load: the 1-minute load average at the end).
Not a test: on a shared machine label the figures as taken under load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import h5py

from powerplane.accounting.prometheus import ClientSettings, PrometheusClient, chunk_bounds
from powerplane.accounting.report.build import BYTES_PER_POINT, CHUNKS_AHEAD, prefetched
from powerplane.lab import procs
from powerplane.lab.fakenvml import FakeGpu, FakeNvml
from powerplane.lab.powercap import PowercapLab, intel_server
from powerplane.lab.tsdb import BackfilledPrometheus, backfill

POWERPLANE = str(Path(sys.executable).with_name("powerplane"))
D0 = 1_772_323_200  # 2026-03-01T00:00:00Z
DAY = 86_400


def day_lines(day: int, nodes: int, interval: int, racks: int) -> Iterator[str]:
    """One day of every node's BMC counter (power 300 W +- 100 W over the day), info and market series."""
    start = D0 + day * DAY
    for t in range(start, start + DAY, interval):
        phase = math.sin(2 * math.pi * (t - D0) / DAY)
        for n in range(nodes):
            # Energy = integral of 300 + 100 sin(...) + n % 50: closed form, so exact at any interval.
            base = (300.0 + n % 50) * (t - D0)
            swing = 100.0 * DAY / (2 * math.pi) * (1 - math.cos(2 * math.pi * (t - D0) / DAY))
            yield f'powerplane_redfish_energy_joules_total{{node="n{n:04d}"}} {base + swing:.1f} {t}\n'
        if (t - start) % 600 == 0:  # info and market series every 10 min: they are read by the series API
            for n in range(nodes):
                rack = n % racks
                labels = f'node="n{n:04d}",rack="rack-{rack:02d}",row="row-{rack // 10}",cluster="c1"'
                yield f"powerplane_node_info{{{labels}}} 1 {t}\n"
            yield f'powerplane_cluster_info{{cluster="c1",area="DE-LU"}} 1 {t}\n'
            price = 80.0 + 40.0 * phase
            yield f'powerplane_market_price_eur_per_mwh{{area="DE-LU"}} {price:.2f} {t}\n'
            yield f'powerplane_grid_carbon_intensity_grams_per_kwh{{area="DE-LU"}} 350 {t}\n'


def fill(tsdb: Path, days: int, nodes: int, interval: int, racks: int) -> tuple[float, int]:
    began = time.monotonic()
    written = 0
    for day in range(days):
        written += backfill(tsdb, day_lines(day, nodes, interval, racks))
        print(f"  backfilled day {day + 1}/{days} ({written / 1e9:.1f} GB of text so far)", flush=True)
    return time.monotonic() - began, written


def run_report(url: str, days: int, out: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds of the report process (Prometheus apart)."""
    argv = [POWERPLANE, "report", "--prometheus", url, "--from", str(D0), "--to", str(D0 + days * DAY)]
    argv += ["--by", "cluster", "--by", "rack", "--by", "node", "--out", str(out)]
    began = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors)
        # wait4: the report's own peak RSS (RUSAGE_CHILDREN would include promtool's backfill).
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - began
        if child.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"report failed: {errors.read()[-2000:].decode(errors='replace')}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


async def anchor(url: str, days: int, nodes: int, ahead: int) -> tuple[float, float]:
    """Wall and CPU seconds to fetch and decode every node's energy per period, ``ahead`` chunks at a time."""
    expr = "sum by (node) (increase(powerplane_redfish_energy_joules_total[900s]))"
    began, cpu = time.monotonic(), time.process_time()
    settings = ClientSettings(url=url)
    async with PrometheusClient(settings) as prom:
        # Chunks sized to the body cap as the report sizes them (none refused and asked again).
        points = max(1, settings.max_body_bytes // BYTES_PER_POINT // nodes)
        bounds = chunk_bounds(D0 + 900, D0 + days * DAY, 900, points)
        async for _bounds, _series in prefetched(bounds, lambda ab: prom.query_range(expr, *ab, 900), ahead):
            pass
    return time.monotonic() - began, time.process_time() - cpu


def measure_overhead(work: Path, seconds: int, gpus: int) -> tuple[float, float]:
    lab = PowercapLab(work / "sys", intel_server()).create().start(interval=0.05)
    nvml = FakeNvml(work / "nvml", [FakeGpu("h100-sxm") for _ in range(gpus)])
    out = work / "run.h5"
    argv = [POWERPLANE, "measure", "--interval", "0.1s", "--sysfs", str(lab.root), "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        subprocess.run([*argv, "--", "sleep", str(seconds)], env={**os.environ, **nvml.env()}, check=True)
    finally:
        lab.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with h5py.File(out) as f:
        cpu = float(f.attrs["sampler_cpu_seconds"])
        duration = float(f.attrs["end"]) - float(f.attrs["start"])
        samples = int(f.attrs["samples"])
    process_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(
        f"  measure: {samples} samples in {duration:.1f} s;"
        f" sampler {cpu:.3f} s CPU; process {process_cpu:.2f} s CPU"
    )
    return 100 * cpu / duration, process_cpu


def xlsx_writers(rows: int) -> tuple[float, float]:
    code = """
import sys, time, random
rows = [[f"node-{i:04d}"] + [random.random() * 1000 for _ in range(24)] for i in range(int(sys.argv[2]))]
t = time.process_time()
if sys.argv[1] == "xlsxwriter":
    import xlsxwriter
    wb = xlsxwriter.Workbook(sys.argv[3], {"constant_memory": True})
    for s in range(5):
        ws = wb.add_worksheet(f"s{s}")
        for r, row in enumerate(rows):
            ws.write_row(r, 0, row)
    wb.close()
else:
    import openpyxl
    wb = openpyxl.Workbook(write_only=True)
    for s in range(5):
        ws = wb.create_sheet(f"s{s}")
        for row in rows:
            ws.append(row)
    wb.save(sys.argv[3])
print(time.process_time() - t)
"""
    result = []
    with tempfile.TemporaryDirectory() as tmp:
        for lib in ("xlsxwriter", "openpyxl"):
            out = subprocess.run(
                [sys.executable, "-c", code, lib, str(rows), f"{tmp}/x.xlsx"],
                capture_output=True,
                text=True,
                check=True,
            )
            result.append(float(out.stdout))
    return result[0], result[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--racks", type=int, default=50)
    parser.add_argument("--measure-seconds", type=int, default=30)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--xlsx-rows", type=int, default=5000)
    parser.add_argument("--workdir", type=Path, help="keep the TSDB here (re-used when present)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        tsdb = work / f"tsdb-{args.days}d-{args.nodes}n-{args.interval}s"
        backfill_s, written = 0.0, 0
        cost = work / f"{tsdb.name}.backfill.json"
        if not tsdb.exists():
            print(
                f"backfilling {args.days} days x {args.nodes} nodes every {args.interval} s ...", flush=True
            )
            backfill_s, written = fill(tsdb, args.days, args.nodes, args.interval, args.racks)
            cost.write_text(json.dumps({"seconds": backfill_s, "bytes": written}))
        elif cost.exists():  # a kept TSDB: what its backfill cost when it was made
            made = json.loads(cost.read_text())
            backfill_s, written = float(made["seconds"]), int(made["bytes"])
        print(f"  backfill: {backfill_s:.0f} s for {written / 1e9:.1f} GB of OpenMetrics text")
        with BackfilledPrometheus(work / "prom", tsdb) as prom:
            assert prom.process is not None
            server = prom.process.pid
            # The serial anchor first: it pays for the freshly started server's first reads, so the
            # report and the anchor it is divided by both find it warm.
            serial_s, _cpu = asyncio.run(anchor(prom.url, args.days, args.nodes, 1))
            before = procs.stat_cpu_seconds(server)
            report_s, rss, report_cpu = run_report(prom.url, args.days, work / "bench.xlsx")
            report_server = procs.stat_cpu_seconds(server) - before
            before = procs.stat_cpu_seconds(server)
            anchor_s, anchor_cpu = asyncio.run(anchor(prom.url, args.days, args.nodes, CHUNKS_AHEAD))
            anchor_server = procs.stat_cpu_seconds(server) - before
        print(
            f"report: {report_s:.1f} s wall, {report_cpu:.1f} s CPU, peak RSS {rss:.0f} MiB,"
            f" Prometheus {report_server:.1f} s CPU;"
            f" anchor (fetch + decode, {CHUNKS_AHEAD} chunks at a time): {anchor_s:.1f} s wall,"
            f" {anchor_cpu:.1f} s CPU, Prometheus {anchor_server:.1f} s CPU;"
            f" the same one chunk at a time: {serial_s:.1f} s"
        )
        # CPU seconds (client and server) vary less with the machine's load than wall seconds do.
        cpu_ratio = (report_cpu + report_server) / (anchor_cpu + anchor_server)
        overhead, process_cpu = measure_overhead(work, args.measure_seconds, args.gpus)
        print(f"measure at 10 Hz: sampling {overhead:.3f} % of one core")
        xw, op = xlsx_writers(args.xlsx_rows)
        print(
            f"XLSX, 5 sheets x {args.xlsx_rows} rows x 25 cells:"
            f" XlsxWriter {xw:.2f} s CPU, openpyxl {op:.2f} s CPU"
        )
    print(
        f"RESULT report_s={report_s:.1f} report_cpu_s={report_cpu:.1f} report_rss_mib={rss:.0f} "
        f"report_prometheus_cpu_s={report_server:.1f} anchor_s={anchor_s:.1f} "
        f"anchor_cpu_s={anchor_cpu:.1f} anchor_prometheus_cpu_s={anchor_server:.1f} "
        f"anchor_serial_s={serial_s:.1f} report_over_anchor={report_s / anchor_s:.2f} "
        f"report_over_anchor_cpu={cpu_ratio:.2f} backfill_s={backfill_s:.0f} "
        f"samples={args.days * DAY // args.interval * args.nodes} measure_overhead_pct_core={overhead:.3f} "
        f"measure_process_cpu_s={process_cpu:.2f} xlsxwriter_cpu_s={xw:.2f} openpyxl_cpu_s={op:.2f} "
        f"load={json.dumps(os.getloadavg()[0])}"
    )


if __name__ == "__main__":
    main()
