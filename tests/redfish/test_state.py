"""The Redfish exporter's per-target state returns to its baseline after the TTL, sessions logged out."""

from __future__ import annotations

import asyncio
from typing import Any

from powerplane.exporters.redfish.exporter import make_server
from powerplane.exporters.redfish.prober import RedfishProber
from powerplane.lab.redfish import IDRAC9_R640, IDRAC9_R760, RedfishLab
from tests.conftest import Serve
from tests.helpers import FakeClock, parse, value

from .conftest import bmc


def state_sizes(server: Any) -> dict[str, int]:
    """Every per-target structure of the exporter, counted."""
    runner = server.runner
    prober: RedfishProber = server.prober
    client = prober.client
    return {
        "targets": len(client.targets),
        "sessions_held": len(client.held),
        "failure_logs": len(runner.failures),
        "failures": sum(len(log._state) for log in runner.failures.values()),
        "in_flight": len(runner._inflight),
        "device_slots": len(runner._devices._sems),
        "retiring": len(client._retiring),
    }


async def test_thousands_of_targets_once_then_the_ttl(lab: RedfishLab, config: Any, serve: Serve) -> None:
    clock = FakeClock()
    served = await serve(make_server(config, clock=clock))
    baseline = state_sizes(served.server)
    assert set(baseline.values()) == {0}
    bmcs = [await bmc(lab, model, name=f"ttl-{i}") for i, model in enumerate([IDRAC9_R640, IDRAC9_R760] * 3)]
    # An allowed /16 scanned once: nothing listens on port 1 of these addresses.
    scanned = [f"127.1.{i // 250}.{i % 250 + 1}:1" for i in range(2500)]
    targets = [b.address for b in bmcs] + scanned
    ups = []
    for start in range(0, len(targets), 250):
        results = await asyncio.gather(*(served.probe(t) for t in targets[start : start + 250]))
        ups += [value(parse(text), "powerplane_target_up") for _status, text in results]
    assert ups[: len(bmcs)] == [1.0] * len(bmcs) and set(ups[len(bmcs) :]) == {0.0}
    during = state_sizes(served.server)
    assert during["targets"] == len(targets) and during["failure_logs"] == len(targets)
    assert during["sessions_held"] == len(bmcs)
    # One failure per scanned address, and the three R640s' telemetry remembered as absent.
    assert during["failures"] == len(scanned) + 3
    assert [b.open_sessions() for b in bmcs] == [1] * len(bmcs)

    clock.now += config.policy.state_ttl - 1
    assert served.server.runner.sweep() == 0  # not yet
    clock.now += 2
    assert served.server.runner.sweep() == 2 * len(targets)
    await asyncio.wait(list(served.server.prober.client._retiring), timeout=10)
    assert state_sizes(served.server) == baseline
    assert value(parse((await served.get("/metrics"))[1]), "powerplane_probe_state_entries") == 0.0
    # Evicted sessions were deleted on the BMCs, not left to time out there.
    assert [b.open_sessions() for b in bmcs] == [0] * len(bmcs)
    assert sum(b.sessions_deleted for b in bmcs) == len(bmcs)
    # A target probed again starts afresh: a new session, a new discovery.
    assert value(parse((await served.probe(bmcs[0].address))[1]), "powerplane_target_up") == 1.0
    assert bmcs[0].sessions_created == 2
