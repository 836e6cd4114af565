"""PNG previews of the dashboards, drawn with matplotlib from a real Prometheus scraping the lab.

Grafana is not needed: the demo lab runs, a real Prometheus scrapes it with the rules from
rules/, and every panel's queries run against it (variables bound as Grafana binds "All").
Each panel is drawn at its grid position: time series as lines, stats as numbers, bar gauges
as bars, tables as text.  Panels whose metrics the lab does not produce yet say so.

    powerplane dashboards preview --out docs/img [--seconds 90]

Needs the ``docs`` extra (matplotlib) and the Debian ``prometheus`` package.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from powerplane.lab import procs

from . import queries
from .build import render

#: Grafana units → (divisor, suffix) for the few the previews print.
_UNITS: dict[str, tuple[float, str]] = {
    "watt": (1.0, " W"),
    "kwatth": (1.0, " kWh"),
    "celsius": (1.0, " °C"),
    "percentunit": (0.01, " %"),
    "hertz": (1e6, " MHz"),
    "s": (1.0, " s"),
    "currencyEUR": (1.0, " €"),
    "suffix: €/MWh": (1.0, " €/MWh"),
    "rotrpm": (1.0, " rpm"),
    "amp": (1.0, " A"),
    "flowcms": (1.0, " m³/s"),
}


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    div, suffix = _UNITS.get(unit, (1.0, ""))
    v = value / div
    if abs(v) >= 10000:
        return f"{v / 1000:.1f} k{suffix.strip()}"
    return f"{v:.3g}{suffix}" if abs(v) < 100 else f"{v:.0f}{suffix}"


_COLORS = {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c", "blue": "#5794f2"}


def _color(panel: dict[str, Any], value: float) -> str:
    """The colour of ``value`` under the panel's threshold steps, as Grafana picks it."""
    color = "green"
    for step in panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return _COLORS.get(color, color)


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


def collect(workdir: Path, seconds: float, nodes: int = 4) -> dict[str, Any]:
    """Run the lab and Prometheus for ``seconds``; return every panel's data, keyed by dashboard."""
    rules = Path(__file__).resolve().parent.parent / "rules"
    rule_files = sorted(rules.glob("*.yaml")) if rules.is_dir() else []
    out: dict[str, Any] = {}
    with procs.BackgroundLoop() as loop:
        stack = contextlib.AsyncExitStack()
        ctx = loop.run(_start_lab(workdir / "lab", stack, nodes))
        interval = scrape_interval(ctx.scrape_configs)
        prom = procs.Prometheus(
            workdir / "prometheus", ctx.scrape_configs, rule_files, scrape_interval=f"{interval}s"
        )
        try:
            prom.start()
            # Leave out the first scrapes, where rates over a few samples ramp up from nothing.
            start = time.time() + 4 * interval + 8
            time.sleep(
                seconds + 4 * interval + 8
            )  # the previews need a stretch of history, not a readiness condition
            end = time.time()
            span = f"{int(end - start)}s"
            builtins = {
                **queries.BUILTINS,
                "__range": span,
                "__range_s": str(int(end - start)),
                "__rate_interval": f"{4 * interval + 1}s",
            }
            for name, text in render().items():
                doc = json.loads(text)
                values, _empty = queries.bind_variables(doc, prom.query)
                panels = []
                for panel in queries.panels(doc):
                    series = []
                    for t in panel.get("targets", []):
                        expr = queries.substitute(t["expr"], values, builtins)
                        if t.get("instant"):
                            result = prom.query(expr, at=end)
                            points = [(r["metric"], [(end, float(r["value"][1]))]) for r in result]
                        else:
                            data = prom.api("query_range", query=expr, start=start, end=end, step=1)
                            points = [
                                (r["metric"], [(float(ts), float(v)) for ts, v in r["values"]])
                                for r in data["result"]
                            ]
                        series += [(_legend(t["legendFormat"], m), p) for m, p in points]
                    panels.append({"panel": panel, "series": series})
                out[name] = {"doc": doc, "panels": panels, "start": start}
        finally:
            prom.stop()
            loop.run(stack.aclose())
    return out


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
    col, row = 0.55, 0.32  # inches per grid column / row
    fig = plt.figure(figsize=(24 * col, height * row + 0.6), dpi=56)
    fig.suptitle(doc["title"], x=0.01, ha="left", fontsize=13, fontweight="bold")
    top = 1 - 0.6 / (height * row + 0.6)
    for item in data["panels"]:
        panel, series = item["panel"], item["series"]
        pos = panel["gridPos"]
        x0, w = pos["x"] / 24, pos["w"] / 24
        y0 = top - (pos["y"] + pos["h"]) / height * top
        h = pos["h"] / height * top
        if panel["type"] == "row":
            fig.text(x0 + 0.005, y0 + h / 2, panel["title"], fontsize=11, fontweight="bold", va="center")
            continue
        # Room on the left for tick labels, as Grafana keeps inside the panel.
        ax = fig.add_axes((x0 + 0.04, y0 + 0.02, w - 0.046, h - 0.055))
        ax.set_title(panel["title"], fontsize=9, loc="left")
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        ax.tick_params(labelsize=6)
        if not series:
            ax.text(0.5, 0.5, "no data in the lab yet", ha="center", va="center", color="grey", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if panel["type"] == "state-timeline":
            shown = series[:12]
            for i, (label, pts) in enumerate(shown):
                times = [t - data["start"] for t, _ in pts]
                bars = [(t, 1.0) for t in times]
                ax.broken_barh(bars, (i - 0.4, 0.8), facecolors=[_color(panel, v) for _, v in pts])
                ax.text(0.005, i, label, transform=ax.get_yaxis_transform(), va="center", fontsize=7)
            ax.set_yticks([])
            ax.set_ylim(len(shown) - 0.5, -0.5)
            ax.set_xlabel("seconds", fontsize=6)
        elif panel["type"] == "timeseries":
            for label, pts in series[:12]:
                ax.plot([t - data["start"] for t, _ in pts], [v for _, v in pts], label=label, lw=1)
            ax.legend(fontsize=5, loc="upper left", ncol=2, frameon=False)
            ax.set_xlabel("seconds", fontsize=6)
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p, u=unit: _fmt(v, u)))
        elif panel["type"] == "stat":
            shown = series[:4]
            for i, (label, p) in enumerate(shown):
                text = _fmt(p[-1][1], unit) if len(shown) == 1 else f"{label}: {_fmt(p[-1][1], unit)}"
                ax.text(
                    0.5,
                    1 - (i + 1) / (len(shown) + 1),
                    text,
                    ha="center",
                    va="center",
                    fontsize=16 if len(shown) == 1 else 9,
                    color=_color(panel, p[-1][1]),
                )
            ax.set_xticks([])
            ax.set_yticks([])
        elif panel["type"] == "bargauge":
            shown = series[:10]
            values = [p[-1][1] for _, p in shown]
            ax.barh(range(len(shown)), values, color=[_color(panel, v) for v in values])
            for i, (label, _p) in enumerate(shown):
                ax.text(0.01, i, label, transform=ax.get_yaxis_transform(), va="center", fontsize=7)
            ax.set_yticks([])
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p, u=unit: _fmt(v, u)))
            ax.invert_yaxis()
        else:  # table
            lines = [f"{label}: {_fmt(p[-1][1], unit)}" for label, p in series[:8]]
            ax.text(0.01, 0.95, "\n".join(lines), va="top", fontsize=7, family="monospace")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.savefig(path)
    plt.close(fig)


def write_previews(out: Path, seconds: float) -> list[Path]:
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="powerplane-preview-") as tmp:
        collected = collect(Path(tmp), seconds)
    paths = []
    for name, data in collected.items():
        path = out / name.replace(".json", ".png")
        draw(name, data, path)
        paths.append(path)
    return paths
