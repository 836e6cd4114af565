"""The Redfish exporter against project fixtures and the simulated iDRAC fleet."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.redfish import make_server
from powerplane.exporters.redfish.config import KIND, parse_endpoint
from powerplane.exporters.redfish.parse import (
    Doc,
    PowerSnapshot,
    ThermalSnapshot,
    environment_power,
    legacy_power,
    legacy_psus,
    legacy_thermal,
    new_psu,
    new_thermal_metrics,
    newest_samples,
    summarise,
    system_info,
)
from powerplane.exporters.runtime import ConfigError, ExporterServer
from powerplane.lab.redfish import (
    CHASSIS,
    GENERIC_NOEXPAND,
    IDRAC9_R640,
    IDRAC9_R760,
    IDRAC_XE9680,
    MODELS,
    Faults,
    RedfishLab,
    SimulatedBMC,
)
from tests.conftest import IN_CI
from tests.helpers import parse, undocumented, value

FIXTURES = Path(__file__).parent / "fixtures" / "redfish"
PASSWORD = "calvin-not-in-logs"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def logged(caplog: Any) -> str:
    """Every captured log line with its structured fields, as the logfmt output would show them."""
    return "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)


def constant(load: float) -> Callable[[float], float]:
    return lambda _t: load


# --- parsers on project-written fixtures ---------------------------------------------------------


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
    assert snap.labels["model"] == "R760[31m"
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
    assert all(e.startswith("X: ") for e in errors)


# --- config ----------------------------------------------------------------------------------


def test_config_reports_every_error_and_never_the_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RF_PW", PASSWORD)
    with pytest.raises(ConfigError) as info:
        KIND.load_text(
            """
auths:
  a: {username: root, password: calvin}
  b: {username: root, password: {env: RF_PW}, tls: {insecure_skip_verify: true, ca_file: /nonexistent}}
modules: {m: {timeout: -1, collectors: {powr: true}}}
targets: {"bad host!": {}, ok.example: {auth: nope}}
colour: blue
"""
        )
    text = str(info.value)
    assert "auths.a.password: secrets cannot be written inline" in text
    assert "unknown key(s) 'colour'" in text
    assert "modules.m.timeout" in text and "'powr'" in text
    assert "calvin" not in text.replace("secrets cannot", "")
    with pytest.raises(ConfigError) as info:
        KIND.load_text(
            """
auths: {b: {username: root, password: {env: RF_PW}, tls: {insecure_skip_verify: true, ca_file: /nonexistent}}}
targets: {"bad host!": {}, ok.example: {auth: nope}}
allow: ["10.0.0.0/33"]
"""
        )
    errors = info.value.errors
    assert any("insecure_skip_verify and ca_file exclude each other" in e for e in errors)
    assert any("ca_file: /nonexistent is not a readable file" in e for e in errors)
    assert any(e.startswith("targets.bad host!") for e in errors)
    assert any("targets.ok.example.auth: unknown auth 'nope'" in e for e in errors)
    assert any(e.startswith("allow[0]") for e in errors)
    assert PASSWORD not in str(info.value)


def test_allow_list_matches_names_and_literal_addresses_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from powerplane.exporters.redfish import RedfishProber
    from powerplane.exporters.runtime import ProbeRequestError

    monkeypatch.setenv("RF_PW", PASSWORD)
    prober = RedfishProber(
        KIND.load_text(
            "auths: {idrac: {username: root, password: {env: RF_PW}}}\nallow: ['*.mgmt.example', 10.0.0.0/8]"
        )
    )
    for ok in ("idrac-1.mgmt.example", "IDRAC-2.MGMT.EXAMPLE:443", "10.1.2.3", "https://10.0.0.1"):
        assert prober.resolve({"target": ok}).target
    for refused in (
        "idrac-1.mgmt.example.evil.com",
        "10.evil.com",
        "11.0.0.1",
        "mgmt.example",
        "http://10.1.2.3",
    ):
        with pytest.raises(ProbeRequestError):
            prober.resolve({"target": refused})


def test_check_config_redacts_the_password(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from powerplane.cli import main

    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    good = tmp_path / "redfish.yml"
    good.write_text(
        f"auths: {{idrac: {{username: root, password: {{file: {secret}}}}}}}\nallow: [10.0.0.0/8]\n"
    )
    result = CliRunner().invoke(main, ["check-config", "--kind", "redfish", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid redfish config" in result.output and "<redacted>" in result.output
    assert PASSWORD not in result.output
    bad = tmp_path / "bad.yml"
    bad.write_text("auths: {idrac: {username: root, password: hunter22}}\n")
    result = CliRunner().invoke(main, ["check-config", "--kind", "redfish", str(bad)])
    assert result.exit_code == 1
    assert "auths.idrac.password: secrets cannot be written inline" in result.output
    assert "hunter22" not in result.output


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "http://",
        "host/path",
        "user@host",
        "host:99999",
        "ftp://host",
        "host?x=1",
        "a b",
        "[::1",
        "-x.example",
    ],
)
def test_endpoint_parser_refuses_anything_but_host_and_port(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(raw)


def test_collectors_as_switches_or_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_PW", PASSWORD)
    config = KIND.load_text(
        """
auths: {idrac: {username: {env: RF_PW}, password: {env: RF_PW}}}
modules:
  listed: {collectors: [power, thermal]}
  switched: {collectors: {psu: false, telemetry: true}}
"""
    )
    assert config.modules["listed"].collectors == ("power", "thermal")
    assert config.modules["switched"].collectors == ("power", "thermal", "health", "system", "telemetry")
    assert config.modules["default"].collectors == ("power", "psu", "thermal", "health", "system")
    with pytest.raises(ConfigError):
        KIND.load_text("auths: {}\nmodules: {m: {collectors: [power, powr]}}")


def test_endpoint_parser_normalises() -> None:
    assert parse_endpoint("HTTPS://iDRAC-01.Example.NET:443").hostport == "idrac-01.example.net:443"
    assert parse_endpoint("[::1]:8443").hostport == "[::1]:8443"
    assert parse_endpoint("10.0.0.5").scheme is None


# --- the exporter against the simulated fleet ------------------------------------------------------

CONFIG = """
auths:
  idrac: {username: root, password: {env: RF_PW}, max_sessions: 2}
  basic: {method: basic, username: root, password: {env: RF_PW}}
defaults: {auth: idrac, scheme: http}
modules:
  default: {timeout: 5, collectors: {telemetry: true}}
  quick: {timeout: 1}
  small: {timeout: 5, max_response_bytes: 65536}
  legacy: {schema: legacy}
allow: ["127.0.0.0/8"]
"""


@pytest.fixture
async def lab() -> AsyncIterator[RedfishLab]:
    async with RedfishLab() as running:
        yield running


Probe = Callable[..., Awaitable[tuple[int, str]]]


@pytest.fixture
async def exporter(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[ExporterServer, Probe]]:
    monkeypatch.setenv("RF_PW", PASSWORD)
    server = make_server(KIND.load_text(CONFIG))
    host, port = await server.start()
    async with aiohttp.ClientSession() as http:

        async def probe(target: str, headers: dict[str, str] | None = None, **params: str) -> tuple[int, str]:
            async with http.get(
                f"http://{host}:{port}/probe", params={"target": target, **params}, headers=headers or {}
            ) as response:
                return response.status, await response.text()

        async def metrics() -> str:
            async with http.get(f"http://{host}:{port}/metrics") as response:
                return await response.text()

        server.metrics_text = metrics  # type: ignore[attr-defined]
        yield server, probe
    await server.stop()


async def bmc(lab: RedfishLab, model: Any = IDRAC9_R760, **kwargs: Any) -> SimulatedBMC:
    kwargs.setdefault("password", PASSWORD)
    kwargs.setdefault("load", constant(0.5))
    return await lab.start_bmc(SimulatedBMC(kwargs.pop("name", model.name), model, **kwargs))


def success(samples: Any, collector: str) -> float:
    return value(samples, "powerplane_scrape_collector_success", collector=collector)


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
async def test_every_model_reports_the_simulated_node(lab: RedfishLab, exporter: Any, model: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, model)
    status, text = await probe(device.address)
    assert status == 200
    assert undocumented(text) == set()
    samples = parse(text)
    assert value(samples, "powerplane_target_up") == 1.0
    for collector in ("power", "psu", "thermal", "health", "system", "telemetry"):
        assert success(samples, collector) == 1.0, collector
    assert value(samples, "powerplane_redfish_power_watts") == device.power_watts()
    expected_source = "environment_metrics" if model.new else "power_control"
    assert value(samples, "powerplane_redfish_power_source_info", source=expected_source) == 1.0
    assert len(samples["powerplane_redfish_psu_output_watts"]) == model.psus
    assert len(samples["powerplane_redfish_fan_speed_rpm"]) == model.fans
    assert value(samples, "powerplane_redfish_power_limit_watts") == device.power_limit_watts
    assert (
        value(samples, "powerplane_redfish_temperature_summary_celsius", context="intake")
        == (device.temperatures()[0][3])
    )
    assert value(samples, "powerplane_redfish_health", resource="system", state="ok") == 1.0
    assert value(
        samples, "powerplane_redfish_system_info", model=model.model, bmc_firmware_version=model.firmware
    )
    if model.energy:
        assert value(samples, "powerplane_redfish_energy_joules_total") == pytest.approx(
            device.energy_kwh() * 3.6e6, rel=1e-6
        )
    if model.telemetry:
        assert (
            value(samples, "powerplane_redfish_telemetry_value", metric="SystemInputPower")
            == device.power_watts()
        )


async def test_values_move_with_load(lab: RedfishLab, exporter: Any) -> None:
    _server, probe = exporter
    loads = {"v": 0.1}
    device = await bmc(lab, IDRAC9_R640, load=lambda _t: loads["v"])
    low = value(parse((await probe(device.address))[1]), "powerplane_redfish_power_watts")
    loads["v"] = 0.9
    high = value(parse((await probe(device.address))[1]), "powerplane_redfish_power_watts")
    assert high > low and high == device.power_watts()


async def test_legacy_module_reads_the_legacy_schema_on_a_new_bmc(lab: RedfishLab, exporter: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R760)
    samples = parse((await probe(device.address, module="legacy"))[1])
    assert value(samples, "powerplane_redfish_power_source_info", source="power_control") == 1.0
    assert device.requests[f"{CHASSIS}/EnvironmentMetrics"] == 0


async def test_expand_is_used_and_not_per_member(lab: RedfishLab, exporter: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC_XE9680)
    assert (await probe(device.address))[0] == 200
    assert device.requests["$expand"] == 2  # PowerSupplies and Fans, one request each
    # members and their Metrics arrive inside the expansion, never requested one by one
    assert device.requests[f"{CHASSIS}/PowerSubsystem/PowerSupplies/PSU.Slot.1"] == 0
    assert device.requests[f"{CHASSIS}/PowerSubsystem/PowerSupplies/PSU.Slot.1/Metrics"] == 0
    assert device.requests[f"{CHASSIS}/ThermalSubsystem/Fans/Fan.Embedded.1"] == 0


async def test_expand_refused_falls_back_and_is_remembered(lab: RedfishLab, exporter: Any) -> None:
    _server, probe = exporter
    liar = dataclasses.replace(IDRAC_XE9680, name="liar", expand=False, announce_expand=True)
    device = await bmc(lab, liar)
    first = parse((await probe(device.address))[1])
    assert success(first, "psu") == 1.0 and success(first, "thermal") == 1.0
    assert len(first["powerplane_redfish_psu_output_watts"]) == liar.psus
    refused = device.requests["$expand"]
    assert refused >= 1
    second = parse((await probe(device.address))[1])
    assert success(second, "psu") == 1.0
    assert device.requests["$expand"] == refused


async def test_basic_auth_creates_no_session(lab: RedfishLab, exporter: Any, caplog: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, GENERIC_NOEXPAND)
    with caplog.at_level(logging.WARNING):
        samples = parse((await probe(device.address, auth="basic"))[1])
    assert value(samples, "powerplane_target_up") == 1.0
    assert device.sessions_created == 0


async def test_wrong_password_is_target_down(lab: RedfishLab, exporter: Any, caplog: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, password="another-password")
    with caplog.at_level(logging.WARNING):
        samples = parse((await probe(device.address))[1])
    assert value(samples, "powerplane_target_up") == 0.0
    assert "HTTP 401" in logged(caplog)
    assert PASSWORD not in logged(caplog)


# --- request validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"target": "192.0.2.10"}, "neither configured nor allowed"),
        ({"target": "evil.example.com"}, "neither configured nor allowed"),
        ({"target": "127.0.0.1/redfish"}, "not [http(s)://]host[:port]"),
        ({"target": "root:pw@127.0.0.1"}, "not [http(s)://]host[:port]"),
        ({"target": "https://127.0.0.1:1"}, "configured for http"),
        ({"target": "127.0.0.1:1", "module": "nope"}, "unknown module"),
        ({"target": "127.0.0.1:1", "auth": "nope"}, "unknown auth"),
        ({}, "missing 'target'"),
    ],
)
async def test_refused_probe_requests_are_400(exporter: Any, params: dict[str, str], reason: str) -> None:
    _server, probe = exporter
    target = params.pop("target", "")
    status, text = await probe(target, **params)
    assert status == 400
    assert reason in text


# --- faults ------------------------------------------------------------------------------------------


async def _probe_with_healthy_neighbour(
    lab: RedfishLab, probe: Probe, faulty: SimulatedBMC, **params: str
) -> dict[str, Any]:
    """Probe the faulty BMC and a healthy one at once; the healthy one must be unaffected."""
    healthy = await bmc(lab, IDRAC9_R760, name=f"healthy-{faulty.name}")
    (status, text), (h_status, h_text) = await asyncio.gather(
        probe(faulty.address, **params), probe(healthy.address, **params)
    )
    assert status == 200 and h_status == 200
    h_samples = parse(h_text)
    assert value(h_samples, "powerplane_target_up") == 1.0
    assert all(v == 1.0 for v in h_samples["powerplane_scrape_collector_success"].values())
    assert value(h_samples, "powerplane_redfish_power_watts") == healthy.power_watts()
    assert undocumented(text) == set()
    return parse(text)


async def test_general_error_on_thermal_keeps_power(lab: RedfishLab, exporter: Any, caplog: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, faults=Faults(general_error="/Thermal$"))
    with caplog.at_level(logging.WARNING):
        samples = await _probe_with_healthy_neighbour(lab, probe, device)
    assert value(samples, "powerplane_target_up") == 1.0
    assert success(samples, "thermal") == 0.0 and success(samples, "power") == 1.0
    assert value(samples, "powerplane_redfish_power_watts") == device.power_watts()
    assert "GET /redfish/v1/Chassis/System.Embedded.1/Thermal: HTTP 500 IDRAC.2.8.SYS446" in logged(caplog)


async def test_slow_thermal_times_out_alone(lab: RedfishLab, exporter: Any, caplog: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, faults=Faults(hang="/Thermal$"))
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        samples = await _probe_with_healthy_neighbour(lab, probe, device, module="quick")
    assert time.monotonic() - start < 3.0
    assert success(samples, "thermal") == 0.0 and success(samples, "power") == 1.0
    assert "timed out" in logged(caplog) or "deadline exceeded" in logged(caplog)


async def test_dead_bmc_is_down_within_the_scrape_timeout(lab: RedfishLab, exporter: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, faults=Faults(hang="."))
    start = time.monotonic()
    samples = await _probe_with_healthy_neighbour(
        lab, probe, device, headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
    )
    assert time.monotonic() - start < 2.5
    assert value(samples, "powerplane_target_up") == 0.0


async def test_latency_distribution_is_honoured(lab: RedfishLab, exporter: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, faults=Faults(latency=lambda: 0.2))
    start = time.monotonic()
    samples = parse((await probe(device.address))[1])
    first = time.monotonic() - start
    assert value(samples, "powerplane_target_up") == 1.0
    # discovery (root, systems, system, chassis, manager) and the login are sequential
    assert first >= 0.2 * 6
    start = time.monotonic()
    parse((await probe(device.address))[1])
    # paths and session are cached; the collectors' requests run side by side
    assert time.monotonic() - start < first / 2


async def test_malformed_json(lab: RedfishLab, exporter: Any, caplog: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, faults=Faults(malformed="/Power$"))
    with caplog.at_level(logging.WARNING):
        samples = await _probe_with_healthy_neighbour(lab, probe, device)
    assert success(samples, "power") == 0.0 and success(samples, "thermal") == 1.0
    assert "GET /redfish/v1/Chassis/System.Embedded.1/Power: malformed JSON" in logged(caplog)


async def test_missing_fields_are_named(lab: RedfishLab, exporter: Any, caplog: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, faults=Faults(missing_fields=True))
    with caplog.at_level(logging.WARNING):
        samples = await _probe_with_healthy_neighbour(lab, probe, device)
    assert success(samples, "power") == 0.0 and success(samples, "thermal") == 0.0
    assert "powerplane_redfish_power_watts" not in samples
    assert "Power: PowerControl[0].PowerConsumedWatts: missing" in logged(caplog)
    assert "Thermal: Temperatures: missing" in logged(caplog)


async def test_missing_power_on_new_schema_falls_back_to_telemetry(lab: RedfishLab, exporter: Any) -> None:
    _server, probe = exporter
    both = dataclasses.replace(IDRAC9_R760, name="no-legacy-power", legacy=False)
    device = await bmc(lab, both, faults=Faults(missing_fields=True))
    samples = parse((await probe(device.address))[1])
    assert value(samples, "powerplane_redfish_power_source_info", source="telemetry") == 1.0
    assert value(samples, "powerplane_redfish_power_watts") == device.power_watts()


async def test_wrong_types_are_named(lab: RedfishLab, exporter: Any, caplog: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, faults=Faults(wrong_types=True))
    with caplog.at_level(logging.WARNING):
        samples = await _probe_with_healthy_neighbour(lab, probe, device)
    assert success(samples, "power") == 0.0 and success(samples, "thermal") == 0.0
    assert "PowerControl[0].PowerConsumedWatts: expected a number, got str" in logged(caplog)
    assert "Temperatures[0].ReadingCelsius: expected a number, got str" in logged(caplog)
    # the well-typed parts still arrive
    assert "powerplane_redfish_psu_capacity_watts" in samples


async def test_huge_payload_is_refused(lab: RedfishLab, exporter: Any, caplog: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, faults=Faults(huge_bytes=2 * 1024 * 1024, huge_paths="/Power$"))
    with caplog.at_level(logging.WARNING):
        samples = await _probe_with_healthy_neighbour(lab, probe, device, module="small")
    assert success(samples, "power") == 0.0 and success(samples, "thermal") == 1.0
    assert "exceeds 65536" in logged(caplog)


async def test_expired_session_is_recreated(lab: RedfishLab, exporter: Any) -> None:
    _server, probe = exporter
    device = await bmc(lab, IDRAC9_R760)
    assert value(parse((await probe(device.address))[1]), "powerplane_target_up") == 1.0
    device.expire_sessions()
    samples = parse((await probe(device.address))[1])
    assert value(samples, "powerplane_target_up") == 1.0
    assert all(v == 1.0 for v in samples["powerplane_scrape_collector_success"].values())
    assert device.sessions_created == 2 and device.open_sessions() == 1


async def test_session_limit_is_reported_as_rac0218(lab: RedfishLab, exporter: Any, caplog: Any) -> None:
    server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, max_sessions=2)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # someone else holds every session
            async with http.post(
                f"http://{device.address}/redfish/v1/SessionService/Sessions",
                json={"UserName": "root", "Password": PASSWORD},
            ) as response:
                assert response.status == 201
    with caplog.at_level(logging.WARNING):
        samples = await _probe_with_healthy_neighbour(lab, probe, device)
    assert value(samples, "powerplane_target_up") == 0.0
    assert "RAC0218: the BMC's maximum number of sessions is reached" in logged(caplog)
    own = parse(await server.metrics_text())
    assert value(own, "powerplane_redfish_login_failures_total", reason="session_limit") == 1.0
    device.sessions.clear()  # the other sessions end: the next probe logs in
    assert value(parse((await probe(device.address))[1]), "powerplane_target_up") == 1.0


async def test_concurrent_probes_coalesce(lab: RedfishLab, exporter: Any) -> None:
    server, probe = exporter
    device = await bmc(lab, IDRAC9_R640, faults=Faults(latency=lambda: 0.05))
    results = await asyncio.gather(*(probe(device.address) for _ in range(5)))
    assert all(value(parse(text), "powerplane_target_up") == 1.0 for _status, text in results)
    assert device.requests[f"{CHASSIS}/Power"] == 1
    assert device.sessions_created == 1
    own = parse(await server.metrics_text())
    assert value(own, "powerplane_probes_coalesced_total") == 4.0


async def test_no_session_leak_after_1000_probes(lab: RedfishLab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_PW", PASSWORD)
    device = await bmc(lab, IDRAC9_R640, max_sessions=8)
    server = make_server(KIND.load_text(CONFIG))
    host, port = await server.start()
    up = 0
    async with aiohttp.ClientSession() as http:

        async def one(module: str) -> None:
            nonlocal up
            async with http.get(
                f"http://{host}:{port}/probe", params={"target": device.address, "module": module}
            ) as response:
                up += int(value(parse(await response.text()), "powerplane_target_up"))

        for batch in range(50):
            if batch % 10 == 9:
                device.expire_sessions()  # the BMC drops sessions now and then
            await asyncio.gather(*(one("legacy" if i % 2 else "default") for i in range(20)))
            assert device.open_sessions() <= 1
    assert up == 1000
    assert device.peak_sessions == 1 and device.sessions_refused == 0
    assert device.sessions_created == 1 + 5  # the first, then one after each of the 5 expiries
    await server.stop()
    assert device.open_sessions() == 0
    assert device.sessions_deleted == 1  # the expired ones were gone already


async def test_shutdown_deletes_sessions_and_secrets_stay_out(
    lab: RedfishLab, exporter: Any, caplog: Any
) -> None:
    server, probe = exporter
    devices = [await bmc(lab, m, name=f"s-{m.name}") for m in (IDRAC9_R640, IDRAC9_R760)]
    with caplog.at_level(logging.DEBUG):
        for device in devices:
            await probe(device.address)
        own = await server.metrics_text()
        assert value(parse(own), "powerplane_redfish_sessions") == 2.0
        await server.stop()
    assert [d.open_sessions() for d in devices] == [0, 0]
    assert PASSWORD not in logged(caplog) and PASSWORD not in own
    assert not any(s.token in logged(caplog) for d in devices for s in d.sessions.values())


# --- TLS ---------------------------------------------------------------------------------------------


async def test_tls_is_verified_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    try:
        import trustme
    except ImportError:
        if IN_CI:
            pytest.fail("REAL COMPONENT MISSING: trustme (pip install -e '.[test]')")
        pytest.skip("REAL COMPONENT MISSING: trustme (pip install -e '.[test]')")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "bmc-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("RF_PW", PASSWORD)
    config = KIND.load_text(
        f"""
auths:
  verified: {{username: root, password: {{env: RF_PW}}, tls: {{ca_file: {ca_file}}}}}
  default: {{username: root, password: {{env: RF_PW}}}}
  insecure: {{username: root, password: {{env: RF_PW}}, tls: {{insecure_skip_verify: true}}}}
allow: ["127.0.0.0/8"]
"""
    )
    async with RedfishLab(ssl_context=server_context) as tls_lab:
        device = await bmc(tls_lab, IDRAC9_R640)
        server = make_server(config)
        host, port = await server.start()
        results = {}
        try:
            async with aiohttp.ClientSession() as http:
                with caplog.at_level(logging.WARNING):
                    for auth in ("verified", "default", "insecure"):
                        async with http.get(
                            f"http://{host}:{port}/probe", params={"target": device.address, "auth": auth}
                        ) as response:
                            results[auth] = value(parse(await response.text()), "powerplane_target_up")
                    # plain HTTP to a configured-HTTPS target is refused, not attempted
                    async with http.get(
                        f"http://{host}:{port}/probe", params={"target": f"http://{device.address}"}
                    ) as response:
                        assert response.status == 400
        finally:
            await server.stop()
    assert results == {"verified": 1.0, "default": 0.0, "insecure": 1.0}
    assert "certificate verify failed" in logged(caplog)
    assert device.open_sessions() == 0


# --- demo ----------------------------------------------------------------------------------------------


async def test_demo_component_follows_the_nodes_model(tmp_path: Path) -> None:
    import contextlib

    from powerplane.lab.demo import DemoContext
    from powerplane.lab.redfish import redfish_component

    async with contextlib.AsyncExitStack() as stack:
        ctx = DemoContext(tmp_path, ["node-01", "node-02"], stack)
        await redfish_component(ctx)
        job = next(c for c in ctx.scrape_configs if c["job_name"] == "powerplane-redfish-probe")
        exporter = job["relabel_configs"][-1]["replacement"]
        async with aiohttp.ClientSession() as http:
            for static in job["static_configs"]:
                node = static["labels"]["node"]
                async with http.get(
                    f"http://{exporter}/probe", params={"target": static["targets"][0]}
                ) as response:
                    samples = parse(await response.text())
                assert value(samples, "powerplane_target_up") == 1.0
                truth = ctx.cluster().snapshot.nodes[node].input_w
                # the BMC reads the node's physical model (which moves between reads)
                assert value(samples, "powerplane_redfish_power_watts") == pytest.approx(truth, rel=0.05)
        assert (tmp_path / "redfish-password").stat().st_mode & 0o077 == 0
