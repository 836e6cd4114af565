"""Per-target state has a bound: entries unused for the TTL are evicted (an injected clock moves time)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from powerplane.exporters.runtime import CollectorError, Deadline, ExporterServer, ProbeJob, Prober
from powerplane.exporters.runtime.state import ExpiringMap
from tests.conftest import Serve
from tests.helpers import FakeClock, parse, value

from .conftest import Fixed


def test_entries_expire_after_the_ttl_oldest_first() -> None:
    clock = FakeClock()
    evicted: list[tuple[str, int]] = []
    states: ExpiringMap[str, int] = ExpiringMap(
        10.0, clock=clock, on_evict=lambda k, v: evicted.append((k, v))
    )
    assert states.get("a", lambda: 1) == 1
    clock.now += 6
    assert states.get("b", lambda: 2) == 2
    assert states.get("a", lambda: 99) == 1  # present: not made again, and used now
    clock.now += 6
    assert states.peek("b") == 2 and len(states) == 2  # both 6 s unused; peeking is no use
    states.get("a", lambda: 99)
    clock.now += 5
    assert states.peek("b") is None  # 11 s unused
    assert evicted == [("b", 2)] and "a" in states
    clock.now += 10
    assert states.sweep() == 1 and evicted[-1] == ("a", 1) and len(states) == 0
    assert states.evicted == 2


def test_touch_keeps_an_entry_alive_and_drain_takes_all_without_evicting() -> None:
    clock = FakeClock()
    evicted: list[str] = []
    states: ExpiringMap[str, int] = ExpiringMap(10.0, clock=clock, on_evict=lambda k, _v: evicted.append(k))
    states.get("a", lambda: 1)
    states.get("b", lambda: 2)
    for _ in range(5):
        clock.now += 6
        states.touch("a")
    assert states.sweep() == 1 and evicted == ["b"]
    assert states.drain() == [("a", 1)] and evicted == ["b"]
    assert states.discard("a") is None


class Scanned(Prober):
    """Every target resolves (as an allow-list of a /16 would) and fails or answers."""

    exporter = "toy"

    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        target = params["target"]
        result = 1.0 if target.endswith("0") else CollectorError(f"{target}: connection refused")

        async def connect(_deadline: Deadline) -> None:
            if target.endswith("7"):
                raise CollectorError("no route to host")

        return ProbeJob(target, "default", 5.0, [Fixed("power", result)], device=target, connect=connect)


async def test_a_scan_of_thousands_of_targets_leaves_nothing_behind(serve: Serve) -> None:
    clock = FakeClock()
    prober = Scanned(state_ttl=600.0, clock=clock)
    served = await serve(ExporterServer("toy", prober=prober, max_concurrency=64))
    runner = served.server.runner
    assert runner is not None
    baseline = (len(runner.failures), len(runner._inflight), len(runner._devices._sems))
    targets = [f"10.20.{i // 250}.{i % 250}" for i in range(3000)]
    for start in range(0, len(targets), 200):
        await asyncio.gather(*(served.probe(t) for t in targets[start : start + 200]))
    # Every probed target is remembered (its failure, or that it had none) while it is recent.
    assert len(runner.failures) == 3000
    # One failure each, but for the 300 whose address ends in 0 (those answer).
    assert sum(len(log._state) for log in runner.failures.values()) == 2700
    clock.now += 599
    assert runner.failures.sweep() == 0
    clock.now += 2
    status, text = await served.probe("10.99.0.0")  # any probe evicts what expired
    assert status == 200 and value(parse(text), "powerplane_target_up") == 1.0
    assert (len(runner.failures) - 1, len(runner._inflight), len(runner._devices._sems)) == baseline
    own = parse((await served.get("/metrics"))[1])
    assert value(own, "powerplane_probe_state_entries") == 1.0  # the last probe's target only
