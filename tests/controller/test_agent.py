"""The agent loop: period boundaries, policy changes, node selection, unsupported domains."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

from powerplane.controller.actuators import Actuators
from powerplane.controller.agent import Agent, LocalBackend
from powerplane.lab.powercap import PowercapLab, amd_zen, intel_server
from tests.controller.conftest import FakeNvml, limit_uw

POLICY: dict[str, Any] = {
    "kind": "PowerCapPolicy",
    "metadata": {"name": "p"},
    "spec": {
        "signal": {"static": {"value": 300}},
        "policy": {"type": "linear", "linear": {"minWatts": 200, "maxWatts": 600, "signalMax": 300}},
        "periodSeconds": 3600,
    },
}


async def wait_for(predicate: Any, within: float = 10.0) -> None:
    """Poll a condition on files the agent writes (there is no event to wait on)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling the lab's sysfs files
            await asyncio.sleep(0.02)


async def test_policy_change_reconciles_before_the_boundary(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    policy = copy.deepcopy(POLICY)
    backend = LocalBackend("n1", documents=[policy])
    agent = Agent("n1", backend, Actuators(lab.root, tmp_path / "state.json"), poll_seconds=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_for(lambda: limit_uw(lab) == 200_000_000)
        policy["spec"]["signal"] = {"static": {"value": 0}}  # the hour-long period is far away
        # 600 W: the package accepts up to 350 W, but a cap never raises the original 250 W.
        await wait_for(lambda: agent.reconciles.get("success") == 2)
        assert limit_uw(lab) == 250_000_000
    finally:
        stop.set()
        await task
        await agent.shutdown()
    assert agent.reconciles["success"] == 2


async def test_period_boundaries_drive_reconciles(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    policy = copy.deepcopy(POLICY)
    policy["spec"]["periodSeconds"] = 1
    agent = Agent("n1", LocalBackend("n1", documents=[policy]), Actuators(lab.root, tmp_path / "s.json"))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_for(lambda: agent.reconciles.get("success", 0) >= 3)
    finally:
        stop.set()
        await task
        await agent.shutdown()
    assert limit_uw(lab) == 250_000_000


async def test_node_not_selected_any_more_releases(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    policy = copy.deepcopy(POLICY)
    policy["spec"]["nodeSelector"] = {"matchLabels": {"cap": "yes"}}
    backend = LocalBackend("n1", documents=[policy], labels={"cap": "yes"})
    agent = Agent("n1", backend, Actuators(lab.root, tmp_path / "state.json"))
    await agent.reconcile()
    assert limit_uw(lab) == 200_000_000
    backend.labels["cap"] = "no"
    outcome = await agent.reconcile()
    assert outcome.policy is None and limit_uw(lab) == 250_000_000
    assert backend.labels["powerplane.io/power-cap-watts"] == "none"
    assert [e[1] for e in backend.events] == ["PowerCapApplied", "PowerCapReleased"]


async def test_amd_node_reports_unsupported_once(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", amd_zen(sockets=2)).create()
    backend = LocalBackend("n1", documents=[copy.deepcopy(POLICY)])
    agent = Agent("n1", backend, Actuators(lab.root, tmp_path / "state.json"))
    first = await agent.reconcile()
    await agent.reconcile()
    assert {r.status for r in first.results} == {"unsupported"}
    assert first.result == "success"  # nothing failed: there is nothing to cap here
    assert [e[1] for e in backend.events].count("PowerCapFailed") == 1
    assert backend.status["p"]["n1"]["message"].startswith("package-0: no long_term constraint")


async def test_invalid_policy_is_an_event_not_a_cap(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    policy = copy.deepcopy(POLICY)
    policy["spec"]["schedule"] = {"timezone": "Nowhere/Land"}
    backend = LocalBackend("n1", documents=[policy])
    agent = Agent("n1", backend, Actuators(lab.root, tmp_path / "state.json"))
    outcome = await agent.reconcile()
    assert outcome.result == "failure" and "time zone" in outcome.message
    assert backend.events[0][1] == "InvalidPolicy" and limit_uw(lab) == 250_000_000


async def test_unreadable_limit_is_reported_and_never_written(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2)).create()
    path = lab.zone_dir("intel-rapl:0") / "constraint_0_power_limit_uw"
    path.write_text("garbage\n")
    backend = LocalBackend("n1", documents=[copy.deepcopy(POLICY)])
    agent = Agent("n1", backend, Actuators(lab.root, tmp_path / "state.json"))
    outcome = await agent.reconcile()
    by_domain = {r.domain: r for r in outcome.results}
    assert by_domain["package-0"].status == "failed" and by_domain["package-0"].desired_watts is None
    assert by_domain["package-1"].status == "applied"
    assert outcome.result == "partial"
    assert path.read_text() == "garbage\n"


async def test_alert_step_down_ends_on_time_not_at_the_period(tmp_path: Path) -> None:
    import time

    from powerplane.controller.agent import Adjustment
    from tests.controller.conftest import FakeNvml

    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    nvml: Any = FakeNvml(gpus=1)
    policy = copy.deepcopy(POLICY)
    policy["spec"]["signal"] = {"static": {"value": 0}}  # 600 W, all to the GPU
    policy["spec"]["budget"] = {"cpuShare": 0.0}
    agent = Agent(
        "n1", LocalBackend("n1", documents=[policy]), Actuators(lab.root, tmp_path / "s.json", nvml=nvml)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_for(lambda: nvml.limits == [600_000])
        assert agent.add_adjustment(Adjustment("gpu-0", "Hot", 100.0, time.time() + 0.5, {"a"}))
        assert not agent.add_adjustment(Adjustment("gpu-0", "Hot", 100.0, time.time() + 0.5, {"b"}))
        await agent.reconcile()
        assert nvml.limits == [500_000]
        # The hour-long period is far away; the step-down still ends after half a second.
        await wait_for(lambda: nvml.limits == [600_000])
    finally:
        stop.set()
        await task
        await agent.shutdown()
    assert nvml.limits == [700_000]


class FlakyBackend(LocalBackend):
    fail = False

    def policies(self) -> list[dict[str, Any]]:
        if self.fail:
            raise ConnectionError("API server unreachable")
        return super().policies()


async def test_api_server_away_keeps_following_the_last_policy(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    backend = FlakyBackend("n1", documents=[copy.deepcopy(POLICY)])
    agent = Agent("n1", backend, Actuators(lab.root, tmp_path / "state.json"))
    assert (await agent.reconcile()).result == "success"
    backend.fail = True
    outcome = await agent.reconcile()
    assert outcome.result == "success" and outcome.policy == "p"
    assert limit_uw(lab) == 200_000_000
    fresh = Agent("n2", backend, Actuators(lab.root, tmp_path / "state2.json"))
    assert (await fresh.reconcile()).result == "failure"


async def test_lost_signal_is_a_gap_in_the_metric(tmp_path: Path) -> None:
    from powerplane.controller.agent import AgentCollector
    from powerplane.exporters.runtime import Deadline

    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    agent = Agent(
        "n1", LocalBackend("n1", documents=[copy.deepcopy(POLICY)]), Actuators(lab.root, tmp_path / "s")
    )
    collector = AgentCollector(agent)
    await agent.reconcile(250.0, use_override=True)
    snap = await collector.fetch(Deadline.after(1))
    assert dict(snap.signals) == {"p": 250.0}
    await agent.reconcile(None, use_override=True)
    snap = await collector.fetch(Deadline.after(1))
    assert dict(snap.signals) == {}
    assert limit_uw(lab) == 200_000_000  # held: the hold time (1 h by default) has not passed


# --- safety: never above the original, no policy can crash a reconcile ---------------------


def bands(watts: float, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "PowerCapPolicy",
        "metadata": {"name": "bands"},
        "spec": {
            "signal": {"static": {"value": 400}},
            "policy": {
                "type": "bands",
                "bands": {"thresholds": [{"above": 300, "watts": watts, "level": "extreme"}]},
            },
            **spec,
        },
    }


async def test_a_policy_asking_for_more_is_clamped_and_says_so(tmp_path: Path) -> None:
    from powerplane.controller.agent import AgentCollector
    from powerplane.exporters.runtime import Deadline

    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2)).create()
    backend = LocalBackend("n1", documents=[bands(5000)])
    agent = Agent("n1", backend, Actuators(lab.root, tmp_path / "state.json"))
    outcome = await agent.reconcile()
    # 2500 W per package asked, 350 W accepted by the hardware, 250 W in force before.
    assert limit_uw(lab, "intel-rapl:0") == limit_uw(lab, "intel-rapl:1") == 250_000_000
    assert outcome.result == "success"
    assert [(r.status, r.applied_watts, r.clamped) for r in outcome.results] == [("applied", 250.0, True)] * 2
    assert "2500 W asked, clamped to the original limit 250 W" in outcome.results[0].message
    assert [e[1] for e in backend.events] == ["PowerCapApplied", "PowerCapClamped"]
    assert "clamped to the original limit" in backend.status["bands"]["n1"]["message"]
    samples = AgentCollector(agent).render(await AgentCollector(agent).fetch(Deadline.after(1)))
    clamped = {
        tuple(s.labels.values()): s.value for f in samples for s in f.samples if f.name.endswith("clamped")
    }
    assert clamped == {
        ("package-0", "package", "0", "long_term", ""): 1.0,
        ("package-1", "package", "1", "long_term", ""): 1.0,
    }
    await agent.reconcile()
    assert [e[1] for e in backend.events].count("PowerCapClamped") == 1  # said once, not every period


async def test_gpu_share_is_clamped_to_its_original(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    nvml: Any = FakeNvml(gpus=2, limit_mw=450_000)
    agent = Agent(
        "n1",
        LocalBackend("n1", documents=[bands(5000, budget={"cpuShare": 0.1})]),
        Actuators(lab.root, tmp_path / "state.json", nvml=nvml),
    )
    await agent.reconcile()
    assert nvml.limits == [450_000, 450_000] and limit_uw(lab) == 250_000_000
    await agent.shutdown()
    assert nvml.limits == [450_000, 450_000]


@pytest.mark.parametrize(
    "spec",
    [
        bands(float("nan")),
        bands(float("inf")),
        bands(400, schedule={"overrides": [{"action": "cap", "watts": float("nan")}]}),
        bands(400, schedule={"overrides": [{"action": "cap", "watts": float("inf")}]}),
        bands(400, minDwellSeconds=100_000_000_000_000),
        bands(400, signalLostHoldSeconds=100_000_000_000_000),
        bands(400, schedule={"overrides": [{"days": [1]}]}),
        bands(400, schedule={"timezone": ["Europe/Paris"]}),
        bands(400, signal={"promql": {"url": "http://u:p@127.0.0.1:9", "query": "up"}}),
        bands(400, signal={"static": {"value": float("nan")}}),
        bands(400, budget=[]),
    ],
)
async def test_no_policy_crashes_a_reconcile(tmp_path: Path, spec: dict[str, Any]) -> None:
    # Policies from the API server are not checked by the files' strict schema: the agent's
    # builder refuses them, the node keeps what it has, and the agent carries on.
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2)).create()
    backend = LocalBackend("n1", documents=[bands(300)])
    agent = Agent("n1", backend, Actuators(lab.root, tmp_path / "state.json"))
    assert (await agent.reconcile()).result == "success"
    assert limit_uw(lab) == 150_000_000
    backend.documents[0] = spec
    for _ in range(2):
        outcome = await agent.reconcile()
        assert outcome.result == "failure" and outcome.message
    assert limit_uw(lab) == limit_uw(lab, "intel-rapl:1") == 150_000_000  # the safe state stays
    assert [e[1] for e in backend.events].count("InvalidPolicy") == 1
    status = backend.status["bands"]["n1"]
    assert (status["result"], status["reason"]) == ("failure", "policy-error")
    assert agent.reconciles == {"success": 1, "failure": 2}
    await agent.shutdown()
    assert limit_uw(lab) == 250_000_000


async def test_a_failing_reconcile_does_not_stop_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    policy = copy.deepcopy(POLICY)
    policy["spec"]["periodSeconds"] = 1
    actuators = Actuators(lab.root, tmp_path / "state.json")
    agent = Agent("n1", LocalBackend("n1", documents=[policy]), actuators)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(actuators, "apply", broken)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_for(lambda: agent.reconciles.get("failure", 0) >= 2)
        assert not task.done()
        assert agent.last is not None and "OverflowError" in agent.last.message
    finally:
        stop.set()
        await task
        await agent.shutdown()


async def test_short_term_ratio_is_applied(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    policy = copy.deepcopy(POLICY)  # 200 W for one package
    policy["spec"]["budget"] = {"shortTerm": True, "shortTermRatio": 1.0}
    agent = Agent("n1", LocalBackend("n1", documents=[policy]), Actuators(lab.root, tmp_path / "state.json"))
    outcome = await agent.reconcile()
    assert (limit_uw(lab, constraint=0), limit_uw(lab, constraint=1)) == (200_000_000, 200_000_000)
    assert outcome.results[0].short_term_applied_watts == 200.0
    policy["spec"]["budget"]["shortTermRatio"] = 1.25
    await agent.reconcile()
    assert limit_uw(lab, constraint=1) == 250_000_000
    policy["spec"]["budget"] = {}  # shortTerm off: PL2 goes back to its original
    await agent.reconcile()
    assert (limit_uw(lab, constraint=0), limit_uw(lab, constraint=1)) == (200_000_000, 300_000_000)
    await agent.shutdown()
    assert (limit_uw(lab, constraint=0), limit_uw(lab, constraint=1)) == (250_000_000, 300_000_000)


async def test_metrics_join_the_exporters_labels(tmp_path: Path) -> None:
    from powerplane.controller.agent import AgentCollector
    from powerplane.exporters.runtime import Deadline

    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    nvml: Any = FakeNvml(gpus=1)
    policy = copy.deepcopy(POLICY)
    policy["spec"]["budget"] = {"cpuShare": 0.5, "shortTerm": True}
    agent = Agent(
        "n1", LocalBackend("n1", documents=[policy]), Actuators(lab.root, tmp_path / "s", nvml=nvml)
    )
    await agent.reconcile(0, use_override=True)  # 600 W: 300 W to the package (250 W), 300 W to the GPU
    collector = AgentCollector(agent)
    families = {f.name: f for f in collector.render(await collector.fetch(Deadline.after(1)))}
    applied = {
        tuple(sorted(s.labels.items())): s.value
        for s in families["powerplane_controller_cap_applied_watts"].samples
    }
    assert applied == {
        (
            ("constraint", "long_term"),
            ("domain", "package-0"),
            ("gpu", ""),
            ("index", "0"),
            ("zone", "package"),
        ): 250.0,
        (
            ("constraint", "short_term"),
            ("domain", "package-0"),
            ("gpu", ""),
            ("index", "0"),
            ("zone", "package"),
        ): 300.0,
        (("constraint", ""), ("domain", "gpu-0"), ("gpu", "0"), ("index", ""), ("zone", "")): 300.0,
    }
    await agent.shutdown()


async def test_a_node_without_powercap_says_so(tmp_path: Path) -> None:
    agent = Agent(
        "n1",
        LocalBackend("n1", documents=[copy.deepcopy(POLICY)]),
        Actuators(tmp_path / "nosys", tmp_path / "s"),
    )
    outcome = await agent.reconcile()
    assert outcome.results == []
    assert "nothing to cap on this node" in outcome.message and "no powercap" in outcome.message


async def test_a_replaced_policy_leaves_no_state_or_series_behind(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    backend = LocalBackend("n1", documents=[copy.deepcopy(POLICY)])
    agent = Agent("n1", backend, Actuators(lab.root, tmp_path / "state.json"))
    for i in range(5):
        backend.documents[0] = {**copy.deepcopy(POLICY), "metadata": {"name": f"p{i}"}}
        await agent.reconcile()
    assert set(agent.states) == set(agent.signals) == set(agent.signal_values) == {"p4"}
