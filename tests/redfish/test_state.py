"""The Redfish exporter's per-target state returns to its baseline after the TTL, sessions logged out."""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from powerplane.exporters.redfish.exporter import make_server
from powerplane.exporters.redfish.prober import RedfishProber
from powerplane.lab.redfish import IDRAC9_R640, IDRAC9_R760, RedfishLab
from tests.conftest import Serve
from tests.helpers import FakeClock, parse, value

from .conftest import bmc

EXPORTERS = Path(make_server.__code__.co_filename).parents[1]


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


def _exporter_bytes() -> int:
    """Bytes allocated by the exporters' own code (and the dataclasses' generated methods)."""
    gc.collect()
    ours = [tracemalloc.Filter(True, str(EXPORTERS / "*")), tracemalloc.Filter(True, "<string>")]
    return sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces(ours).statistics("filename"))


async def test_a_target_that_never_answered_is_remembered_in_little_memory(
    config: Any, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The log capture would keep every failure's record alive; the failure log itself is counted.
    monkeypatch.setattr(logging.getLogger("powerplane.redfish"), "disabled", True)
    served = await serve(make_server(config, clock=FakeClock()))
    await served.probe("127.1.255.1:1")  # imports and first allocations
    scanned = [f"127.2.{i // 250}.{i % 250 + 1}:1" for i in range(2000)]
    tracemalloc.start()
    try:
        before = _exporter_bytes()
        for start in range(0, len(scanned), 200):
            await asyncio.gather(*(served.probe(t) for t in scanned[start : start + 200]))
        held = _exporter_bytes() - before
    finally:
        tracemalloc.stop()
    assert state_sizes(served.server)["targets"] == len(scanned) + 1
    # Each is its state in the client and its failure log in the runner, the cause included.
    # As a dataclass with an instance dict and empty sets and maps of its own, and a failure log
    # with its own lock, it was 2.0 KB: a scan of an allowed /16 multiplies that into the peak.
    assert held / len(scanned) < 1500
