"""The report of ``powerplane simulate``: figures per node and for the cluster, as md, json or html.

Energy counts every period with power data; cost and emissions every such period that also
has a price (a carbon value); a period without one is counted in ``gaps``, never filled.  Work
is in the model's units (busy device-hours times the class weight); ``work_lost_ratio`` is
``1 - work_with / work_without``.  The HTML page is self-contained (plots inlined as PNG).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .simulate import DeviceResult, FloatArray, Simulation


def _sum(values: FloatArray, mask: FloatArray | None = None) -> float:
    picked = values if mask is None else values[mask]
    return float(np.nansum(picked))


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _figures(sim: Simulation, results: Sequence[DeviceResult]) -> dict[str, Any]:
    """Energy, cost, emissions, work and their ratios for a set of devices."""
    hours = sim.timeline.hours
    prices = sim.timeline.prices
    priced = ~np.isnan(prices)
    e0 = e1 = c0 = c1 = g0 = g1 = w0 = w1 = 0.0
    capped = binding = 0
    carbon = sim.timeline.carbon
    any_cap = np.zeros(len(prices), dtype=bool)
    any_binding = np.zeros(len(prices), dtype=bool)
    for r in results:
        watts = r.device.watts
        have = ~np.isnan(watts)
        kwh0 = np.where(have, watts, 0.0) * hours / 1000
        kwh1 = np.where(have, r.power, 0.0) * hours / 1000
        e0, e1 = e0 + float(kwh0.sum()), e1 + float(kwh1.sum())
        c0 += _sum(kwh0 * np.where(priced, prices, 0.0)) / 1000
        c1 += _sum(kwh1 * np.where(priced, prices, 0.0)) / 1000
        if carbon is not None:
            known = np.where(np.isnan(carbon), 0.0, carbon)
            g0, g1 = g0 + float((kwh0 * known).sum()) / 1000, g1 + float((kwh1 * known).sum()) / 1000
        w0, w1 = w0 + float(r.work0.sum()), w1 + float(r.work1.sum())
        any_cap |= ~np.isnan(r.caps)
        any_binding |= ~np.isnan(r.caps) & have & (r.caps < watts)
    capped, binding = int(any_cap.sum()), int(any_binding.sum())
    seen = np.zeros(len(prices), dtype=bool)
    for r in results:
        seen |= ~np.isnan(r.device.watts)
    levels = Counter(d.level for d, s in zip(sim.decisions, seen, strict=True) if s)
    return {
        "energy_kwh": {"without": e0, "with": e1},
        "energy_saved_ratio": _ratio(e0 - e1, e0),
        "cost_eur": {"without": c0, "with": c1},
        "cost_saved_eur": c0 - c1,
        "cost_saved_ratio": _ratio(c0 - c1, c0),
        **({"emissions_kg": {"without": g0, "with": g1}} if carbon is not None else {}),
        "work_units": {"without": w0, "with": w1},
        "work_lost_ratio": _ratio(w0 - w1, w0),
        "kwh_per_work": {"without": _ratio(e0, w0), "with": _ratio(e1, w1)},
        "eur_per_work": {"without": _ratio(c0, w0), "with": _ratio(c1, w1)},
        "periods_capped": capped,
        "periods_binding": binding,
        "hours_at_level": {k: v * hours for k, v in sorted(levels.items())},
        "device_periods_without_power": int(sum(int(np.isnan(r.device.watts).sum()) for r in results)),
    }


def _safety(results: Sequence[DeviceResult]) -> dict[str, Any]:
    above = sum(r.above_original for r in results)
    below = sum(r.below_minimum for r in results)
    return {
        "caps_above_original": above,
        "caps_below_hardware_minimum": below,
        "unsafe": above + below,
        "asked_above_original": sum(r.asked_above for r in results),
        "raised_to_hardware_minimum": sum(r.raised_to_minimum for r in results),
    }


def summary(sim: Simulation) -> dict[str, Any]:
    """The whole report as a JSON-ready document."""
    hours = sim.timeline.hours
    levels = Counter(d.level for d in sim.decisions)
    reasons = Counter(d.reason for d in sim.decisions)
    by_node: dict[str, list[DeviceResult]] = {}
    for r in sim.devices:
        by_node.setdefault(r.device.node, []).append(r)
    nodes = {
        node: {**_figures(sim, rs), "safety": _safety(rs), "devices": sorted(r.device.domain for r in rs)}
        for node, rs in sorted(by_node.items())
    }
    warnings = list(sim.warnings)
    safety = _safety(sim.devices)
    if safety["asked_above_original"]:
        warnings.append(
            f"the policy asked for more than a device's original limit in {safety['asked_above_original']}"
            " device-periods: those caps were clamped to the original limit (a cap never raises a limit)"
        )
    if safety["unsafe"]:
        warnings.append(
            f"{safety['unsafe']} unsafe caps: above an original limit or below a hardware minimum"
        )
    starts = sim.timeline.starts
    return {
        "policy": sim.policy.name,
        "type": type(sim.policy.rule).__name__.lower(),
        "from": starts[0].isoformat().replace("+00:00", "Z"),
        "to": (starts[-1] + sim.timeline.period).isoformat().replace("+00:00", "Z"),
        "period_seconds": int(sim.timeline.period.total_seconds()),
        "periods": len(starts),
        "model": sim.model_source,
        "cluster": _figures(sim, sim.devices),
        "safety": safety,
        "hours_at_level": {k: v * hours for k, v in sorted(levels.items())},
        "decisions": dict(sorted(reasons.items())),
        "gaps": {"periods_without_price": int(np.isnan(sim.timeline.prices).sum())},
        "nodes": nodes,
        "warnings": warnings,
    }


# --- formats ---------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _rows(doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, without, with) rows of a figures block."""
    return [
        ("energy (kWh)", _num(doc["energy_kwh"]["without"]), _num(doc["energy_kwh"]["with"])),
        ("cost (EUR)", _num(doc["cost_eur"]["without"], 2), _num(doc["cost_eur"]["with"], 2)),
        *(
            [("emissions (kg CO2e)", _num(doc["emissions_kg"]["without"]), _num(doc["emissions_kg"]["with"]))]
            if "emissions_kg" in doc
            else []
        ),
        ("work (units)", _num(doc["work_units"]["without"]), _num(doc["work_units"]["with"])),
        (
            "kWh per unit of work",
            _num(doc["kwh_per_work"]["without"], 3),
            _num(doc["kwh_per_work"]["with"], 3),
        ),
        (
            "EUR per unit of work",
            _num(doc["eur_per_work"]["without"], 4),
            _num(doc["eur_per_work"]["with"], 4),
        ),
    ]


def markdown(doc: Mapping[str, Any]) -> str:
    c = doc["cluster"]
    out = [
        f"# Simulation of policy {doc['policy']} ({doc['type']})",
        "",
        f"{doc['from']} to {doc['to']}: {doc['periods']} periods of {doc['period_seconds']} s;"
        f" model: {doc['model']}.",
        "",
        f"**Cost saved: {_num(c['cost_saved_eur'], 2)} EUR ({_pct(c['cost_saved_ratio'])}); work lost:"
        f" {_pct(c['work_lost_ratio'])}; energy saved: {_pct(c['energy_saved_ratio'])}.**",
        "",
        "| cluster | without policy | with policy |",
        "|---|---:|---:|",
        *(f"| {a} | {b} | {c_} |" for a, b, c_ in _rows(c)),
        "",
        f"Periods capped: {c['periods_capped']}, of which the cap lowered some device's draw:"
        f" {c['periods_binding']}.",
        "",
        "| safety | count |",
        "|---|---:|",
        *(f"| {k.replace('_', ' ')} | {v} |" for k, v in doc["safety"].items()),
        "",
        "| level | hours |",
        "|---|---:|",
        *(f"| {k} | {v:g} |" for k, v in doc["hours_at_level"].items()),
        "",
        "| decision reason | periods |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in doc["decisions"].items()),
        "",
        "## Per node",
        "",
        "| node | energy kWh (without → with) | cost EUR (without → with) | saved | work lost | capped"
        " | unsafe |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for node, n in doc["nodes"].items():
        out.append(
            f"| {node} | {_num(n['energy_kwh']['without'])} → {_num(n['energy_kwh']['with'])}"
            f" | {_num(n['cost_eur']['without'], 2)} → {_num(n['cost_eur']['with'], 2)}"
            f" | {_pct(n['cost_saved_ratio'])} | {_pct(n['work_lost_ratio'])} | {n['periods_capped']}"
            f" | {n['safety']['unsafe']} |"
        )
    gaps = doc["gaps"]["periods_without_price"]
    missing = c["device_periods_without_power"]
    out += ["", f"Gaps: {gaps} periods without a price, {missing} device-periods without power data."]
    if doc["warnings"]:
        out += ["", "## Warnings", "", *(f"- {w}" for w in doc["warnings"])]
    return "\n".join(out) + "\n"


def plot_png(sim: Simulation, title: str = "") -> bytes:
    """Cluster power and cumulative cost over the range, without and with the policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = sim.timeline
    hours = t.hours
    p0 = np.nansum([r.device.watts for r in sim.devices], axis=0) / 1000
    p1 = np.nansum([r.power for r in sim.devices], axis=0) / 1000
    price = np.where(np.isnan(t.prices), 0.0, t.prices)
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    ax1.plot(t.starts, t.prices, color="tab:gray", lw=0.7)
    ax1.set_ylabel("EUR/MWh")
    ax2.plot(t.starts, p0, lw=0.7, label="without policy")
    ax2.plot(t.starts, p1, lw=0.7, label="with policy")
    ax2.set_ylabel("cluster kW")
    ax2.legend(loc="upper right", fontsize=8)
    ax3.plot(t.starts, np.cumsum(p0 * hours * price / 1000), label="without policy")
    ax3.plot(t.starts, np.cumsum(p1 * hours * price / 1000), label="with policy")
    ax3.set_ylabel("cumulative EUR")
    ax3.legend(loc="upper left", fontsize=8)
    fig.suptitle(title or f"policy {sim.policy.name}")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def html_page(sim: Simulation, doc: Mapping[str, Any]) -> str:
    def table(rows: Sequence[Sequence[Any]], head: Sequence[str]) -> str:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
        )
        return f"<table><tr>{cells}</tr>{body}</table>"

    c = doc["cluster"]
    png = base64.b64encode(plot_png(sim)).decode("ascii")
    nodes = [
        (
            node,
            _num(n["energy_kwh"]["without"]),
            _num(n["energy_kwh"]["with"]),
            _num(n["cost_eur"]["without"], 2),
            _num(n["cost_eur"]["with"], 2),
            _pct(n["cost_saved_ratio"]),
            _pct(n["work_lost_ratio"]),
            n["periods_capped"],
            n["safety"]["unsafe"],
        )
        for node, n in doc["nodes"].items()
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Simulation of {html.escape(doc['policy'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#eee}"
        "td:first-child{text-align:left}</style></head><body>",
        f"<h1>Policy {html.escape(doc['policy'])} ({html.escape(doc['type'])})</h1>",
        f"<p>{html.escape(doc['from'])} to {html.escape(doc['to'])}, {doc['periods']} periods;"
        f" model: {html.escape(doc['model'])}.</p>",
        f"<p><b>Cost saved {_num(c['cost_saved_eur'], 2)} EUR ({_pct(c['cost_saved_ratio'])}), work lost"
        f" {_pct(c['work_lost_ratio'])}.</b></p>",
        table(_rows(c), ("cluster", "without policy", "with policy")),
        table(list(doc["safety"].items()), ("safety", "count")),
        table(list(doc["hours_at_level"].items()), ("level", "hours")),
        f"<img alt='price, power and cost over the range' src='data:image/png;base64,{png}'>",
        "<h2>Per node</h2>",
        table(
            nodes,
            (
                "node",
                "kWh without",
                "kWh with",
                "EUR without",
                "EUR with",
                "saved",
                "work lost",
                "capped",
                "unsafe",
            ),
        ),
    ]
    if doc["warnings"]:
        parts.append(
            "<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in doc["warnings"]) + "</ul>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render(sim: Simulation, fmt: str) -> str:
    doc = summary(sim)
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "html":
        return html_page(sim, doc)
    return markdown(doc)
