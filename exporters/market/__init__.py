"""Day-ahead electricity prices (the SDAC auction, 15-minute periods) and grid carbon intensity.

The Python API other parts of powerplane use::

    from powerplane.exporters.market import KIND, build_market, Curve

    config = KIND.load("market.yaml")
    market = build_market(config)          # providers + one AreaFeed per area
    await market.refresh_all()             # or market.ensure_running() for the background loop
    curve = market.feeds["DE-LU"].curve    # a Curve: UTC periods, EUR/MWh
    curve.price_at(now), curve.next_period(now), curve.cheapest_window(now, timedelta(hours=2))

    carbon = market.carbon["DE-LU"].state()  # with a carbon: section; gCO2eq/kWh per period
    carbon.current(now)                    # the latest value within the configured maximum age

A single provider can be used directly: ``await provider.fetch(area, start, end) -> Curve``.
Over HTTP the exporter serves the same curves at ``/api/v1/curve?area=DE-LU`` and
``/api/v1/curve?area=DE-LU&series=carbon`` (``Curve.from_json`` reads either back).

    powerplane_market_price_eur_per_mwh{area="DE-LU"} 87.12
    powerplane_grid_carbon_intensity_grams_per_kwh{area="DE-LU"} 312.4
"""

from powerplane.components import Component

from .carbon import default_factors, factor_table, intensity
from .collectors import CarbonCollector, MarketCollector, render_carbon, render_states
from .config import KIND, AreaConfig, MarketConfig, ProviderConfig
from .curve import AREA_TIMEZONES, Curve, DayStats, Period, area_timezone, day_bounds, local_day
from .electricitymaps import ElectricityMapsProvider
from .energycharts import EnergyChartsProvider
from .entsoe import AREA_EIC, EntsoeCarbonProvider, EntsoeProvider
from .exporter import DEFAULT_PORT, build_market, command, make_server
from .feed import (
    AreaFeed,
    CarbonFeed,
    CarbonPolicy,
    CarbonState,
    FeedState,
    Market,
    RefreshPolicy,
    system_clock,
)
from .files import CsvStore, StaticProvider
from .metrics import METRICS
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
    "CarbonCollector",
    "CarbonFeed",
    "CarbonPolicy",
    "CarbonState",
    "CsvStore",
    "Curve",
    "DayStats",
    "ElectricityMapsProvider",
    "EnergyChartsProvider",
    "EntsoeCarbonProvider",
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
    "default_factors",
    "factor_table",
    "intensity",
    "local_day",
    "make_server",
    "render_carbon",
    "render_states",
    "system_clock",
]

COMPONENT = Component(
    name="market",
    order=50,
    exporter="powerplane.exporters.market.exporter:command",
    config_kinds=(("market", "powerplane.exporters.market.config:KIND"),),
    metrics=("powerplane.exporters.market.metrics:METRICS",),
    demo="powerplane.lab.market:market_component",
)
