"""The market exporter's collectors: prices and carbon intensity, rendered relative to now.

Both read what the feeds hold (a scrape never calls a provider) and render through one
mechanism, ``_relative``: the current and next period, the fixed horizons ahead, the local
days' statistics and the cheapest (lowest) windows of a curve, into the curve's own specs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client.core import Metric

from ..runtime import Collector, Deadline, Partial
from ..runtime.metrics import MetricSpec
from .curve import Curve, Period, day_bounds, local_day
from .feed import CarbonState, Clock, FeedState, Market, system_clock
from .metrics import (
    AHEAD_PRICE,
    CARBON,
    CARBON_AGE,
    CARBON_AHEAD,
    CARBON_DAY_MAX,
    CARBON_DAY_MEAN,
    CARBON_DAY_MIN,
    CARBON_DAY_PERIODS,
    CARBON_ERRORS,
    CARBON_METRICS,
    CARBON_NEXT,
    CARBON_SOURCE,
    CHEAPEST_PRICE,
    CHEAPEST_START,
    CLEANEST_START,
    CLEANEST_VALUE,
    DATA_AGE,
    DATA_END,
    DAY_MAX,
    DAY_MEAN,
    DAY_MIN,
    DAY_PERIODS,
    FETCH_ERRORS,
    HORIZONS,
    LOAD,
    LOAD_RATIO,
    NEXT_PRICE,
    PERIOD_SECONDS,
    PRICE,
    PRICE_METRICS,
    RANK,
    SOURCE,
    TOMORROW,
    WINDOW_HORIZON,
    WINDOWS,
)


@dataclass(frozen=True)
class CurveSpecs:
    """Which spec each "relative to now" value of a curve goes to."""

    current: MetricSpec
    next: MetricSpec
    ahead: MetricSpec
    day_min: MetricSpec
    day_max: MetricSpec
    day_mean: MetricSpec
    day_periods: MetricSpec
    window_start: MetricSpec
    window_value: MetricSpec
    source: MetricSpec
    errors: MetricSpec
    #: Day statistics only for complete days (prices) or for whatever is known (carbon).
    complete_days: bool


PRICE_SPECS = CurveSpecs(
    PRICE, NEXT_PRICE, AHEAD_PRICE, DAY_MIN, DAY_MAX, DAY_MEAN, DAY_PERIODS, CHEAPEST_START, CHEAPEST_PRICE,
    SOURCE, FETCH_ERRORS, complete_days=True,
)  # fmt: skip
CARBON_SPECS = CurveSpecs(
    CARBON, CARBON_NEXT, CARBON_AHEAD, CARBON_DAY_MIN, CARBON_DAY_MAX, CARBON_DAY_MEAN, CARBON_DAY_PERIODS,
    CLEANEST_START, CLEANEST_VALUE, CARBON_SOURCE, CARBON_ERRORS, complete_days=False,
)  # fmt: skip


class _Families:
    def __init__(self, specs: Sequence[MetricSpec]) -> None:
        self.fam = {spec.name: spec.family() for spec in specs}

    def add(self, spec: MetricSpec, labels: list[str], value: float | None) -> None:
        if value is not None:
            self.fam[spec.name].add_metric(labels, value)

    def values(self) -> list[Metric]:
        return list(self.fam.values())


def _relative(
    out: _Families,
    specs: CurveSpecs,
    area: str,
    curve: Curve,
    tz: ZoneInfo,
    now: datetime,
    current: Period | None,
    errors: dict[tuple[str, str], int],
) -> None:
    out.add(specs.current, [area], current.price if current else None)
    nxt = curve.next_period(now)
    out.add(specs.next, [area], nxt.price if nxt else None)
    for label, delta in HORIZONS:
        out.add(specs.ahead, [area, label], curve.price_at(now + delta))
    today = local_day(now, tz)
    for name, day in (("today", today), ("tomorrow", today + timedelta(days=1))):
        if specs.complete_days and not curve.has_day(day, tz):
            continue
        stats = curve.day(day, tz).stats()
        if stats is None:
            continue
        out.add(specs.day_min, [area, name], stats.min)
        out.add(specs.day_max, [area, name], stats.max)
        out.add(specs.day_mean, [area, name], stats.mean)
        out.add(specs.day_periods, [area, name], float(stats.count))
    for label, length in WINDOWS:
        best = curve.cheapest_window(now, length, WINDOW_HORIZON)
        if best is not None:
            out.add(specs.window_start, [area, label], best[0].timestamp())
            out.add(specs.window_value, [area, label], best[1])
    if curve.source:
        out.add(specs.source, [area, curve.source], 1.0)
    for (provider, reason), count in sorted(errors.items()):
        out.add(specs.errors, [area, provider, reason], float(count))


def render_states(now: datetime, states: Sequence[FeedState]) -> list[Metric]:
    """All price families for ``states`` as of ``now`` (pure: the clock is an argument)."""
    out = _Families(PRICE_METRICS)
    for st in states:
        area, curve, tz = st.area, st.curve, st.timezone
        current = curve.period_at(now)
        _relative(out, PRICE_SPECS, area, curve, tz, now, current, st.errors)
        out.add(RANK, [area], curve.rank_ratio(now, tz))
        out.add(PERIOD_SECONDS, [area], current.seconds if current else None)
        if st.fetched_at is not None:
            out.add(DATA_AGE, [area], max(0.0, (now - st.fetched_at).total_seconds()))
        out.add(DATA_END, [area], curve.end.timestamp() if curve.end else None)
        out.add(TOMORROW, [area], 1.0 if curve.has_day(local_day(now, tz) + timedelta(days=1), tz) else 0.0)
        if st.load is not None:
            mw = st.load.at(now)
            out.add(LOAD, [area], mw * 1e6 if mw is not None else None)
            peak = st.load.peak(*day_bounds(local_day(now, tz), tz))
            if mw is not None and peak:
                out.add(LOAD_RATIO, [area], mw / peak)
    return out.values()


def render_carbon(now: datetime, states: Sequence[CarbonState]) -> list[Metric]:
    """All carbon-intensity families for ``states`` as of ``now``."""
    out = _Families(CARBON_METRICS)
    for st in states:
        current = st.current(now)
        _relative(out, CARBON_SPECS, st.area, st.curve, st.timezone, now, current, st.errors)
        if current is not None:
            out.add(
                CARBON_AGE, [st.area], 0.0 if current.contains(now) else (now - current.end).total_seconds()
            )
    return out.values()


@dataclass(frozen=True)
class MarketSnapshot:
    now: datetime
    states: tuple[FeedState, ...]


class MarketCollector(Collector[MarketSnapshot]):
    """Reads the feeds' cached curves; fails (partially) for an area without a current price."""

    name = "market"

    def __init__(self, market: Market, clock: Clock = system_clock) -> None:
        self.market = market
        self.clock = clock

    async def fetch(self, deadline: Deadline) -> MarketSnapshot | Partial[MarketSnapshot]:
        self.market.ensure_running()
        now = self.clock()
        states = tuple(self.market.states())
        snapshot = MarketSnapshot(now, states)
        missing = [s.area for s in states if s.curve.period_at(now) is None]
        if missing:
            # Still rendered (error counters, data age): the collector is reported failed.
            return Partial(snapshot, [f"{', '.join(missing)}: no price for the current period"])
        return snapshot

    def render(self, snapshot: MarketSnapshot) -> Iterable[Metric]:
        return render_states(snapshot.now, snapshot.states)


@dataclass(frozen=True)
class CarbonSnapshot:
    now: datetime
    states: tuple[CarbonState, ...]


class CarbonCollector(Collector[CarbonSnapshot]):
    """Reads the carbon feeds; fails (partially) for an area without a current intensity."""

    name = "carbon"

    def __init__(self, market: Market, clock: Clock = system_clock) -> None:
        self.market = market
        self.clock = clock

    async def fetch(self, deadline: Deadline) -> CarbonSnapshot | Partial[CarbonSnapshot]:
        self.market.ensure_running()
        now = self.clock()
        states = tuple(self.market.carbon_states())
        snapshot = CarbonSnapshot(now, states)
        missing = [s.area for s in states if s.current(now) is None]
        if missing:
            return Partial(snapshot, [f"{', '.join(missing)}: no current carbon intensity"])
        return snapshot

    def render(self, snapshot: CarbonSnapshot) -> Iterable[Metric]:
        return render_carbon(snapshot.now, snapshot.states)
