"""The fake NVML library, exercised through the real nvidia-ml-py ctypes bindings."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pynvml
import pytest

from powerplane.lab.fakenvml import FakeGpu, FakeNvml, MigDevice, SharedReading, SharedState, call_count


@pytest.fixture
def nvml(tmp_path: Path):
    def make(gpus: list[FakeGpu]) -> FakeNvml:
        machine = FakeNvml(tmp_path, gpus).activate()
        pynvml.nvmlInit()
        return machine

    yield make
    try:
        pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        pass


def test_identity_and_readings(nvml) -> None:
    nvml([FakeGpu("h100-sxm", util_base=0.9), FakeGpu("l40s", util_base=0.0)])
    assert pynvml.nvmlDeviceGetCount() == 2
    h100 = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetName(h100) == "NVIDIA H100 80GB HBM3"
    assert pynvml.nvmlDeviceGetPciInfo(h100).busId == "00000000:18:00.0"
    assert pynvml.nvmlDeviceGetPciInfo(h100).pciDeviceId == 0x233010DE
    assert pynvml.nvmlDeviceGetPowerManagementLimitConstraints(h100) == [200_000, 700_000]
    # 70 W idle + 90 % of the 630 W dynamic range
    assert pynvml.nvmlDeviceGetPowerUsage(h100) == pytest.approx(637_000, abs=1)
    memory = pynvml.nvmlDeviceGetMemoryInfo(h100)
    assert memory.total == 81559 << 20 and memory.free + memory.used == memory.total
    v2 = pynvml.nvmlDeviceGetMemoryInfo(h100, pynvml.nvmlMemory_v2)
    assert v2.free + v2.used + v2.reserved == v2.total
    assert pynvml.nvmlDeviceGetTemperature(h100, 0) == pynvml.nvmlDeviceGetTemperatureV(h100, 0)
    l40s = pynvml.nvmlDeviceGetHandleByIndex(1)
    assert pynvml.nvmlDeviceGetClockInfo(l40s, pynvml.NVML_CLOCK_SM) == 210  # idle clock
    assert pynvml.nvmlDeviceGetCurrentClocksEventReasons(l40s) & pynvml.nvmlClocksEventReasonGpuIdle


def test_field_values_and_unsupported(nvml) -> None:
    nvml([FakeGpu("h100-sxm"), FakeGpu("l40s", unsupported=frozenset({"energy"}))])
    fields = [pynvml.NVML_FI_DEV_MEMORY_TEMP, pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, 9999]
    h100 = pynvml.nvmlDeviceGetFieldValues(pynvml.nvmlDeviceGetHandleByIndex(0), fields)
    assert [v.nvmlReturn for v in h100] == [0, 0, pynvml.NVML_ERROR_NOT_SUPPORTED]
    assert h100[0].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT and 20 < h100[0].value.uiVal < 100
    assert h100[1].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG and h100[1].value.ullVal > 0
    l40s = pynvml.nvmlDeviceGetHandleByIndex(1)
    values = pynvml.nvmlDeviceGetFieldValues(l40s, fields)
    assert [v.nvmlReturn for v in values] == [pynvml.NVML_ERROR_NOT_SUPPORTED] * 3
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetTotalEnergyConsumption(l40s)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetMigMode(l40s)


def test_set_power_limit_constraints_permission_and_power_following(nvml) -> None:
    machine = nvml([FakeGpu("h100-sxm", util_base=1.0), FakeGpu("a100-sxm", set_limit="deny")])
    h100 = pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlDeviceSetPowerManagementLimit(h100, 300_000)
    assert pynvml.nvmlDeviceGetPowerManagementLimit(h100) == 300_000
    assert pynvml.nvmlDeviceGetEnforcedPowerLimit(h100) == 300_000
    assert pynvml.nvmlDeviceGetPowerManagementDefaultLimit(h100) == 700_000
    assert pynvml.nvmlDeviceGetPowerUsage(h100) == 300_000
    assert pynvml.nvmlDeviceGetCurrentClocksEventReasons(h100) & pynvml.nvmlClocksEventReasonSwPowerCap
    assert pynvml.nvmlDeviceGetClockInfo(h100, pynvml.NVML_CLOCK_SM) < 1980
    assert machine.power_limits_mw() == {0: 300_000}
    for bad in (199_999, 700_001):
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceSetPowerManagementLimit(h100, bad)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlDeviceSetPowerManagementLimit(pynvml.nvmlDeviceGetHandleByIndex(1), 200_000)
    machine.reset_power_limits()
    assert pynvml.nvmlDeviceGetPowerManagementLimit(h100) == 700_000


def test_limit_set_in_another_process_is_seen_here(nvml) -> None:
    machine = nvml([FakeGpu("h100-sxm")])
    code = textwrap.dedent(
        """
        import pynvml
        pynvml.nvmlInit()
        pynvml.nvmlDeviceSetPowerManagementLimit(pynvml.nvmlDeviceGetHandleByIndex(0), 450000)
        print(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**machine.env()}, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "NVIDIA H100 80GB HBM3"
    assert pynvml.nvmlDeviceGetPowerManagementLimit(pynvml.nvmlDeviceGetHandleByIndex(0)) == 450_000


def test_energy_integrates_power(nvml) -> None:
    import time

    nvml([FakeGpu("h100-sxm", util_base=0.5)])
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    watts = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000
    first = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    start = time.monotonic()
    while time.monotonic() - start < 0.6:
        time.sleep(0.05)
    second = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    elapsed = time.monotonic() - start
    assert (second - first) / 1000 == pytest.approx(watts * elapsed, abs=watts * 0.2)


def test_xid_events_lost_gpu_and_mig(nvml) -> None:
    machine = nvml(
        [FakeGpu("a100-sxm", xids=[31], mig=[MigDevice(1, 0, 10 << 30, 1 << 30)]), FakeGpu("h100-sxm")]
    )
    events = pynvml.nvmlEventSetCreate()
    for i in range(2):
        pynvml.nvmlDeviceRegisterEvents(
            pynvml.nvmlDeviceGetHandleByIndex(i), pynvml.nvmlEventTypeXidCriticalError, events
        )
    with pytest.raises(pynvml.NVMLError_Timeout):  # XID 31 happened before registration
        pynvml.nvmlEventSetWait(events, 20)
    machine.inject_xid(1, 79)
    data = pynvml.nvmlEventSetWait(events, 2000)
    assert (data.eventType, data.eventData) == (pynvml.nvmlEventTypeXidCriticalError, 79)
    assert pynvml.nvmlDeviceGetIndex(data.device) == 1
    a100 = pynvml.nvmlDeviceGetHandleByIndex(0)
    mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(a100, 0)
    assert pynvml.nvmlDeviceIsMigDeviceHandle(mig).value == 1
    assert pynvml.nvmlDeviceGetGpuInstanceId(mig) == 1
    assert pynvml.nvmlDeviceGetMemoryInfo(mig).total == 10 << 30
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(a100, 1)
    machine.lose(0)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetPowerUsage(a100)
    assert pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(1)) > 0
    pynvml.nvmlEventSetFree(events)
    assert call_count() > 0


def test_no_config_is_driver_not_loaded(monkeypatch, tmp_path: Path) -> None:
    FakeNvml(tmp_path, []).activate()
    monkeypatch.setenv("FAKENVML_CONFIG", str(tmp_path / "absent.conf"))
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        pynvml.nvmlInit()


def test_spec_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown GPU profile"):
        FakeNvml.from_spec({"gpus": [{"profile": "v100"}]}, tmp_path)
    with pytest.raises(ValueError, match=r"gpus\[0\]: unknown keys"):
        FakeNvml.from_spec({"gpus": [{"watts": 3}]}, tmp_path)
    with pytest.raises(ValueError, match="unknown features"):
        FakeGpu(unsupported=frozenset({"warp_drive"}))
    with pytest.raises(ValueError, match="line breaks"):
        FakeNvml(tmp_path, [FakeGpu(serial="1\ngpu")]).render()
    machine = FakeNvml.from_spec({"gpus": [{"profile": "l40s", "mig": []}]}, tmp_path)
    assert "name NVIDIA L40S" in machine.render()


# --- shared state: a model in another process drives the GPUs ----------------------------------


@pytest.fixture
def shared_nvml(tmp_path: Path):
    """A machine whose GPUs a model drives; returns (machine, its shared state)."""

    machines: list[FakeNvml] = []

    def make(gpus: list[FakeGpu]) -> tuple[FakeNvml, SharedState]:
        machine = FakeNvml(tmp_path, gpus, shared=True).activate()
        machines.append(machine)
        pynvml.nvmlInit()
        assert machine.shared is not None
        return machine, machine.shared

    yield make
    try:
        pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        pass
    for machine in machines:
        machine.close()


def test_published_readings_are_what_nvml_serves(shared_nvml) -> None:
    machine, shared = shared_nvml([FakeGpu("h100-sxm", util_base=0.1), FakeGpu("l40s")])
    assert machine.render().count(f"shared_state {machine.shared_path}") == 1
    h100 = pynvml.nvmlDeviceGetHandleByIndex(0)
    # Nothing published yet: the library's own model serves (70 W idle + 10 % of 630 W).
    assert pynvml.nvmlDeviceGetPowerUsage(h100) == pytest.approx(133_000, abs=1)
    shared.publish([SharedReading(650_000, 450_000, 5e9, 0.93), SharedReading(100_000, 100_000, 7e8, 0.2)])
    assert pynvml.nvmlDeviceGetPowerUsage(h100) == 450_000
    assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h100) == 5_000_000_000
    assert pynvml.nvmlDeviceGetUtilizationRates(h100).gpu == 93
    # Temperature follows the published power: 28 °C + 0.055 °C/W.
    assert pynvml.nvmlDeviceGetTemperature(h100, 0) == round(28 + 0.055 * 450)
    # Demand above the limit in force: power-capped clocks and the SW power cap reason.
    machine.set_power_limit_mw(0, 450_000)
    assert pynvml.nvmlDeviceGetCurrentClocksEventReasons(h100) & pynvml.nvmlClocksEventReasonSwPowerCap
    assert pynvml.nvmlDeviceGetClockInfo(h100, pynvml.NVML_CLOCK_SM) < 1980
    energy = pynvml.nvmlDeviceGetFieldValues(h100, [pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION])[0]
    assert energy.value.ullVal == 5_000_000_000
    l40s = pynvml.nvmlDeviceGetHandleByIndex(1)
    assert pynvml.nvmlDeviceGetPowerUsage(l40s) == 100_000


def test_hostile_published_values_are_never_negative_or_nan(shared_nvml) -> None:
    _machine, shared = shared_nvml([FakeGpu("h100-sxm")])
    shared.publish([SharedReading(float("nan"), -5.0, float("inf"), 7.0)])
    h100 = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetPowerUsage(h100) == 0
    assert pynvml.nvmlDeviceGetTotalEnergyConsumption(h100) == 0
    assert pynvml.nvmlDeviceGetUtilizationRates(h100).gpu == 100  # clamped to 1


def test_a_writer_stuck_mid_update_does_not_hang_the_library(shared_nvml) -> None:
    import struct

    _machine, shared = shared_nvml([FakeGpu("h100-sxm", util_base=0.0)])
    shared.publish([SharedReading(1e5, 1e5, 1e9, 0.5)])
    struct.pack_into("<Q", shared._map, 8, 7)  # odd: an update that never finishes
    # Bounded retries, then the library's own model (idle: 70 W).
    assert pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(0)) == 70_000


@pytest.mark.parametrize("damage", ["truncated", "foreign", "missing"])
def test_a_bad_shared_file_falls_back_to_the_built_in_model(tmp_path: Path, damage: str) -> None:
    driver = FakeNvml(tmp_path / "driver", [FakeGpu("h100-sxm")], shared=True)
    driver.write()
    assert driver.shared is not None and driver.shared_path is not None
    driver.shared.publish([SharedReading(5e5, 5e5, 1e9, 0.9)])
    driver.shared.close()
    if damage == "truncated":
        driver.shared_path.write_bytes(driver.shared_path.read_bytes()[:100])
    elif damage == "foreign":
        driver.shared_path.write_bytes(b"\xff" * SharedState.SIZE)
    else:
        driver.shared_path.unlink()
    # A machine whose config names that file (and nothing that would recreate it).
    machine = FakeNvml(tmp_path / "served", [FakeGpu("h100-sxm", util_base=0.0)]).activate()
    with machine.config_path.open("a") as config:
        config.write(f"shared_state {driver.shared_path}\n")
    pynvml.nvmlInit()
    try:
        assert pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(0)) == 70_000
    finally:
        pynvml.nvmlShutdown()


def test_shared_state_checks_what_it_is_given(tmp_path: Path) -> None:
    state = SharedState(tmp_path / "s", 2)
    with pytest.raises(ValueError, match="1 readings for 2 GPUs"):
        state.publish([SharedReading(0, 0, 0, 0)])
    with pytest.raises(ValueError, match="at most 64"):
        SharedState(tmp_path / "t", 65)
    assert (tmp_path / "s").stat().st_size == SharedState.SIZE
    state.close()


def test_set_power_limit_mw_is_what_the_library_enforces(shared_nvml) -> None:
    machine, _shared = shared_nvml([FakeGpu("h100-sxm"), FakeGpu("a100-sxm")])
    with pytest.raises(ValueError, match=r"GPU 0: 100000 mW is outside 200000\.\.700000 mW"):
        machine.set_power_limit_mw(0, 100_000)
    machine.set_power_limit_mw(1, 150_000)
    assert pynvml.nvmlDeviceGetPowerManagementLimit(pynvml.nvmlDeviceGetHandleByIndex(1)) == 150_000
    machine.set_power_limit_mw(1, 400_000)  # the default: no entry, as the library writes it
    assert machine.power_limits_mw() == {}


def test_a_garbled_state_file_reads_up_to_the_damage(tmp_path: Path) -> None:
    machine = FakeNvml(tmp_path, [FakeGpu("h100-sxm")] * 3)
    machine.state_path.write_text("limit 0 300000\nlimit 1 banana\nlimit 2 250000\n")
    assert machine.power_limits_mw() == {0: 300000}
    machine.state_path.write_bytes(b"\x00\xff limit")
    assert machine.power_limits_mw() == {}
