"""What a report holds once computed: rows per group, the periods, the alerts, how it was measured."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gap:
    """A stretch of the range in which one member of a group had no energy data."""

    member: str
    start: float
    end: float
    #: How many further gaps of this member were not listed (bounded memory).
    more: int = 0


@dataclass(frozen=True)
class AlertEpisode:
    """One alert firing from ``start`` to ``end`` (at the report's step resolution)."""

    alertname: str
    severity: str
    labels: Mapping[str, str]
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Row:
    """One group of one grouping: every figure of the report."""

    grouping: str
    group: str
    members: int
    energy_kwh: float
    #: Energy each source measured (kWh), whether or not it is the best source of the group.
    source_kwh: Mapping[str, float]
    #: Share of the best-source energy's steps by source level ("bmc", "pdu", "rapl+gpu", "attributed").
    best_sources: Mapping[str, float]
    #: Share of the best-source steps that came from energy counters (the rest: integrated power).
    counter_share: float | None
    cost_eur: float | None
    unpriced_kwh: float
    co2_kg: float | None
    avg_power_w: float | None
    peak_power_w: float | None
    peak_at: float | None
    #: Facility overhead energy (kWh) where the accounting rules record it; not part of energy_kwh.
    facility_kwh: float | None
    gpu_utilisation: float | None
    max_gpu_temperature_c: float | None
    gpu_temperature_above_s: float | None
    max_inlet_temperature_c: float | None
    inlet_temperature_above_s: float | None
    alerts: int
    #: Share of member-steps with data (None for owners, which exist only while they run).
    coverage: float | None
    gaps: tuple[Gap, ...] = ()

    @property
    def method(self) -> str:
        """``counter``, ``integrated`` or ``counter 83 % / integrated 17 %``: how the energy was obtained."""
        share = self.counter_share
        if share is None:
            return "no data"
        if share >= 0.9995:
            return "counter"
        if share <= 0.0005:
            return "integrated"
        return f"counter {share:.0%} / integrated {1 - share:.0%}"

    @property
    def sources_text(self) -> str:
        return ", ".join(f"{k} {v:.0%}" for k, v in self.best_sources.items() if v > 0) or "none"


@dataclass(frozen=True)
class Period:
    """One market period: its prices and carbon intensity (per area) and the energy drawn in it."""

    start: float
    price_eur_per_mwh: Mapping[str, float]
    carbon_g_per_kwh: Mapping[str, float]
    energy_kwh: float
    cost_eur: float | None


@dataclass(frozen=True)
class Report:
    """The whole report."""

    start: float
    end: float
    step: float
    timezone: str
    prometheus: str
    generated_at: float
    groupings: tuple[str, ...]
    rows: Mapping[str, tuple[Row, ...]]
    total: Row
    periods: tuple[Period, ...]
    #: Average power per period of the groups charted (grouping → group → watts per period).
    power_by_period: Mapping[str, Mapping[str, tuple[float, ...]]]
    alerts: tuple[AlertEpisode, ...]
    alerts_more: int = 0
    thresholds: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
