"""Golden expositions: what a probe of each recorded device answers, line for line.

The recordings are static (the AP8641 walk from snmpsim-data and the project's recordings), so
only durations are normalised to NaN.  ``POWERPLANE_UPDATE_GOLDEN=1`` rewrites the files under
golden/ after a deliberate change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from powerplane.exporters.snmp.exporter import make_server
from powerplane.lab.snmp import BUILDERS, Snmpsim
from tests.conftest import Serve, require_binary
from tests.helpers import check_golden, normalised

from .conftest import probe, snmp_config

GOLDEN = Path(__file__).resolve().parent / "golden"
VOLATILE = ("powerplane_probe_duration_seconds", "powerplane_scrape_collector_duration_seconds")


@pytest.mark.parametrize("community", ["apc-8641", *BUILDERS])
async def test_golden_exposition(tmp_path: Path, agents: Snmpsim, serve: Serve, community: str) -> None:
    promtool = require_binary("promtool")
    served = await serve(make_server(snmp_config(tmp_path, [community])))
    status, text = await probe(served, f"target=127.0.0.1:{agents.port}")
    assert status == 200
    check_golden(normalised(text, VOLATILE), GOLDEN / f"{community}.prom", promtool)
