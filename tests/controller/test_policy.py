"""The controller's pure policy core as tables: periods, DST, rules, hysteresis, dwell, overrides."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from powerplane.controller.policy import (
    Band,
    Bands,
    Budget,
    DomainLimits,
    Linear,
    Override,
    Policy,
    PolicyError,
    State,
    decide,
    next_boundary,
    period_start,
    policy_from_spec,
    selector_matches,
    split,
)
from powerplane.controller.signals import CurveSignal, SignalError

BERLIN = ZoneInfo("Europe/Berlin")


def local_day_periods(day: date, tz: ZoneInfo) -> list[datetime]:
    """The UTC starts of the 15-minute periods of a local delivery day, from ``period_start``."""
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    out, cursor = [], period_start(start)
    while cursor < end:
        out.append(cursor)
        cursor = next_boundary(cursor)
    return out


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("instant", "start", "nxt"),
    [
        ("2026-03-29T00:14:59Z", "2026-03-29T00:00:00Z", "2026-03-29T00:15:00Z"),
        ("2026-03-29T00:15:00Z", "2026-03-29T00:15:00Z", "2026-03-29T00:30:00Z"),
        ("2026-03-29T23:59:59.999Z", "2026-03-29T23:45:00Z", "2026-03-30T00:00:00Z"),
        # Local midnight in Berlin (CEST): 22:00 UTC.
        ("2026-07-01T00:00:00+02:00", "2026-06-30T22:00:00Z", "2026-06-30T22:15:00Z"),
        # A half-hour zone (India) is aligned too.
        ("2026-01-01T10:07:00+05:30", "2026-01-01T04:30:00Z", "2026-01-01T04:45:00Z"),
        # The repeated local hour of the autumn change: 02:30 CEST and 02:30 CET are two periods.
        ("2026-10-25T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-25T00:45:00Z"),
        ("2026-10-25T01:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T01:45:00Z"),
    ],
)
def test_period_alignment(instant: str, start: str, nxt: str) -> None:
    assert period_start(t(instant)) == t(start)
    assert next_boundary(t(instant)) == t(nxt)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(PolicyError, match="naive"):
        period_start(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("day", "count", "first"),
    [
        (date(2026, 3, 29), 92, "2026-03-28T23:00:00Z"),  # spring forward
        (date(2026, 10, 25), 100, "2026-10-24T22:00:00Z"),  # fall back
        (date(2026, 6, 1), 96, "2026-05-31T22:00:00Z"),
        (date(2026, 1, 1), 96, "2025-12-31T23:00:00Z"),
    ],
)
def test_local_delivery_days(day: date, count: int, first: str) -> None:
    periods = local_day_periods(day, BERLIN)
    assert len(periods) == count
    assert periods[0] == t(first)
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(periods))


RULE = Linear(min_watts=200, max_watts=1000, signal_min=0, signal_max=400)


@pytest.mark.parametrize(
    ("signal", "watts", "level"),
    [
        (0, 1000, "low"),
        (-50, 1000, "low"),  # negative prices: no cap beyond the maximum
        (100, 750, "low"),
        (200, 500, "normal"),
        (300, 250, "high"),
        (400, 200, "high"),  # clamped to the minimum
        (10_000, 200, "high"),
    ],
)
def test_linear_rule_of_three_inverse(signal: float, watts: float, level: str) -> None:
    assert RULE.watts(signal) == watts
    assert RULE.level(signal) == level


@pytest.mark.parametrize(("signal", "watts"), [(0, 300), (50, 300), (200, 500), (400, 1000), (900, 1000)])
def test_linear_rule_of_three_direct(signal: float, watts: float) -> None:
    # The original design: cap = max * signal / signal_max, at least min.
    rule = Linear(min_watts=300, max_watts=1000, signal_min=0, signal_max=400, direction="direct")
    assert rule.watts(signal) == watts


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_watts": 0, "max_watts": 10, "signal_min": 0, "signal_max": 1},
        {"min_watts": 20, "max_watts": 10, "signal_min": 0, "signal_max": 1},
        {"min_watts": 1, "max_watts": 10, "signal_min": 5, "signal_max": 5},
    ],
)
def test_linear_rejects_bad_ranges(kwargs: dict[str, float]) -> None:
    with pytest.raises(PolicyError):
        Linear(**kwargs)  # type: ignore[arg-type]


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_linear_always_within_range(signal: float) -> None:
    assert 200 <= RULE.watts(signal) <= 1000


BANDS = Bands(
    (Band(100, 800, "normal"), Band(200, 500, "high"), Band(300, 300, "extreme")),
    hysteresis=20,
)


@pytest.mark.parametrize(
    ("signals", "levels"),
    [
        ([50, 100, 150, 199, 200], ["low", "normal", "normal", "normal", "high"]),
        # Going down needs the hysteresis margin below the threshold.
        ([250, 190, 181, 180, 179], ["high", "high", "high", "high", "normal"]),
        ([350, 150], ["extreme", "normal"]),  # a big drop crosses several bands at once
        ([350, 285, 275, 90, 79], ["extreme", "extreme", "high", "normal", "low"]),
        ([99.9, 100, 80, 79.9], ["low", "normal", "normal", "low"]),
    ],
)
def test_bands_hysteresis(signals: list[float], levels: list[str]) -> None:
    policy = Policy("p", BANDS)
    state = State()
    got = []
    for i, s in enumerate(signals):
        decision, state = decide(policy, state, t("2026-05-04T10:00:00Z") + i * timedelta(minutes=15), s)
        got.append(decision.level)
    assert got == levels


def test_bands_reject_unsorted_thresholds() -> None:
    with pytest.raises(PolicyError, match="increasing"):
        Bands((Band(200, 1, "a"), Band(100, 2, "b")))


def test_dwell_keeps_the_cap_until_it_has_passed() -> None:
    policy = Policy("p", RULE, dwell=timedelta(minutes=30))
    at = t("2026-05-04T10:00:00Z")
    d1, s = decide(policy, State(), at, 0)
    d2, s = decide(policy, s, at + timedelta(minutes=15), 400)
    d3, s = decide(policy, s, at + timedelta(minutes=30), 400)
    assert [(d.watts, d.reason) for d in (d1, d2, d3)] == [(1000, "signal"), (1000, "dwell"), (200, "signal")]


def test_signal_lost_holds_then_releases_never_the_hardest_cap() -> None:
    policy = Policy("p", RULE, hold=timedelta(minutes=30))
    at = t("2026-05-04T10:00:00Z")
    d0, s = decide(policy, State(), at, 300)
    outcomes = []
    for minutes in (15, 30, 45, 60):
        d, s = decide(policy, s, at + timedelta(minutes=minutes), None)
        outcomes.append((d.watts, d.reason))
    assert d0.watts == 250
    assert outcomes == [
        (250, "signal-lost-hold"),
        (250, "signal-lost-hold"),
        (None, "signal-lost-release"),
        (None, "signal-lost-release"),
    ]
    # A signal that was never there releases at once; NaN counts as lost.
    d, _ = decide(policy, State(), at, float("nan"))
    assert (d.watts, d.reason) == (None, "signal-lost-release")


def test_signal_lost_release_is_not_blocked_by_dwell() -> None:
    policy = Policy("p", RULE, hold=timedelta(0), dwell=timedelta(hours=5))
    at = t("2026-05-04T10:00:00Z")
    _, s = decide(policy, State(), at, 300)
    d, _ = decide(policy, s, at + timedelta(minutes=15), None)
    assert (d.watts, d.reason) == (None, "signal-lost-release")


WEEKEND = Override(days=frozenset({5, 6}), name="weekend")
EVENING = Override(
    start=datetime(2026, 1, 1, 22).time(),
    end=datetime(2026, 1, 1, 6).time(),
    action="cap",
    watts=600,
    name="night",
)


@pytest.mark.parametrize(
    ("instant", "watts", "reason", "override"),
    [
        ("2026-05-08T19:59:00Z", 250, "signal", ""),  # Friday 21:59 CEST
        ("2026-05-08T20:00:00Z", 600, "override", "night"),  # Friday 22:00 CEST
        ("2026-05-08T22:00:00Z", None, "override", "weekend"),  # Saturday 00:00 CEST
        ("2026-05-10T21:59:59Z", None, "override", "weekend"),  # Sunday 23:59:59 CEST
        ("2026-05-10T22:00:00Z", 600, "override", "night"),  # Monday 00:00 CEST
        ("2026-05-11T04:00:00Z", 250, "signal", ""),  # Monday 06:00 CEST
        # The winter time: Saturday begins at 23:00 UTC.
        ("2026-01-09T22:30:00Z", 600, "override", "night"),
        ("2026-01-09T23:00:00Z", None, "override", "weekend"),
    ],
)
def test_schedule_overrides_in_local_time(
    instant: str, watts: float | None, reason: str, override: str
) -> None:
    policy = Policy("p", RULE, timezone=BERLIN, overrides=(WEEKEND, EVENING))
    d, _ = decide(policy, State(), t(instant), 300)
    assert (d.watts, d.reason, d.override) == (watts, reason, override)


def test_override_on_dates() -> None:
    holiday = Override(dates=frozenset({date(2026, 12, 25)}), name="christmas")
    policy = Policy("p", RULE, timezone=BERLIN, overrides=(holiday,))
    assert decide(policy, State(), t("2026-12-24T23:30:00Z"), 300)[0].reason == "override"
    assert decide(policy, State(), t("2026-12-24T22:30:00Z"), 300)[0].reason == "signal"


DOMAINS = [
    DomainLimits("package-0", "cpu", 50, 350),
    DomainLimits("package-1", "cpu", 50, 350),
    DomainLimits("gpu-0", "gpu", 200, 700),
    DomainLimits("gpu-1", "gpu", 200, 700),
]


@pytest.mark.parametrize(
    ("share", "watts", "expected"),
    [
        (0.25, 2000, [(250, False), (250, False), (700, True), (700, True)]),
        (0.2, 1000, [(100, False), (100, False), (400, False), (400, False)]),
        (0.1, 1000, [(50, False), (50, False), (450, False), (450, False)]),
        (0.02, 1000, [(50, True), (50, True), (490, False), (490, False)]),
        (0.5, 100, [(50, True), (50, True), (200, True), (200, True)]),
    ],
)
def test_budget_split(share: float, watts: float, expected: list[tuple[float, bool]]) -> None:
    caps = split(Budget(cpu_share=share), watts, DOMAINS)
    assert [(c.watts, c.clamped) for c in caps] == expected
    assert [c.domain for c in caps] == [d.domain for d in DOMAINS]


def test_budget_split_without_gpus_and_release() -> None:
    cpus = DOMAINS[:2]
    assert [c.watts for c in split(Budget(cpu_share=0.3), 400, cpus)] == [200, 200]
    assert [c.watts for c in split(Budget(cpu_share=0.3), None, DOMAINS)] == [None] * 4


SPEC = {
    "policy": {
        "type": "bands",
        "bands": {"hysteresis": 10, "thresholds": [{"above": 150, "watts": 400, "level": "high"}]},
    },
    "schedule": {"timezone": "Europe/Berlin", "overrides": [{"days": ["Sat", "sunday"], "name": "weekend"}]},
    "budget": {"cpuShare": 0.4},
    "minDwellSeconds": 900,
    "signalLostHoldSeconds": 1800,
}


def test_policy_from_spec() -> None:
    policy = policy_from_spec("price", SPEC)
    assert isinstance(policy.rule, Bands)
    assert policy.overrides[0].days == frozenset({5, 6})
    assert policy.dwell == timedelta(minutes=15)
    assert policy.budget.cpu_share == 0.4


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"policy": {"type": "magic"}}, "unknown type"),
        ({"schedule": {"timezone": "Mars/Olympus"}}, "time zone"),
        ({"schedule": {"overrides": [{"days": ["Funday"]}]}}, "unknown day"),
        ({"schedule": {"overrides": [{"start": "25h"}]}}, "HH:MM"),
        ({"schedule": {"overrides": [{"action": "cap"}]}}, "needs watts"),
        ({"minDwellSeconds": -1}, "minDwellSeconds"),
        ({"policy": {"type": "linear", "linear": {"minWatts": 1}}}, "maxWatts"),
        ({"budget": {"cpuShare": 3}}, "cpuShare"),
    ],
)
def test_policy_from_spec_errors(patch: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_spec("bad", {**SPEC, **patch})


@pytest.mark.parametrize(
    ("selector", "labels", "ok"),
    [
        (None, {}, True),
        ({"matchLabels": {"gpu": "h100"}}, {"gpu": "h100"}, True),
        ({"matchLabels": {"gpu": "h100"}}, {"gpu": "a100"}, False),
        ({"matchExpressions": [{"key": "rack", "operator": "In", "values": ["r1"]}]}, {"rack": "r1"}, True),
        (
            {"matchExpressions": [{"key": "rack", "operator": "NotIn", "values": ["r1"]}]},
            {"rack": "r1"},
            False,
        ),
        ({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "x", "operator": "Bogus"}]}, {"x": "1"}, False),
        # Malformed selectors (an API server checks nothing the CRD does not say) match nothing.
        ({"matchLabels": ["gpu"]}, {"gpu": "h100"}, False),
        ({"matchExpressions": {"key": "x"}}, {"x": "1"}, False),
        ({"matchExpressions": ["x"]}, {"x": "1"}, False),
        ({"matchExpressions": [{"key": "x", "operator": "In", "values": "x"}]}, {"x": "x"}, False),
        ("gpu=h100", {"gpu": "h100"}, False),
    ],
)
def test_selector(selector: object, labels: dict[str, str], ok: bool) -> None:
    assert selector_matches(selector, labels) is ok


# --- curve files through the market's static provider: missing periods, malformed files ------


def curve_value(path: Path, at: str) -> float | None:
    return asyncio.run(CurveSignal(path).value(t(at)))


def test_curve_missing_period_is_no_signal(tmp_path: Path) -> None:
    path = tmp_path / "curve.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "area": "DE-LU",
                "periods": [
                    {"start": "2026-05-04T10:00:00Z", "end": "2026-05-04T10:15:00Z", "price": 90},
                    {"start": "2026-05-04T10:30:00Z", "end": "2026-05-04T10:45:00Z", "price": -5},
                ],
            }
        )
    )
    assert curve_value(path, "2026-05-04T10:14:59Z") == 90
    assert curve_value(path, "2026-05-04T10:15:00Z") is None
    assert curve_value(path, "2026-05-04T10:30:00Z") == -5
    assert curve_value(path, "2026-05-04T09:59:59Z") is None
    assert curve_value(path, "2026-05-04T10:45:00Z") is None
    assert curve_value(path, "2026-08-01T00:00:00Z") is None  # far from every period


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("periods: x\n", "periods"),
        ("periods: [{start: yesterday, price: 1}]\n", r"periods\[0\]"),
        ("periods: [{start: '2026-01-01T00:00:00', price: 1}]\n", r"periods\[0\]"),
        ("periods: [{start: '2026-01-01T00:00:00Z', price: .inf}]\n", "not finite"),
        (
            "periods: [{start: '2026-01-01T00:00:00Z', price: 1},"
            " {start: '2026-01-01T00:10:00Z', price: 1}]\n",
            "overlap",
        ),
        ("bogus: 1\n", "unknown key"),
        ("- 1\n", "mapping"),
    ],
)
def test_curve_file_rejects_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "curve.yaml"
    path.write_text(text)
    with pytest.raises(SignalError, match=message):
        curve_value(path, "2026-01-01T00:05:00Z")


def test_curve_csv_and_dst_day(tmp_path: Path) -> None:
    rows = ["start,price"] + [
        f"{p.isoformat().replace('+00:00', 'Z')},{i}"
        for i, p in enumerate(local_day_periods(date(2026, 10, 25), BERLIN))
    ]
    assert len(rows) == 101
    path = tmp_path / "curve.csv"
    path.write_text("\n".join(rows))
    # Both 02:30 local hours have their own price.
    assert curve_value(path, "2026-10-25T02:30:00+02:00") == 10
    assert curve_value(path, "2026-10-25T02:30:00+01:00") == 14
    assert curve_value(path, "2026-10-24T22:00:00Z") == 0
    assert curve_value(path, "2026-10-24T21:59:59Z") is None
    path.write_text("start,price\n2026-01-01T00:00:00Z,abc\n")
    with pytest.raises(SignalError, match="line 2"):
        curve_value(path, "2026-01-01T00:05:00Z")


# --- only finite numbers in range: the builder refuses what the schema may let through -------

BANDS_SPEC = {
    "signal": {"static": {"value": 1}},
    "policy": {
        "type": "bands",
        "bands": {"thresholds": [{"above": 150, "watts": 8000, "level": "high"}]},
    },
}


def _with(spec: dict[str, object], path: str, value: object) -> dict[str, object]:
    """A deep copy of ``spec`` with ``value`` at a dotted ``path`` (``[n]`` for list items)."""
    import copy
    import re

    out = copy.deepcopy(spec)
    node: Any = out
    parts = [int(p) if p.isdigit() else p for p in re.split(r"\.|\[|\]\.?", path) if p != ""]
    for part in parts[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[parts[-1]] = value
    return out


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("policy.bands.thresholds[0].watts", NAN, r"thresholds\[0\]\.watts: .*finite"),
        ("policy.bands.thresholds[0].watts", INF, r"thresholds\[0\]\.watts: .*finite"),
        ("policy.bands.thresholds[0].watts", -INF, r"thresholds\[0\]\.watts"),
        ("policy.bands.thresholds[0].watts", 1e300, r"thresholds\[0\]\.watts: .*at most"),
        ("policy.bands.thresholds[0].watts", 0.5, r"thresholds\[0\]\.watts: .*at least"),
        ("policy.bands.thresholds[0].above", NAN, r"thresholds\[0\]\.above"),
        ("policy.bands.thresholds[0].above", 1e300, r"thresholds\[0\]\.above"),
        ("policy.bands.thresholds[0].watts", True, r"thresholds\[0\]\.watts: .*number"),
        ("policy.bands.thresholds[0].watts", "8000", r"thresholds\[0\]\.watts: .*number"),
        ("policy.bands.hysteresis", NAN, "hysteresis"),
        ("policy.bands.baseWatts", INF, "baseWatts"),
        ("schedule.overrides", [{"action": "cap", "watts": NAN}], r"overrides\[0\]\.watts"),
        ("schedule.overrides", [{"action": "cap", "watts": INF}], r"overrides\[0\]\.watts"),
        ("schedule.overrides", [{"days": [1]}], r"overrides\[0\]\.days"),
        ("schedule.overrides", [{"dates": ["tomorrow"]}], r"overrides\[0\]\.dates"),
        ("schedule.overrides", "weekend", "schedule.overrides"),
        ("schedule.timezone", 5, "schedule.timezone"),
        ("minDwellSeconds", 100_000_000_000_000, "minDwellSeconds: .*at most"),
        ("minDwellSeconds", INF, "minDwellSeconds"),
        ("signalLostHoldSeconds", 100_000_000_000_000, "signalLostHoldSeconds: .*at most"),
        ("periodSeconds", 100_000_000_000_000, "periodSeconds: .*at most"),
        ("periodSeconds", 1.5, "periodSeconds: .*whole"),
        ("budget.cpuShare", NAN, "cpuShare"),
        ("budget.shortTermRatio", NAN, "shortTermRatio"),
        ("budget.shortTermRatio", 1e300, "shortTermRatio: .*at most"),
        ("budget.shortTermRatio", 0.5, "shortTermRatio: .*at least"),
        ("budget", [], "budget"),
    ],
)
def test_builder_refuses_non_finite_and_out_of_range_numbers(path: str, value: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_spec("bad", _with(BANDS_SPEC, path, value))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("minWatts", NAN),
        ("maxWatts", INF),
        ("signalMin", -INF),
        ("signalMax", NAN),
        ("signalMax", 1e300),
    ],
)
def test_builder_refuses_bad_linear_numbers(path: str, value: float) -> None:
    spec = {
        "signal": {"static": {"value": 1}},
        "policy": {"type": "linear", "linear": {"minWatts": 100, "maxWatts": 500, "signalMax": 300}},
    }
    with pytest.raises(PolicyError, match=f"policy.linear.{path}"):
        policy_from_spec("bad", _with(spec, f"policy.linear.{path}", value))


def test_builder_reports_every_error_at_once() -> None:
    spec = _with(_with(BANDS_SPEC, "minDwellSeconds", 10**14), "budget.cpuShare", NAN)
    with pytest.raises(PolicyError) as caught:
        policy_from_spec("bad", spec)
    assert "minDwellSeconds" in str(caught.value) and "cpuShare" in str(caught.value)


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_builder_raises_only_policy_errors(junk: Any) -> None:
    # Whatever an API server or a file hands over, the builder answers a PolicyError or a policy.
    for spec in (
        junk,
        {**BANDS_SPEC, "policy": junk},
        {**BANDS_SPEC, "schedule": junk},
        {**BANDS_SPEC, "budget": junk},
    ):
        try:
            policy_from_spec("junk", spec)  # type: ignore[arg-type]
        except PolicyError:
            pass
