"""The simulation decides as the controller does: the same caps as ``reconcile-once`` and the agent.

Random policies (every rule type, dwell, hold, overrides, budget splits) over random price
curves with gaps (signal loss) and random ranges: the simulation's decision and per-device caps
of every period equal those of the agent that ``reconcile-once`` builds, driven period by
period over the lab's powercap tree and a GPU stand-in (dry run: the decision is what is
compared, nothing is written); and the first period of any range equals what the
``reconcile-once`` command itself prints for that instant.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplane.cli import main
from powerplane.controller.actuators import Actuators
from powerplane.controller.agent import Agent, LocalBackend, load_policy_document
from powerplane.controller.perfmodel import Model
from powerplane.controller.policy import OUTLOOK_SPAN, policy_from_spec
from powerplane.controller.signals import CurveSignal
from powerplane.controller.simulate import Device, device_limits, load_curve, make_timeline, simulate
from powerplane.lab.powercap import PowercapLab, intel_server
from tests.controller.conftest import FakeNvml

Q = timedelta(minutes=15)
#: Around the autumn DST change in Berlin (a 100-period local day).
BASE = datetime(2026, 10, 24, 0, 0, tzinfo=UTC)

watts = st.integers(50, 3000).map(float)


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["linear", "bands", "lookahead"]))
    low = draw(watts)
    high = low + draw(st.integers(0, 2000))
    if kind == "linear":
        smin = draw(st.integers(-50, 100))
        body = {
            "minWatts": low,
            "maxWatts": high,
            "signalMin": smin,
            "signalMax": smin + draw(st.integers(1, 400)),
        }
        body["direction"] = draw(st.sampled_from(["inverse", "direct"]))
    elif kind == "bands":
        aboves = sorted(draw(st.sets(st.integers(-20, 400), min_size=1, max_size=3)))
        thresholds = [
            {"above": a, "level": f"l{i}", **({"watts": draw(watts)} if draw(st.booleans()) else {})}
            for i, a in enumerate(aboves)
        ]
        body = {"thresholds": thresholds, "hysteresis": draw(st.integers(0, 60))}
        if draw(st.booleans()):
            body["baseWatts"] = draw(watts)
    else:
        body = {
            "minWatts": low,
            "maxWatts": high,
            "workBudget": draw(st.sampled_from([0.0, 0.02, 0.05, 0.2, 1.0])),
            "exponent": draw(st.sampled_from([0.3, 0.5, 0.8])),
        }
    return {"type": kind, kind: body}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "signal": {"curveFile": {"path": "PRICES"}},
        "policy": draw(rules()),
        "budget": {"cpuShare": draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))},
        "minDwellSeconds": draw(st.sampled_from([0, 900, 2700])),
        "signalLostHoldSeconds": draw(st.sampled_from([0, 900, 3600])),
        "schedule": {"timezone": draw(st.sampled_from(["UTC", "Europe/Berlin"]))},
    }
    if draw(st.booleans()):
        override = {"start": draw(st.sampled_from(["01:00", "02:30", "22:00"])), "end": "03:00"}
        override |= draw(st.sampled_from([{"action": "release"}, {"action": "cap", "watts": draw(watts)}]))
        spec["schedule"]["overrides"] = [override]
    return spec


@st.composite
def curves(draw: st.DrawFn) -> list[tuple[datetime, float | None]]:
    """Prices over four days from BASE, some periods missing (None: a lost signal)."""
    count = 4 * 96
    prices = draw(st.lists(st.integers(-60, 450), min_size=count, max_size=count))
    gaps = draw(st.sets(st.integers(0, count - 1), max_size=12))
    return [(BASE + i * Q, None if i in gaps else float(p)) for i, p in enumerate(prices)]


def write_inputs(work: Path, spec: dict[str, Any], prices: list[tuple[datetime, float | None]]) -> Path:
    csv = work / "prices.csv"
    csv.write_text(
        "start,end,price\n"
        + "".join(f"{t.isoformat()},{(t + Q).isoformat()},{p}\n" for t, p in prices if p is not None)
    )
    spec = json.loads(json.dumps(spec))
    spec["signal"]["curveFile"]["path"] = str(csv)
    path = work / "policy.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "powerplane.io/v1alpha1", "kind": "PowerCapPolicy",
                                    "metadata": {"name": "random"}, "spec": spec}))  # fmt: skip
    return path


def lab_devices(count: int) -> list[Device]:
    """The lab node as the exporters would report it: two 250 W packages (350 W max), two GPUs
    at 700 W within NVML's 200..700 W (the stand-in's range), limits through ``device_limits``."""
    out = []
    for domain, kind, original, top, low in (
        ("package-0", "cpu", 250.0, 350.0, None),
        ("package-1", "cpu", 250.0, 350.0, None),
        ("gpu-0", "gpu", 700.0, 700.0, 200.0),
        ("gpu-1", "gpu", 700.0, 700.0, 200.0),
    ):
        limits, hw = device_limits(domain, kind, original, top, low)  # type: ignore[arg-type]
        out.append(Device("n1", domain, kind, np.full(count, 300.0), limits, hw))  # type: ignore[arg-type]
    return out


def simulated(path: Path, start: datetime, count: int) -> tuple[Any, dict[str, Any]]:
    doc = load_policy_document(path)
    policy = policy_from_spec("random", doc["spec"])
    starts = [start + i * Q for i in range(count)]
    source = doc["spec"]["signal"]["curveFile"]["path"]
    curve = asyncio.run(load_curve(source, "", starts[0] - OUTLOOK_SPAN, starts[-1] + Q + OUTLOOK_SPAN))
    timeline = make_timeline(policy, doc["spec"], starts, curve)
    return simulate(policy, timeline, lab_devices(count), Model()), doc


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs(), prices=curves(), offset=st.integers(0, 2 * 96), count=st.integers(1, 40))
def test_every_period_decides_as_the_agent(
    tmp_path_factory: pytest.TempPathFactory, spec: dict[str, Any], prices: Any, offset: int, count: int
) -> None:
    work = tmp_path_factory.mktemp("prop")
    path = write_inputs(work, spec, prices)
    start = BASE + offset * Q
    sim, doc = simulated(path, start, count)
    lab = PowercapLab(work / "sys", intel_server(sockets=2, tdp=250.0)).create()
    actuators = Actuators(lab.root, work / "state.json", FakeNvml(gpus=2))
    limits = {d.domain: d for d in actuators.limits()}
    for result in sim.devices:
        assert result.device.limits == limits[result.device.domain]  # the metrics give the actuators' ranges
    now = [start]
    agent = Agent("n1", LocalBackend("n1", documents=[doc]), actuators, dry_run=True, clock=lambda: now[0])
    agent.signal_factory = lambda _spec, period: CurveSignal(
        Path(doc["spec"]["signal"]["curveFile"]["path"]), period
    )
    for i in range(count):
        now[0] = start + i * Q
        outcome = asyncio.run(agent.reconcile())
        assert outcome.decision is not None
        assert outcome.decision == sim.decisions[i], f"period {i}"
        desired = {r.domain: r.desired_watts for r in outcome.results}
        caps = {r.device.domain: r.caps[i] for r in sim.devices}
        for domain, value in desired.items():
            got = caps[domain]
            assert (value is None and np.isnan(got)) or value == pytest.approx(got, abs=1e-6), (i, domain)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs(), prices=curves(), offset=st.integers(0, 3 * 96))
def test_the_first_period_is_what_reconcile_once_prints(
    tmp_path_factory: pytest.TempPathFactory, spec: dict[str, Any], prices: Any, offset: int
) -> None:
    work = tmp_path_factory.mktemp("once")
    path = write_inputs(work, spec, prices)
    start = BASE + offset * Q
    sim, doc = simulated(path, start, 1)
    lab = PowercapLab(work / "sys", intel_server(sockets=2, tdp=250.0)).create()
    result = CliRunner().invoke(
        main,
        ["controller", "reconcile-once", "--policy", str(path), "--path.sysfs", str(lab.root), "--no-gpu",
         "--prices", doc["spec"]["signal"]["curveFile"]["path"],
         "--at", (start + timedelta(seconds=7)).isoformat(),
         "--dry-run", "--state-file", str(work / "state.json"), "--node", "n1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["decision"] == sim.decisions[0].as_dict()
    # CPU only here (--no-gpu): the simulation of the same node without its GPUs.
    cpu_only = [d for d in lab_devices(1) if d.kind == "cpu"]
    again = simulate(sim.policy, sim.timeline, cpu_only, Model())
    caps = {r.device.domain: r.caps[0] for r in again.devices}
    for domain in printed["domains"]:
        got = caps[domain["domain"]]
        want = domain["desired_watts"]
        assert (want is None and np.isnan(got)) or want == pytest.approx(got, abs=1e-6)
