"""The pure Redfish parsers on project-written fixtures and on hostile JSON."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.redfish.parse import (
    Doc,
    PowerSnapshot,
    ThermalSnapshot,
    dell_power_cap,
    environment_power,
    environment_thermal,
    leak_detectors,
    legacy_power,
    legacy_psus,
    legacy_thermal,
    log_entries,
    new_psu,
    new_thermal_metrics,
    newest_samples,
    psu_redundancy,
    sensor_temperature,
    summarise,
    system_info,
    voltages,
)

from .conftest import fixture


def test_legacy_power_fixture() -> None:
    errors: list[str] = []
    snap = PowerSnapshot()
    legacy_power(Doc(fixture("legacy_power.json"), "Power", errors), snap)
    assert errors == []
    assert (snap.watts, snap.source) == (412.0, "power_control")
    assert snap.stats == {"average": 405.0, "min": 380.0, "max": 455.0}
    assert snap.interval_seconds == 60.0
    assert (snap.limit_watts, snap.capacity_watts) == (650.0, 1600.0)


def test_legacy_psus_skip_absent_and_keep_rating_apart() -> None:
    errors: list[str] = []
    psus = legacy_psus(Doc(fixture("legacy_power.json"), "Power", errors))
    assert errors == []
    assert [p.id for p in psus] == ["PSU.Slot.1", "PSU.Slot.2"]
    assert psus[0].input_watts == 1100.0 and psus[0].output_watts == 198.5
    assert psus[0].efficiency_ratio == pytest.approx(0.96)
    assert [p.health for p in psus] == ["OK", "Warning"]


def test_legacy_thermal_fixture() -> None:
    errors: list[str] = []
    snap = legacy_thermal(Doc(fixture("legacy_thermal.json"), "Thermal", errors))
    assert errors == []
    assert [(t.sensor, t.context, t.celsius) for t in snap.temperatures] == [
        ("System Board Inlet Temp", "Intake", 23.0),
        ("System Board Exhaust Temp", "Exhaust", 41.0),
        ("CPU1 Temp", "CPU", 67.0),
    ]
    assert snap.summary == {"intake": 23.0, "exhaust": 41.0}
    assert snap.fans[0].rpm == 7440.0 and snap.fans[0].ratio is None
    assert snap.fans[1].ratio == pytest.approx(0.45) and snap.fans[1].rpm is None


def test_new_schema_fixtures() -> None:
    errors: list[str] = []
    snap = PowerSnapshot()
    environment_power(Doc(fixture("environment_metrics.json"), "EnvironmentMetrics", errors), snap)
    assert (snap.watts, snap.source, snap.limit_watts) == (538.0, "environment_metrics", 800.0)
    assert snap.energy_joules == pytest.approx(18234.25 * 3.6e6)
    thermal = ThermalSnapshot()
    new_thermal_metrics(Doc(fixture("thermal_metrics.json"), "ThermalMetrics", errors), thermal)
    summarise(thermal)
    assert [(t.sensor, t.celsius) for t in thermal.temperatures] == [
        ("System Board Inlet Temp", 24.0),
        ("CPU1Temp", 71.0),
    ]
    assert thermal.summary == {"intake": 24.0, "exhaust": 44.0}
    doc = Doc(fixture("psu_metrics.json"), "PSU", errors)
    psu = new_psu(doc, doc.obj("Metrics"), "psu0")
    assert (psu.id, psu.input_watts, psu.output_watts, psu.input_volts) == ("PSU.Slot.1", 640.5, 602.0, 240.0)
    assert psu.efficiency_ratio == pytest.approx(0.94)
    assert errors == []


def test_telemetry_takes_the_newest_sample_and_names_bad_values() -> None:
    errors: list[str] = []
    samples = newest_samples(Doc(fixture("telemetry_power.json"), "PowerMetrics", errors))
    assert samples == {("SystemInputPower", "System.Embedded.1"): 433.0}
    assert errors == ["PowerMetrics: MetricValues[3].MetricValue: not a number"]


def test_wrong_types_are_named_not_echoed() -> None:
    errors: list[str] = []
    doc = fixture("legacy_power.json")
    doc["PowerControl"][0]["PowerConsumedWatts"] = "412 W secret-ish"
    doc["PowerControl"][0]["PowerMetrics"] = ["not", "an", "object"]
    snap = PowerSnapshot()
    legacy_power(Doc(doc, "Power", errors), snap)
    assert snap.watts is None
    assert "Power: PowerControl[0].PowerConsumedWatts: expected a number, got str" in errors
    assert not any("secret-ish" in e for e in errors)


def test_system_info_strips_unprintable_text() -> None:
    errors: list[str] = []
    snap = system_info(
        Doc({"Model": "R760\n\x1b[31m", "PowerState": "Off", "SerialNumber": 12}, "System", errors),
        "7.0",
        "iDRAC",
    )
    assert snap.labels["model"] == "R760 [31m"
    assert snap.labels["serial"] == "12"
    assert snap.powered_on == 0.0


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "PowerControl",
        "PowerSupplies",
        "Temperatures",
        "Fans",
        "MetricValues",
        "PowerWatts",
        "Redundancy",
        "LeakDetectorGroups",
        "Members",
        "Voltages",
        "FanSpeedsPercent",
        "DetectorState",
        "Reading",
        "Status",
    ]
)
hostile = st.dictionaries(keys, json_values, max_size=5) | json_values


@given(hostile)
@settings(max_examples=150, deadline=None)
def test_parsers_never_raise_on_hostile_json(data: Any) -> None:
    errors: list[str] = []
    doc = Doc(data, "X", errors)
    legacy_power(doc, PowerSnapshot())
    environment_power(doc, PowerSnapshot())
    legacy_psus(doc)
    legacy_thermal(doc)
    new_thermal_metrics(doc, ThermalSnapshot())
    newest_samples(doc)
    system_info(doc, "", "")
    snap = PowerSnapshot(limit_watts=100.0)
    dell_power_cap(doc, snap)
    voltages(doc)
    environment_thermal(doc, ThermalSnapshot())
    leak_detectors(doc)
    log_entries(doc, "manager/Sel")
    psu_redundancy(doc, "Redundancy")
    sensor_temperature(doc)
    assert all(e.startswith("X: ") for e in errors)


def test_numbers_no_float_holds_are_dropped_and_the_rest_kept() -> None:
    """A reading of 10^400 W (as a float literal or a 401-digit integer) is one bad value."""
    for huge in (float("inf"), 10**400, float("nan")):
        errors: list[str] = []
        doc = fixture("legacy_power.json")
        doc["PowerControl"][0]["PowerConsumedWatts"] = huge
        doc["PowerSupplies"][0]["PowerInputWatts"] = huge
        snap = PowerSnapshot()
        legacy_power(Doc(doc, "Power", errors), snap)
        psus = legacy_psus(Doc(doc, "Power", errors))
        assert snap.watts is None and snap.limit_watts == 650.0  # the rest of the control is read
        assert psus[0].input_watts is None and psus[0].output_watts == 198.5
        assert errors == [
            "Power: PowerControl[0].PowerConsumedWatts: not a finite number",
            "Power: PowerSupplies[0].PowerInputWatts: not a finite number",
        ]
