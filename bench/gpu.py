"""GPU exporter: scrape latency and NVML calls per scrape for 8 fake H100s.

``.venv/bin/python bench/gpu.py [--scrapes 300]``.  The exporter runs in this process against
the fake ``libnvidia-ml.so.1`` (which counts every NVML call) and is scraped over HTTP.  Beside
it, as the anchor, the same 8 GPUs are read the way exporters without field batching do it
(one NVML call per quantity, as nvidia_gpu_exporter's nvidia-smi query or a plain pynvml loop
does), so the NVML-call ratio shows what ``nvmlDeviceGetFieldValues`` saves; on a real H100
that saving is what dominates (see docs/gpu.md for the real-GPU figures).
Last line: ``RESULT gpu_scrape_p50_ms=... gpu_nvml_calls_per_scrape=...``.
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


async def bench(scrapes: int) -> None:
    from powerplane.exporters.gpu.config import GpuOptions
    from powerplane.exporters.gpu.exporter import make_server

    workdir = Path(tempfile.mkdtemp(prefix="powerplane-bench-gpu-"))
    FakeNvml(
        workdir, [FakeGpu("h100-sxm", util_base=0.7, util_amplitude=0.2, phase=i / GPUS) for i in range(GPUS)]
    ).activate()
    server = make_server(GpuOptions(pod_resources_socket="", job_mapping_dir=""))
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}/metrics"
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(5):  # warm up: identities, unsupported-field discovery
            async with session.get(url) as response:
                await response.read()
        fakenvml.reset_call_count()
        for _ in range(scrapes):
            start = time.perf_counter()
            async with session.get(url) as response:
                body = await response.read()
            latencies.append((time.perf_counter() - start) * 1000)
        calls = fakenvml.call_count()
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

    ours_calls = calls / scrapes
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print(f"{GPUS} fake H100 GPUs, {scrapes} scrapes, {series} powerplane_gpu_* series per scrape")
    print(f"{'':<34} {'powerplane gpu':>16} {'one call per value':>20} {'ratio':>7}")
    ratio = ours_calls / naive_calls
    print(f"{'NVML calls per scrape':<34} {ours_calls:>16.1f} {naive_calls:>20.1f} {ratio:>7.2f}")
    print(
        f"{'latency p50 ms (HTTP scrape | reads)':<34} {p50:>16.2f} {statistics.median(naive_times):>20.2f}"
    )
    print(f"{'latency p99 ms (HTTP scrape | reads)':<34} {p99:>16.2f} {percentile(naive_times, 0.99):>20.2f}")
    print(
        f"RESULT gpu_scrape_p50_ms={p50:.2f} gpu_scrape_p99_ms={p99:.2f} "
        f"gpu_nvml_calls_per_scrape={ours_calls:.1f} gpu_nvml_calls_ratio_vs_unbatched={ratio:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=300)
    asyncio.run(bench(parser.parse_args().scrapes))


if __name__ == "__main__":
    main()
