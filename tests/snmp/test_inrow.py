"""The APC InRow profiles (RC, RP DX, RD DX) against snmpsim serving recordings written from the
PowerNet MIB: values and units, operating mode, run hours as counters across an hour-meter
reset, active alarms, and devices that answer wrongly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from powerplane.exporters.snmp.exporter import make_server
from powerplane.lab import procs
from powerplane.lab.snmp import Snmpsim, snmpsim_runtime

from ..conftest import IN_CI
from ..helpers import parse, undocumented, value
from .conftest import snmp_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "snmp"
HOUR, WEEK = 3600.0, 604800.0
RC_RUN = "1.3.6.1.4.1.318.1.1.13.3.2.2.3"


def _recording(name: str) -> str:
    return (FIXTURES / f"{name}.snmprec").read_text()


def _hostile_rp() -> str:
    """The RP recording with an unknown operating mode, a run-hours cell that is a string, a
    -1 sentinel for the suction pressure and no airIR alarm table."""
    lines = []
    for line in _recording("apc-inrow-rp").splitlines():
        oid = line.split("|", 1)[0]
        if oid == "1.3.6.1.4.1.318.1.1.13.3.3.1.2.2.1.0":
            line = f"{oid}|2|9"
        elif oid == "1.3.6.1.4.1.318.1.1.13.3.3.1.2.3.4.0":
            line = f"{oid}|4|thirty thousand"
        elif oid == "1.3.6.1.4.1.318.1.1.13.3.3.1.2.2.47.0":
            line = f"{oid}|2|-1"
        elif oid.startswith("1.3.6.1.4.1.318.1.1.13.3.1."):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpsim]:
    try:
        snmpsim_runtime()
    except FileNotFoundError as exc:
        message = f"REAL COMPONENT MISSING: {exc} (run scripts/setup)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    recordings: dict[str, Path | str] = {
        name: FIXTURES / f"{name}.snmprec" for name in ("apc-inrow-rc", "apc-inrow-rp", "apc-inrow-rd")
    }
    recordings["hostile-rp"] = _hostile_rp()
    with Snmpsim(tmp_path_factory.mktemp("snmpsim"), recordings) as sim:
        yield sim


class Prober:
    """One exporter kept running, so its counters carry from probe to probe."""

    def __init__(self, loop: procs.BackgroundLoop, tmp_path: Path, community: str, port: int) -> None:
        self.loop, self.server = loop, make_server(snmp_config(tmp_path, [community]))
        self.port = port

    def __enter__(self) -> Prober:
        self.host, self.http_port = self.loop.run(self.server.start())  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.run(self.server.stop())  # type: ignore[attr-defined]

    def probe(self, module: str = "") -> tuple[dict[str, dict[tuple[tuple[str, str], ...], float]], str]:
        query = f"target=127.0.0.1:{self.port}" + (f"&module={module}" if module else "")
        status, body = procs.http_get(f"http://{self.host}:{self.http_port}/probe?{query}", timeout=30)
        assert status == 200, body.decode(errors="replace")
        text = body.decode()
        return parse(text), text


def _success(samples: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> dict[str, float]:
    return {dict(k)["collector"]: v for k, v in samples["powerplane_scrape_collector_success"].items()}


RC = [
    ("powerplane_cooling_operating_mode", {"mode": "on"}, 1.0),
    ("powerplane_cooling_operating_mode", {"mode": "standby"}, 0.0),
    ("powerplane_cooling_operating_mode", {"mode": "idle"}, 0.0),
    ("powerplane_cooling_active_alarms", {}, 0.0),
    ("powerplane_cooling_run_seconds_total", {"part": "air_filter"}, 1500 * HOUR),
    # Scalar meters share the row index 0: each keeps its own reading.
    ("powerplane_cooling_run_seconds_total", {"part": "fan_1"}, 41230 * HOUR),
    ("powerplane_cooling_run_seconds_total", {"part": "fan_2"}, 41220 * HOUR),
    ("powerplane_cooling_run_seconds_total", {"part": "fan_3"}, 12 * HOUR),
    ("powerplane_cooling_filter_run_seconds", {}, 1500 * HOUR),
    ("powerplane_cooling_filter_service_interval_seconds", {}, 12 * WEEK),
    ("powerplane_cooling_output_watts", {}, 11800.0),
    ("powerplane_cooling_group_output_watts", {}, 23600.0),
]
RP = [
    ("powerplane_cooling_operating_mode", {"mode": "standby"}, 1.0),
    ("powerplane_cooling_operating_mode", {"mode": "on"}, 0.0),
    ("powerplane_cooling_operating_mode", {"mode": "backup"}, 0.0),
    ("powerplane_cooling_operating_mode", {"mode": "assist"}, 0.0),
    ("powerplane_cooling_active_alarms", {}, 2.0),
    ("powerplane_cooling_run_seconds_total", {"part": "air_filter"}, 2300 * HOUR),
    ("powerplane_cooling_run_seconds_total", {"part": "fan_1"}, 30610 * HOUR),
    ("powerplane_cooling_run_seconds_total", {"part": "fan_2"}, 30605 * HOUR),
    ("powerplane_cooling_run_seconds_total", {"part": "compressor"}, 28750 * HOUR),
    ("powerplane_cooling_filter_run_seconds", {}, 2300 * HOUR),
    ("powerplane_cooling_filter_service_interval_seconds", {}, 12 * WEEK),
    ("powerplane_cooling_compressor_speed_hertz", {}, 0.0),
    ("powerplane_cooling_refrigerant_pressure_pascals", {"point": "suction"}, 1.12e6),
    ("powerplane_cooling_refrigerant_pressure_pascals", {"point": "discharge"}, 2.65e6),
    ("powerplane_cooling_humidity_ratio", {}, 0.451),
    ("powerplane_cooling_airflow_cubic_meters_per_second", {}, 0.95),
    ("powerplane_cooling_temperature_celsius", {"point": "rack_inlet"}, 22.5),
    ("powerplane_cooling_temperature_celsius", {"point": "return"}, 32.0),
    ("powerplane_cooling_output_watts", {}, 0.0),
    ("powerplane_cooling_leak_detected", {}, 0.0),
]
RD = [
    ("powerplane_cooling_operating_mode", {"mode": "on"}, 1.0),
    ("powerplane_cooling_operating_mode", {"mode": "service"}, 0.0),
    ("powerplane_cooling_active_alarms", {}, 1.0),
    ("powerplane_cooling_compressor_running", {}, 1.0),
    ("powerplane_cooling_run_seconds_total", {"part": "compressor"}, 17250 * HOUR),
    ("powerplane_cooling_run_seconds_total", {"part": "air_filter"}, 1900 * HOUR),
    ("powerplane_cooling_run_seconds_total", {"part": "fan_1"}, 20110 * HOUR),
    ("powerplane_cooling_run_seconds_total", {"part": "fan_3"}, 20105 * HOUR),
    ("powerplane_cooling_filter_service_interval_seconds", {}, 26 * WEEK),
    ("powerplane_cooling_refrigerant_pressure_pascals", {"point": "suction"}, 1.05e6),
    ("powerplane_cooling_refrigerant_pressure_pascals", {"point": "discharge"}, 2.48e6),
    ("powerplane_cooling_airflow_cubic_meters_per_second", {}, 1.1),
    ("powerplane_cooling_fan_speed_ratio", {}, 0.72),
    ("powerplane_cooling_temperature_celsius", {"point": "supply"}, 18.5),
    ("powerplane_cooling_output_watts", {}, 16400.0),
    ("powerplane_cooling_demand_watts", {}, 17000.0),
    ("powerplane_cooling_group_output_watts", {}, 32800.0),
    ("powerplane_cooling_leak_detected", {}, 0.0),
]


@pytest.mark.parametrize(
    ("community", "module", "checks", "modes"),
    [
        ("apc-inrow-rc", "apc_inrow", RC, 3),
        ("apc-inrow-rp", "apc_inrow_rp", RP, 7),
        ("apc-inrow-rd", "apc_inrow_rd", RD, 4),
    ],
)
def test_inrow_profiles_values_and_units(
    tmp_path: Path,
    agents: Snmpsim,
    background_loop: procs.BackgroundLoop,
    community: str,
    module: str,
    checks: list[tuple[str, dict[str, str], float]],
    modes: int,
) -> None:
    for query in (module, ""):  # named, then chosen from sysObjectID (longest prefix)
        with Prober(background_loop, tmp_path, community, agents.port) as prober:
            samples, text = prober.probe(query)
        assert undocumented(text) == set()
        assert all(v == 1 for v in _success(samples).values()), text
        for name, labels, expected in checks:
            assert value(samples, name, **labels) == pytest.approx(expected), (name, labels)
        # A state set: exactly one mode is 1, one series per mode the unit's MIB defines.
        mode = samples["powerplane_cooling_operating_mode"]
        assert len(mode) == modes and sorted(mode.values()) == [0.0] * (modes - 1) + [1.0]


def test_rd_fan_hours_come_from_the_evaporator_fan_table(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    with Prober(background_loop, tmp_path, "apc-inrow-rd", agents.port) as prober:
        samples, _text = prober.probe("apc_inrow_rd")
    parts = {dict(k)["part"] for k in samples["powerplane_cooling_run_seconds_total"]}
    # Three fans in the table; the fan power supplies' hours are not fan hours.
    assert parts == {"air_filter", "compressor", "fan_1", "fan_2", "fan_3"}


def test_hour_meter_reset_keeps_run_time_monotonic_and_the_filter_age_follows_the_device(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    original = _recording("apc-inrow-rc")
    with Prober(background_loop, tmp_path, "apc-inrow-rc", agents.port) as prober:
        first, _ = prober.probe("apc_inrow")
        # The filter is replaced and its meter reset; it has run 3 h since.  Fan 1 ran 2 h more.
        serviced = original.replace(f"{RC_RUN}.1.0|2|1500", f"{RC_RUN}.1.0|2|3").replace(
            f"{RC_RUN}.2.0|2|41230", f"{RC_RUN}.2.0|2|41232"
        )
        assert serviced != original
        agents.replace("apc-inrow-rc", serviced)
        try:
            second = first
            for _ in range(20):  # snmpsim re-indexes the recording when it sees the new file
                second, _ = prober.probe("apc_inrow")
                if value(second, "powerplane_cooling_filter_run_seconds") != 1500 * HOUR:
                    break
        finally:
            agents.replace("apc-inrow-rc", original)
    assert value(second, "powerplane_cooling_filter_run_seconds") == 3 * HOUR
    run = "powerplane_cooling_run_seconds_total"
    assert value(second, run, part="air_filter") == pytest.approx((1500 + 3) * HOUR)
    assert value(second, run, part="fan_1") == pytest.approx(41232 * HOUR)
    assert value(second, run, part="fan_2") == value(first, run, part="fan_2") == 41220 * HOUR


def test_hostile_unit_unknown_mode_wrong_type_sentinel_and_missing_alarm_table(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop
) -> None:
    with Prober(background_loop, tmp_path, "hostile-rp", agents.port) as prober:
        samples, text = prober.probe("apc_inrow_rp")
    success = _success(samples)
    assert value(samples, "powerplane_target_up") == 1
    # A mode the MIB does not define is no mode at all: no series claims one.
    assert "powerplane_cooling_operating_mode" not in samples
    assert success["unit"] == 1 and success["group"] == 1
    # Fan 1's hours are a string: the table reports it, the other meters still come through.
    assert success["run_hours"] == 0
    parts = {dict(k)["part"] for k in samples["powerplane_cooling_run_seconds_total"]}
    assert parts == {"air_filter", "fan_2", "compressor"}
    # -1 means "no reading" in PowerNet: dropped, the discharge pressure stays.
    pressures = samples["powerplane_cooling_refrigerant_pressure_pascals"]
    assert [dict(k)["point"] for k in pressures] == ["discharge"]
    # No airIR alarm table: that collector fails, nothing pretends there is no alarm.
    assert success["alarms"] == 0
    assert "powerplane_cooling_active_alarms" not in samples
    assert undocumented(text) == set()
