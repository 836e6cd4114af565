"""The columns of a report's tables, shared by every format (CSV, JSON, Markdown, XLSX, HTML)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .model import Report, Row

SOURCES = ("bmc", "pdu", "rapl", "gpu", "attributed")

Value = float | int | str | None


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    get: Callable[[Row], Value]
    #: Decimal places in text formats (None: as is).
    digits: int | None = None


def _source(name: str) -> Callable[[Row], Value]:
    return lambda r: r.source_kwh.get(name)


COLUMNS: tuple[Column, ...] = (
    Column("group", "group", lambda r: r.group),
    Column("members", "members", lambda r: r.members),
    Column("energy_kwh", "energy (kWh)", lambda r: r.energy_kwh, 3),
    *(Column(f"{s}_kwh", f"{s} (kWh)", _source(s), 3) for s in SOURCES),
    Column("facility_kwh", "facility (kWh)", lambda r: r.facility_kwh, 3),
    Column("best_sources", "best source", lambda r: r.sources_text),
    Column("method", "method", lambda r: r.method),
    Column("cost_eur", "cost (EUR)", lambda r: r.cost_eur, 2),
    Column("unpriced_kwh", "unpriced (kWh)", lambda r: r.unpriced_kwh, 3),
    Column("co2_kg", "CO2 (kg)", lambda r: r.co2_kg, 2),
    Column("avg_power_w", "avg power (W)", lambda r: r.avg_power_w, 0),
    Column("peak_power_w", "peak power (W)", lambda r: r.peak_power_w, 0),
    Column("peak_at", "peak at", lambda r: r.peak_at),
    Column("gpu_utilisation", "GPU util", lambda r: r.gpu_utilisation, 3),
    Column("max_gpu_temperature_c", "max GPU (°C)", lambda r: r.max_gpu_temperature_c, 1),
    Column("gpu_temperature_above_s", "GPU above (s)", lambda r: r.gpu_temperature_above_s, 0),
    Column("max_inlet_temperature_c", "max inlet (°C)", lambda r: r.max_inlet_temperature_c, 1),
    Column("inlet_temperature_above_s", "inlet above (s)", lambda r: r.inlet_temperature_above_s, 0),
    Column("alerts", "alerts", lambda r: r.alerts),
    Column("coverage", "coverage", lambda r: r.coverage, 4),
    Column("gaps", "gaps", lambda r: len(r.gaps)),
)


def columns_for(report: Report, rows: tuple[Row, ...]) -> tuple[Column, ...]:
    """The columns with a value in at least one row (a CPU-only site shows no GPU columns)."""
    always = {"group", "members", "energy_kwh", "best_sources", "method", "cost_eur", "co2_kg", "alerts"}
    return tuple(c for c in COLUMNS if c.key in always or any(c.get(r) not in (None, 0, 0.0) for r in rows))


def when(report: Report, timestamp: float | None) -> str:
    """A time as people read it in the report's time zone: ``2026-03-02 01:11 UTC``."""
    if timestamp is None:
        return ""
    local = dt.datetime.fromtimestamp(timestamp, ZoneInfo(report.timezone))
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or report.timezone)


def text(report: Report, column: Column, row: Row) -> str:
    """The cell as text: rounded to the column's digits, times in the report's zone, empty for none."""
    value = column.get(row)
    if value is None:
        return ""
    if column.key == "peak_at":
        return when(report, float(value))
    if isinstance(value, float) and column.digits is not None:
        return f"{value:.{column.digits}f}"
    return str(value)


GAP_HEADERS = ("node", "from", "to", "length")
ALERT_HEADERS = ("alert", "severity", "where", "from", "to", "length")


def gap_rows(report: Report) -> list[list[str]]:
    """Each gap once (a node's gap shows in every grouping it belongs to), in time order."""
    listed = sorted(
        {(g.member, g.start, g.end) for rows in report.rows.values() for r in rows for g in r.gaps}
    )
    return [[m, when(report, a), when(report, b), duration(b - a)] for m, a, b in listed]


def alert_rows(report: Report) -> list[list[str]]:
    return [
        [
            a.alertname,
            a.severity,
            ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())),
            when(report, a.start),
            when(report, a.end),
            duration(a.seconds),
        ]
        for a in report.alerts
    ]


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}" if hours else f"{minutes} min"


METHOD_TEXT = (
    "Energy comes from energy counters (Prometheus increase(), counter resets handled) wherever a "
    "source has one: RAPL, GPU (NVML), PDU outlets, the BMC's meter. Where a source has only a power "
    "gauge (a BMC without a meter, attributed job and pod power), the power is integrated over each "
    "step (avg_over_time times the step). The column 'method' says which, per row.",
    "The best-source total follows the recording rules' precedence per node and step: BMC, else PDU "
    "outlets, else RAPL + GPU. The other source columns show what each source measured.",
    "Cost sums each 15-minute market period's energy at that period's day-ahead price "
    "(powerplane_market_price_eur_per_mwh of the node's cluster's area), never an average price; "
    "energy in periods without a price is 'unpriced'. CO2 uses the grid carbon intensity of each period.",
    "Coverage is the share of node-steps with energy data; gaps list each stretch without data. "
    "Gaps are reported, never filled: a gap's energy is missing from the totals.",
    "Peak power is the highest group power averaged over one step; average power is the energy over "
    "the time with data. Temperatures are the highest sample; 'above' counts steps with a sample "
    "above the alert threshold. Alerts are the ALERTS series in state firing.",
    "Job, user and account rows come from hpc_job:powerplane_power_watts:attributed (users and "
    "accounts joined through powerplane_slurm_job_info), pod and namespace rows from "
    "pod:powerplane_power_watts:attributed; '(unattributed)' is node:powerplane_power_watts:unattributed "
    "(owners + unattributed = metered node power).",
)
