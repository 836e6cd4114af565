"""GPU exporter: scrape latency and NVML calls per scrape for 8 fake H100s.

``.venv/bin/python bench/gpu.py [--runs 5] [--scrapes 300]``.  The exporter runs in this process against
the fake ``libnvidia-ml.so.1`` (which counts every NVML call) and is scraped over HTTP.  Beside
it, as the anchor, the same 8 GPUs are read the way exporters without field batching do it
(one NVML call per quantity, as nvidia_gpu_exporter's nvidia-smi query or a plain pynvml loop
does), so the NVML-call ratio shows what ``nvmlDeviceGetFieldValues`` saves; on a real H100
that saving is what dominates (see docs/gpu.md for the real-GPU figures).
Each run prints its p50 (and per GPU), p99, CPU per scrape and NVML calls per scrape, so a
call count that grew from run to run would show (the XID watcher's event waits, two a second,
are counted too: they are the fraction after the whole number).  Last line: ``RESULT gpu_scrape_p50_ms=...
gpu_scrape_p50_spread=min-max gpu_ms_per_gpu=... gpu_nvml_calls_per_scrape=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from powerplane.lab import fakenvml
from powerplane.lab.fakenvml import FakeGpu, FakeNvml

GPUS = 8


def naive_read(count: int) -> None:
    """One call per quantity per GPU: the baseline without field-value batching."""
    import pynvml as nv

    for i in range(count):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        nv.nvmlDeviceGetName(h)
        nv.nvmlDeviceGetUUID(h)
        nv.nvmlDeviceGetPciInfo(h)
        nv.nvmlDeviceGetPowerUsage(h)
        nv.nvmlDeviceGetTotalEnergyConsumption(h)
        nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
        nv.nvmlDeviceGetMemoryInfo(h)
        nv.nvmlDeviceGetUtilizationRates(h)
        nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
        nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)
        nv.nvmlDeviceGetPowerManagementLimit(h)
        nv.nvmlDeviceGetEnforcedPowerLimit(h)
        nv.nvmlDeviceGetPowerManagementDefaultLimit(h)
        nv.nvmlDeviceGetPowerManagementLimitConstraints(h)
        nv.nvmlDeviceGetCurrentClocksEventReasons(h)
        nv.nvmlDeviceGetTotalEccErrors(h, 0, 1)
        nv.nvmlDeviceGetTotalEccErrors(h, 1, 1)
        nv.nvmlDeviceGetMigMode(h)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def bench(scrapes: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="powerplane-bench-gpu-") as workdir:
        await _bench(Path(workdir), scrapes, runs)


async def _bench(workdir: Path, scrapes: int, runs: int) -> None:
    from powerplane.exporters.gpu.config import GpuOptions
    from powerplane.exporters.gpu.exporter import make_server

    FakeNvml(
        workdir, [FakeGpu("h100-sxm", util_base=0.7, util_amplitude=0.2, phase=i / GPUS) for i in range(GPUS)]
    ).activate()
    server = make_server(GpuOptions(pod_resources_socket="", job_mapping_dir=""))
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}/metrics"
    per_run: list[tuple[float, float, float, float]] = []  # p50 ms, p99 ms, CPU ms, calls per scrape
    async with aiohttp.ClientSession() as session:
        for _ in range(5):  # warm up: identities, unsupported-field discovery
            async with session.get(url) as response:
                await response.read()
        for _run in range(runs):
            latencies: list[float] = []
            fakenvml.reset_call_count()
            cpu_start = time.process_time()
            for _ in range(scrapes):
                start = time.perf_counter()
                async with session.get(url) as response:
                    body = await response.read()
                latencies.append((time.perf_counter() - start) * 1000)
            cpu_ms = (time.process_time() - cpu_start) / scrapes * 1000
            calls = fakenvml.call_count() / scrapes
            per_run.append((statistics.median(latencies), percentile(latencies, 0.99), cpu_ms, calls))
    await server.stop()
    series = sum(1 for line in body.decode().splitlines() if line.startswith("powerplane_gpu_"))

    import pynvml

    pynvml.nvmlInit()
    naive_times = []
    fakenvml.reset_call_count()
    for _ in range(scrapes):
        start = time.perf_counter()
        naive_read(GPUS)
        naive_times.append((time.perf_counter() - start) * 1000)
    naive_calls = fakenvml.call_count() / scrapes
    pynvml.nvmlShutdown()

    ours_calls = per_run[-1][3]
    p50s = [r[0] for r in per_run]
    p50 = statistics.median(p50s)
    p99 = statistics.median(r[1] for r in per_run)
    print(f"{GPUS} fake H100 GPUs, {runs} runs of {scrapes} scrapes, {series} powerplane_gpu_* series each")
    for i, (r50, r99, cpu, calls) in enumerate(per_run, 1):
        print(
            f"run {i}: p50 {r50:.2f} ms ({r50 / GPUS:.3f} ms per GPU)  p99 {r99:.2f} ms  "
            f"CPU {cpu:.2f} ms per scrape (server and client)  NVML calls per scrape {calls:.3f}"
        )
    print(f"{'':<34} {'powerplane gpu':>16} {'one call per value':>20} {'ratio':>7}")
    ratio = ours_calls / naive_calls
    print(f"{'NVML calls per scrape':<34} {ours_calls:>16.1f} {naive_calls:>20.1f} {ratio:>7.2f}")
    print(
        f"{'latency p50 ms (HTTP scrape | reads)':<34} {p50:>16.2f} {statistics.median(naive_times):>20.2f}"
    )
    print(f"{'latency p99 ms (HTTP scrape | reads)':<34} {p99:>16.2f} {percentile(naive_times, 0.99):>20.2f}")
    # The XID watcher's thread waits on NVML events with a 500 ms timeout: two calls a second
    # whatever the scrapes, counted with them (the fraction after 72 is those waits, larger when a
    # run is slower).  A scrape's own calls grow only if the whole-number count does.
    growing = round(per_run[-1][3]) > round(per_run[0][3])
    print(
        f"RESULT gpu_scrape_p50_ms={p50:.2f} gpu_scrape_p50_spread={min(p50s):.2f}-{max(p50s):.2f} "
        f"gpu_ms_per_gpu={p50 / GPUS:.3f} gpu_scrape_p99_ms={p99:.2f} "
        f"gpu_cpu_ms_per_scrape={statistics.median(r[2] for r in per_run):.2f} "
        f"gpu_nvml_calls_per_scrape={ours_calls:.1f} gpu_nvml_calls_growing={'yes' if growing else 'no'} "
        f"gpu_nvml_calls_ratio_vs_unbatched={ratio:.2f} runs={runs} scrapes={scrapes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(bench(args.scrapes, args.runs))


if __name__ == "__main__":
    main()
