"""Values, units and module detection against real walks: the AP8641 and the project's recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerplane.exporters.snmp.exporter import make_server
from powerplane.lab.snmp import Snmpsim
from tests.conftest import Serve
from tests.helpers import parse, undocumented, value

from .conftest import probe, snmp_config


async def test_ap8641_values_units_and_auto_detection(tmp_path: Path, agents: Snmpsim, serve: Serve) -> None:
    config = snmp_config(tmp_path, ["apc-8641"])
    status, text = await probe(await serve(make_server(config)), f"target=127.0.0.1:{agents.port}")
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
async def test_profiles_against_project_recordings(
    tmp_path: Path,
    agents: Snmpsim,
    serve: Serve,
    community: str,
    module: str,
    checks: list[tuple[str, dict[str, str], float]],
) -> None:
    config = snmp_config(tmp_path, [community])
    for query in (f"module={module}", ""):  # named, then auto-detected from sysObjectID
        status, text = await probe(
            await serve(make_server(config)), f"target=127.0.0.1:{agents.port}&{query}"
        )
        assert status == 200
        samples = parse(text)
        assert undocumented(text) == set()
        assert all(v == 1 for v in samples["powerplane_scrape_collector_success"].values()), text
        for name, labels, expected in checks:
            assert value(samples, name, **labels) == pytest.approx(expected), name
