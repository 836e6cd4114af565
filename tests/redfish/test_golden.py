"""Golden expositions: what a probe of each simulated BMC model answers, line for line.

Durations and the energy meter (which advances with the clock) are normalised to NaN; every
other value follows from the model and a constant load.  ``POWERPLANE_UPDATE_GOLDEN=1``
rewrites the files under golden/ after a deliberate change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from powerplane.lab.redfish import MODELS, RedfishLab
from tests.conftest import Served, require_binary
from tests.helpers import check_golden, normalised

from .conftest import bmc

GOLDEN = Path(__file__).resolve().parent / "golden"
VOLATILE = (
    "powerplane_probe_duration_seconds",
    "powerplane_scrape_collector_duration_seconds",
    "powerplane_redfish_energy_joules_total",
)


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
async def test_golden_exposition(lab: RedfishLab, exporter: Served, model: Any) -> None:
    promtool = require_binary("promtool")
    device = await bmc(lab, model, name=f"golden-{model.name}")
    status, text = await exporter.probe(device.address)
    assert status == 200
    check_golden(normalised(text, VOLATILE), GOLDEN / f"{model.name}.prom", promtool)
