"""PNG previews of the dashboards, drawn with matplotlib from a real Prometheus scraping the demo lab.

Grafana is not needed: the demo lab runs (every part of ``powerplane demo``: the physical model
every meter reads, the exporters, the controller following the market's curve), a real
Prometheus scrapes it with the shipped rules, and every panel's queries run against it
(variables bound as Grafana binds "All").  By default the window is the 15 minutes around the
start of the demo's price spike, so the caps the controller sets then show in the power,
cost and cap panels; the lab runs until that window is over (the spike starts 15 to 30
minutes after the start).  Each panel is drawn at its grid position at about Grafana's size
(1,800 px wide): time series as lines with their legends below, stats as numbers with their
units (or their value mappings' text), bar gauges as bars, tables as text.  Panels whose
metrics the lab does not produce say so.

    powerplane dashboards preview --out docs/img [--seconds 900] [--no-spike]

Needs the ``docs`` extra (matplotlib) and the Debian ``prometheus`` package.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from powerplane.lab import procs

from . import queries
from .build import render

#: Grafana units → (divisor, suffix) for the ones the dashboards use.
_UNITS: dict[str, tuple[float, str]] = {
    "watt": (1.0, " W"),
    "kwatth": (1.0, " kWh"),
    "celsius": (1.0, " °C"),
    "percentunit": (0.01, " %"),
    "hertz": (1e6, " MHz"),
    "currencyEUR": (1.0, " €"),
    "suffix: €/MWh": (1.0, " €/MWh"),
    "rotrpm": (1.0, " rpm"),
    "amp": (1.0, " A"),
    "flowcms": (1.0, " m³/s"),
}
#: Prices above this are the demo's spike (its static curve puts 480 €/MWh there).
SPIKE_PRICE = 300.0
#: Pixels per inch of the PNGs; the figure is 20 inches wide (1,800 px, about Grafana's width).
DPI = 90
WIDTH_IN = 20.0
ROW_IN = 0.42  # one grid row (Grafana's 30 px plus its margin)


def _duration(seconds: float) -> str:
    if abs(seconds) < 0.5:
        return "0 s"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _fmt(value: float, unit: str, decimals: int | None = None) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "s":
        return _duration(value)
    if unit == "bool_on_off":
        return "on" if value else "off"
    div, suffix = _UNITS.get(unit, (1.0, ""))
    v = value / div
    if abs(v) >= 10000 and suffix in (" W", " €", " kWh"):
        return f"{v / 1000:.1f} k{suffix.strip()}"
    if decimals is not None:
        return f"{v:.{decimals}f}{suffix}"
    return f"{v:.3g}{suffix}" if abs(v) < 100 else f"{v:.0f}{suffix}"


_COLORS = {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c", "blue": "#5794f2"}


def _ticks(axis: Any, unit: str) -> Any:
    """A tick formatter with the unit and as many decimals as the axis's span needs."""
    import matplotlib.ticker

    def label(value: float, _pos: int | None) -> str:
        low, high = axis.get_view_interval()
        span = abs(high - low) / _UNITS.get(unit, (1.0, ""))[0]
        decimals = max(0, min(3, -math.floor(math.log10(span / 4)))) if span > 0 else 0
        return _fmt(value, unit, decimals if span < 40 else None)

    return matplotlib.ticker.FuncFormatter(label)


def _color(panel: dict[str, Any], value: float) -> str:
    """The colour of ``value`` under the panel's value mappings or threshold steps, as Grafana picks it."""
    mapped = _mapping(panel, value)
    if mapped is not None and mapped.get("color"):
        return _COLORS.get(str(mapped["color"]), str(mapped["color"]))
    color = "green"
    for step in panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return _COLORS.get(color, color)


def _mapping(panel: dict[str, Any], value: float) -> dict[str, Any] | None:
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        if mapping.get("type") == "value" and not math.isnan(value):
            found = mapping["options"].get(str(int(value))) if value == int(value) else None
            if found is not None:
                return dict(found)
    return None


def _text(panel: dict[str, Any], value: float) -> str:
    """A value as the panel shows it: its mapping's text, or the number with its unit."""
    mapped = _mapping(panel, value)
    if mapped is not None and mapped.get("text"):
        return str(mapped["text"])
    defaults = panel["fieldConfig"]["defaults"]
    return _fmt(value, defaults.get("unit", ""), defaults.get("decimals"))


def _legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or str(labels)


def scrape_interval(scrape_configs: list[dict[str, Any]]) -> int:
    """Seconds between scrapes for the lab: 1 s, or the longest scrape timeout a job sets."""
    timeouts = [
        int(str(c["scrape_timeout"]).removesuffix("s")) for c in scrape_configs if "scrape_timeout" in c
    ]
    return max([1, *timeouts])


async def _start_lab(workdir: Path, stack: contextlib.AsyncExitStack, nodes: int) -> Any:
    from powerplane.lab.demo import DemoContext, start_parts

    ctx = DemoContext(workdir, [f"node-{i + 1:02d}" for i in range(nodes)], stack)
    await start_parts(ctx)
    return ctx


def spike_start(curve_url: str, after: float) -> float | None:
    """When the first run of prices above ``SPIKE_PRICE`` starting after ``after`` begins."""
    status, body = procs.http_get(curve_url, timeout=10)
    if status != 200:
        return None
    previous = 0.0
    for period in json.loads(body).get("periods", []):
        start = datetime.fromisoformat(str(period["start"]).replace("Z", "+00:00")).timestamp()
        price = float(period["price"])
        if price > SPIKE_PRICE >= previous and start > after:
            return start
        previous = price
    return None


def _window(ctx: Any, seconds: float, around_spike: bool, warmup: float) -> tuple[float, float]:
    """The (start, end) to draw: around the price spike's start, or the ``seconds`` from now."""
    first = time.time() + warmup
    market = ctx.shared.get("market") or {}
    spike = spike_start(market["url"], first) if around_spike and market.get("url") else None
    start = first if spike is None else max(first, spike - seconds / 2)
    return start, start + seconds


def _wait_for_a_quarter(log: Any) -> None:
    """Start the lab early in a quarter hour: the demo's spike then starts 15 minutes later.

    (The demo's market prices the quarter hour holding "start + 15 minutes" and the next three at
    the spike's price; started late in a quarter, the spike would begin within minutes.)
    """
    into = time.time() % 900
    if into > 390:
        log(f"waiting {_duration(900 - into)} for the next quarter hour, so the spike comes mid-window")
        time.sleep(900 - into + 2)  # a clock time, not a condition


def _panel_series(
    prom: procs.Prometheus,
    panel: dict[str, Any],
    values: dict[str, str],
    builtins: dict[str, str],
    span: tuple[float, float],
    step: int,
) -> list[tuple[str, list[tuple[float, float]]]]:
    start, end = span
    series = []
    for t in panel.get("targets", []):
        expr = queries.substitute(t["expr"], values, builtins)
        if t.get("instant"):
            points = [(r["metric"], [(end, float(r["value"][1]))]) for r in prom.query(expr, at=end)]
        else:
            data = prom.api("query_range", query=expr, start=start, end=end, step=step)
            points = [(r["metric"], [(float(ts), float(v)) for ts, v in r["values"]]) for r in data["result"]]
        series += [(_legend(t["legendFormat"], m), p) for m, p in points]
    return series


def collect(
    workdir: Path, seconds: float, nodes: int = 4, around_spike: bool = True, log: Any = print
) -> dict[str, Any]:
    """Run the lab and Prometheus through the window; return every panel's data, keyed by dashboard."""
    from powerplane.lab.demo import rule_files_on_disk

    rule_files = rule_files_on_disk(workdir / "rules")
    out: dict[str, Any] = {}
    if around_spike:
        _wait_for_a_quarter(log)
    with procs.BackgroundLoop() as loop:
        stack = contextlib.AsyncExitStack()
        ctx = loop.run(_start_lab(workdir / "lab", stack, nodes), timeout=300)
        interval = scrape_interval(ctx.scrape_configs)
        prom = procs.Prometheus(
            workdir / "prometheus", ctx.scrape_configs, rule_files, scrape_interval=f"{interval}s"
        )
        try:
            prom.start()
            # Rates need a few scrapes of history before the window opens.
            start, end = _window(ctx, seconds, around_spike, 4 * interval + 8)
            left = _duration(end - time.time())
            log(f"drawing {_clock(start)}-{_clock(end)} UTC; the lab runs until then ({left})")
            time.sleep(max(0.0, end - time.time()))  # a stretch of history to draw, not a condition
            builtins = {
                **queries.BUILTINS,
                "__range": f"{int(end - start)}s",
                "__range_s": str(int(end - start)),
                "__rate_interval": f"{4 * interval + 1}s",
            }
            for name, text in render().items():
                doc = json.loads(text)
                values, _empty = queries.bind_variables(doc, prom.query)
                panels = [
                    {"panel": p, "series": _panel_series(prom, p, values, builtins, (start, end), interval)}
                    for p in queries.panels(doc)
                ]
                out[name] = {"doc": doc, "panels": panels, "start": start, "end": end}
        finally:
            prom.stop()
            loop.run(stack.aclose(), timeout=120)
    return out


def _clock(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%H:%M")


# --- drawing -----------------------------------------------------------------------------------


def _time_axis(ax: Any, data: dict[str, Any]) -> None:
    import matplotlib.dates as mdates

    ax.xaxis.set_major_locator(mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=8))  # type: ignore[no-untyped-call,unused-ignore]
    short = data["end"] - data["start"] < 360  # minutes alone would repeat on the ticks
    fmt = "%H:%M:%S" if short else "%H:%M"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=UTC))  # type: ignore[no-untyped-call,unused-ignore]
    ax.set_xlim(_date(data["start"]), _date(data["end"]))


def _date(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def _timeseries(ax: Any, panel: dict[str, Any], series: list[Any], data: dict[str, Any]) -> None:

    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    shown = series[:12]
    for label, pts in shown:
        ax.plot([_date(t) for t, _ in pts], [v for _, v in pts], label=label, lw=1.4)
    _time_axis(ax, data)
    ax.yaxis.set_major_formatter(_ticks(ax.yaxis, unit))
    ax.grid(color="#2c3235", lw=0.6)
    # As many columns as the panel's width holds for the longest label (10 pt text, its line).
    width_pt = ax.get_position().width * ax.figure.get_figwidth() * 72
    longest = max(len(label) for label, _ in shown)
    columns = max(1, min(len(shown), int(width_pt // (longest * 10 * 0.6 + 40))))
    ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=columns, frameon=False)


def _stat(ax: Any, panel: dict[str, Any], series: list[Any]) -> None:
    shown = series[:4]
    for i, (label, p) in enumerate(shown):
        value = p[-1][1]
        single = len(shown) == 1
        text = _text(panel, value) if single else f"{label}: {_text(panel, value)}"
        y = 0.5 if single else 1 - (i + 1) / (len(shown) + 1)
        ax.text(
            0.5, y, text, ha="center", va="center", fontsize=24 if single else 12, color=_color(panel, value)
        )
        if single and label and label.lower() != panel["title"].lower() and "{" not in label:
            ax.text(0.5, 0.16, label, ha="center", va="center", fontsize=11, color="#9fa7b3")
    ax.set_xticks([])
    ax.set_yticks([])


def _state_timeline(ax: Any, panel: dict[str, Any], series: list[Any], data: dict[str, Any]) -> None:
    import matplotlib.dates as mdates

    shown = series[:12]
    for i, (label, pts) in enumerate(shown):
        step = (pts[1][0] - pts[0][0]) if len(pts) > 1 else 1.0
        bars = [(float(mdates.date2num(_date(t))), step / 86400) for t, _ in pts]  # type: ignore[no-untyped-call,unused-ignore]
        ax.broken_barh(bars, (i - 0.4, 0.8), facecolors=[_color(panel, v) for _, v in pts])
        ax.text(0.005, i, label, transform=ax.get_yaxis_transform(), va="center", fontsize=10)
    _time_axis(ax, data)
    ax.set_yticks([])
    ax.set_ylim(len(shown) - 0.5, -0.5)


def _bargauge(ax: Any, panel: dict[str, Any], series: list[Any]) -> None:

    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    shown = series[:10]
    values = [p[-1][1] for _, p in shown]
    ax.barh(range(len(shown)), values, color=[_color(panel, v) for v in values])
    for i, (label, p) in enumerate(shown):
        ax.text(
            0.01,
            i,
            f"{label}  {_text(panel, p[-1][1])}",
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=9,
        )
    ax.set_yticks([])
    ax.xaxis.set_major_formatter(_ticks(ax.xaxis, unit))
    ax.invert_yaxis()


def _table(ax: Any, panel: dict[str, Any], series: list[Any]) -> None:
    lines = [f"{label}: {_text(panel, p[-1][1])}" for label, p in series[:10]]
    ax.text(0.01, 0.95, "\n".join(lines), va="top", fontsize=11, family="monospace")
    ax.set_xticks([])
    ax.set_yticks([])


def draw(name: str, data: dict[str, Any], path: Path) -> None:
    """One PNG per dashboard, panels at their grid positions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("dark_background")  # close to Grafana's dark theme
    plt.rcParams.update(
        {"figure.facecolor": "#111217", "axes.facecolor": "#181b1f", "axes.edgecolor": "#2c3235"}
    )
    doc = data["doc"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in queries.panels(doc))
    head = 0.7  # inches for the dashboard's title
    fig_h = height * ROW_IN + head
    fig = plt.figure(figsize=(WIDTH_IN, fig_h), dpi=DPI)
    window = f"{_clock(data['start'])}-{_clock(data['end'])} UTC, the demo lab"
    fig.suptitle(
        f"{doc['title']}  ·  {window}", x=0.01, y=1 - 0.15 / fig_h, ha="left", fontsize=16, fontweight="bold"
    )
    top = 1 - head / fig_h
    for item in data["panels"]:
        panel, series = item["panel"], item["series"]
        pos = panel["gridPos"]
        x0, w = pos["x"] / 24, pos["w"] / 24
        y0 = top - (pos["y"] + pos["h"]) / height * top
        h = pos["h"] / height * top
        if panel["type"] == "row":
            fig.text(x0 + 0.005, y0 + h / 2, panel["title"], fontsize=13, fontweight="bold", va="center")
            continue
        # Room for tick labels on the left and, for time series, the time axis and the legend below.
        bottom = 0.34 if panel["type"] == "timeseries" else 0.06
        inner = (x0 + 0.052, y0 + h * bottom, w - 0.06, h * (1 - bottom) - 0.3 / fig_h)
        ax = fig.add_axes(inner)
        ax.set_title(panel["title"], fontsize=13, loc="left")
        ax.tick_params(labelsize=10)
        if not series:
            ax.text(0.5, 0.5, "no data in the lab", ha="center", va="center", color="grey", fontsize=11)
            ax.set_xticks([])
            ax.set_yticks([])
        elif panel["type"] == "timeseries":
            _timeseries(ax, panel, series, data)
        elif panel["type"] == "state-timeline":
            _state_timeline(ax, panel, series, data)
        elif panel["type"] == "stat":
            _stat(ax, panel, series)
        elif panel["type"] == "bargauge":
            _bargauge(ax, panel, series)
        else:
            _table(ax, panel, series)
    fig.savefig(path)
    plt.close(fig)


def write_previews(out: Path, seconds: float, around_spike: bool = True) -> list[Path]:
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="powerplane-preview-") as tmp:
        collected = collect(Path(tmp), seconds, around_spike=around_spike)
    paths = []
    for name, data in collected.items():
        path = out / name.replace(".json", ".png")
        draw(name, data, path)
        paths.append(path)
    return paths
