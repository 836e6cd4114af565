"""The dcgm naming profile: dcgm-exporter's names, labels and units."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerplane.exporters.gpu import dcgm
from powerplane.lab.fakenvml import FakeGpu, FakeNvml
from tests.helpers import undocumented, value

from .conftest import exporter

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
