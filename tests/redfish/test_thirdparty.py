"""The Redfish exporter on third-party Redfish: sushy's JSON samples and the sushy-static server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from powerplane.exporters.redfish.config import KIND
from powerplane.exporters.redfish.exporter import make_server
from powerplane.exporters.redfish.parse import (
    Doc,
    PowerSnapshot,
    legacy_power,
    legacy_psus,
    legacy_thermal,
    system_info,
)
from tests.conftest import Serve
from tests.helpers import parse, undocumented, value

from .conftest import missing, sushy_static


@pytest.fixture(scope="module")
def samples() -> Path:
    try:
        import sushy
    except ImportError:
        missing("the sushy wheel")
    path = Path(sushy.__file__).parent / "tests" / "unit" / "json_samples"
    if not (path / "power.json").is_file():
        missing(f"sushy's JSON samples under {path}")
    return path


def load(samples: Path, name: str) -> dict[str, Any]:
    return json.loads((samples / name).read_text())


def test_sushy_power_sample(samples: Path) -> None:
    doc = load(samples, "power.json")
    errors: list[str] = []
    psus = legacy_psus(Doc(doc, "Power", errors))
    assert errors == []
    expected = [p for p in doc["PowerSupplies"] if p.get("Status", {}).get("State") != "Absent"]
    assert [p.id for p in psus] == [p["MemberId"] for p in expected]
    assert [p.output_watts for p in psus] == [p.get("LastPowerOutputWatts") for p in expected]
    assert [p.capacity_watts for p in psus] == [p.get("PowerCapacityWatts") for p in expected]
    assert [p.input_volts for p in psus] == [p.get("LineInputVoltage") for p in expected]
    # This sample has no PowerControl: no node power, and the error says which field is missing.
    snap = PowerSnapshot()
    legacy_power(Doc(doc, "Power", errors), snap)
    assert snap.watts is None
    assert errors == ["Power: PowerControl: missing"]


def test_sushy_thermal_sample(samples: Path) -> None:
    doc = load(samples, "thermal.json")
    errors: list[str] = []
    snap = legacy_thermal(Doc(doc, "Thermal", errors))
    assert errors == []
    assert [(t.sensor, t.context, t.celsius) for t in snap.temperatures] == [
        (t["Name"], t.get("PhysicalContext", ""), t["ReadingCelsius"])
        for t in doc["Temperatures"]
        if t.get("ReadingCelsius") is not None
    ]
    assert [f.rpm for f in snap.fans] == [f["Reading"] for f in doc["Fans"]]


def test_sushy_system_sample(samples: Path) -> None:
    doc = load(samples, "system.json")
    errors: list[str] = []
    snap = system_info(Doc(doc, "System", errors), "", "")
    assert errors == []
    assert snap.labels["model"] == doc["Model"] and snap.labels["serial"] == doc["SerialNumber"]
    assert snap.powered_on == float(doc["PowerState"] == "On")


def _link(doc: dict[str, Any], *path: Any) -> str:
    node: Any = doc
    for part in path:
        node = node[part]
    return str(node["@odata.id"])


def mockup(samples: Path) -> dict[str, dict[str, Any]]:
    """sushy's samples as one BMC's resources, each where its parent links to it."""
    root = load(samples, "root.json")
    systems = load(samples, "system_collection.json")
    system = load(samples, "system.json")
    chassis = load(samples, "chassis.json")
    chassis_uri = _link(system, "Links", "Chassis", 0)
    # The sample chassis links its Thermal only; link the sample Power document beside it.
    chassis["Power"] = {"@odata.id": f"{chassis_uri}/Power"}
    chassis["Thermal"] = {"@odata.id": f"{chassis_uri}/Thermal"}
    return {
        "/redfish/v1": root,
        _link(root, "Systems"): systems,
        _link(systems, "Members", 0): system,
        chassis_uri: chassis,
        f"{chassis_uri}/Power": load(samples, "power.json"),
        f"{chassis_uri}/Thermal": load(samples, "thermal.json"),
        _link(system, "Links", "ManagedBy", 0): load(samples, "manager.json"),
    }


@pytest.fixture
def sushy_server(samples: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    docs = mockup(samples)
    with sushy_static(docs, tmp_path) as address:
        yield address, docs


async def test_probe_against_sushy_static(
    sushy_server: tuple[str, dict[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, serve: Serve
) -> None:
    address, docs = sushy_server
    monkeypatch.setenv("RF_PW", "unused-by-sushy-static")
    config = KIND.load_text(
        f"""
auths: {{static: {{method: basic, username: admin, password: {{env: RF_PW}}}}}}
targets: {{"http://{address}": {{}}}}
"""
    )
    served = await serve(make_server(config))
    status, text = await served.probe(address)
    assert status == 200
    assert undocumented(text) == set()
    samples = parse(text)
    assert value(samples, "powerplane_target_up") == 1.0
    success = samples["powerplane_scrape_collector_success"]
    assert {dict(k)["collector"]: v for k, v in success.items()} == {
        "power": 0.0,  # the sample Power document has no PowerControl
        "psu": 1.0,
        "thermal": 1.0,
        "health": 1.0,
        "system": 1.0,
    }
    chassis_uri = next(u for u in docs if u.endswith("/Power")).removesuffix("/Power")
    power = docs[f"{chassis_uri}/Power"]
    thermal = docs[f"{chassis_uri}/Thermal"]
    for psu in power["PowerSupplies"]:
        if "LastPowerOutputWatts" in psu:
            assert (
                value(samples, "powerplane_redfish_psu_output_watts", psu=psu["MemberId"])
                == (psu["LastPowerOutputWatts"])
            )
    for temp in thermal["Temperatures"]:
        assert (
            value(samples, "powerplane_redfish_temperature_celsius", sensor=temp["Name"])
            == temp["ReadingCelsius"]
        )
    system = docs[next(u for u in docs if "/Systems/" in u)]
    assert value(
        samples, "powerplane_redfish_system_info", model=system["Model"], serial=system["SerialNumber"]
    )
    health = system["Status"].get("HealthRollup") or system["Status"]["Health"]
    assert value(samples, "powerplane_redfish_health", resource="system", state=health.lower()) == 1.0
