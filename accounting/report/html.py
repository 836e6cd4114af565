"""The self-contained HTML report: inline CSS, charts drawn with matplotlib and embedded as PNG."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from .columns import (
    ALERT_HEADERS,
    GAP_HEADERS,
    METHOD_TEXT,
    alert_rows,
    columns_for,
    gap_rows,
    text,
    when,
)
from .model import Report, Row

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
.kpis { display: flex; flex-wrap: wrap; gap: 1em; margin: 1em 0; }
.kpi { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1em; min-width: 9em; }
.kpi b { display: block; font-size: 1.4em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 0 2em; } .charts figure { margin: 0.5em 0; }
.charts figcaption { font-weight: bold; margin-bottom: 0.3em; } .charts img { max-width: 100%; }
.muted { color: #666; font-size: 0.85em; }
"""


def _figure(width: float = 10, height: float = 3.4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    return fig, ax


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _edges(report: Report) -> list[Any]:
    """Each period's start and the range's end: a step drawn over them shows the last period too."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(report.timezone)
    return [dt.datetime.fromtimestamp(t, zone) for t in (*(p.start for p in report.periods), report.end)]


def charted_grouping(report: Report) -> str | None:
    """The grouping the charts show: the first one with more than one group, else the first."""
    for grouping in report.groupings:
        if len(report.rows.get(grouping, ())) > 1:
            return grouping
    return report.groupings[0] if report.groupings else None


def charts(report: Report) -> list[tuple[str, str]]:
    """(title, data URL) of each chart."""
    out: list[tuple[str, str]] = []
    edges = _edges(report)
    grouping = charted_grouping(report)
    if grouping is not None:
        fig, ax = _figure()
        for group, watts in report.power_by_period.get(grouping, {}).items():
            ax.step(edges, [w / 1000 for w in (*watts, watts[-1])], where="post", label=group, linewidth=1.2)
        ax.set_ylabel("kW (15-min average)")
        ax.set_ylim(bottom=0)
        if ax.get_lines():
            ax.legend(fontsize=7, ncol=4, loc="lower left")
        out.append((f"Power over time by {grouping}", _png(fig)))
        rows = report.rows.get(grouping, ())
        for title, key, unit in (("energy", "energy_kwh", "kWh"), ("cost", "cost_eur", "EUR")):
            top = sorted((r for r in rows if getattr(r, key)), key=lambda r: -(getattr(r, key) or 0))[:15]
            if not top:
                continue
            fig, ax = _figure(5, 0.8 + 0.28 * len(top))
            ax.barh(
                [r.group for r in reversed(top)], [getattr(r, key) for r in reversed(top)], color="#4c72b0"
            )
            ax.set_xlabel(unit)
            out.append((f"Top {len(top)} by {title} ({grouping})", _png(fig)))
    prices = [next(iter(p.price_eur_per_mwh.values()), float("nan")) for p in report.periods]
    fig, ax = _figure()
    ax.bar(
        edges[:-1], [p.energy_kwh for p in report.periods], width=1 / 96 * 0.9, align="edge", color="#9ecae1"
    )
    ax.set_ylabel("energy per period (kWh)")
    price_axis = ax.twinx()
    if prices:
        price_axis.step(edges, [*prices, prices[-1]], where="post", color="#d62728", linewidth=1.4)
    price_axis.set_ylabel("price (EUR/MWh)", color="#d62728")
    price_axis.set_ylim(bottom=0)
    out.append(("Day-ahead price and the energy drawn under it", _png(fig)))
    return out


def _table(report: Report, rows: tuple[Row, ...]) -> str:
    columns = columns_for(report, rows)
    return _plain_table([c.header for c in columns], [[text(report, c, r) for c in columns] for r in rows])


def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: Report) -> str:
    t = report.total
    e = html.escape
    kpis = [
        ("energy", f"{t.energy_kwh:.3f} kWh"),
        ("cost", "" if t.cost_eur is None else f"{t.cost_eur:.2f} EUR"),
        ("CO2", "" if t.co2_kg is None else f"{t.co2_kg:.2f} kg"),
        ("peak power", "" if t.peak_power_w is None else f"{t.peak_power_w:.0f} W"),
        ("coverage", "" if t.coverage is None else f"{t.coverage:.1%}"),
        ("alerts", str(len(report.alerts))),
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Energy report {e(when(report, report.start))} to {e(when(report, report.end))}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Energy report</h1>",
        f"<p class='muted'>{e(when(report, report.start))} to {e(when(report, report.end))}"
        f" · step {report.step:g} s · {e(t.method)} · data from {e(report.prometheus)}</p>",
        "<div class='kpis'>"
        + "".join(
            f"<div class='kpi' id='kpi-{e(k.replace(' ', '-'))}'>{e(k)}<b>{e(v)}</b></div>" for k, v in kpis
        )
        + "</div>",
        "<div class='charts'>"
        + "".join(
            f"<figure><figcaption>{e(title)}</figcaption><img alt='{e(title)}' src='{src}'></figure>"
            for title, src in charts(report)
        )
        + "</div>",
    ]
    for grouping, rows in report.rows.items():
        parts.append(f"<h2 id='by-{e(grouping)}'>By {e(grouping)}</h2>{_table(report, rows)}")
    for section, title, headers, cells in (
        ("gaps", "Gaps", GAP_HEADERS, gap_rows(report)),
        ("alerts", "Alerts", ALERT_HEADERS, alert_rows(report)),
    ):
        if cells:
            parts.append(f"<h2 id='{section}'>{title}</h2>{_plain_table(headers, cells)}")
    parts.append(
        "<h2 id='method'>Method</h2><ul>"
        + "".join(f"<li>{e(m)}</li>" for m in METHOD_TEXT)
        + "</ul></body></html>"
    )
    return "\n".join(parts) + "\n"
