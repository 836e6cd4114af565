"""The look-ahead policy: the day's plan as tables, its budget, its builder, the agent and the CRD."""

from __future__ import annotations

import asyncio
import itertools
import math
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.controller.agent import Agent, LocalBackend
from powerplane.controller.config import KIND
from powerplane.controller.kube import spec_schema
from powerplane.controller.policy import (
    LookAhead,
    Policy,
    PolicyError,
    State,
    decide,
    policy_from_spec,
)
from powerplane.exporters.market.curve import Curve
from powerplane.exporters.runtime import ConfigError
from powerplane.lab.powercap import PowercapLab, intel_server
from tests.controller.conftest import limit_uw

BERLIN = ZoneInfo("Europe/Berlin")
Q = timedelta(minutes=15)


def day_curve(day: date, prices: list[float], tz: ZoneInfo = BERLIN) -> Curve:
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    return Curve.uniform("DE-LU", start, Q, prices)


def plan(rule: LookAhead, curve: Curve, tz: ZoneInfo = BERLIN) -> list[float | None]:
    policy = Policy("la", rule, timezone=tz)
    out = []
    for p in curve:
        decision, _ = decide(policy, State(), p.start, p.price, curve.periods)
        out.append(decision.watts)
    return out


def lost(rule: LookAhead, caps: list[float | None], curve: Curve) -> float:
    total = sum(p.seconds for p in curve)
    return sum(rule.loss(c) * p.seconds for c, p in zip(caps, curve, strict=True)) / total


def test_caps_the_dearest_periods_hardest_within_the_budget() -> None:
    # 96 quarter-hours: cheap nights, a midday dip, an evening peak 17:00-21:00.
    prices = [60.0] * 28 + [90.0] * 20 + [30.0] * 20 + [200.0] * 16 + [90.0] * 12
    curve = day_curve(date(2026, 5, 4), prices)
    rule = LookAhead(min_watts=4000, max_watts=10000, work_budget=0.03)
    caps = plan(rule, curve)
    peak = caps[68:84]
    assert all(c is not None for c in peak)  # every evening-peak period is capped
    assert all(c is None for c in caps[:28] + caps[48:68])  # cheap periods never
    assert lost(rule, caps, curve) <= 0.03 + 1e-9
    assert lost(rule, caps, curve) >= 0.029  # the budget is used, not wasted
    # Dearer periods get lower caps: the cap is monotone in the price over the day.
    pairs = sorted((p.price, c if c is not None else math.inf) for p, c in zip(curve, caps, strict=True))
    assert all(b[1] <= a[1] for a, b in itertools.pairwise(pairs))


@pytest.mark.parametrize(
    ("budget", "capped"),
    [(0.0, 0), (0.01, None), (0.2, None), (1.0, 96)],
)
def test_the_budget_bounds_how_much_is_capped(budget: float, capped: int | None) -> None:
    prices = [50.0 + (i % 24) * 10 for i in range(96)]
    curve = day_curve(date(2026, 5, 4), prices)
    rule = LookAhead(min_watts=2000, max_watts=8000, work_budget=budget)
    caps = plan(rule, curve)
    n = sum(c is not None for c in caps)
    if capped is not None:
        assert n == capped
    assert lost(rule, caps, curve) <= budget + 1e-9
    if budget == 1.0:
        assert all(c == 2000 for c in caps)  # everything at the hardest cap: within a 100 % budget


def test_a_negative_or_floor_price_is_never_capped() -> None:
    prices = [-20.0] * 48 + [0.0] * 24 + [120.0] * 24
    curve = day_curve(date(2026, 5, 4), prices)
    caps = plan(LookAhead(1000, 3000, work_budget=1.0, price_floor=0.0), curve)
    assert caps[:72] == [None] * 72 and caps[72:] == [1000.0] * 24
    caps = plan(LookAhead(1000, 3000, work_budget=1.0, price_floor=150.0), curve)
    assert caps == [None] * 96


@pytest.mark.parametrize(("day", "count"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100)])
def test_dst_days_are_planned_whole(day: date, count: int) -> None:
    """A 23- or 25-hour local day is one plan: its last periods see the same threshold as its first."""
    prices = [100.0 + (i % 7) * 30 for i in range(count)]
    curve = day_curve(day, prices)
    assert len(curve) == count
    rule = LookAhead(3000, 9000, work_budget=0.05)
    caps = plan(rule, curve)
    threshold = rule.threshold([p.price for p in curve], [p.seconds for p in curve])
    assert caps == [rule.cap(p.price, threshold) for p in curve]
    assert lost(rule, caps, curve) <= 0.05 + 1e-9


def test_the_plan_is_local_days_of_the_schedule_timezone() -> None:
    # 22:00-24:00 UTC on 4 May is already 5 May in Berlin: it belongs to the next day's plan.
    start = datetime(2026, 5, 4, 0, 0, tzinfo=UTC)
    prices = [100.0] * 88 + [400.0] * 8 + [100.0] * 96
    curve = Curve.uniform("DE-LU", start, Q, prices)
    rule = LookAhead(3000, 9000, work_budget=0.02)
    at = start + 90 * Q  # 22:30 UTC: 00:30 in Berlin, 5 May
    utc_plan, _ = decide(Policy("u", rule), State(), at, 400.0, curve.periods)
    berlin_plan, _ = decide(Policy("b", rule, timezone=BERLIN), State(), at, 400.0, curve.periods)
    assert utc_plan.watts is not None  # in the UTC day the 400s are its dearest periods
    assert berlin_plan.watts is not None
    # The Berlin day of 5 May starts with the 400s (8 of its 96 periods) and is otherwise flat.
    threshold = rule.threshold([400.0] * 8 + [100.0] * 88, [900.0] * 96)
    assert berlin_plan.watts == rule.cap(400.0, threshold)


def test_without_the_curve_the_current_period_is_planned_alone() -> None:
    rule = LookAhead(3000, 9000, work_budget=0.05)
    decision, _ = decide(Policy("la", rule), State(), datetime(2026, 5, 4, 12, tzinfo=UTC), 250.0)
    assert decision.watts is not None and rule.loss(decision.watts) <= 0.05 + 1e-9


def test_signal_loss_dwell_and_overrides_apply_as_for_every_rule() -> None:
    curve = day_curve(date(2026, 5, 4), [50.0] * 68 + [300.0] * 16 + [50.0] * 12)
    rule = LookAhead(3000, 9000, work_budget=0.05)
    policy = Policy("la", rule, timezone=BERLIN, dwell=timedelta(hours=1), hold=timedelta(minutes=30))
    state = State()
    peak = curve.periods[68]
    first, state = decide(policy, state, peak.start, peak.price, curve.periods)
    assert first.watts is not None and first.reason == "signal"
    # 15 min later the price is gone: the cap is held for 30 min, then released (never the hardest).
    held, state = decide(policy, state, peak.start + Q, None, curve.periods)
    assert (held.watts, held.reason) == (first.watts, "signal-lost-hold")
    gone, state = decide(policy, state, peak.start + 3 * Q, None, curve.periods)
    assert (gone.watts, gone.reason) == (None, "signal-lost-release")


def test_rule_validation() -> None:
    for bad in (
        dict(min_watts=0, max_watts=10, work_budget=0.1),
        dict(min_watts=20, max_watts=10, work_budget=0.1),
        dict(min_watts=1, max_watts=10, work_budget=1.5),
        dict(min_watts=1, max_watts=10, work_budget=0.1, exponent=1.0),
    ):
        with pytest.raises(PolicyError, match="lookahead"):
            LookAhead(**bad)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    prices=st.lists(st.floats(-100, 1000, allow_nan=False), min_size=1, max_size=100),
    budget=st.floats(0, 1),
    exponent=st.floats(0.05, 0.95),
    low=st.floats(1, 5000),
)
def test_any_day_keeps_within_budget_and_range(
    prices: list[float], budget: float, exponent: float, low: float
) -> None:
    rule = LookAhead(low, low * 2, budget, exponent)
    curve = day_curve(date(2026, 5, 4), prices)
    caps = plan(rule, curve)
    assert all(c is None or low - 1e-3 <= c <= 2 * low for c in caps)
    assert lost(rule, caps, curve) <= budget + 1e-6


# --- the builder, check-config and the CRD ---------------------------------------------------

SPEC: dict[str, Any] = {
    "signal": {"market": {"url": "http://market:9875/api/v1/curve", "area": "DE-LU"}},
    "policy": {
        "type": "lookahead",
        "lookahead": {"minWatts": 4000, "maxWatts": 10000, "workBudget": 0.05, "exponent": 0.4},
    },
    "schedule": {"timezone": "Europe/Berlin"},
}


def test_builder_reads_the_spec() -> None:
    policy = policy_from_spec("la", SPEC)
    assert policy.rule == LookAhead(4000, 10000, 0.05, 0.4, 0.0)
    assert policy.timezone == BERLIN


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"lookahead": {"minWatts": 4000, "maxWatts": 10000}}, "missing field 'workBudget'"),
        (
            {"lookahead": {"minWatts": 4000, "maxWatts": 10000, "workBudget": 2}},
            "workBudget: 2 is out of range",
        ),
        ({"lookahead": {"minWatts": 4000, "maxWatts": 10000, "workBudget": 0.1, "exponent": 1}}, "exponent"),
        ({"lookahead": {"minWatts": 9000, "maxWatts": 100, "workBudget": 0.1}}, "minWatts <= maxWatts"),
        ({"lookahead": {"minWatts": 1, "maxWatts": 2, "workBudget": float("nan")}}, "not a finite number"),
        ({"lookahead": "x"}, "must be an object"),
        ({}, "missing field 'lookahead'"),
    ],
)
def test_builder_names_the_field(patch: dict[str, Any], message: str) -> None:
    spec = {**SPEC, "policy": {"type": "lookahead", **patch}}
    with pytest.raises(PolicyError, match=message):
        policy_from_spec("la", spec)


@pytest.mark.parametrize(
    "signal", [{"static": {"value": 1}}, {"promql": {"url": "http://p:9090", "query": "x"}}]
)
def test_lookahead_needs_a_curve_signal(signal: dict[str, Any]) -> None:
    with pytest.raises(PolicyError, match="signal must be curveFile or market"):
        policy_from_spec("la", {**SPEC, "signal": signal})


def test_check_config_and_the_crd_accept_it_and_refuse_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "la.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    assert KIND.load(path).document["spec"]["policy"]["type"] == "lookahead"
    jsonschema.Draft202012Validator(spec_schema()).validate(SPEC)
    bad = {
        **SPEC,
        "policy": {"type": "lookahead", "lookahead": {**SPEC["policy"]["lookahead"], "workBudget": 3}},
    }
    assert list(jsonschema.Draft202012Validator(spec_schema()).iter_errors(bad))
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="workBudget"):
        KIND.load(path)
    extra = {**SPEC, "policy": {"type": "lookahead", "lookahead": {**SPEC["policy"]["lookahead"], "x": 1}}}
    path.write_text(yaml.safe_dump(extra))
    with pytest.raises(ConfigError, match="x"):
        KIND.load(path)


# --- the agent ---------------------------------------------------------------------------------


def test_agent_plans_from_the_curve_and_never_raises_a_limit(tmp_path: Path) -> None:
    """The agent on the lab's powercap tree: the evening peak capped, the cap within the originals."""
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2, tdp=250.0)).create()
    day = date(2026, 5, 4)
    prices = [60.0] * 68 + [300.0] * 16 + [60.0] * 12
    curve = day_curve(day, prices)
    csv = tmp_path / "curve.csv"
    csv.write_text(
        "start,end,price\n" + "".join(f"{p.start.isoformat()},{p.end.isoformat()},{p.price}\n" for p in curve)
    )
    doc = {
        "apiVersion": "powerplane.io/v1alpha1",
        "kind": "PowerCapPolicy",
        "metadata": {"name": "la"},
        "spec": {
            "signal": {"curveFile": {"path": str(csv)}},
            "policy": {
                "type": "lookahead",
                "lookahead": {"minWatts": 200, "maxWatts": 600, "workBudget": 0.05},
            },
            "schedule": {"timezone": "Europe/Berlin"},
        },
    }
    from powerplane.controller.actuators import Actuators

    instant = [curve.periods[70].start]
    agent = Agent(
        "n1",
        LocalBackend("n1", documents=[doc]),
        Actuators(lab.root, tmp_path / "state.json", None),
        clock=lambda: instant[0],
    )
    peak = asyncio.run(agent.reconcile())
    assert peak.decision is not None and peak.decision.watts is not None
    assert peak.decision.reason == "signal" and peak.decision.level in ("high", "peak")
    assert peak.result == "success"
    # 16 peak periods share the budget: each may lose 0.05 * 96 / 16 = 0.3 of its work, so the
    # cap is 600 * 0.7 ** 2 = 294 W, 147 W per package.
    assert peak.decision.watts == pytest.approx(294.0, abs=0.01)
    written = [limit_uw(lab, f"intel-rapl:{i}") for i in (0, 1)]
    assert written == [pytest.approx(147_000_000, abs=10_000)] * 2
    instant[0] = curve.periods[10].start  # a cheap night period: released to the originals
    night = asyncio.run(agent.reconcile())
    assert night.decision is not None and night.decision.watts is None
    assert [limit_uw(lab, f"intel-rapl:{i}") for i in (0, 1)] == [250_000_000] * 2
