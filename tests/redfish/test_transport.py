"""The Redfish client's transport: keep-alive connections per BMC, reused across probes."""

from __future__ import annotations

import asyncio
from typing import Any

from powerplane.exporters.redfish.prober import RedfishProber
from powerplane.lab.redfish import IDRAC9_R760, RedfishLab
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
    assert requests >= 4 * 8
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
