"""The RAPL exporter's metrics."""

from __future__ import annotations

from ..runtime.metrics import MetricSpec

_ZONE = ("zone", "index")
_CONSTRAINT = ("zone", "index", "constraint")
#: The powercap zone names (socket suffix removed) and constraint names the kernel uses.
_ZONES = {"zone": ("package", "core", "uncore", "dram", "psys")}
_CONSTRAINTS = {**_ZONES, "constraint": ("long_term", "short_term", "peak_power")}
ENERGY = MetricSpec(
    "powerplane_rapl_energy_joules_total",
    "counter",
    "Energy consumed by the RAPL zone (wrap-safe: a wrap of energy_uj adds energy, it is not a reset).",
    _ZONE,
    values=_ZONES,
)
POWER_LIMIT = MetricSpec(
    "powerplane_rapl_power_limit_watts",
    "gauge",
    "Power limit of the RAPL constraint (by constraint name).",
    _CONSTRAINT,
    values=_CONSTRAINTS,
)
TIME_WINDOW = MetricSpec(
    "powerplane_rapl_time_window_seconds",
    "gauge",
    "Averaging window of the RAPL constraint.",
    _CONSTRAINT,
    values=_CONSTRAINTS,
)
MAX_POWER = MetricSpec(
    "powerplane_rapl_max_power_watts",
    "gauge",
    "Highest power limit the RAPL constraint accepts.",
    _CONSTRAINT,
    values=_CONSTRAINTS,
)
ZONE_ENABLED = MetricSpec(
    "powerplane_rapl_zone_enabled",
    "gauge",
    "Whether power limiting is enabled for the RAPL zone (1) or not (0).",
    _ZONE,
    values=_ZONES,
)
METRICS = (ENERGY, POWER_LIMIT, TIME_WINDOW, MAX_POWER, ZONE_ENABLED)
