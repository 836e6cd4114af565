"""Metrics and HTTP endpoints of the market exporter.

Prometheus cannot ingest samples in the future, so the curve is exposed as "now"-relative
gauges: the current and next period, a fixed set of horizons ahead, day statistics and the
cheapest windows.  The whole curve is served as JSON at ``/api/v1/curve`` (Grafana Infinity,
the power-cap controller).  Every value is read from the cached curve: a scrape never calls a
provider.

    powerplane_market_price_eur_per_mwh{area="DE-LU"} 87.12
    powerplane_market_next_price_eur_per_mwh{area="DE-LU"} 91.4
    powerplane_market_price_ahead_eur_per_mwh{area="DE-LU",horizon="4h"} 142.0
    powerplane_market_day_max_eur_per_mwh{area="DE-LU",day="tomorrow"} 212.5
    powerplane_market_price_rank_ratio{area="DE-LU"} 0.42
    powerplane_market_cheapest_window_start_timestamp_seconds{area="DE-LU",window="2h"} 1.7614e+09
    powerplane_market_period_seconds{area="DE-LU"} 900
    powerplane_market_tomorrow_published{area="DE-LU"} 1
    powerplane_market_fetch_errors_total{area="DE-LU",provider="entsoe",reason="rate_limited"} 2
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import click
from aiohttp import web
from prometheus_client.core import Metric

from ..runtime import Collector, Deadline, ExporterServer, Partial, serve_until_signalled
from ..runtime.cli import WebOptions, config_option, web_options
from ..runtime.metrics import MetricSpec
from .config import KIND, MarketConfig
from .curve import day_bounds, format_utc, local_day
from .feed import AreaFeed, Clock, FeedState, Market, system_clock

DEFAULT_PORT = 9875
CACHED = " Cached: refreshed from the provider a few times a day, never per scrape."

#: Horizons ahead of now exposed as separate series (bounded cardinality: 10 per area).
HORIZONS: tuple[tuple[str, timedelta], ...] = tuple(
    (label, timedelta(minutes=m))
    for label, m in (
        ("15m", 15),
        ("30m", 30),
        ("1h", 60),
        ("2h", 120),
        ("3h", 180),
        ("4h", 240),
        ("6h", 360),
        ("8h", 480),
        ("12h", 720),
        ("24h", 1440),
    )
)
#: Lengths of the cheapest windows searched within the next 24 hours.
WINDOWS: tuple[tuple[str, timedelta], ...] = tuple(
    (label, timedelta(hours=h)) for label, h in (("1h", 1), ("2h", 2), ("4h", 4), ("8h", 8))
)
WINDOW_HORIZON = timedelta(hours=24)

_A = ("area",)
PRICE = MetricSpec(
    "powerplane_market_price_eur_per_mwh",
    "gauge",
    "Day-ahead price of the current delivery period." + CACHED,
    _A,
)
NEXT_PRICE = MetricSpec(
    "powerplane_market_next_price_eur_per_mwh",
    "gauge",
    "Day-ahead price of the period after the current one." + CACHED,
    _A,
)
AHEAD_PRICE = MetricSpec(
    "powerplane_market_price_ahead_eur_per_mwh",
    "gauge",
    "Day-ahead price of the period containing now + horizon (15m, 30m, 1h, 2h, 3h, 4h, 6h, 8h, 12h, 24h)."
    + CACHED,
    ("area", "horizon"),
)
DAY_MIN = MetricSpec(
    "powerplane_market_day_min_eur_per_mwh",
    "gauge",
    "Lowest price of the local delivery day (day=today|tomorrow; tomorrow once published)." + CACHED,
    ("area", "day"),
)
DAY_MAX = MetricSpec(
    "powerplane_market_day_max_eur_per_mwh",
    "gauge",
    "Highest price of the local delivery day (day=today|tomorrow)." + CACHED,
    ("area", "day"),
)
DAY_MEAN = MetricSpec(
    "powerplane_market_day_mean_eur_per_mwh",
    "gauge",
    "Time-weighted mean price of the local delivery day (day=today|tomorrow)." + CACHED,
    ("area", "day"),
)
DAY_PERIODS = MetricSpec(
    "powerplane_market_day_periods",
    "gauge",
    "Delivery periods in the local day (96 quarter-hours; 92 and 100 on DST change days)." + CACHED,
    ("area", "day"),
)
RANK = MetricSpec(
    "powerplane_market_price_rank_ratio",
    "gauge",
    "Share of today's other periods cheaper than the current one: 0 cheapest, 1 dearest." + CACHED,
    _A,
)
CHEAPEST_START = MetricSpec(
    "powerplane_market_cheapest_window_start_timestamp_seconds",
    "gauge",
    "Start of the cheapest window of the given length (1h, 2h, 4h, 8h) starting from the current "
    "period and ending within 24 h." + CACHED,
    ("area", "window"),
)
CHEAPEST_PRICE = MetricSpec(
    "powerplane_market_cheapest_window_price_eur_per_mwh",
    "gauge",
    "Mean price of that cheapest window." + CACHED,
    ("area", "window"),
)
PERIOD_SECONDS = MetricSpec(
    "powerplane_market_period_seconds", "gauge", "Length of the current delivery period." + CACHED, _A
)
DATA_AGE = MetricSpec(
    "powerplane_market_data_age_seconds",
    "gauge",
    "Seconds since the curve in use was last fetched from a provider (or written to the store).",
    _A,
)
DATA_END = MetricSpec(
    "powerplane_market_data_end_timestamp_seconds",
    "gauge",
    "End of the last period with a known price." + CACHED,
    _A,
)
TOMORROW = MetricSpec(
    "powerplane_market_tomorrow_published",
    "gauge",
    "Whether every period of tomorrow's local delivery day is known (1) or not (0)." + CACHED,
    _A,
)
SOURCE = MetricSpec(
    "powerplane_market_source_info",
    "info",
    "The provider the curve in use came from, constant 1.",
    ("area", "provider"),
)
FETCH_ERRORS = MetricSpec(
    "powerplane_market_fetch_errors_total",
    "counter",
    "Failed fetches by provider and reason (auth, rate_limited, unavailable, http, timeout, connection, "
    "malformed, no_data, sequence_missing, other); no_data counts polls before publication.",
    ("area", "provider", "reason"),
)
LOAD = MetricSpec(
    "powerplane_market_load_forecast_watts",
    "gauge",
    "ENTSO-E day-ahead total load forecast for the current period (when configured)." + CACHED,
    _A,
)
LOAD_RATIO = MetricSpec(
    "powerplane_market_load_forecast_ratio",
    "gauge",
    "Current load forecast over today's peak forecast: a scarcity signal in 0..1." + CACHED,
    _A,
)
METRICS = (
    PRICE,
    NEXT_PRICE,
    AHEAD_PRICE,
    DAY_MIN,
    DAY_MAX,
    DAY_MEAN,
    DAY_PERIODS,
    RANK,
    CHEAPEST_START,
    CHEAPEST_PRICE,
    PERIOD_SECONDS,
    DATA_AGE,
    DATA_END,
    TOMORROW,
    SOURCE,
    FETCH_ERRORS,
    LOAD,
    LOAD_RATIO,
)


@dataclass(frozen=True)
class MarketSnapshot:
    now: datetime
    states: tuple[FeedState, ...]


def render_states(now: datetime, states: Sequence[FeedState]) -> list[Metric]:
    """All market families for ``states`` as of ``now`` (pure: the clock is an argument)."""
    fam = {spec.name: spec.family() for spec in METRICS}

    def add(spec: MetricSpec, labels: list[str], value: float | None) -> None:
        if value is not None:
            fam[spec.name].add_metric(labels, value)

    for st in states:
        area, curve, tz = st.area, st.curve, st.timezone
        current = curve.period_at(now)
        add(PRICE, [area], current.price if current else None)
        nxt = curve.next_period(now)
        add(NEXT_PRICE, [area], nxt.price if nxt else None)
        for label, delta in HORIZONS:
            add(AHEAD_PRICE, [area, label], curve.price_at(now + delta))
        today = local_day(now, tz)
        for name, day in (("today", today), ("tomorrow", today + timedelta(days=1))):
            if not curve.has_day(day, tz):
                continue
            stats = curve.day(day, tz).stats()
            if stats is None:
                continue
            add(DAY_MIN, [area, name], stats.min)
            add(DAY_MAX, [area, name], stats.max)
            add(DAY_MEAN, [area, name], stats.mean)
            add(DAY_PERIODS, [area, name], float(stats.count))
        add(RANK, [area], curve.rank_ratio(now, tz))
        for label, length in WINDOWS:
            best = curve.cheapest_window(now, length, WINDOW_HORIZON)
            if best is not None:
                add(CHEAPEST_START, [area, label], best[0].timestamp())
                add(CHEAPEST_PRICE, [area, label], best[1])
        add(PERIOD_SECONDS, [area], current.seconds if current else None)
        if st.fetched_at is not None:
            add(DATA_AGE, [area], max(0.0, (now - st.fetched_at).total_seconds()))
        add(DATA_END, [area], curve.end.timestamp() if curve.end else None)
        add(TOMORROW, [area], 1.0 if curve.has_day(today + timedelta(days=1), tz) else 0.0)
        if curve.source:
            add(SOURCE, [area, curve.source], 1.0)
        for (provider, reason), count in sorted(st.errors.items()):
            fam[FETCH_ERRORS.name].add_metric([area, provider, reason], float(count))
        if st.load is not None:
            mw = st.load.at(now)
            add(LOAD, [area], mw * 1e6 if mw is not None else None)
            peak = st.load.peak(*day_bounds(today, tz))
            if mw is not None and peak:
                add(LOAD_RATIO, [area], mw / peak)
    return list(fam.values())


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


class MarketApi:
    """``/api/v1/curve?area=…`` (the full curve as JSON) and ``/api/v1/areas``."""

    def __init__(self, market: Market, clock: Clock = system_clock) -> None:
        self.market = market
        self.clock = clock

    def _feed(self, request: web.Request) -> AreaFeed:
        area = request.query.get("area")
        if area is None and len(self.market.feeds) == 1:
            return next(iter(self.market.feeds.values()))
        if area is None:
            raise web.HTTPBadRequest(text="area= is required (several areas are configured)\n")
        feed = self.market.feeds.get(area)
        if feed is None:
            raise web.HTTPBadRequest(text=f"unknown area {area[:40]!r}\n")
        return feed

    async def curve(self, request: web.Request) -> web.Response:
        self.market.ensure_running()
        feed = self._feed(request)
        now = self.clock()
        state = feed.state()
        today = local_day(now, state.timezone)
        doc = state.curve.to_json(state.timezone)
        doc["now"] = format_utc(now)
        doc["days"] = {
            day.isoformat(): {
                "complete": state.curve.has_day(day, state.timezone),
                "periods": len(state.curve.day(day, state.timezone)),
            }
            for day in (today, today + timedelta(days=1))
        }
        doc["tomorrow_published"] = doc["days"][(today + timedelta(days=1)).isoformat()]["complete"]
        return web.json_response(doc, dumps=lambda d: json.dumps(d, allow_nan=False))

    async def areas(self, _request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "area": feed.area,
                    "timezone": str(feed.timezone),
                    "providers": [p.name for p in feed.providers],
                }
                for feed in self.market.feeds.values()
            ]
        )


def build_market(config: MarketConfig, clock: Clock = system_clock, tick: float = 30.0) -> Market:
    """Providers and feeds for ``config`` (nothing starts until ``ensure_running``)."""
    providers = config.build_providers()
    store = config.build_store()
    load = next((p for p in providers if p.name == config.load_forecast), None)
    feeds = [
        AreaFeed(
            a.area,
            a.zone,
            providers,
            store,
            config.refresh,
            clock,
            load,  # type: ignore[arg-type]  # the config checks it is an entsoe provider
        )
        for a in config.areas
    ]
    return Market(feeds, providers, tick)


def make_server(
    config: MarketConfig, clock: Clock = system_clock, market: Market | None = None, **kwargs: Any
) -> tuple[ExporterServer, Market]:
    """The market exporter for ``config`` and its ``Market`` (start it with ``ensure_running``)."""
    market = market or build_market(config, clock)
    api = MarketApi(market, clock)
    server = ExporterServer(
        "market",
        collectors=[MarketCollector(market, clock)],
        description="Day-ahead electricity prices for " + ", ".join(a.area for a in config.areas),
        routes=[("GET", "/api/v1/curve", api.curve), ("GET", "/api/v1/areas", api.areas)],
        on_shutdown=[market.stop],
        **kwargs,
    )
    return server, market


@click.command("market")
@config_option(KIND, help="Market exporter config (YAML).")
@web_options(DEFAULT_PORT)
def command(web: WebOptions, config: MarketConfig) -> None:
    """Day-ahead electricity prices (ENTSO-E, Energy-Charts, static curves)."""
    server, market = make_server(config, web_config=web.web_config)

    async def main() -> None:
        market.ensure_running()  # fetch at start-up, not at the first scrape
        await serve_until_signalled([(server, web.listen_address)])

    asyncio.run(main())
