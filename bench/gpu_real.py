"""The GPU exporter on a real NVIDIA GPU, compared with ``nvidia-smi --query-gpu``.

Run on a machine with the NVIDIA driver: ``python bench/gpu_real.py [--load-seconds 20]``.
It scrapes the exporter (in this process, over HTTP) while idle and, when torch with CUDA is
importable, under a matrix-multiply load in a child process, reads nvidia-smi right before and
after each scrape, and prints each quantity side by side with the tolerance it is held to.
Power is compared with nvidia-smi's instantaneous draw, bracketed by the two readings.  Last line:
``RESULT gpu_real_scrape_p50_ms=... gpu_real_max_power_diff_w=... gpu_real_checks_failed=...``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from powerplane.exporters.gpu.config import GpuOptions
from powerplane.exporters.gpu.exporter import make_server
from tests.helpers import parse

QUERY = (
    "index,uuid,power.draw.instant,power.draw,temperature.gpu,temperature.memory,memory.used,memory.total,"
    "clocks.sm,clocks.mem,power.limit,enforced.power.limit,power.default_limit,power.min_limit,"
    "power.max_limit,utilization.gpu"
)

LOAD = """
import sys, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
end = time.time() + float(sys.argv[1])
print("loaded", flush=True)
while time.time() < end:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
"""


def smi() -> list[dict[str, float | str]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    keys = QUERY.split(",")
    for line in out.strip().splitlines():
        row: dict[str, float | str] = {}
        for key, raw in zip(keys, (v.strip() for v in line.split(",")), strict=True):
            try:
                row[key] = float(raw)
            except ValueError:
                row[key] = raw
        rows.append(row)
    return rows


def compare(
    phase: str, before: dict[str, Any], after: dict[str, Any], s: Any, gpu: str
) -> list[tuple[Any, ...]]:
    def ours(name: str, **labels: str) -> float | None:
        for key, value in s.get(name, {}).items():
            d = dict(key)
            if d.get("gpu") == gpu and all(d.get(k) == v for k, v in labels.items()):
                return float(value)
        return None

    def span(key: str) -> tuple[float, float] | None:
        values = [r[key] for r in (before, after) if isinstance(r.get(key), float)]
        return (min(values), max(values)) if values else None

    checks: list[tuple[str, float | None, str, float, float | None]] = [
        # (what, ours, nvidia-smi key, scale to nvidia-smi units, tolerance)
        ("power W (instant)", ours("powerplane_gpu_power_watts"), "power.draw.instant", 1.0, 25.0),
        ("power W (average)", ours("powerplane_gpu_power_watts"), "power.draw", 1.0, None),
        (
            "temperature gpu °C",
            ours("powerplane_gpu_temperature_celsius", sensor="gpu"),
            "temperature.gpu",
            1,
            2,
        ),
        (
            "temperature memory °C",
            ours("powerplane_gpu_temperature_celsius", sensor="memory"),
            "temperature.memory",
            1,
            2,
        ),
        ("memory used MiB", ours("powerplane_gpu_memory_used_bytes"), "memory.used", 2**-20, 64),
        ("memory total MiB", ours("powerplane_gpu_memory_total_bytes"), "memory.total", 2**-20, 1),
        ("SM clock MHz", ours("powerplane_gpu_sm_clock_hertz"), "clocks.sm", 1e-6, 120),
        ("memory clock MHz", ours("powerplane_gpu_memory_clock_hertz"), "clocks.mem", 1e-6, 1),
        ("power limit W", ours("powerplane_gpu_power_limit_watts", kind="current"), "power.limit", 1, 0.5),
        (
            "enforced limit W",
            ours("powerplane_gpu_power_limit_watts", kind="enforced"),
            "enforced.power.limit",
            1,
            0.5,
        ),
        (
            "default limit W",
            ours("powerplane_gpu_power_limit_watts", kind="default"),
            "power.default_limit",
            1,
            0.5,
        ),
        ("min limit W", ours("powerplane_gpu_power_limit_watts", kind="min"), "power.min_limit", 1, 0.5),
        ("max limit W", ours("powerplane_gpu_power_limit_watts", kind="max"), "power.max_limit", 1, 0.5),
        ("utilization %", ours("powerplane_gpu_utilization_ratio"), "utilization.gpu", 100, 30),
    ]
    rows: list[tuple[Any, ...]] = []
    for what, value, key, scale, tolerance in checks:
        bounds = span(key)
        if value is None or bounds is None:
            rows.append((phase, what, value, bounds, None, "n/a"))
            continue
        mine = value * scale
        low, high = bounds
        diff = 0.0 if low <= mine <= high else min(abs(mine - low), abs(mine - high))
        # The 1 s average lags the instantaneous reading: shown for information, not judged.
        verdict = "info" if tolerance is None else "ok" if diff <= tolerance else "FAIL"
        rows.append((phase, what, round(mine, 2), bounds, round(diff, 2), verdict))
    return rows


async def run(scrapes: int, load_seconds: float) -> int:
    server = make_server(GpuOptions(pod_resources_socket="", job_mapping_dir=""))
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}/metrics"
    latencies: list[float] = []
    results: list[tuple[Any, ...]] = []
    async with aiohttp.ClientSession() as session:

        async def scrape() -> Any:
            start = time.perf_counter()
            async with session.get(url) as response:
                text = await response.text()
            latencies.append((time.perf_counter() - start) * 1000)
            return parse(text)

        await scrape()  # identities are read on the first scrape
        for _ in range(scrapes):
            await scrape()

        async def compare_round(phase: str) -> None:
            for _ in range(5):
                before = smi()
                s = await scrape()
                after = smi()
                for b, a in zip(before, after, strict=True):
                    results.extend(compare(phase, b, a, s, str(int(float(b["index"])))))

        await compare_round("idle")
        loader = None
        if load_seconds > 0:
            with contextlib.suppress(Exception):
                loader = subprocess.Popen(  # noqa: ASYNC220 - started once, outside the timed scrapes
                    [sys.executable, "-c", LOAD, str(load_seconds + 30)], stdout=subprocess.PIPE, text=True
                )
                assert loader.stdout is not None
                ready = await asyncio.to_thread(loader.stdout.readline)
                if ready.strip() == "loaded":
                    await asyncio.sleep(min(load_seconds, 8.0))  # let power and clocks settle
                    await compare_round("load")
        if loader is not None:
            loader.kill()
            loader.wait()
        _, s_text = None, None
        async with session.get(url) as response:
            s_text = await response.text()
    await server.stop()
    failed = [r for r in results if r[-1] == "FAIL"]
    print(f"{'phase':<5} {'quantity':<22} {'exporter':>10} {'nvidia-smi':>26} {'diff':>7}  verdict")
    for phase, what, mine, bounds, diff, verdict in results:
        shown = "-" if bounds is None else f"{bounds[0]:g}..{bounds[1]:g}"
        print(f"{phase:<5} {what:<22} {mine!s:>10} {shown:>28} {diff!s:>7}  {verdict}")
    print("families:", sorted({line.split("{")[0].split(" ")[0] for line in s_text.splitlines()
                               if line.startswith("powerplane_gpu")}))  # fmt: skip
    power_diffs = [r[4] for r in results if r[1] == "power W (instant)" and r[4] is not None]
    lat = sorted(latencies)
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"scrapes: {len(lat)}, latency p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {lat[-1]:.2f} ms")
    print(
        f"RESULT gpu_real_scrape_p50_ms={p50:.2f} gpu_real_scrape_p99_ms={p99:.2f} "
        f"gpu_real_max_power_diff_w={max(power_diffs, default=0):.2f} gpu_real_checks_failed={len(failed)}"
    )
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    args = parser.parse_args()
    return asyncio.run(run(args.scrapes, args.load_seconds))


if __name__ == "__main__":
    sys.exit(main())
