"""The XLSX report (XlsxWriter): a summary, one sheet per grouping, periods, gaps, alerts and the method."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import xlsxwriter

from .columns import METHOD_TEXT, alert_rows, columns_for, duration
from .model import Report, Row


def _local(report: Report, timestamp: float) -> dt.datetime:
    # Excel has no time zones: cells hold the local wall-clock time of the report's zone.
    return dt.datetime.fromtimestamp(timestamp, ZoneInfo(report.timezone)).replace(tzinfo=None)


def write_xlsx(report: Report, path: Path) -> None:
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "nan_inf_to_errors": True})
    bold = book.add_format({"bold": True})
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    fmt = {
        3: book.add_format({"num_format": "0.000"}),
        2: book.add_format({"num_format": "0.00"}),
        1: book.add_format({"num_format": "0.0"}),
        0: book.add_format({"num_format": "0"}),
        4: book.add_format({"num_format": "0.00%"}),
    }
    _summary(book.add_worksheet("summary"), report, bold, when)
    for grouping, rows in report.rows.items():
        _rows(book.add_worksheet(f"by {grouping}"[:31]), report, rows, bold, when, fmt)
    periods = book.add_worksheet("periods")
    areas = sorted({a for p in report.periods for a in p.price_eur_per_mwh})
    periods.write_row(
        0,
        0,
        [
            "period start",
            "energy (kWh)",
            "cost (EUR)",
            *(f"price {a} (EUR/MWh)" for a in areas),
            *(f"carbon {a} (g/kWh)" for a in areas),
        ],
        bold,
    )
    for i, p in enumerate(report.periods, start=1):
        periods.write_datetime(i, 0, _local(report, p.start), when)
        periods.write_number(i, 1, p.energy_kwh, fmt[3])
        _cell(periods, i, 2, p.cost_eur, fmt[2])
        for j, a in enumerate(areas):
            _cell(periods, i, 3 + j, p.price_eur_per_mwh.get(a), fmt[2])
            _cell(periods, i, 3 + len(areas) + j, p.carbon_g_per_kwh.get(a), fmt[0])
    gaps = book.add_worksheet("gaps")
    gaps.write_row(0, 0, ["node", "from", "to", "length"], bold)
    listed = sorted(
        {(g.member, g.start, g.end) for rows in report.rows.values() for r in rows for g in r.gaps}
    )
    for i, (member, start, end) in enumerate(listed, start=1):
        gaps.write_string(i, 0, member)
        gaps.write_datetime(i, 1, _local(report, start), when)
        gaps.write_datetime(i, 2, _local(report, end), when)
        gaps.write_string(i, 3, duration(end - start))
    alerts = book.add_worksheet("alerts")
    alerts.write_row(0, 0, ["alert", "severity", "labels", "from", "to", "minutes"], bold)
    for i, (episode, cells) in enumerate(zip(report.alerts, alert_rows(report), strict=True), start=1):
        alerts.write_row(i, 0, cells[:3])
        alerts.write_datetime(i, 3, _local(report, episode.start), when)
        alerts.write_datetime(i, 4, _local(report, episode.end), when)
        alerts.write_number(i, 5, episode.seconds / 60)
    method = book.add_worksheet("method")
    method.set_column(0, 0, 140)
    method.write_string(0, 0, "How the figures were obtained", bold)
    for i, line in enumerate(METHOD_TEXT, start=2):
        method.write_string(i, 0, line)
    method.write_string(
        len(METHOD_TEXT) + 3,
        0,
        f"Step: {report.step:g} s. Time zone: {report.timezone}. Data: {report.prometheus}.",
    )
    book.close()


def _cell(sheet: Any, row: int, col: int, value: float | None, cell_format: Any) -> None:
    if value is None:
        sheet.write_blank(row, col, None)
    else:
        sheet.write_number(row, col, value, cell_format)


def _summary(sheet: Any, report: Report, bold: Any, when: Any) -> None:
    t = report.total
    sheet.set_column(0, 0, 28)
    sheet.set_column(1, 1, 22)
    items: list[tuple[str, Any]] = [
        ("from", _local(report, report.start)),
        ("to", _local(report, report.end)),
        ("time zone", report.timezone),
        ("energy (kWh)", t.energy_kwh),
        ("cost (EUR)", t.cost_eur),
        ("unpriced energy (kWh)", t.unpriced_kwh),
        ("CO2 (kg)", t.co2_kg),
        ("average power (W)", t.avg_power_w),
        ("peak power (W)", t.peak_power_w),
        ("peak at", None if t.peak_at is None else _local(report, t.peak_at)),
        ("method", t.method),
        ("best source", t.sources_text),
        ("coverage", t.coverage),
        ("alerts fired", len(report.alerts)),
        ("step (s)", report.step),
        ("data from", report.prometheus),
    ]
    sheet.write_string(0, 0, "Energy report", bold)
    for i, (name, value) in enumerate(items, start=2):
        sheet.write_string(i, 0, name, bold)
        if isinstance(value, dt.datetime):
            sheet.write_datetime(i, 1, value, when)
        elif value is None:
            sheet.write_blank(i, 1, None)
        else:
            sheet.write(i, 1, value)


def _rows(
    sheet: Any, report: Report, rows: tuple[Row, ...], bold: Any, when: Any, fmt: dict[int, Any]
) -> None:
    columns = columns_for(report, rows)
    sheet.write_row(0, 0, [c.header for c in columns], bold)
    sheet.freeze_panes(1, 1)
    for i, row in enumerate(rows, start=1):
        for j, column in enumerate(columns):
            value = column.get(row)
            if value is None:
                sheet.write_blank(i, j, None)
            elif column.key == "peak_at":
                sheet.write_datetime(i, j, _local(report, float(value)), when)
            elif isinstance(value, str):
                sheet.write_string(i, j, value)
            else:
                sheet.write_number(i, j, value, fmt.get(column.digits if column.digits is not None else -1))
