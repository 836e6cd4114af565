"""Golden exposition: what ``/metrics`` of the inventory exporter answers, line for line.

For the documented example (docs/examples/inventory.yaml) and the demo's inventory of four nodes;
only the collector duration is normalised.  ``POWERPLANE_UPDATE_GOLDEN=1`` rewrites golden/ after
a deliberate change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from powerplane.exporters.inventory.exporter import make_server
from powerplane.lab.inventory import demo_inventory
from tests.conftest import Serve, require_binary
from tests.helpers import check_golden, normalised, without_runtime_noise

from .conftest import EXAMPLE

GOLDEN = Path(__file__).resolve().parent / "golden"
VOLATILE = ("powerplane_scrape_collector_duration_seconds",)


@pytest.mark.parametrize("name", ["example", "demo"])
async def test_golden_exposition(tmp_path: Path, serve: Serve, name: str) -> None:
    promtool = require_binary("promtool")
    path = tmp_path / "inventory.yaml"
    if name == "example":
        path.write_text(EXAMPLE.read_text())
    else:
        path.write_text(yaml.safe_dump(demo_inventory([f"node-{i:02d}" for i in range(1, 5)])))
    served = await serve(make_server(path))
    status, text = await served.get("/metrics")
    assert status == 200
    check_golden(normalised(without_runtime_noise(text), VOLATILE), GOLDEN / f"{name}.prom", promtool)
