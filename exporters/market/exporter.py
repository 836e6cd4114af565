"""The market exporter: its server, the JSON curve endpoint and the command.

Prometheus cannot ingest samples in the future, so the curves are exposed as "now"-relative
gauges (``collectors``): the current and next period, a fixed set of horizons ahead, day
statistics and the cheapest windows, for prices and, when configured, for the grid carbon
intensity.  Each whole curve is served as JSON at ``/api/v1/curve`` (Grafana Infinity, the
power-cap controller).  Every value is read from the cached curves: a scrape never calls a
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
    powerplane_grid_carbon_intensity_grams_per_kwh{area="DE-LU"} 312.4
    powerplane_grid_carbon_intensity_data_age_seconds{area="DE-LU"} 3240
    powerplane_grid_carbon_intensity_day_min_grams_per_kwh{area="DE-LU",day="today"} 201.7
    powerplane_grid_carbon_source_info{area="DE-LU",provider="entsoe"} 1
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

import click
from aiohttp import web

from ..runtime import Collector, ExporterServer, serve_until_signalled
from ..runtime.cli import WebOptions, config_option, web_options
from .carbon import UNIT as CARBON_UNIT
from .collectors import CarbonCollector, MarketCollector
from .config import KIND, MarketConfig
from .curve import Period, format_utc, local_day
from .feed import AreaFeed, CarbonFeed, CarbonState, Clock, Market, system_clock
from .metrics import METRICS

DEFAULT_PORT = 9875
__all__ = ["DEFAULT_PORT", "METRICS", "MarketApi", "build_market", "command", "make_server"]
#: The curves the endpoint serves (``series=``).
SERIES = ("price", "carbon")
F = TypeVar("F", AreaFeed, CarbonFeed)


def _pick(feeds: Mapping[str, F], area: str | None, series: str) -> F:
    if area is None and len(feeds) == 1:
        return next(iter(feeds.values()))
    if area is None:
        raise web.HTTPBadRequest(text=f"area= is required (several areas have a {series} curve)\n")
    feed = feeds.get(area)
    if feed is None:
        raise web.HTTPBadRequest(text=f"unknown area {area[:40]!r} for series {series}\n")
    return feed


def _held(state: CarbonState, now: datetime) -> list[dict[str, Any]]:
    """Periods from the newest measured one up to now, carrying its value (marked ``held``).

    Measured intensities lag real time; these make the period containing now answer with the
    same value the metric exports, so readers that look up "the period containing now" (the
    controller's curve signal) get it.  None once the value is older than the maximum age.
    """
    current = state.current(now)
    if current is None or current.contains(now):
        return []
    step, cursor, held = current.end - current.start, current.end, []
    while cursor <= now:
        p = Period(cursor, cursor + step, current.price)
        if not state.curve.between(p.start, p.end):  # never over a period the source gave
            held.append({**state.curve.period_json(p, state.timezone), "held": True})
        cursor += step
    return held


class MarketApi:
    """``/api/v1/curve?area=…&series=price|carbon`` (a whole curve as JSON) and ``/api/v1/areas``."""

    def __init__(self, market: Market, clock: Clock = system_clock) -> None:
        self.market = market
        self.clock = clock

    def _days(self, feed: AreaFeed | CarbonFeed, now: datetime) -> dict[str, Any]:
        today = local_day(now, feed.timezone)
        return {
            day.isoformat(): {
                "complete": feed.curve.has_day(day, feed.timezone),
                "periods": len(feed.curve.day(day, feed.timezone)),
            }
            for day in (today, today + timedelta(days=1))
        }

    async def curve(self, request: web.Request) -> web.Response:
        self.market.ensure_running()
        series = request.query.get("series", "price")
        if series not in SERIES:
            raise web.HTTPBadRequest(text=f"series must be one of {', '.join(SERIES)}\n")
        now = self.clock()
        area = request.query.get("area")
        if series == "carbon":
            carbon = _pick(self.market.carbon, area, series)
            state = carbon.state()
            doc = state.curve.to_json(state.timezone, CARBON_UNIT)
            doc["periods"] = sorted([*doc["periods"], *_held(state, now)], key=lambda p: str(p["start"]))
            doc["max_age_seconds"] = state.max_age
            doc["days"] = self._days(carbon, now)
        else:
            feed = _pick(self.market.feeds, area, series)
            doc = feed.curve.to_json(feed.timezone)
            doc["days"] = self._days(feed, now)
            doc["tomorrow_published"] = doc["days"][
                (local_day(now, feed.timezone) + timedelta(days=1)).isoformat()
            ]["complete"]
        doc["series"] = series
        doc["now"] = format_utc(now)
        return web.json_response(doc, dumps=lambda d: json.dumps(d, allow_nan=False))

    async def areas(self, _request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "area": feed.area,
                    "timezone": str(feed.timezone),
                    "providers": [p.name for p in feed.providers],
                    **(
                        {"carbon_providers": [p.name for p in self.market.carbon[feed.area].providers]}
                        if feed.area in self.market.carbon
                        else {}
                    ),
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
    carbon_providers = config.build_carbon_providers()
    carbon = []
    if config.carbon is not None:
        zones = {a.area: a.zone for a in config.areas}
        carbon = [
            CarbonFeed(area, zones[area], carbon_providers, config.carbon.refresh, clock)
            for area in config.carbon.areas
        ]
    return Market(feeds, [*providers, *carbon_providers], tick, carbon)


def make_server(
    config: MarketConfig, clock: Clock = system_clock, market: Market | None = None, **kwargs: Any
) -> tuple[ExporterServer, Market]:
    """The market exporter for ``config`` and its ``Market`` (start it with ``ensure_running``)."""
    market = market or build_market(config, clock)
    api = MarketApi(market, clock)
    collectors: list[Collector[Any]] = [MarketCollector(market, clock)]
    if market.carbon:
        collectors.append(CarbonCollector(market, clock))
    server = ExporterServer(
        "market",
        collectors=collectors,
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
    """Day-ahead electricity prices and grid carbon intensity (ENTSO-E, Energy-Charts, static curves)."""
    server, market = make_server(config, web_config=web.web_config)

    async def main() -> None:
        market.ensure_running()  # fetch at start-up, not at the first scrape
        await serve_until_signalled([(server, web.listen_address)])

    asyncio.run(main())
