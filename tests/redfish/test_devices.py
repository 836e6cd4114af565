"""Facts of real BMCs, pinned by device fixtures written in the shape of their payloads.

Each fixture under ``fixtures/devices/`` is one BMC's resources by URI: an iDRAC9 on a
PowerEdge R640 (legacy schema, firmware 6), iLO 4 on a DL360 Gen9 (Redfish 1.0 property names),
iLO 5 on a DL360 Gen10, and a rackmount server in the shape of DMTF's public mockup with both
schemas, telemetry and a dangling PSU ``Metrics`` link.  The parsers are checked on the
documents directly, and the exporter probes each device served by sushy-static, a third-party
Redfish server.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from powerplane.exporters.redfish.parse import (
    Doc,
    PowerSnapshot,
    dell_power_cap,
    environment_power,
    leak_detectors,
    legacy_power,
    legacy_psus,
    legacy_thermal,
    log_entries,
    newest_samples,
    psu_redundancy,
    voltages,
)
from tests.conftest import Serve
from tests.helpers import value

from .conftest import StartDevice, SushyDevice, device, success, sushy_devices

R640 = "/redfish/v1/Chassis/System.Embedded.1"
ILO = "/redfish/v1/Chassis/1/"
RACK = "/redfish/v1/Chassis/1U"
CONFIG = """
auths: {{static: {{method: basic, username: admin, password: {{env: RF_PW}}}}}}
modules:
  default: {{collectors: {{telemetry: true}}}}
  legacy: {{schema: legacy}}
  logs: {{collectors: [eventlog]}}
  new: {{schema: new, collectors: {{telemetry: true}}}}
targets: {{"http://{address}": {{}}}}
"""


def doc(docs: dict[str, Any], uri: str, where: str, errors: list[str]) -> Doc:
    return Doc(docs[uri], where, errors)


# --- the parsers on the documents -------------------------------------------------------------


def test_idrac9_efficiency_is_a_fraction_and_other_bmcs_send_percent() -> None:
    errors: list[str] = []
    r640 = legacy_psus(doc(device("idrac9-r640"), f"{R640}/Power", "Power", errors))
    assert [p.efficiency_ratio for p in r640] == [pytest.approx(0.91), pytest.approx(0.91)]
    rack = legacy_psus(Doc({"PowerSupplies": [{"MemberId": "0", "EfficiencyPercent": 91}]}, "Power", errors))
    assert rack[0].efficiency_ratio == pytest.approx(0.91)
    assert errors == []
    for bad in (150, -3, "91 %"):
        bad_errors: list[str] = []
        psus = legacy_psus(
            Doc({"PowerSupplies": [{"MemberId": "0", "EfficiencyPercent": bad}]}, "Power", bad_errors)
        )
        assert psus[0].efficiency_ratio is None
        assert len(bad_errors) == 1 and bad_errors[0].startswith(
            "Power: PowerSupplies[0].EfficiencyPercent: "
        )


def test_idrac9_disabled_power_cap_is_not_a_limit() -> None:
    """iDRAC keeps LimitInWatts 348 with PowerCapEnabledState Disabled; the node draws 429 W."""
    docs = device("idrac9-r640")
    errors: list[str] = []
    snap = PowerSnapshot()
    legacy_power(doc(docs, f"{R640}/Power", "Power", errors), snap)
    assert (snap.watts, snap.limit_watts, snap.limit_enforced) == (429.0, 348.0, True)  # HardPowerOff
    dell_power_cap(doc(docs, "/redfish/v1/Systems/System.Embedded.1", "System", errors), snap)
    assert (snap.limit_watts, snap.limit_enforced, snap.enforced_limit()) == (348.0, False, None)
    enabled = copy.deepcopy(docs["/redfish/v1/Systems/System.Embedded.1"])
    enabled["Oem"]["Dell"]["DellSystem"]["PowerCapEnabledState"] = "Enabled"
    dell_power_cap(Doc(enabled, "System", errors), snap)
    assert snap.enforced_limit() == 348.0
    assert errors == []


@pytest.mark.parametrize(
    ("limit", "enforced"),
    [
        ({"LimitInWatts": 500, "LimitException": "LogEventOnly"}, False),
        ({"LimitInWatts": 500, "LimitException": "NoAction"}, False),
        ({"LimitInWatts": 500, "LimitException": "HardPowerOff"}, True),
        ({"LimitInWatts": 500}, True),
        ({"LimitInWatts": None}, None),
    ],
)
def test_legacy_limit_exception_says_whether_the_limit_acts(
    limit: dict[str, Any], enforced: bool | None
) -> None:
    snap = PowerSnapshot()
    legacy_power(Doc({"PowerControl": [{"PowerConsumedWatts": 300, "PowerLimit": limit}]}, "Power", []), snap)
    assert snap.limit_enforced is enforced
    assert snap.enforced_limit() == (500.0 if enforced else None)


@pytest.mark.parametrize(("mode", "enforced"), [("Automatic", True), ("Override", True), ("Disabled", False)])
def test_new_schema_control_mode_says_whether_the_limit_acts(mode: str, enforced: bool) -> None:
    env = copy.deepcopy(device("dmtf-rackmount")[f"{RACK}/EnvironmentMetrics"])
    env["PowerLimitWatts"]["ControlMode"] = mode
    env["PowerLimitWatts"]["AllocatedWatts"] = 450
    snap = PowerSnapshot()
    environment_power(Doc(env, "EnvironmentMetrics", []), snap)
    assert (snap.limit_watts, snap.limit_enforced, snap.budget) == (500.0, enforced, {"allocated": 450.0})


def test_ilo4_fans_and_temperatures_use_the_older_names() -> None:
    errors: list[str] = []
    snap = legacy_thermal(doc(device("ilo4-dl360-gen9"), f"{ILO}Thermal/", "Thermal", errors))
    assert errors == []
    assert [(f.id, f.ratio, f.rpm) for f in snap.fans] == [
        ("Fan 1", pytest.approx(0.17), None),
        ("Fan 2", pytest.approx(0.17), None),
        ("Fan 3", pytest.approx(0.25), None),
    ]
    assert [(t.sensor, t.context, t.celsius) for t in snap.temperatures] == [
        ("01-Inlet Ambient", "Intake", 21.0),
        ("02-CPU 1", "CPU", 40.0),
        ("03-CPU 2", "CPU", 40.0),
    ]
    ilo5 = legacy_thermal(doc(device("ilo5-dl360-gen10"), f"{ILO}Thermal/", "Thermal", errors))
    assert [(f.id, f.ratio) for f in ilo5.fans] == [
        ("Fan 1", pytest.approx(0.23)),
        ("Fan 2", pytest.approx(0.23)),
    ]
    assert errors == []


def test_older_names_with_wrong_units_or_types_are_named() -> None:
    errors: list[str] = []
    thermal = {
        "Temperatures": [{"Name": "t", "CurrentReading": 70, "Units": "Fahrenheit"}],
        "Fans": [{"FanName": "f", "CurrentReading": "fast", "Units": "Percent"}],
    }
    snap = legacy_thermal(Doc(thermal, "Thermal", errors))
    assert snap.temperatures == [] and snap.fans[0].ratio is None and snap.fans[0].rpm is None
    assert errors == [
        "Thermal: Temperatures[0].Units: expected Celsius",
        "Thermal: Fans[0].CurrentReading: expected a number, got str",
    ]


def test_power_control_budget_and_voltages() -> None:
    errors: list[str] = []
    power = doc(device("idrac9-r640"), f"{R640}/Power", "Power", errors)
    snap = PowerSnapshot()
    legacy_power(power, snap)
    assert snap.budget == {"allocated": 1288.0, "requested": 1288.0, "available": 0.0}
    assert voltages(power) == [("PS1 Voltage 1", 232.0), ("PS2 Voltage 2", 230.0)]  # null skipped
    assert errors == []


def test_metric_reports_without_metric_id_get_short_names() -> None:
    errors: list[str] = []
    report = doc(
        device("dmtf-rackmount"), "/redfish/v1/TelemetryService/MetricReports/PowerMetrics", "R", errors
    )
    context = "Chassis/1U/Power#/PowerControl/0/PowerMetrics"
    assert newest_samples(report) == {
        ("AverageConsumedWatts", context): 319.0,
        ("MaxConsumedWatts", context): 489.0,  # the newer of two samples
        ("MinConsumedWatts", context): 271.0,
    }
    assert errors == []


def test_psu_redundancy_from_both_schemas() -> None:
    errors: list[str] = []
    r640 = psu_redundancy(doc(device("idrac9-r640"), f"{R640}/Power", "Power", errors), "Redundancy")
    assert [(g.group, g.mode, g.redundant) for g in r640] == [("System.Embedded.1", "N+m", True)]
    ilo4 = psu_redundancy(doc(device("ilo4-dl360-gen9"), f"{ILO}Power/", "Power", errors), "Redundancy")
    assert [(g.group, g.redundant) for g in ilo4] == [("0", False)]  # Health Critical
    rack = device("dmtf-rackmount")
    new = psu_redundancy(doc(rack, f"{RACK}/PowerSubsystem", "P", errors), "PowerSupplyRedundancy")
    legacy = psu_redundancy(doc(rack, f"{RACK}/Power", "Power", errors), "Redundancy")
    assert [(g.group, g.mode, g.redundant) for g in new] == [("0", "Failover", False)]  # UnavailableOffline
    assert [(g.group, g.mode, g.redundant) for g in legacy] == [("0", "Failover", False)]
    disabled = {"Redundancy": [{"MemberId": "0", "Mode": "N+m", "Status": {"State": "Disabled"}}]}
    assert psu_redundancy(Doc(disabled, "Power", errors), "Redundancy") == []
    assert errors == []


def test_leak_detectors_from_groups_or_detectors() -> None:
    errors: list[str] = []
    rack = device("dmtf-rackmount")
    leaks = [("Moisture-type Leak Detector", False), ("Float Switch Leak Detector", True)]
    assert leak_detectors(doc(rack, f"{RACK}/ThermalSubsystem/LeakDetection", "L", errors)) == leaks
    detectors = f"{RACK}/ThermalSubsystem/LeakDetection/LeakDetectors"
    from_members = [
        d
        for uri in ("Moisture", "FloatSwitch")
        for d in leak_detectors(doc(rack, f"{detectors}/{uri}", "D", errors))
    ]
    assert from_members == leaks
    groups = [{"Detectors": [{"DetectorState": ["Critical"]}, "x"]}]
    hostile = {"LeakDetectorGroups": groups, "DetectorState": None}
    assert leak_detectors(Doc(hostile, "L", errors)) == []
    assert errors == [
        "L: LeakDetectorGroups[0].Detectors[0].DetectorState: expected a string, got list",
        "L: LeakDetectorGroups[0].Detectors[1]: expected an object, got str",
    ]


def test_event_log_counts_by_severity_never_per_message() -> None:
    errors: list[str] = []
    lclog = "/redfish/v1/Managers/iDRAC.Embedded.1/LogServices/Lclog/Entries"
    snap = log_entries(doc(device("idrac9-r640"), lclog, "Lclog", errors), "manager/Lclog")
    assert snap.entries == 5210  # the whole log; the page read holds three
    assert snap.by_severity == {"ok": 1, "critical": 1, "other": 1}
    assert snap.newest["critical"] == 1796051561.0  # 2026-11-30T09:12:41-06:00
    bad = {"Members": [{"Severity": "Critical", "Created": "yesterday"}, {"Severity": ["x"]}]}
    hostile = log_entries(Doc(bad, "Sel", errors), "manager/Sel")
    assert hostile.by_severity == {"critical": 1, "other": 1} and hostile.newest == {}
    assert errors == [
        "Sel: Members[0].Created: not an ISO 8601 time",
        "Sel: Members[1].Severity: expected a string, got list",
    ]


# --- probes of the devices, served by sushy-static ----------------------------------------------


Device = SushyDevice
Start = StartDevice


@pytest.fixture
async def start(tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Start]:
    monkeypatch.setenv("RF_PW", "unused-by-sushy-static")
    async with sushy_devices(tmp_path, serve, CONFIG) as run:
        yield run


async def test_probe_idrac9_r640(start: Start) -> None:
    samples = await (await start(device("idrac9-r640"))).probe()
    assert value(samples, "powerplane_redfish_power_watts") == 429.0
    assert "powerplane_redfish_power_limit_watts" not in samples  # configured 348 W, not enforced
    assert value(samples, "powerplane_redfish_power_limit_configured_watts") == 348.0
    assert value(samples, "powerplane_redfish_power_limit_enforced") == 0.0
    assert value(samples, "powerplane_redfish_psu_efficiency_ratio", psu="PSU.Slot.1") == pytest.approx(0.91)
    assert value(samples, "powerplane_redfish_power_budget_watts", kind="allocated") == 1288.0
    assert value(samples, "powerplane_redfish_voltage_volts", sensor="PS2 Voltage 2") == 230.0
    assert value(samples, "powerplane_redfish_psu_redundancy", group="System.Embedded.1", mode="N+m") == 1.0
    assert all(v == 1.0 for v in samples["powerplane_scrape_collector_success"].values())


async def test_probe_idrac9_event_logs(start: Start) -> None:
    samples = await (await start(device("idrac9-r640"))).probe("logs")
    assert value(samples, "powerplane_redfish_log_entries", log="manager/Lclog") == 5210
    assert value(samples, "powerplane_redfish_log_entries_read", log="manager/Sel", severity="warning") == 1
    newest = "powerplane_redfish_log_newest_entry_timestamp_seconds"
    assert value(samples, newest, log="manager/Sel", severity="critical") == 1796051561.0
    assert len(samples[newest]) == 6  # (log, severity) pairs, never one series per message
    assert success(samples, "eventlog") == 1.0


async def test_probe_ilo4_fans(start: Start) -> None:
    samples = await (await start(device("ilo4-dl360-gen9"))).probe()
    assert value(samples, "powerplane_redfish_fan_speed_ratio", fan="Fan 3") == 0.25
    assert "powerplane_redfish_fan_speed_rpm" not in samples
    assert value(samples, "powerplane_redfish_temperature_celsius", sensor="01-Inlet Ambient") == 21.0
    assert value(samples, "powerplane_redfish_psu_output_watts", psu="1") == 60.0
    assert success(samples, "thermal") == 1.0


async def test_both_schemas_give_the_same_temperature_sensors(start: Start) -> None:
    """ThermalMetrics holds intake and exhaust only; CPU and DIMM come from the Sensors."""
    bmc = await start(device("dmtf-rackmount"))
    legacy, new = await bmc.probe("legacy"), await bmc.probe("new")
    assert legacy["powerplane_redfish_temperature_celsius"] == new["powerplane_redfish_temperature_celsius"]
    assert value(new, "powerplane_redfish_temperature_celsius", sensor="DIMM1 Temp", context="Memory") == 44.0
    assert success(new, "thermal") == 1.0


async def test_new_schema_values(start: Start) -> None:
    samples = await (await start(device("dmtf-rackmount"))).probe("new")
    assert value(samples, "powerplane_redfish_power_capacity_watts") == 2000.0  # PowerSubsystem
    assert value(samples, "powerplane_redfish_power_limit_watts") == 500.0  # ControlMode Automatic
    assert value(samples, "powerplane_redfish_power_budget_watts", kind="requested") == 1500.0
    assert value(samples, "powerplane_redfish_psu_energy_joules_total", psu="Bay1") == 325675 * 3.6e6
    assert value(samples, "powerplane_redfish_psu_temperature_celsius", psu="Bay1") == 43.9
    assert value(samples, "powerplane_redfish_chassis_temperature_celsius") == 39.0
    assert value(samples, "powerplane_redfish_psu_redundancy", group="0", mode="Failover") == 0.0
    assert value(samples, "powerplane_redfish_leak_detected", detector="Float Switch Leak Detector") == 1.0
    assert value(samples, "powerplane_redfish_leak_detected", detector="Moisture-type Leak Detector") == 0.0
    assert value(samples, "powerplane_redfish_fan_speed_rpm", fan="BaseBoard System Fan") == 2100.0
    # Bay2's Metrics link dangles: that PSU has no readings, and the collector still succeeds.
    assert "Bay2" in {dict(k)["psu"] for k in samples["powerplane_redfish_psu_capacity_watts"]}
    assert "Bay2" not in {dict(k)["psu"] for k in samples["powerplane_redfish_psu_input_watts"]}
    assert success(samples, "psu") == 1.0
    # Telemetry without MetricId: short names; no ThermalSensor report here (404), not a failure.
    assert (
        value(samples, "powerplane_redfish_telemetry_value", report="PowerMetrics", metric="MaxConsumedWatts")
        == 489
    )
    assert success(samples, "telemetry") == 1.0


async def test_legacy_limit_with_log_event_only_is_not_enforced(start: Start) -> None:
    samples = await (await start(device("dmtf-rackmount"))).probe("legacy")
    assert "powerplane_redfish_power_limit_watts" not in samples
    assert value(samples, "powerplane_redfish_power_limit_enforced") == 0.0
    assert value(samples, "powerplane_redfish_power_budget_watts", kind="available") == 500.0


async def test_a_dangling_leaf_does_not_rediscover(start: Start) -> None:
    """A 404 on one PSU's Metrics is skipped from then on; discovery stays cached."""
    bmc = await start(device("dmtf-rackmount"))
    counts = []
    for _ in range(3):
        before = await bmc.requests()
        await bmc.probe("new")
        counts.append(await bmc.requests() - before)
    # The first probe discovers (root, systems, system, chassis, manager, telemetry) and learns
    # which Sensors read temperatures; the later ones repeat only the readings.
    assert counts[1] == counts[2] < counts[0] - 6


def psu_only(docs: dict[str, Any], bay2_metrics: bool) -> dict[str, Any]:
    """The rackmount chassis with PowerSubsystem alone: no EnvironmentMetrics, no Power."""
    docs = copy.deepcopy(docs)
    for link in ("EnvironmentMetrics", "Power", "Thermal", "Sensors"):
        del docs[RACK][link]
    if bay2_metrics:
        metrics = copy.deepcopy(docs[f"{RACK}/PowerSubsystem/PowerSupplies/Bay1/Metrics"])
        metrics["@odata.id"] = f"{RACK}/PowerSubsystem/PowerSupplies/Bay2/Metrics"
        metrics["InputPowerWatts"]["Reading"] = 12.6
        docs[metrics["@odata.id"]] = metrics
    return docs


async def test_psu_subsystem_alone_gives_node_power_from_the_psus(start: Start) -> None:
    samples = await (await start(psu_only(device("dmtf-rackmount"), bay2_metrics=True))).probe("new")
    assert value(samples, "powerplane_redfish_power_watts") == 950.0
    assert value(samples, "powerplane_redfish_power_source_info", source="psu_input_sum") == 1.0
    assert success(samples, "power") == 1.0


async def test_no_node_power_is_a_failed_power_collector(start: Start) -> None:
    """Bay2 has no reading: no sum of part of the supplies, and the collector says so."""
    samples = await (await start(psu_only(device("dmtf-rackmount"), bay2_metrics=False))).probe("new")
    assert "powerplane_redfish_power_watts" not in samples
    assert success(samples, "power") == 0.0
    assert success(samples, "psu") == 1.0
