"""Per-target state has a bound: entries unused for the TTL are evicted (an injected clock moves time)."""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

import pytest
import yarl
from yarl import URL

from powerplane.exporters.runtime import CollectorError, Deadline, ExporterServer, ProbeJob, Prober, state
from powerplane.exporters.runtime.logs import FailureLog
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


def _runtime_bytes() -> int:
    """Bytes still allocated by the runtime's per-target state (its maps and failure logs).

    The server's keep-alive connections and the probes in flight hold some memory too, but as
    much for a scan of ten targets as for one of thousands: not counted here.  A full collection
    first empties the interpreter's free lists (freed tuples and dicts kept for reuse)."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    here = Path(state.__file__).parent
    kept = [tracemalloc.Filter(True, str(here / name)) for name in ("state.py", "logs.py")]
    return sum(stat.size for stat in snapshot.filter_traces(kept).statistics("filename"))


def _failure_logs() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, FailureLog))


def test_an_emptied_map_gives_its_table_back() -> None:
    clock = FakeClock()
    states: ExpiringMap[str, int] = ExpiringMap(10.0, clock=clock)
    tracemalloc.start()
    try:
        before = _runtime_bytes()
        for i in range(20000):
            states.get(f"10.{i // 250}.{i % 250}.1", lambda: 0)
        full = _runtime_bytes()
        clock.now += 11
        states.get("10.255.0.1", lambda: 0)  # evicts the 20,000 others
        after = _runtime_bytes()
    finally:
        tracemalloc.stop()
    assert full - before > 1_000_000  # the map's table and nodes are counted here...
    assert after - before < 4096  # ...and sized for the one entry left, not for the peak
    assert len(states) == 1 and states.evicted == 20000


async def test_after_a_scan_and_the_ttl_the_runtime_holds_what_it_held_before(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test's log capture would keep every failure's record (and its strings) alive.
    monkeypatch.setattr(logging.getLogger("powerplane.toy"), "disabled", True)
    clock = FakeClock()
    prober = Scanned(state_ttl=600.0, clock=clock)
    served = await serve(ExporterServer("toy", prober=prober, max_concurrency=64))
    runner = served.server.runner
    assert runner is not None
    await served.probe("10.99.0.0")
    logs = _failure_logs()
    tracemalloc.start()
    try:
        before = _runtime_bytes()
        for start in range(0, 4000, 200):
            await asyncio.gather(
                *(served.probe(f"10.20.{i // 250}.{i % 250}") for i in range(start, start + 200))
            )
        loaded = _runtime_bytes()
        clock.now += 601
        await served.probe("10.99.0.0")  # evicts the 4,000 scanned targets
        after = _runtime_bytes()
    finally:
        tracemalloc.stop()
    assert _failure_logs() == logs
    assert len(runner.failures) == 1 and runner.failures.evicted == 4001  # and the first probe's
    assert loaded - before > 500_000  # a failure log per target, while they are recent
    assert after - before < 4096  # then nothing per target: no table sized for the scan either


def test_a_release_waits_for_many_evictions_and_for_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[bool] = []
    monkeypatch.setattr(state, "release_memory", lambda: released.append(True))
    monkeypatch.setattr(state._Releases, "pending", 0)
    monkeypatch.setattr(state._Releases, "last", float("-inf"))
    clock = FakeClock()
    states: ExpiringMap[int, int] = ExpiringMap(1.0, clock=clock)
    for i in range(state.RELEASE_AFTER - 1):
        states.get(i, lambda: 0)
    clock.now += 2
    assert states.sweep() == state.RELEASE_AFTER - 1
    assert not state.release_if_due(clock) and not released  # not enough evicted yet
    states.get(-1, lambda: 0)
    clock.now += 2
    assert states.sweep() == 1 and state.release_if_due(clock) and released == [True]
    for i in range(state.RELEASE_AFTER):
        states.get(i, lambda: 0)
    clock.now += 2
    states.sweep()
    assert not state.release_if_due(clock)  # within the interval of the last release
    clock.now += state.RELEASE_INTERVAL
    assert state.release_if_due(clock) and released == [True, True]


def test_a_release_drops_the_hosts_and_urls_yarl_cached() -> None:
    # Every probe's target passes through yarl, whose caches keep the hosts and URLs parsed
    # last: after a scan, those entries would keep arenas of the scan from being returned.
    for i in range(300):
        URL(f"http://10.20.{i // 250}.{i % 250}:443/redfish/v1")
        URL(f"/probe?target=10.20.{i // 250}.{i % 250}", encoded=True)
    assert yarl.cache_info()["encode_host"].currsize > 0
    url_caches = [f for f in vars(yarl._url).values() if hasattr(f, "cache_info")]
    assert sum(f.cache_info().currsize for f in url_caches) > 300
    state.release_memory()
    assert {info.currsize for info in yarl.cache_info().values()} == {0}
    assert sum(f.cache_info().currsize for f in url_caches) == 0
