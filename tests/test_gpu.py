"""The GPU exporter against the fake NVML library, through the real nvidia-ml-py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pynvml
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.gpu import dcgm
from powerplane.exporters.gpu.config import GpuOptions
from powerplane.exporters.gpu.exporter import make_server
from powerplane.exporters.gpu.podresources import DeviceAssignment, decode_list_response, encode_list_response
from powerplane.lab.fakenvml import FakeGpu, FakeNvml, MigDevice
from powerplane.lab.kubelet import FakePodResources

from .helpers import parse, undocumented, value

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@contextlib.asynccontextmanager
async def exporter(hostname: str | None = None, **options: Any) -> AsyncIterator[Any]:
    options.setdefault("pod_resources_socket", "")
    options.setdefault("job_mapping_dir", "")
    server = make_server(GpuOptions(**options), hostname=hostname)
    host, port = await server.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:

        async def scrape() -> tuple[str, Samples]:
            async with session.get(f"http://{host}:{port}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            return text, parse(text)

        server.scrape = scrape
        try:
            yield server
        finally:
            await server.stop()


def success(samples: Samples, collector: str) -> float:
    return value(samples, "powerplane_scrape_collector_success", exporter="gpu", collector=collector)


def gpu_series(samples: Samples, index: str) -> set[str]:
    return {name for name, series in samples.items() for labels in series if ("gpu", index) in labels}


async def test_every_metric_matches_nvml(tmp_path: Path) -> None:
    machine = FakeNvml(
        tmp_path,
        [
            FakeGpu("h100-sxm", util_base=0.9, ecc_corrected=12, ecc_uncorrected=1, pcie_replays=3),
            FakeGpu("l40s", util_base=0.0),
            FakeGpu("a100-sxm", mig=[MigDevice(1, 0, 10 << 30, 1 << 30), MigDevice(2, 0, 20 << 30, 0)]),
        ],
        driver_version="550.54.15",
    ).activate()
    async with exporter() as server:
        text, s = await server.scrape()
    assert undocumented(text) == set()
    uuid0 = machine.render().split("uuid ")[1].split("\n")[0]
    g0 = {"gpu": "0", "uuid": uuid0}
    info = value(s, "powerplane_gpu_info", **g0)
    assert info == 1.0
    (labels,) = [dict(k) for k in s["powerplane_gpu_info"] if ("gpu", "0") in k]
    assert labels == {
        **g0,
        "model": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": "00000000:18:00.0",
        "driver_version": "550.54.15",
    }
    assert value(s, "powerplane_gpu_power_watts", **g0) == pytest.approx(637.0)
    assert (
        value(s, "powerplane_gpu_energy_joules_total", **g0) >= 3600 * 70
    )  # the fake starts at an idle hour
    # H100: 28 °C + 0.055 °C/W * 637 W; memory 6 °C above
    assert value(s, "powerplane_gpu_temperature_celsius", sensor="gpu", **g0) == 63.0
    assert value(s, "powerplane_gpu_temperature_celsius", sensor="memory", **g0) == 69.0
    assert value(s, "powerplane_gpu_memory_total_bytes", **g0) == 81559 * 2**20
    assert 0 < value(s, "powerplane_gpu_memory_used_bytes", **g0) < 81559 * 2**20
    assert value(s, "powerplane_gpu_utilization_ratio", **g0) == 0.9
    assert value(s, "powerplane_gpu_memory_utilization_ratio", **g0) == 0.54
    assert value(s, "powerplane_gpu_sm_clock_hertz", **g0) == 1980e6
    assert value(s, "powerplane_gpu_memory_clock_hertz", **g0) == 2619e6
    limits = {k: value(s, "powerplane_gpu_power_limit_watts", kind=k, **g0) for k in
              ("current", "enforced", "default", "min", "max")}  # fmt: skip
    assert limits == {"current": 700.0, "enforced": 700.0, "default": 700.0, "min": 200.0, "max": 700.0}
    assert value(s, "powerplane_gpu_ecc_errors_total", type="corrected", **g0) == 12
    assert value(s, "powerplane_gpu_ecc_errors_total", type="uncorrected", **g0) == 1
    assert value(s, "powerplane_gpu_pcie_replays_total", **g0) == 3
    assert value(s, "powerplane_gpu_clock_event_active", reason="sw_power_cap", **g0) == 0
    assert value(s, "powerplane_gpu_clock_event_active", reason="gpu_idle", gpu="1") == 1
    assert value(s, "powerplane_gpu_mig_enabled", **g0) == 0
    # L40S: GDDR memory has no temperature sensor and the board has no MIG: skipped, not failed
    assert value(s, "powerplane_gpu_temperature_celsius", sensor="gpu", gpu="1") > 0
    assert not [
        k for k in s["powerplane_gpu_temperature_celsius"] if ("gpu", "1") in k and ("sensor", "memory") in k
    ]
    assert "powerplane_gpu_mig_enabled" not in gpu_series(s, "1")
    # A100 in MIG mode
    assert value(s, "powerplane_gpu_mig_enabled", gpu="2") == 1
    assert value(s, "powerplane_gpu_mig_memory_total_bytes", gpu="2", gpu_instance="1") == 10 << 30
    assert value(s, "powerplane_gpu_mig_memory_used_bytes", gpu="2", gpu_instance="1") == 1 << 30
    assert value(s, "powerplane_gpu_mig_memory_total_bytes", gpu="2", gpu_instance="2") == 20 << 30
    (mig,) = [dict(k) for k in s["powerplane_gpu_mig_info"] if ("gpu_instance", "1") in k]
    assert mig["mig_uuid"].startswith("MIG-") and mig["compute_instance"] == "0"
    for index in "012":
        assert success(s, f"gpu{index}") == 1


async def test_unsupported_fields_are_skipped_per_gpu(tmp_path: Path) -> None:
    everything = frozenset({"power", "energy", "temperature", "ecc", "clocks", "utilization", "power_limit",
                            "clock_events", "memory", "mig", "pcie"})  # fmt: skip
    FakeNvml(tmp_path, [FakeGpu("h100-sxm", unsupported=everything), FakeGpu("h100-sxm")]).activate()
    async with exporter() as server:
        for _ in range(2):  # the second scrape skips what the first found unsupported
            text, s = await server.scrape()
            assert success(s, "gpu0") == 1 and success(s, "gpu1") == 1
            assert gpu_series(s, "0") == {"powerplane_gpu_info"}
            assert "powerplane_gpu_power_watts" in gpu_series(s, "1")
            assert "powerplane_gpu_mig_enabled" in gpu_series(s, "1")
    assert undocumented(text) == set()


async def test_lost_gpu_fails_only_its_collector(tmp_path: Path) -> None:
    machine = FakeNvml(tmp_path, [FakeGpu("h100-sxm"), FakeGpu("h100-sxm"), FakeGpu("a100-sxm")]).activate()
    async with exporter() as server:
        _, s = await server.scrape()
        assert "powerplane_gpu_power_watts" in gpu_series(s, "1")
        machine.lose(1)
        _, s = await server.scrape()
        assert success(s, "gpu1") == 0
        assert gpu_series(s, "1") == set()
        assert success(s, "gpu0") == 1 and success(s, "gpu2") == 1
        assert value(s, "powerplane_gpu_power_watts", gpu="2") > 0
        machine.lose(1, False)  # back after a reset
        _, s = await server.scrape()
        assert success(s, "gpu1") == 1 and value(s, "powerplane_gpu_power_watts", gpu="1") > 0


async def test_xid_counters_increase_and_never_stick(tmp_path: Path) -> None:
    machine = FakeNvml(tmp_path, [FakeGpu("h100-sxm", xids=[31]), FakeGpu("h100-sxm")]).activate()
    async with exporter(namings=("powerplane", "dcgm")) as server:
        _, s = await server.scrape()
        assert "powerplane_gpu_xid_errors_total" not in s  # XID 31 was raised before the exporter started
        assert value(s, "DCGM_FI_DEV_XID_ERRORS", gpu="0") == 0
        machine.inject_xid(0, 79)
        machine.inject_xid(1, 13)
        await _poll(server, lambda s: len(s.get("powerplane_gpu_xid_errors_total", {})) == 2)
        machine.inject_xid(0, 79, 48)
        s = await _poll(server, lambda s: len(s.get("powerplane_gpu_xid_errors_total", {})) == 3)
        s = await _poll(server, lambda s: value(s, "powerplane_gpu_xid_errors_total", gpu="0", xid="79") == 2)
        assert value(s, "powerplane_gpu_xid_errors_total", gpu="0", xid="48") == 1
        assert value(s, "powerplane_gpu_xid_errors_total", gpu="1", xid="13") == 1
        # Nothing new: the counters stay where they are (and never fall back to zero)
        _, again = await server.scrape()
        assert again["powerplane_gpu_xid_errors_total"] == s["powerplane_gpu_xid_errors_total"]
        assert value(again, "DCGM_FI_DEV_XID_ERRORS", gpu="1") == 13


async def _poll(server: Any, predicate: Any, seconds: float = 10.0) -> Samples:
    import time

    end = time.monotonic() + seconds
    while True:
        _, s = await server.scrape()
        if predicate(s):
            return s
        if time.monotonic() > end:
            raise AssertionError(f"condition not met; XIDs: {s.get('powerplane_gpu_xid_errors_total')}")
        await asyncio.sleep(0.05)


async def test_power_limit_set_through_nvml_is_reported(tmp_path: Path) -> None:
    FakeNvml(tmp_path, [FakeGpu("h100-sxm", util_base=1.0)]).activate()
    async with exporter() as server:
        pynvml.nvmlDeviceSetPowerManagementLimit(pynvml.nvmlDeviceGetHandleByIndex(0), 350_000)
        _, s = await server.scrape()
    assert value(s, "powerplane_gpu_power_limit_watts", kind="current") == 350
    assert value(s, "powerplane_gpu_power_limit_watts", kind="enforced") == 350
    assert value(s, "powerplane_gpu_power_limit_watts", kind="default") == 700
    assert value(s, "powerplane_gpu_power_watts") == 350
    assert value(s, "powerplane_gpu_clock_event_active", reason="sw_power_cap") == 1
    assert value(s, "powerplane_gpu_sm_clock_hertz") < 1980e6


async def test_without_nvml_there_is_no_data_and_no_failure(tmp_path: Path, monkeypatch) -> None:
    FakeNvml(tmp_path, [FakeGpu()]).activate()
    monkeypatch.setenv("FAKENVML_CONFIG", str(tmp_path / "no-driver.conf"))
    async with exporter() as server:
        _, s = await server.scrape()
    assert success(s, "nvml") == 1
    assert not [name for name in s if name.startswith("powerplane_gpu_")]
    assert "powerplane_build_info" in s


def short_socket() -> Path:
    # unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer
    return Path(tempfile.mkdtemp(prefix="pp-", dir="/tmp")) / "kubelet.sock"


async def test_pod_info_from_the_kubelet(tmp_path: Path) -> None:
    FakeNvml(
        tmp_path,
        [FakeGpu("h100-sxm"), FakeGpu("h100-sxm"), FakeGpu("a100-sxm", mig=[MigDevice(3, 0, 10 << 30)])],
    ).activate()
    pynvml.nvmlInit()
    uuids = [pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(3)]
    mig_uuid = pynvml.nvmlDeviceGetUUID(
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(pynvml.nvmlDeviceGetHandleByIndex(2), 0)
    )
    pynvml.nvmlShutdown()
    kubelet = FakePodResources(
        short_socket(),
        [
            DeviceAssignment("ml", "llm-0", "train", "nvidia.com/gpu", uuids[0]),
            DeviceAssignment("ml", "llm-1", "train", "nvidia.com/gpu", f"{uuids[1]}::0"),  # time-sliced
            DeviceAssignment("ml", "llm-2", "eval", "nvidia.com/gpu", f"{uuids[1]}::1"),
            DeviceAssignment("batch", "mig-job", "main", "nvidia.com/mig-3g.40gb", mig_uuid),
            DeviceAssignment("ml", "elsewhere", "x", "nvidia.com/gpu", "GPU-not-on-this-node"),
            DeviceAssignment("net", "sriov", "x", "intel.com/sriov", uuids[0]),
        ],
    )
    await kubelet.start()
    try:
        async with exporter(
            pod_resources_socket=str(kubelet.socket_path), namings=("powerplane", "dcgm")
        ) as server:
            await server.scrape()
            # MIG devices are known after the first GPU scrape; the pods collector runs beside it
            text, s = await server.scrape()
            rows = {tuple(sorted(dict(k).items())) for k in s["powerplane_gpu_pod_info"]}
            expected = {
                ("0", uuids[0], "", "ml", "llm-0", "train"),
                ("1", uuids[1], "", "ml", "llm-1", "train"),
                ("1", uuids[1], "", "ml", "llm-2", "eval"),
                ("2", uuids[2], "3", "batch", "mig-job", "main"),
            }
            names = ("gpu", "uuid", "gpu_instance", "namespace", "pod", "container")
            assert rows == {tuple(sorted(zip(names, e, strict=True))) for e in expected}
            assert success(s, "pods") == 1
            assert undocumented(text) == set()
            # dcgm naming: pod labels on a GPU held by one container, none on a shared one
            (gpu0,) = [dict(k) for k in s["DCGM_FI_DEV_POWER_USAGE"] if ("gpu", "0") in k]
            assert (gpu0["namespace"], gpu0["pod"], gpu0["container"]) == ("ml", "llm-0", "train")
            (gpu1,) = [dict(k) for k in s["DCGM_FI_DEV_POWER_USAGE"] if ("gpu", "1") in k]
            assert "pod" not in gpu1
            # a kubelet answering garbage fails the pods collector only
            kubelet.raw = b"\x0a\x05\x12\xff\xff"
            _, s = await server.scrape()
            assert success(s, "pods") == 0 and success(s, "gpu0") == 1
            await kubelet.stop()
            _, s = await server.scrape()  # the kubelet restarting: pods fail, GPUs report
            assert success(s, "pods") in (0.0, 1.0) and success(s, "gpu1") == 1
    finally:
        await kubelet.stop()


async def test_no_kubelet_socket_is_not_a_failure(tmp_path: Path) -> None:
    FakeNvml(tmp_path, [FakeGpu()]).activate()
    async with exporter(pod_resources_socket=str(tmp_path / "absent.sock")) as server:
        _, s = await server.scrape()
    assert success(s, "pods") == 1 and "powerplane_gpu_pod_info" not in s


async def test_job_info_from_the_mapping_directory(tmp_path: Path) -> None:
    FakeNvml(tmp_path / "nvml", [FakeGpu(), FakeGpu()]).activate()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "0").write_text("4242\n4243\n\n")
    (jobs / "1").write_text("  slurm-77  \n")
    (jobs / ".1.swp").write_text("ignored")
    async with exporter(job_mapping_dir=str(jobs), namings=("powerplane", "dcgm")) as server:
        text, s = await server.scrape()
        assert success(s, "jobs") == 1
        rows = {(dict(k)["gpu"], dict(k)["hpc_job"]) for k in s["powerplane_gpu_job_info"]}
        assert rows == {("0", "4242"), ("0", "4243"), ("1", "slurm-77")}
        assert undocumented(text) == set()
        (gpu1,) = [dict(k) for k in s["DCGM_FI_DEV_GPU_UTIL"] if ("gpu", "1") in k]
        assert gpu1["hpc_job"] == "slurm-77"
        # hostile and malformed entries: reported, the good ones still exported
        (jobs / "7").write_text("1\n")  # no such GPU
        (jobs / "notes.txt").write_text("x")
        (jobs / "0").write_bytes(b"4242\n\x1b[31mred\n" + b"9" * 200 + b"\n")
        (jobs / "1").write_bytes(b"1\n" * 40000)
        _, s = await server.scrape()
        assert success(s, "jobs") == 0
        assert {(dict(k)["gpu"], dict(k)["hpc_job"]) for k in s["powerplane_gpu_job_info"]} == {("0", "4242")}
        for name in os.listdir(jobs):
            (jobs / name).unlink()
        jobs.rmdir()
        _, s = await server.scrape()
        assert success(s, "jobs") == 1 and "powerplane_gpu_job_info" not in s


DCGM_DEFAULTS = {
    "DCGM_FI_DEV_SM_CLOCK": 1980,
    "DCGM_FI_DEV_MEM_CLOCK": 2619,
    "DCGM_FI_DEV_MEMORY_TEMP": 69,
    "DCGM_FI_DEV_GPU_TEMP": 63,
    "DCGM_FI_DEV_POWER_USAGE": 637,
    "DCGM_FI_DEV_GPU_UTIL": 90,
    "DCGM_FI_DEV_MEM_COPY_UTIL": 54,
    "DCGM_FI_DEV_XID_ERRORS": 0,
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": 0,
}


async def test_dcgm_naming_profile(tmp_path: Path) -> None:
    FakeNvml(tmp_path, [FakeGpu("h100-sxm", util_base=0.9, memory_used_fraction=0.25)]).activate()
    async with exporter(namings=("dcgm",), hostname="node-07") as server:
        text, s = await server.scrape()
    assert undocumented(text) == set()
    assert not [name for name in s if name.startswith("powerplane_gpu_")]
    assert {name for name in s if name.startswith("DCGM_")} == {spec.name for spec in dcgm.METRICS}
    for name, expected in DCGM_DEFAULTS.items():
        assert value(s, name) == expected, name
    (labels,) = [dict(k) for k in s["DCGM_FI_DEV_FB_USED"]]
    assert set(labels) == set(dcgm.LABELS)
    assert labels["device"] == "nvidia0" and labels["Hostname"] == "node-07" and labels["gpu"] == "0"
    total_mib = 81559
    used = value(s, "DCGM_FI_DEV_FB_USED")
    assert used == pytest.approx(total_mib * 0.25, abs=1)
    assert used + value(s, "DCGM_FI_DEV_FB_FREE") == pytest.approx(total_mib, abs=1)
    assert (
        value(s, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION") == 3600 * 70 * 1000
    )  # mJ, the fake starts at an idle hour


def test_bad_naming_is_refused() -> None:
    with pytest.raises(ValueError, match="naming"):
        GpuOptions(namings=("nvidia-smi",))


def test_pod_resources_round_trip() -> None:
    rows = [
        DeviceAssignment("ns", "pod", "c", "nvidia.com/gpu", "GPU-1"),
        DeviceAssignment("ns", "pod", "c", "nvidia.com/gpu", "GPU-2"),
        DeviceAssignment("ns", "pod", "d", "nvidia.com/gpu", "GPU-3"),
        DeviceAssignment("ns2", "p", "ü", "nvidia.com/mig-1g.10gb", "MIG-4"),
    ]
    assert decode_list_response(encode_list_response(rows)) == rows
    # unknown fields (cpu_ids as packed varints, a fixed64) are skipped
    extra = b"\x20\x01\x29" + b"\0" * 8
    assert decode_list_response(encode_list_response(rows) + extra) == rows


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_pod_resources_decoder_survives_garbage(data: bytes) -> None:
    try:
        decode_list_response(data)
    except ValueError:
        pass


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
