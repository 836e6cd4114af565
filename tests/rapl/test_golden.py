"""Golden exposition: what ``/metrics`` of the RAPL exporter answers for the lab's trees, line for line.

A two-socket Intel server (PL1/PL2/PL4 per package, core and dram subzones), an AMD Zen part (no
constraints) and a laptop with uncore and psys.  The energy counters advance with the clock and
the durations with the machine, so their values are normalised to NaN.
``POWERPLANE_UPDATE_GOLDEN=1`` rewrites golden/ after a deliberate change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from powerplane.exporters.rapl.exporter import make_server
from powerplane.lab.powercap import PowercapLab, ZoneSpec, amd_zen, intel_server, laptop_with_psys
from tests.conftest import Serve, require_binary
from tests.helpers import check_golden, normalised, without_runtime_noise

GOLDEN = Path(__file__).resolve().parent / "golden"
VOLATILE = ("powerplane_scrape_collector_duration_seconds", "powerplane_rapl_energy_joules_total")
TREES: dict[str, Callable[[], list[ZoneSpec]]] = {
    "intel-2s": lambda: intel_server(sockets=2, tdp=250.0),
    "amd-zen": amd_zen,
    "laptop-psys": laptop_with_psys,
}


@pytest.mark.parametrize("tree", sorted(TREES))
async def test_golden_exposition(tmp_path: Path, serve: Serve, tree: str) -> None:
    promtool = require_binary("promtool")
    PowercapLab(tmp_path, TREES[tree]()).create()
    served = await serve(make_server(tmp_path))
    status, text = await served.get("/metrics")
    assert status == 200
    check_golden(normalised(without_runtime_noise(text), VOLATILE), GOLDEN / f"{tree}.prom", promtool)
