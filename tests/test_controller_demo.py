"""The demo's controller part: local mode on the lab's powercap tree and, in a process, fake GPUs."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from powerplane.lab import procs
from powerplane.lab.controller import controller_component
from powerplane.lab.demo import DemoContext
from powerplane.lab.fakenvml import FakeGpu, FakeNvml
from powerplane.lab.powercap import PowercapLab, intel_server


def limit(lab: PowercapLab, dirname: str) -> int:
    return int((lab.zone_dir(dirname) / "constraint_0_power_limit_uw").read_text())


@pytest.mark.e2e
def test_demo_controller_caps_cpus_and_gpus_on_a_spike(
    tmp_path: Path, background_loop: procs.BackgroundLoop
) -> None:
    cpu_only = PowercapLab(tmp_path / "node-01" / "sys", intel_server(sockets=2)).create()
    gpu_node = PowercapLab(tmp_path / "node-02" / "sys", intel_server(sockets=2)).create()
    gpus = FakeNvml(tmp_path / "node-02" / "nvml", [FakeGpu("h100-sxm"), FakeGpu("h100-sxm")])

    async def start() -> tuple[contextlib.AsyncExitStack, DemoContext]:
        stack = contextlib.AsyncExitStack()
        ctx = DemoContext(tmp_path, ["node-01", "node-02"], stack)
        ctx.shared["powercap"] = {"node-01": cpu_only, "node-02": gpu_node}
        ctx.shared["gpu"] = {"node-02": gpus}
        # 2-second periods: the spike (350 EUR/MWh, the "extreme" band) comes after 4 periods.
        await controller_component(ctx, period_s=2)
        return stack, ctx

    stack, ctx = background_loop.run(start())
    try:
        assert [c["labels"]["node"] for c in ctx.scrape_configs[0]["static_configs"]] == [
            "node-01",
            "node-02",
        ]
        # CPU-only node: 700 W of packages, extreme = 40 % = 280 W, 140 W per package.
        procs.wait_until(lambda: limit(cpu_only, "intel-rapl:1") == 140_000_000, 60, what="the CPU-only cap")
        # GPU node: 700 W CPU + 1400 W GPU; 840 W split by capacity: 140 W per package, 280 W per GPU.
        procs.wait_until(lambda: gpus.power_limits_mw() == {0: 280_000, 1: 280_000}, 60, what="the GPU caps")
        assert limit(gpu_node, "intel-rapl:0") == 140_000_000
    finally:
        background_loop.run(stack.aclose())
    # Stopped (SIGTERM for the GPU node's agent): every original limit is back.
    assert gpus.power_limits_mw() == {}
    assert limit(cpu_only, "intel-rapl:0") == limit(gpu_node, "intel-rapl:1") == 250_000_000
