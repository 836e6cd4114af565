"""Shared fixtures of the controller tests: the lab's powercap tree and a Python stand-in for NVML."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerplane.lab.powercap import PowercapLab, intel_server


def limit_uw(lab: PowercapLab, dirname: str = "intel-rapl:0", constraint: int = 0) -> int:
    """A constraint's power limit as the lab's sysfs holds it (constraint 0 is long_term)."""
    return int((lab.zone_dir(dirname) / f"constraint_{constraint}_power_limit_uw").read_text())


@pytest.fixture
def intel(tmp_path: Path) -> PowercapLab:
    """17 sockets (zones intel-rapl:a .. intel-rapl:10 are hexadecimal), 250 W limits, 350 W max."""
    return PowercapLab(tmp_path / "sys", intel_server(sockets=17, tdp=250.0)).create()


class FakeNvmlError(Exception):
    def __init__(self, value: int) -> None:
        self.value = value


class FakeNvml:
    """pynvml's calls the actuator makes, for GPUs with a 200..700 W range.

    ``limit_mw`` is the limit in force before the controller starts (an operator may have set
    one below the default); the C fake NVML covers the real nvidia-ml-py path.
    """

    NVMLError = FakeNvmlError
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_NOT_SUPPORTED = 3

    def __init__(self, gpus: int = 2, writable: bool = True, limit_mw: int = 700_000) -> None:
        self.limits = [limit_mw] * gpus
        self.writable = writable

    def nvmlDeviceGetCount(self) -> int:
        return len(self.limits)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h:08d}"

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: int) -> list[int]:
        return [200_000, 700_000]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: int) -> int:
        return 700_000

    def nvmlDeviceGetPowerManagementLimit(self, h: int) -> int:
        return self.limits[h]

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return self.limits[h]

    def nvmlDeviceSetPowerManagementLimit(self, h: int, mw: int) -> None:
        if not self.writable:
            raise FakeNvmlError(self.NVML_ERROR_NO_PERMISSION)
        self.limits[h] = mw
