"""Day-ahead electricity prices (the SDAC auction, 15-minute periods) for exporters and the controller.

The Python API other parts of powerplane use::

    from powerplane.exporters.market import KIND, build_market, Curve

    config = KIND.load("market.yaml")
    market = build_market(config)          # providers + one AreaFeed per area
    await market.refresh_all()             # or market.ensure_running() for the background loop
    curve = market.feeds["DE-LU"].curve    # a Curve: UTC periods, EUR/MWh
    curve.price_at(now), curve.next_period(now), curve.cheapest_window(now, timedelta(hours=2))

A single provider can be used directly: ``await provider.fetch(area, start, end) -> Curve``.
Over HTTP the exporter serves the same curve at ``/api/v1/curve?area=DE-LU``
(``Curve.from_json`` reads it back).
"""

from powerplane.components import Component

from .config import KIND, AreaConfig, MarketConfig, ProviderConfig
from .curve import AREA_TIMEZONES, Curve, DayStats, Period, area_timezone, day_bounds, local_day
from .energycharts import EnergyChartsProvider
from .entsoe import AREA_EIC, EntsoeProvider
from .exporter import (
    DEFAULT_PORT,
    METRICS,
    MarketCollector,
    build_market,
    command,
    make_server,
    render_states,
)
from .feed import AreaFeed, FeedState, Market, RefreshPolicy, system_clock
from .files import CsvStore, StaticProvider
from .provider import REASONS, LoadForecast, NotPublished, Provider, ProviderError

__all__ = [
    "AREA_EIC",
    "AREA_TIMEZONES",
    "DEFAULT_PORT",
    "KIND",
    "METRICS",
    "REASONS",
    "AreaConfig",
    "AreaFeed",
    "CsvStore",
    "Curve",
    "DayStats",
    "EnergyChartsProvider",
    "EntsoeProvider",
    "FeedState",
    "LoadForecast",
    "Market",
    "MarketCollector",
    "MarketConfig",
    "NotPublished",
    "Period",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "RefreshPolicy",
    "StaticProvider",
    "area_timezone",
    "build_market",
    "command",
    "day_bounds",
    "local_day",
    "make_server",
    "render_states",
    "system_clock",
]

COMPONENT = Component(
    name="market",
    order=50,
    exporter="powerplane.exporters.market.exporter:command",
    config_kinds=(("market", "powerplane.exporters.market.config:KIND"),),
    metrics=("powerplane.exporters.market.exporter:METRICS",),
    demo="powerplane.lab.market:market_component",
)
