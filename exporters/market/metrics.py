"""Every series the market exporter emits: day-ahead prices and grid carbon intensity.

Prometheus cannot ingest samples in the future, so both curves are exposed relative to *now*:
the current and next period, a fixed set of horizons ahead, day statistics and the cheapest
(or cleanest) windows.  Labels come from fixed sets (``horizon``, ``day``, ``window``), about 40
series per area and curve.
"""

from __future__ import annotations

from datetime import timedelta

from ..runtime.metrics import MetricSpec

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
    "malformed, too_large, no_data, sequence_missing, other); no_data counts polls before publication.",
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
PRICE_METRICS = (
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

# --- grid carbon intensity ----------------------------------------------------------------------

_CARBON = " Cached: refreshed from the provider every few minutes, never per scrape."
CARBON = MetricSpec(
    "powerplane_grid_carbon_intensity_grams_per_kwh",
    "gauge",
    "Grid carbon intensity (lifecycle gCO2eq per kWh) of the current period, or of the latest period "
    "within the configured maximum age when measurements lag (see the data age)." + _CARBON,
    _A,
)
CARBON_AGE = MetricSpec(
    "powerplane_grid_carbon_intensity_data_age_seconds",
    "gauge",
    "Seconds since the end of the period the current carbon intensity describes (0 while a period "
    "containing now is known, e.g. from a forecast or a static curve).",
    _A,
)
CARBON_NEXT = MetricSpec(
    "powerplane_grid_carbon_intensity_next_grams_per_kwh",
    "gauge",
    "Carbon intensity of the period after the one containing now (forecast or static sources)." + _CARBON,
    _A,
)
CARBON_AHEAD = MetricSpec(
    "powerplane_grid_carbon_intensity_ahead_grams_per_kwh",
    "gauge",
    "Carbon intensity of the period containing now + horizon (15m ... 24h), where a forecast or static "
    "curve knows it." + _CARBON,
    ("area", "horizon"),
)
CARBON_DAY_MIN = MetricSpec(
    "powerplane_grid_carbon_intensity_day_min_grams_per_kwh",
    "gauge",
    "Lowest carbon intensity among the known periods of the local day (day=today|tomorrow)." + _CARBON,
    ("area", "day"),
)
CARBON_DAY_MAX = MetricSpec(
    "powerplane_grid_carbon_intensity_day_max_grams_per_kwh",
    "gauge",
    "Highest carbon intensity among the known periods of the local day (day=today|tomorrow)." + _CARBON,
    ("area", "day"),
)
CARBON_DAY_MEAN = MetricSpec(
    "powerplane_grid_carbon_intensity_day_mean_grams_per_kwh",
    "gauge",
    "Time-weighted mean carbon intensity of the known periods of the local day (day=today|tomorrow)."
    + _CARBON,
    ("area", "day"),
)
CARBON_DAY_PERIODS = MetricSpec(
    "powerplane_grid_carbon_intensity_day_periods",
    "gauge",
    "Periods of the local day with a known carbon intensity (today: measured so far, plus any forecast)."
    + _CARBON,
    ("area", "day"),
)
CLEANEST_START = MetricSpec(
    "powerplane_grid_carbon_cleanest_window_start_timestamp_seconds",
    "gauge",
    "Start of the lowest-carbon window of the given length (1h, 2h, 4h, 8h) starting from the current "
    "period and ending within 24 h (needs a forecast or static curve)." + _CARBON,
    ("area", "window"),
)
CLEANEST_VALUE = MetricSpec(
    "powerplane_grid_carbon_cleanest_window_grams_per_kwh",
    "gauge",
    "Mean carbon intensity of that lowest-carbon window." + _CARBON,
    ("area", "window"),
)
CARBON_SOURCE = MetricSpec(
    "powerplane_grid_carbon_source_info",
    "info",
    "The provider the carbon intensity in use came from, constant 1.",
    ("area", "provider"),
)
CARBON_ERRORS = MetricSpec(
    "powerplane_grid_carbon_fetch_errors_total",
    "counter",
    "Failed carbon-intensity fetches by provider and reason (auth, rate_limited, unavailable, http, timeout, "
    "connection, malformed, too_large, no_data, stale, other); stale counts answers without a current value.",
    ("area", "provider", "reason"),
)
CARBON_METRICS = (
    CARBON,
    CARBON_AGE,
    CARBON_NEXT,
    CARBON_AHEAD,
    CARBON_DAY_MIN,
    CARBON_DAY_MAX,
    CARBON_DAY_MEAN,
    CARBON_DAY_PERIODS,
    CLEANEST_START,
    CLEANEST_VALUE,
    CARBON_SOURCE,
    CARBON_ERRORS,
)
METRICS = PRICE_METRICS + CARBON_METRICS
