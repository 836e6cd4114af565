"""CSV and JSON for machines, Markdown for e-mail."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from .columns import (
    ALERT_HEADERS,
    COLUMNS,
    GAP_HEADERS,
    METHOD_TEXT,
    alert_rows,
    columns_for,
    gap_rows,
    text,
    when,
)
from .model import Report, Row


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _row_doc(row: Row) -> dict[str, Any]:
    doc = dataclasses.asdict(row)
    doc["method"] = row.method
    return doc


def to_json(report: Report) -> str:
    """The whole report as one JSON document (raw values, times as Unix seconds)."""
    doc = dataclasses.asdict(report)
    doc["rows"] = {g: [_row_doc(r) for r in rows] for g, rows in report.rows.items()}
    doc["total"] = _row_doc(report.total)
    doc["method"] = list(METHOD_TEXT)
    return json.dumps(_clean(doc), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def to_csv(report: Report) -> str:
    """One table: a line per group of every grouping (and the total), unrounded."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["grouping", *(c.key for c in COLUMNS)])
    for grouping, rows in (("total", (report.total,)), *report.rows.items()):
        for row in rows:
            cells = []
            for column in COLUMNS:
                value = column.get(row)
                if column.key == "peak_at" and value is not None:
                    value = when(report, float(value))
                cells.append("" if value is None else value)
            writer.writerow([grouping, *cells])
    return out.getvalue()


def _table(report: Report, rows: tuple[Row, ...]) -> list[str]:
    columns = columns_for(report, rows)
    return _plain_table([c.header for c in columns], [[text(report, c, r) for c in columns] for r in rows])


def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def to_markdown(report: Report) -> str:
    t = report.total
    lines = [
        f"# Energy report {when(report, report.start)} to {when(report, report.end)}",
        "",
        f"- Energy: **{t.energy_kwh:.3f} kWh** ({t.method}; best source {t.sources_text})",
        f"- Cost: **{_money(t.cost_eur)}**"
        + (f" ({t.unpriced_kwh:.3f} kWh without a price)" if t.unpriced_kwh > 0.0005 else ""),
        f"- CO2: **{'no carbon intensity' if t.co2_kg is None else f'{t.co2_kg:.2f} kg'}**",
        f"- Peak power: {_num(t.peak_power_w)} at {when(report, t.peak_at) or '-'};"
        f" average {_num(t.avg_power_w)}",
        f"- Coverage: {'' if t.coverage is None else f'{t.coverage:.1%}'};"
        f" alerts fired: {len(report.alerts)}",
        f"- Step {report.step:g} s; data from {report.prometheus}",
    ]
    for grouping, rows in report.rows.items():
        lines += ["", f"## By {grouping}", "", *_table(report, rows)]
    for title, headers, cells in (
        ("Gaps", GAP_HEADERS, gap_rows(report)),
        ("Alerts", ALERT_HEADERS, alert_rows(report)),
    ):
        if cells:
            lines += ["", f"## {title}", "", *_plain_table(headers, cells)]
    lines += ["", "## Method", "", *(f"- {m}" for m in METHOD_TEXT)]
    return "\n".join(lines) + "\n"


def _money(value: float | None) -> str:
    return "no price" if value is None else f"{value:.2f} EUR"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} W"
