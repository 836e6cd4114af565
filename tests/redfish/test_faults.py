"""What real BMCs do wrong, injected: each fault fails what it touches and nothing else."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from powerplane.lab.redfish import IDRAC9_R640, IDRAC9_R760, Faults, RedfishLab
from tests.conftest import Served
from tests.helpers import logged, parse, value

from .conftest import bmc, probe_with_healthy_neighbour, success


async def test_general_error_on_thermal_keeps_power(lab: RedfishLab, exporter: Served, caplog: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, faults=Faults(general_error="/Thermal$"))
    with caplog.at_level(logging.WARNING):
        samples = await probe_with_healthy_neighbour(lab, probe, device)
    assert value(samples, "powerplane_target_up") == 1.0
    assert success(samples, "thermal") == 0.0 and success(samples, "power") == 1.0
    assert value(samples, "powerplane_redfish_power_watts") == device.power_watts()
    assert "GET /redfish/v1/Chassis/System.Embedded.1/Thermal: HTTP 500 IDRAC.2.8.SYS446" in logged(caplog)


async def test_slow_thermal_times_out_alone(lab: RedfishLab, exporter: Served, caplog: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, faults=Faults(hang="/Thermal$"))
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        samples = await probe_with_healthy_neighbour(lab, probe, device, module="quick")
    assert time.monotonic() - start < 3.0
    assert success(samples, "thermal") == 0.0 and success(samples, "power") == 1.0
    assert "timed out" in logged(caplog) or "deadline exceeded" in logged(caplog)


async def test_dead_bmc_is_down_within_the_scrape_timeout(lab: RedfishLab, exporter: Served) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, faults=Faults(hang="."))
    start = time.monotonic()
    samples = await probe_with_healthy_neighbour(
        lab, probe, device, headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
    )
    assert time.monotonic() - start < 2.5
    assert value(samples, "powerplane_target_up") == 0.0


async def test_latency_distribution_is_honoured(lab: RedfishLab, exporter: Served) -> None:
    probe = exporter.probe
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


async def test_malformed_json(lab: RedfishLab, exporter: Served, caplog: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, faults=Faults(malformed="/Power$"))
    with caplog.at_level(logging.WARNING):
        samples = await probe_with_healthy_neighbour(lab, probe, device)
    assert success(samples, "power") == 0.0 and success(samples, "thermal") == 1.0
    assert "GET /redfish/v1/Chassis/System.Embedded.1/Power: malformed JSON" in logged(caplog)


async def test_missing_fields_are_named(lab: RedfishLab, exporter: Served, caplog: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, faults=Faults(missing_fields=True))
    with caplog.at_level(logging.WARNING):
        samples = await probe_with_healthy_neighbour(lab, probe, device)
    assert success(samples, "power") == 0.0 and success(samples, "thermal") == 0.0
    assert "powerplane_redfish_power_watts" not in samples
    assert "Power: PowerControl[0].PowerConsumedWatts: missing" in logged(caplog)
    assert "Thermal: Temperatures: missing" in logged(caplog)


async def test_missing_power_on_new_schema_falls_back_to_telemetry(lab: RedfishLab, exporter: Served) -> None:
    probe = exporter.probe
    both = dataclasses.replace(IDRAC9_R760, name="no-legacy-power", legacy=False)
    device = await bmc(lab, both, faults=Faults(missing_fields=True))
    samples = parse((await probe(device.address))[1])
    assert value(samples, "powerplane_redfish_power_source_info", source="telemetry") == 1.0
    assert value(samples, "powerplane_redfish_power_watts") == device.power_watts()


async def test_wrong_types_are_named(lab: RedfishLab, exporter: Served, caplog: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, faults=Faults(wrong_types=True))
    with caplog.at_level(logging.WARNING):
        samples = await probe_with_healthy_neighbour(lab, probe, device)
    assert success(samples, "power") == 0.0 and success(samples, "thermal") == 0.0
    assert "PowerControl[0].PowerConsumedWatts: expected a number, got str" in logged(caplog)
    assert "Temperatures[0].ReadingCelsius: expected a number, got str" in logged(caplog)
    # the well-typed parts still arrive
    assert "powerplane_redfish_psu_capacity_watts" in samples


async def test_huge_payload_is_refused(lab: RedfishLab, exporter: Served, caplog: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, faults=Faults(huge_bytes=2 * 1024 * 1024, huge_paths="/Power$"))
    with caplog.at_level(logging.WARNING):
        samples = await probe_with_healthy_neighbour(lab, probe, device, module="small")
    assert success(samples, "power") == 0.0 and success(samples, "thermal") == 1.0
    assert "exceeds the limit of 64 KiB" in logged(caplog)
