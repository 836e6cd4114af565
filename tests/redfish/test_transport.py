"""Redfish requests: keep-alive connections per BMC reused across probes, fewer by ``$expand``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from powerplane.exporters.redfish.prober import RedfishProber
from powerplane.lab.redfish import CHASSIS, IDRAC9_R760, RedfishLab
from tests.conftest import Served
from tests.helpers import parse, value

from .conftest import bmc


def prober(exporter: Served) -> RedfishProber:
    found = exporter.server.prober
    assert isinstance(found, RedfishProber)
    return found


async def test_probes_reuse_their_connections(lab: RedfishLab, exporter: Served) -> None:
    device = await bmc(lab, IDRAC9_R760)
    for _ in range(4):
        status, text = await exporter.probe(device.address)
        assert status == 200 and value(parse(text), "powerplane_target_up") == 1.0
    http = prober(exporter).client.http()
    requests = prober(exporter).client.stats["requests"]
    assert requests >= 4 * 3  # at least a steady probe's three requests each time
    # At most the module's concurrent requests' worth of connections, whatever the probe count.
    assert 1 <= http.opened <= 4
    assert http.reused == requests - http.opened


async def test_a_bmc_that_closes_idle_connections_is_probed_on_new_ones(
    lab: RedfishLab, exporter: Served
) -> None:
    device = await bmc(lab, IDRAC9_R760)
    assert (await exporter.probe(device.address))[0] == 200
    opened = prober(exporter).client.http().opened
    # The BMC's web server closes every idle connection (its keep-alive timeout passed).
    assert lab._runner is not None and lab._runner.server is not None
    for connection in lab._runner.server.connections:
        connection.force_close()
    await asyncio.sleep(0.05)
    status, text = await exporter.probe(device.address)
    samples: Any = parse(text)
    assert status == 200 and value(samples, "powerplane_target_up") == 1.0
    assert all(v == 1.0 for v in samples["powerplane_scrape_collector_success"].values())
    assert prober(exporter).client.http().opened > opened


async def test_the_thermal_subsystem_arrives_in_one_expanded_answer(
    lab: RedfishLab, exporter: Served
) -> None:
    expanding = await bmc(lab, IDRAC9_R760, name="expanding")
    plain = await bmc(lab, dataclasses.replace(IDRAC9_R760, name="plain", expand=False), name="plain")
    results = {}
    for device in (expanding, plain):
        status, text = await exporter.probe(device.address)
        assert status == 200
        results[device.name] = parse(text)
    thermal = f"{CHASSIS}/ThermalSubsystem"
    assert expanding.requests[thermal] == 1
    # ThermalMetrics, the Fans collection and every fan came inside that answer.
    assert expanding.requests[f"{thermal}/ThermalMetrics"] == 0
    assert expanding.requests[f"{thermal}/Fans"] == 0
    assert not any(p.startswith(f"{thermal}/Fans/") and n for p, n in expanding.requests.items())
    assert plain.requests[f"{thermal}/ThermalMetrics"] == 1 and plain.requests[f"{thermal}/Fans"] == 1
    # The same series either way.
    for name in ("powerplane_redfish_fan_speed_rpm", "powerplane_redfish_temperature_summary_celsius"):
        assert set(results["expanding"][name]) == set(results["plain"][name]) != set()
    assert all(v == 1.0 for v in results["expanding"]["powerplane_scrape_collector_success"].values())


async def test_a_refused_expansion_of_the_thermal_subsystem_falls_back(
    lab: RedfishLab, exporter: Served
) -> None:
    liar = dataclasses.replace(IDRAC9_R760, name="liar", expand=False, announce_expand=True)
    device = await bmc(lab, liar)
    for _ in range(2):
        samples = parse((await exporter.probe(device.address))[1])
        assert all(v == 1.0 for v in samples["powerplane_scrape_collector_success"].values())
        assert len(samples["powerplane_redfish_fan_speed_rpm"]) == liar.fans
    refused = device.requests["$expand"]
    assert refused >= 1
    assert (await exporter.probe(device.address))[0] == 200
    assert device.requests["$expand"] == refused  # remembered: not asked again
