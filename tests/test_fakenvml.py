"""The fake NVML library, exercised through the real nvidia-ml-py ctypes bindings."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pynvml
import pytest

from powerplane.lab.fakenvml import FakeGpu, FakeNvml, MigDevice, call_count


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
