"""The demo's controller part: local mode on the lab's powercap tree and, in a process, fake GPUs."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from powerplane.lab import procs
from powerplane.lab.controller import controller_component
from powerplane.lab.demo import DemoContext
from powerplane.lab.fakenvml import FakeGpu, FakeNvml
from powerplane.lab.gpu import start_exporter
from powerplane.lab.powercap import PowercapLab, intel_server
from tests.controller.conftest import limit_uw
from tests.helpers import parse, value


@pytest.mark.e2e
def test_demo_controller_caps_cpus_and_gpus_on_a_spike(
    tmp_path: Path, background_loop: procs.BackgroundLoop, prometheus: Any
) -> None:
    cpu_only = PowercapLab(tmp_path / "node-01" / "sys", intel_server(sockets=2)).create()
    gpu_node = PowercapLab(tmp_path / "node-02" / "sys", intel_server(sockets=2)).create()
    # Busy GPUs (over 600 W each uncapped), so that the cap shows in their power.
    gpus = FakeNvml(
        tmp_path / "node-02" / "nvml",
        [FakeGpu("h100-sxm", util_base=0.9), FakeGpu("h100-sxm", util_base=0.9)],
    )
    exporter, gpu_address = start_exporter(gpus, tmp_path / "gpu-exporter.log", ["--pod-resources.socket="])

    async def start() -> tuple[contextlib.AsyncExitStack, DemoContext]:
        stack = contextlib.AsyncExitStack()
        ctx = DemoContext(tmp_path, ["node-01", "node-02"], stack)
        ctx.shared["powercap"] = {"node-01": cpu_only, "node-02": gpu_node}
        ctx.shared["gpu"] = {"node-02": gpus}
        # 3-second periods: the spike (350 EUR/MWh, the "extreme" band) comes after 4 periods.
        await controller_component(ctx, period_s=3)
        return stack, ctx

    gpu_job = {
        "job_name": "gpu",
        "static_configs": [{"targets": [gpu_address], "labels": {"node": "node-02"}}],
    }
    power = 'sum(powerplane_gpu_power_watts{node="node-02"})'
    try:
        prom = prometheus([gpu_job])
        # Uncapped first, as Prometheus sees it.
        procs.wait_until(lambda: (v := prom.value(power)) is not None and v > 1000, 60, 0.5, what="GPU power")
        stack, ctx = background_loop.run(start())
    except BaseException:
        exporter.stop()
        raise
    try:
        jobs = ctx.scrape_configs
        assert [c["labels"]["node"] for c in jobs[0]["static_configs"]] == ["node-01", "node-02"]
        # CPU-only node: 700 W of packages, extreme = 40 % = 280 W, 140 W per package.
        procs.wait_until(
            lambda: limit_uw(cpu_only, "intel-rapl:1") == 140_000_000, 60, what="the CPU-only cap"
        )
        # GPU node: 700 W CPU + 1400 W GPU; 840 W split by capacity: 140 W per package, 280 W per GPU.
        procs.wait_until(lambda: gpus.power_limits_mw() == {0: 280_000, 1: 280_000}, 60, what="the GPU caps")
        assert limit_uw(gpu_node, "intel-rapl:0") == 140_000_000
        # The GPUs' power, as Prometheus sees it, falls under their caps.
        procs.wait_until(
            lambda: (v := prom.value(power)) is not None and v <= 560.5, 60, 0.5, what="capped GPU power"
        )
        # The GPU node's agent reports what NVML enforces.
        address = jobs[0]["static_configs"][1]["targets"][0]
        status, body = procs.http_get(f"http://{address}/metrics")
        assert status == 200
        samples = parse(body.decode())
        # Labelled as the GPU exporter labels the GPU, so that the two join.
        assert value(samples, "powerplane_controller_cap_enforced_watts", domain="gpu-1", gpu="1") == 280.0
    finally:
        background_loop.run(stack.aclose())
        exporter.stop()
    # Stopped (SIGTERM for the GPU node's agent): every original limit is back.
    assert gpus.power_limits_mw() == {}
    assert limit_uw(cpu_only, "intel-rapl:0") == limit_uw(gpu_node, "intel-rapl:1") == 250_000_000
