"""The per-GPU collectors over the fake NVML: every value, unsupported fields, lost GPUs, XIDs, limits."""

from __future__ import annotations

import time
from pathlib import Path

import pynvml
import pytest

from powerplane.lab.fakenvml import FakeGpu, FakeNvml, MigDevice
from tests.helpers import undocumented, value

from .conftest import exporter, gpu_series, poll, success


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
    before = time.time()
    async with exporter() as server:
        text, s = await server.scrape()
        _, later = await server.scrape()
    assert undocumented(text) == set()
    # The energy counter's start is its first reading, and stays (a ledger reads "no drop since")
    started = {dict(k)["gpu"]: v for k, v in s["powerplane_gpu_energy_start_timestamp_seconds"].items()}
    assert set(started) == {"0", "1", "2"} and all(before <= t <= time.time() for t in started.values())
    assert (
        later["powerplane_gpu_energy_start_timestamp_seconds"]
        == s["powerplane_gpu_energy_start_timestamp_seconds"]
    )
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
        "minor_number": "0",
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


async def test_a_lost_gpu_among_eight_leaves_the_other_seven_exported(tmp_path: Path) -> None:
    machine = FakeNvml(tmp_path, [FakeGpu("h100-sxm", util_base=0.1 * i) for i in range(8)]).activate()
    async with exporter() as server:
        _, before = await server.scrape()
        machine.lose(5)
        _, s = await server.scrape()
    every = gpu_series(before, "0")
    assert {"powerplane_gpu_info", "powerplane_gpu_power_watts", "powerplane_gpu_mig_enabled"} <= every
    assert success(s, "gpu5") == 0 and gpu_series(s, "5") == set()
    for index in "0123467":
        assert success(s, f"gpu{index}") == 1
        assert gpu_series(s, index) == every
        assert value(s, "powerplane_gpu_power_watts", gpu=index) == value(
            before, "powerplane_gpu_power_watts", gpu=index
        )


async def test_xid_counters_increase_and_never_stick(tmp_path: Path) -> None:
    machine = FakeNvml(tmp_path, [FakeGpu("h100-sxm", xids=[31]), FakeGpu("h100-sxm")]).activate()
    async with exporter(namings=("powerplane", "dcgm")) as server:
        _, s = await server.scrape()
        assert "powerplane_gpu_xid_errors_total" not in s  # XID 31 was raised before the exporter started
        assert value(s, "DCGM_FI_DEV_XID_ERRORS", gpu="0") == 0
        machine.inject_xid(0, 79)
        machine.inject_xid(1, 13)
        await poll(server, lambda s: len(s.get("powerplane_gpu_xid_errors_total", {})) == 2)
        machine.inject_xid(0, 79, 48)
        s = await poll(server, lambda s: len(s.get("powerplane_gpu_xid_errors_total", {})) == 3)
        s = await poll(server, lambda s: value(s, "powerplane_gpu_xid_errors_total", gpu="0", xid="79") == 2)
        assert value(s, "powerplane_gpu_xid_errors_total", gpu="0", xid="48") == 1
        assert value(s, "powerplane_gpu_xid_errors_total", gpu="1", xid="13") == 1
        # Nothing new: the counters stay where they are (and never fall back to zero)
        _, again = await server.scrape()
        assert again["powerplane_gpu_xid_errors_total"] == s["powerplane_gpu_xid_errors_total"]
        assert value(again, "DCGM_FI_DEV_XID_ERRORS", gpu="1") == 13


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
