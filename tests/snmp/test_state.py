"""The SNMP exporter's per-target state returns to its baseline after the TTL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from powerplane.exporters.snmp.exporter import make_server
from powerplane.exporters.snmp.prober import SnmpProber
from powerplane.lab.snmp import BUILDERS, Snmpsim
from tests.conftest import Serve
from tests.helpers import FakeClock, parse, value

from .conftest import probe, snmp_config


def state_sizes(server: Any) -> dict[str, int]:
    """Every per-target structure of the exporter, counted."""
    runner = server.runner
    prober: SnmpProber = server.prober
    return {
        "devices": len(prober.devices),
        "counters": sum(len(d.counters._state) for d in prober.devices.values()),
        "detected": sum(d.detected is not None for d in prober.devices.values()),
        "line_starts": sum(len(h) for d in prober.devices.values() for h in d.heads.values()),
        "table_sizes": sum(len(d.rows) for d in prober.devices.values()),
        "failure_logs": len(runner.failures),
        "failures": sum(len(log._state) for log in runner.failures.values()),
        "in_flight": len(runner._inflight),
        "device_slots": len(runner._devices._sems),
    }


async def test_thousands_of_targets_once_then_the_ttl(tmp_path: Path, agents: Snmpsim, serve: Serve) -> None:
    clock = FakeClock()
    communities = ["apc-8641", *BUILDERS]
    config = snmp_config(tmp_path, communities)
    served = await serve(make_server(config, clock=clock))
    baseline = state_sizes(served.server)
    assert set(baseline.values()) == {0}
    # The recorded devices, their module detected from sysObjectID; then an allowed range
    # scanned once, where no agent listens.
    queries = [f"target=127.0.0.1:{agents.port}&auth={c}" for c in communities]
    for query in queries:
        assert value(parse((await probe(served, query))[1]), "powerplane_target_up") == 1.0
    scan = [f"target=127.1.{i // 250}.{i % 250 + 1}:1&auth=apc-8641" for i in range(2500)]
    for start in range(0, len(scan), 250):
        results = await asyncio.gather(*(probe(served, q, "2") for q in scan[start : start + 250]))
        assert {value(parse(text), "powerplane_target_up") for _status, text in results} == {0.0}
    queries += scan
    during = state_sizes(served.server)
    assert during["devices"] == len(queries)  # a device is an address and an auth
    assert during["failure_logs"] == 2500 + 1  # failures are logged per target (address)
    assert during["detected"] == len(communities)
    assert during["counters"] > 0  # the PDUs' energy meters
    assert during["line_starts"] > 0  # kept from one probe of a device to the next
    assert during["table_sizes"] > 0
    assert during["failures"] >= 2500

    clock.now += config.policy.state_ttl - 1
    assert served.server.runner.sweep() == 0
    clock.now += 2
    assert served.server.runner.sweep() == during["devices"] + during["failure_logs"]
    assert state_sizes(served.server) == baseline
