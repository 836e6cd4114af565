"""The GPU exporter process: options, a real Prometheus scraping it, the demo's GPU part."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from powerplane.exporters.gpu.config import GpuOptions
from powerplane.exporters.gpu.podresources import DeviceAssignment
from powerplane.lab.fakenvml import FakeGpu, FakeNvml
from powerplane.lab.kubelet import FakePodResources
from tests.helpers import parse

from .conftest import short_socket


def test_bad_naming_is_refused() -> None:
    with pytest.raises(ValueError, match="naming"):
        GpuOptions(namings=("nvidia-smi",))


@pytest.mark.e2e
def test_prometheus_scrapes_the_exporter_process(tmp_path: Path, prometheus, background_loop) -> None:
    """The exporter as its own process (LD_LIBRARY_PATH → fake NVML), scraped by a real Prometheus."""
    from powerplane.lab.gpu import start_exporter
    from powerplane.lab.procs import wait_until

    machine = FakeNvml(
        tmp_path / "nvml",
        [FakeGpu("h100-sxm", util_base=0.8), FakeGpu("a100-sxm", util_base=0.5), FakeGpu("l40s")],
    )
    machine.write()
    text = machine.render()
    uuids = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("uuid ")]
    kubelet = FakePodResources(
        short_socket(), [DeviceAssignment("ml", "llm-0", "train", "nvidia.com/gpu", u) for u in uuids[:2]]
    )
    background_loop.run(kubelet.start())
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "2").write_text("9001\n")
    process, address = start_exporter(
        machine,
        tmp_path / "exporter.log",
        [
            f"--pod-resources.socket={kubelet.socket_path}",
            f"--hpc-job-mapping.dir={jobs}",
            "--naming=powerplane",
            "--naming=dcgm",
        ],
    )
    try:
        prom = prometheus(
            [{"job_name": "gpu", "static_configs": [{"targets": [address], "labels": {"node": "n1"}}]}]
        )
        prom.wait_targets_up(1)
        assert prom.wait_value('powerplane_gpu_power_watts{node="n1",gpu="0"}') == pytest.approx(574.0)
        assert prom.wait_value("count(powerplane_gpu_info)") == 3
        assert prom.wait_value('DCGM_FI_DEV_POWER_USAGE{gpu="1"}') == pytest.approx(227.5)
        # energy per second agrees with power (the counter integrates the same curve)
        # (deriv over several samples: robust to scrape-time jitter on a busy machine)
        wait_until(
            lambda: (
                (prom.value('count_over_time(powerplane_gpu_energy_joules_total{gpu="0"}[10s])') or 0) >= 6
            ),
            60,
            what="six energy samples",
        )
        rate = prom.wait_value('deriv(powerplane_gpu_energy_joules_total{gpu="0"}[10s])')
        assert rate == pytest.approx(574.0, rel=0.05)
        # attribution joins: power per pod and per HPC job, without a pod label on GPU series
        per_pod = prom.wait_value(
            "sum by (namespace, pod) (powerplane_gpu_power_watts"
            " * on (node, gpu, uuid) group_left (namespace, pod) powerplane_gpu_pod_info)"
        )
        assert per_pod == pytest.approx(574.0 + 227.5, abs=1)
        per_job = prom.wait_value(
            "sum by (hpc_job) (powerplane_gpu_power_watts"
            " * on (node, gpu, uuid) group_left (hpc_job) powerplane_gpu_job_info)"
        )
        assert per_job == pytest.approx(192.5, abs=1)
        # a controller in another process caps GPU 0: the exporter sees the new limit and power
        code = (
            "import pynvml; pynvml.nvmlInit(); "
            "pynvml.nvmlDeviceSetPowerManagementLimit(pynvml.nvmlDeviceGetHandleByIndex(0), 400000)"
        )
        subprocess.run([sys.executable, "-c", code], env={**os.environ, **machine.env()}, check=True)
        wait_until(
            lambda: prom.value('powerplane_gpu_power_limit_watts{gpu="0",kind="enforced"}') == 400,
            30, what="the new limit in Prometheus",
        )  # fmt: skip
        assert prom.wait_value('powerplane_gpu_power_watts{gpu="0"}') <= 400
        # an XID and a lost GPU
        machine.inject_xid(1, 79)
        assert prom.wait_value('powerplane_gpu_xid_errors_total{gpu="1",xid="79"}') == 1
        machine.lose(2)
        wait_until(
            lambda: prom.value('powerplane_scrape_collector_success{collector="gpu2"}') == 0,
            30, what="gpu2 failing",
        )  # fmt: skip
        assert prom.value('powerplane_scrape_collector_success{collector="gpu0"}') == 1
        assert prom.value('up{job="gpu"}') == 1
    finally:
        process.stop()
        background_loop.run(kubelet.stop())


@pytest.mark.e2e
async def test_demo_gpu_component_serves_each_node(tmp_path: Path) -> None:
    """Each demo node's GPU exporter sees its own fake machine, pods and jobs."""
    from powerplane.lab.demo import DemoContext
    from powerplane.lab.gpu import gpu_component
    from powerplane.lab.procs import http_get

    async with contextlib.AsyncExitStack() as stack:
        ctx = DemoContext(tmp_path, ["node-01", "node-02", "node-03"], stack)
        await gpu_component(ctx)
        (job,) = ctx.scrape_configs
        targets = {t["labels"]["node"]: t["targets"][0] for t in job["static_configs"]}
        outputs = {}
        for node, address in targets.items():
            # the fake kubelet answers from this event loop: do not block it
            status, body = await asyncio.to_thread(http_get, f"http://{address}/metrics")
            assert status == 200
            outputs[node] = parse(body.decode())
        models = {node: {dict(k)["model"] for k in s["powerplane_gpu_info"]} for node, s in outputs.items()}
        assert models == {
            "node-01": {"NVIDIA H100 80GB HBM3"},
            "node-02": {"NVIDIA A100-SXM4-80GB"},
            "node-03": {"NVIDIA L40S"},
        }
        assert len(outputs["node-01"]["powerplane_gpu_info"]) == 4
        assert {dict(k)["pod"] for k in outputs["node-01"]["powerplane_gpu_pod_info"]} == {
            "llm-train-0",
            "llm-serve-7f9c",
        }
        assert len(outputs["node-02"]["powerplane_gpu_mig_info"]) == 2
        assert len(outputs["node-02"]["powerplane_gpu_job_info"]) == 1
        assert set(ctx.shared["gpu"]) == set(targets)


def test_the_flags_take_their_defaults_from_the_options() -> None:
    from dataclasses import asdict

    from powerplane.exporters.gpu.exporter import command

    defaults = asdict(GpuOptions())
    flags = {p.name: p.default for p in command.params if p.name in defaults}
    assert set(flags) == set(defaults) - {"pod_resources"}  # no flag: the resource prefixes
    assert {name: tuple(v) if isinstance(v, list) else v for name, v in flags.items()} == {
        name: defaults[name] for name in flags
    }
    ctx = command.make_context("gpu", ["--no-xid-events", "--naming", "dcgm", "--hpc-job-mapping.dir", ""])
    options = {k: v for k, v in ctx.params.items() if k in defaults}
    assert GpuOptions(**options) == GpuOptions(namings=("dcgm",), job_mapping_dir="", xid_events=False)
