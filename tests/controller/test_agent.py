"""The agent loop: period boundaries, policy changes, node selection, unsupported domains."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from powerplane.controller.actuators import Actuators
from powerplane.controller.agent import Agent, LocalBackend
from powerplane.lab.powercap import PowercapLab, amd_zen, intel_server
from tests.controller.conftest import limit_uw

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
        await wait_for(lambda: limit_uw(lab) == 350_000_000)  # 600 W, clamped to the package max
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
        assert agent.add_adjustment(Adjustment("alert-1", "gpu-0", 100.0, time.time() + 0.5))
        assert not agent.add_adjustment(Adjustment("alert-1", "gpu-0", 100.0, time.time() + 0.5))
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
