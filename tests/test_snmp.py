"""The SNMP exporter against real agents: snmpsim with the APC AP8641 recording and the project's
recordings, and the net-snmp snmpd (v1, v2c, v3 authPriv)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from powerplane.exporters.runtime import ConfigError
from powerplane.exporters.snmp.exporter import CATALOGUE, KIND, make_server
from powerplane.exporters.snmp.profiles import PROFILE_SCHEMA, profile_kind
from powerplane.lab import procs
from powerplane.lab.snmp import (
    BUILDERS,
    COUNTER32,
    INTEGER,
    OCTETS,
    RECORDINGS,
    V3_AUTH,
    V3_PRIV,
    V3_USER,
    Row,
    Snmpd,
    Snmpsim,
    apc_recording,
    snmprec_text,
)

from .conftest import IN_CI, require_binary
from .helpers import parse, undocumented, value

APC = "1.3.6.1.4.1.318.1.1.26"


def require_snmpsim() -> Path:
    recording = apc_recording()
    if recording is None:
        message = "REAL COMPONENT MISSING: snmpsim-data is not installed (run scripts/setup)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return recording


def _bad_device() -> str:
    """A PDU that answers some columns wrongly: types, sentinels and a missing table."""
    rows = [
        Row("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.318.1.3.4.6"),
        Row(f"{APC}.4.3.1.5.1", OCTETS, "lots"),  # device power as a string
        Row(f"{APC}.4.3.1.9.1", INTEGER, 1000),
        Row(f"{APC}.6.3.1.3.1", INTEGER, 1),
        Row(f"{APC}.6.3.1.5.1", INTEGER, 50),
        Row(f"{APC}.6.3.1.6.1", INTEGER, 230),
        Row(f"{APC}.6.3.1.7.1", INTEGER, -1),  # sentinel: dropped
        Row(f"{APC}.9.4.3.1.3.1", OCTETS, "a"),
        Row(f"{APC}.9.4.3.1.4.1", INTEGER, 1),
        Row(f"{APC}.9.4.3.1.7.1", COUNTER32, 100),
        Row(f"{APC}.9.4.3.1.11.1", INTEGER, 10),
    ]
    return snmprec_text(rows)


def _slow_device() -> str:
    """The AP8641's device table, with the outlet table answering only after 3 s."""
    rows = [
        Row("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.318.1.3.4.6"),
        Row(f"{APC}.4.3.1.5.1", INTEGER, 121),
        Row(f"{APC}.4.3.1.9.1", INTEGER, 19516),
        Row(f"{APC}.9.4.3.1.3.1", "4:delay", "value=x,wait=3000"),
    ]
    # Keep the delayed cell out of the device table's bulk responses (they read ahead 25 OIDs).
    rows += [Row(f"{APC}.4.3.1.20.{i}", INTEGER, 0) for i in range(1, 40)]
    return snmprec_text(rows)


def _endless_device(rows: int = 30000) -> str:
    lines = [Row("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.318.1.3.4.6")]
    lines += [Row(f"{APC}.9.4.3.1.7.{i}", INTEGER, 1) for i in range(1, rows)]
    return snmprec_text(lines)


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpsim]:
    recording = require_snmpsim()
    recordings: dict[str, Path | str] = {
        "apc-8641": recording,
        "bad-pdu": _bad_device(),
        "slow-pdu": _slow_device(),
        "endless-pdu": _endless_device(),
        "writable-pdu": _writable_device(),
    }
    for community in BUILDERS:
        recordings[community] = RECORDINGS / f"{community}.snmprec"
    with Snmpsim(tmp_path_factory.mktemp("snmpsim"), recordings) as sim:
        yield sim


def _writable_device() -> str:
    return snmprec_text(
        [
            Row("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.318.1.3.4.6"),
            Row(f"{APC}.4.3.1.5.1", INTEGER, 100),
            Row(f"{APC}.4.3.1.9.1", "2:writecache", "value=5000"),
        ]
    )


def _config(tmp_path: Path, communities: list[str], extra: str = "") -> object:
    auths = {}
    for community in communities:
        secret = tmp_path / f"community-{community}"
        secret.write_text(community + "\n")
        auths[community] = {"version": 2, "community": {"file": str(secret)}}
    doc = {"auths": auths, "allow": ["127.0.0.0/8"], "timeout": 5, "max_rows": 2000}
    return KIND.load_text(yaml.safe_dump(doc) + extra)


def _probe(
    loop: procs.BackgroundLoop, server: object, query: str, timeout_header: str | None = None
) -> tuple[int, str]:
    host, port = loop.run(server.start())  # type: ignore[attr-defined]
    try:
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": timeout_header} if timeout_header else {}
        status, body = procs.http_get(f"http://{host}:{port}/probe?{query}", timeout=30, headers=headers)
        return status, body.decode()
    finally:
        loop.run(server.stop())  # type: ignore[attr-defined]


# --- profiles and config ------------------------------------------------------------------


def test_every_builtin_profile_validates_and_only_declared_metrics() -> None:
    config = KIND.load_text("auths: {a: {version: 2, community: {env: HOME}}}\n")
    assert set(config.profiles) == {
        "apc_rpdu2",
        "raritan_pdu2",
        "servertech_sentry4",
        "vertiv_geist_v5",
        "apc_inrow",
        "apc_inrow_rp",
        "apc_inrow_rd",
    }
    for profile in config.profiles.values():
        for table in profile.tables:
            for rule in table.rules:
                assert rule.metric in CATALOGUE


def _table(metric: str, column: str) -> dict[str, object]:
    """A one-table profile fragment mapping ``metric`` to ``column`` (only column p exists)."""
    return {"name": "t", "columns": {"p": "1.2.3"}, "metrics": [{"metric": metric, "column": column}]}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"tables": [_table("powerplane_pdu_power_watts", "q")]}, "column 'q'"),
        ({"tables": [_table("powerplane_pdu_nope_watts", "p")]}, "unknown metric"),
        ({"tables": [_table("powerplane_pdu_phase_power_watts", "p")]}, "needs labels"),
        ({"tables": [_table("powerplane_pdu_energy_joules_total", "p")]}, "counter"),
        ({"sys_object_ids": ["not-an-oid"]}, "sys_object_ids.0"),
        ({"surprise": 1}, "unknown key"),
    ],
)
def test_bad_profiles_are_rejected_with_the_field(patch: dict[str, object], expected: str) -> None:
    doc: dict[str, object] = {
        "name": "x",
        "kind": "pdu",
        "sys_object_ids": ["1.3.6.1.4.1.99"],
        "tables": [
            {
                "name": "t",
                "columns": {"p": "1.2.3"},
                "metrics": [{"metric": "powerplane_pdu_power_watts", "column": "p"}],
            }
        ],
    }
    doc.update(patch)
    with pytest.raises(ConfigError) as info:
        profile_kind(CATALOGUE).load_text(yaml.safe_dump(doc))
    assert expected in str(info.value)
    assert PROFILE_SCHEMA["additionalProperties"] is False


def test_per_device_concurrency_is_explicit_and_bounded(tmp_path: Path) -> None:
    (tmp_path / "c").write_text("public")
    base = f"auths:\n  a: {{version: 2, community: {{file: {tmp_path / 'c'}}}}}\n"
    assert KIND.load_text(base).per_device_concurrency == 2  # the runtime's default
    config = KIND.load_text(base + "per_device_concurrency: 6\n")
    assert make_server(config)._probe_concurrency[1] == 6
    for bad in ("0", "65", "two"):
        with pytest.raises(ConfigError):
            KIND.load_text(base + f"per_device_concurrency: {bad}\n")


async def test_profile_max_repetitions_reach_every_walk(tmp_path: Path) -> None:
    from powerplane.exporters.runtime import Deadline, FailureLog, run_collectors
    from powerplane.exporters.snmp.exporter import SnmpProber

    sizes: list[int | None] = []

    class Recording:
        """A session that records the GETBULK size each walk asks for."""

        def __init__(self, *_args: object) -> None:
            pass

        async def get(self, oids: object, deadline: object) -> dict[str, object]:
            return {}

        async def walk(
            self, column: str, deadline: object, max_rows: int, max_repetitions: int | None = None
        ) -> list:
            sizes.append(max_repetitions)
            return []

        async def close(self) -> None:
            pass

    (tmp_path / "c").write_text("public")
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "small_bulk",
                "kind": "pdu",
                "sys_object_ids": ["1.3.6.1.4.1.99999"],
                "max_repetitions": 7,
                "tables": [_table("powerplane_pdu_power_watts", "p")],
            }
        )
    )
    config = KIND.load_text(
        f"auths:\n  a: {{version: 2, community: {{file: {tmp_path / 'c'}}}}}\n"
        f"allow: [127.0.0.1/32]\nprofile_files: [{tmp_path / 'p.yaml'}]\n"
    )
    job = SnmpProber(config, session_factory=Recording).resolve(
        {"target": "127.0.0.1:161", "module": "small_bulk", "auth": "a"}
    )
    await run_collectors("snmp", job.collectors, Deadline.after(5), FailureLog(logging.getLogger("t")))
    assert sizes == [7]


def test_config_errors_all_at_once_and_no_secret_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNMP_SECRET_X", "hunter2-secret")
    text = (
        "auths:\n"
        "  a: {version: 3, username: u, auth_protocol: SHA, auth_password: {env: SNMP_SECRET_X}}\n"
        "  b: {version: 2, community: public}\n"
        "targets:\n  t: {address: 'h:99999', auth: zz}\n"
        "allow: [nonsense]\n"
    )
    with pytest.raises(ConfigError) as info:
        KIND.load_text(text)
    message = str(info.value)
    assert "secrets cannot be written inline" in message
    with pytest.raises(ConfigError) as info:
        KIND.load_text(text.replace("community: public", "community: {env: SNMP_SECRET_X}"))
    message = str(info.value)
    for expected in ("authPriv needs priv_protocol", "invalid port", "unknown auth 'zz'", "allow[0]"):
        assert expected in message
    assert "hunter2" not in message


def test_unknown_targets_modules_and_auths_get_400(
    tmp_path: Path, background_loop: procs.BackgroundLoop
) -> None:
    config = _config(tmp_path, ["apc-8641"], "targets:\n  pdu1: {address: '127.0.0.1:1', auth: apc-8641}\n")
    server = make_server(config)
    host, port = background_loop.run(server.start())
    try:
        for query, fragment in (
            ("target=10.1.2.3", "allow-list"),
            ("target=evil.example.com", "not configured"),
            ("", "missing target"),
            ("target=pdu1&module=nope", "unknown module"),
            ("target=pdu1&auth=nope", "unknown auth"),
        ):
            status, body = procs.http_get(f"http://{host}:{port}/probe?{query}")
            assert status == 400, query
            assert fragment in body.decode()
    finally:
        background_loop.run(server.stop())


# --- values against recordings --------------------------------------------------------------


def test_ap8641_values_units_and_auto_detection(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    config = _config(tmp_path, ["apc-8641"])
    status, text = _probe(background_loop, make_server(config), f"target=127.0.0.1:{agents.port}")
    assert status == 200
    samples = parse(text)
    assert undocumented(text) == set()
    assert value(samples, "powerplane_target_up") == 1
    # rPDU2DeviceStatusPower 121 (hundredths of kW), Energy 19516 (tenths of kWh)
    device_watts = value(samples, "powerplane_pdu_power_watts")
    assert device_watts == pytest.approx(1210.0)
    assert value(samples, "powerplane_pdu_energy_joules_total") == pytest.approx(1951.6 * 3.6e6)
    assert value(samples, "powerplane_pdu_phase_current_amperes", phase="1") == pytest.approx(6.5)
    assert value(samples, "powerplane_pdu_phase_voltage_volts", phase="1") == pytest.approx(201.0)
    outlets = samples["powerplane_pdu_outlet_power_watts"]
    assert len(outlets) == 24
    assert sum(outlets.values()) == pytest.approx(device_watts, rel=0.15)
    assert (
        value(samples, "powerplane_pdu_outlet_power_watts", outlet="1", outlet_name="CP-CM-SAN-01") == 163.0
    )
    assert value(samples, "powerplane_pdu_outlet_current_amperes", outlet="1") == pytest.approx(0.9)
    # The sensor table answers -1 (no probe attached): dropped, not exposed as -0.1 C.
    assert "powerplane_pdu_sensor_temperature_celsius" not in samples
    assert all(v == 1 for v in samples["powerplane_scrape_collector_success"].values())


@pytest.mark.parametrize(
    ("community", "module", "checks"),
    [
        (
            "raritan-px3",
            "raritan_pdu2",
            [
                ("powerplane_pdu_power_watts", {}, 2840.0),
                ("powerplane_pdu_phase_current_amperes", {"phase": "1"}, 1.2345),
                ("powerplane_pdu_phase_voltage_volts", {"phase": "1"}, 230.0),
                ("powerplane_pdu_energy_joules_total", {}, 1234567 * 3600.0),
                ("powerplane_pdu_outlet_power_watts", {"outlet": "3", "outlet_name": "node-03"}, 375.0),
                ("powerplane_pdu_outlet_current_amperes", {"outlet": "2"}, 1.5),
            ],
        ),
        (
            "sentry4",
            "servertech_sentry4",
            [
                ("powerplane_pdu_power_watts", {}, 3120.0),
                ("powerplane_pdu_energy_joules_total", {}, 4567.8 * 3.6e6),
                ("powerplane_pdu_phase_voltage_volts", {"phase": "2"}, 230.2),
                ("powerplane_pdu_phase_current_amperes", {"phase": "3"}, 4.53),
                ("powerplane_pdu_outlet_current_amperes", {"outlet": "1", "outlet_name": "node-01"}, 1.6),
                ("powerplane_pdu_outlet_energy_joules_total", {"outlet": "2"}, 200000 * 3600.0),
                ("powerplane_pdu_sensor_temperature_celsius", {"sensor": "1"}, 24.5),
                ("powerplane_pdu_sensor_humidity_ratio", {"sensor": "1"}, 0.45),
            ],
        ),
        (
            "vertiv-v5",
            "vertiv_geist_v5",
            [
                ("powerplane_pdu_power_watts", {}, 2500.0),
                ("powerplane_pdu_phase_voltage_volts", {"phase": "L1"}, 229.1),
                ("powerplane_pdu_outlet_power_watts", {"outlet": "4", "outlet_name": "node-04"}, 320.0),
                ("powerplane_pdu_sensor_temperature_celsius", {"sensor": "1"}, 23.1),
            ],
        ),
        (
            "apc-inrow",
            "apc_inrow",
            [
                ("powerplane_cooling_output_watts", {}, 11800.0),
                ("powerplane_cooling_demand_watts", {}, 12000.0),
                ("powerplane_cooling_group_output_watts", {}, 23600.0),
                ("powerplane_cooling_airflow_cubic_meters_per_second", {}, 1.25),
                ("powerplane_cooling_temperature_celsius", {"point": "rack_inlet"}, 22.4),
                ("powerplane_cooling_temperature_celsius", {"point": "fluid_out"}, 17.0),
                ("powerplane_cooling_fan_speed_ratio", {}, 0.655),
                ("powerplane_cooling_leak_detected", {}, 0.0),
            ],
        ),
    ],
)
def test_profiles_against_project_recordings(
    tmp_path: Path,
    agents: Snmpsim,
    background_loop: procs.BackgroundLoop,
    community: str,
    module: str,
    checks: list[tuple[str, dict[str, str], float]],
) -> None:
    config = _config(tmp_path, [community])
    for query in (f"module={module}", ""):  # named, then auto-detected from sysObjectID
        status, text = _probe(background_loop, make_server(config), f"target=127.0.0.1:{agents.port}&{query}")
        assert status == 200
        samples = parse(text)
        assert undocumented(text) == set()
        assert all(v == 1 for v in samples["powerplane_scrape_collector_success"].values()), text
        for name, labels, expected in checks:
            assert value(samples, name, **labels) == pytest.approx(expected), name


# --- bad devices -----------------------------------------------------------------------------


def test_wrong_types_sentinels_and_missing_tables(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    config = _config(tmp_path, ["bad-pdu"])
    status, text = _probe(
        background_loop, make_server(config), f"target=127.0.0.1:{agents.port}&module=apc_rpdu2"
    )
    assert status == 200
    samples = parse(text)
    success = samples["powerplane_scrape_collector_success"]
    assert value(samples, "powerplane_target_up") == 1
    assert success[(("collector", "device"), ("exporter", "snmp"))] == 0  # power is a string
    assert success[(("collector", "bank"), ("exporter", "snmp"))] == 0  # noSuchObject: table absent
    assert success[(("collector", "phase"), ("exporter", "snmp"))] == 1
    assert "powerplane_pdu_power_watts" not in samples
    assert value(samples, "powerplane_pdu_energy_joules_total") == pytest.approx(3.6e8)
    assert "powerplane_pdu_phase_power_watts" not in samples  # -1 sentinel
    assert value(samples, "powerplane_pdu_phase_current_amperes", phase="1") == 5.0
    assert value(samples, "powerplane_pdu_outlet_power_watts", outlet="1") == 100.0


def test_wrong_community_is_down_within_the_deadline(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    config = _config(tmp_path, ["no-such-community"])
    start = time.monotonic()
    status, text = _probe(
        background_loop, make_server(config), f"target=127.0.0.1:{agents.port}&module=apc_rpdu2", "2"
    )
    elapsed = time.monotonic() - start
    assert status == 200
    assert value(parse(text), "powerplane_target_up") == 0
    assert elapsed < 2.5


def test_slow_table_gives_partial_results_before_the_scrape_timeout(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    config = _config(tmp_path, ["slow-pdu"])
    start = time.monotonic()
    status, text = _probe(
        background_loop, make_server(config), f"target=127.0.0.1:{agents.port}&module=apc_rpdu2", "2"
    )
    elapsed = time.monotonic() - start
    samples = parse(text)
    assert status == 200 and elapsed < 2.5
    assert value(samples, "powerplane_target_up") == 1
    assert value(samples, "powerplane_pdu_power_watts") == pytest.approx(1210.0)
    assert (
        samples["powerplane_scrape_collector_success"][(("collector", "outlet"), ("exporter", "snmp"))] == 0
    )


def test_endless_table_is_cut_off(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    config = _config(tmp_path, ["endless-pdu"])
    start = time.monotonic()
    status, text = _probe(
        background_loop, make_server(config), f"target=127.0.0.1:{agents.port}&module=apc_rpdu2", "4"
    )
    assert status == 200 and time.monotonic() - start < 4
    samples = parse(text)
    assert (
        samples["powerplane_scrape_collector_success"][(("collector", "outlet"), ("exporter", "snmp"))] == 0
    )


def test_energy_meter_reset_keeps_the_counter_monotonic(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    from gufo.snmp.sync.client import SnmpSession

    config = _config(tmp_path, ["writable-pdu"])
    server = make_server(config)
    host, port = background_loop.run(server.start())
    url = f"http://{host}:{port}/probe?target=127.0.0.1:{agents.port}&module=apc_rpdu2"
    try:
        first = value(parse(procs.http_get(url)[1].decode()), "powerplane_pdu_energy_joules_total")
        assert first == pytest.approx(500.0 * 3.6e6)
        # The operator clears the meter: the device now reads 20 (2 kWh).
        _snmpset(agents.port, "writable-pdu", f"{APC}.4.3.1.9.1", 20)
        with SnmpSession(addr="127.0.0.1", port=agents.port, community="writable-pdu") as session:
            assert session.get(f"{APC}.4.3.1.9.1") == 20
        second = value(parse(procs.http_get(url)[1].decode()), "powerplane_pdu_energy_joules_total")
        assert second == pytest.approx(first + 2.0 * 3.6e6)
    finally:
        background_loop.run(server.stop())


def _snmpset(port: int, community: str, oid: str, number: int) -> None:
    import subprocess

    binary = require_binary("snmpset")
    subprocess.run(
        [binary, "-v2c", "-c", community, f"127.0.0.1:{port}", oid, "i", str(number)],
        check=True,
        capture_output=True,
        timeout=10,
    )


def test_concurrent_probes_of_one_target_are_coalesced(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    config = _config(tmp_path, ["apc-8641"])
    server = make_server(config)
    host, port = background_loop.run(server.start())
    try:

        async def many() -> list[int]:
            import aiohttp

            async with aiohttp.ClientSession() as client:

                async def one() -> int:
                    async with client.get(
                        f"http://{host}:{port}/probe?target=127.0.0.1:{agents.port}&module=apc_rpdu2"
                    ) as r:
                        await r.read()
                        return r.status

                return list(await asyncio.gather(*(one() for _ in range(5))))

        assert background_loop.run(many()) == [200] * 5
        own = parse(procs.http_get(f"http://{host}:{port}/metrics")[1].decode())
        assert sum(own.get("powerplane_probes_coalesced_total", {}).values()) >= 1
    finally:
        background_loop.run(server.stop())


# --- snmpd: versions --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpd]:
    require_binary("snmpd")
    with Snmpd(tmp_path_factory.mktemp("snmpd")) as agent:
        yield agent


@pytest.mark.parametrize("auth", ["v1", "v2c", "v3", "v3-wrong"])
def test_versions_against_snmpd(
    tmp_path: Path,
    snmpd: Snmpd,
    background_loop: procs.BackgroundLoop,
    auth: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("T_COMMUNITY", "public")
    monkeypatch.setenv("T_AUTH", V3_AUTH)
    monkeypatch.setenv("T_PRIV", V3_PRIV if auth != "v3-wrong" else "not-the-password")
    profile = tmp_path / "host.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "name": "host_probe",
                "kind": "pdu",
                "sys_object_ids": ["1.3.6.1.4.1.8072.3.2"],
                "tables": [
                    {
                        "name": "uptime",
                        "columns": {"services": "1.3.6.1.2.1.1.7"},
                        "metrics": [{"metric": "powerplane_pdu_power_watts", "column": "services"}],
                    }
                ],
            }
        )
    )
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "auths": {
                    "v1": {"version": 1, "community": {"env": "T_COMMUNITY"}},
                    "v2c": {"version": 2, "community": {"env": "T_COMMUNITY"}},
                    "v3": {
                        "version": 3,
                        "username": V3_USER,
                        "auth_protocol": "SHA",
                        "auth_password": {"env": "T_AUTH"},
                        "priv_protocol": "AES",
                        "priv_password": {"env": "T_PRIV"},
                    },
                    "v3-wrong": {
                        "version": 3,
                        "username": V3_USER,
                        "auth_protocol": "SHA",
                        "auth_password": {"env": "T_AUTH"},
                        "priv_protocol": "AES",
                        "priv_password": {"env": "T_PRIV"},
                    },
                },
                "default_auth": "v2c",
                "allow": ["127.0.0.1/32"],
                "timeout": 3,
                "profile_files": [str(profile)],
            }
        )
    )
    status, text = _probe(
        background_loop, make_server(config), f"target=127.0.0.1:{snmpd.port}&auth={auth}", "2"
    )
    samples = parse(text)
    assert status == 200
    if auth == "v3-wrong":
        assert value(samples, "powerplane_target_up") == 0
        assert "not-the-password" not in text
    else:
        assert value(samples, "powerplane_target_up") == 1
        assert value(samples, "powerplane_pdu_power_watts") == 72.0  # sysServices from the generated config


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_prometheus_scrapes_the_simulated_rack(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop, prometheus: object
) -> None:
    communities = ["apc-8641", "raritan-px3", "apc-inrow"]
    config = _config(tmp_path, communities)
    server = make_server(config)
    host, port = background_loop.run(server.start())
    try:
        scrape_configs = [
            {
                "job_name": f"snmp-{c}",
                "metrics_path": "/probe",
                "params": {"auth": [c]},
                "scrape_interval": "2s",
                "scrape_timeout": "2s",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{agents.port}"],
                        "labels": {"cooler" if "inrow" in c else "pdu": c},
                    }
                ],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"target_label": "__address__", "replacement": f"{host}:{port}"},
                ],
            }
            for c in communities
        ]
        prom = prometheus(scrape_configs)  # type: ignore[operator]
        prom.wait_targets_up(3, timeout=60)
        assert prom.wait_value('powerplane_pdu_power_watts{pdu="apc-8641"}') == pytest.approx(1210.0)
        assert prom.wait_value('powerplane_pdu_power_watts{pdu="raritan-px3"}') == pytest.approx(2840.0)
        assert prom.wait_value('powerplane_cooling_output_watts{cooler="apc-inrow"}') == pytest.approx(
            11800.0
        )
        assert prom.wait_value('sum(powerplane_target_up{job=~"snmp-.*"})') == 3
    finally:
        background_loop.run(server.stop())
