"""``powerplane job ID``: one job's energy, cost and CO2, seff-style, from Prometheus over its exact window.

    $ powerplane job 4242 --prometheus http://prometheus:9090
    Job 4242 of alice (account physics, partition gpu): COMPLETED
    Window        2025-03-04T09:00:12Z to 2025-03-04T11:30:40Z (2h 30m 28s), from scontrol
    Nodes         gpu-07
    Energy        4.032 kWh: gpu 3.497 kWh (energy counters ...), rest 0.535 kWh (integrated ...)
    Power         average 1608 W, peak 1912 W
    Cost          0.3911 EUR over 11 market periods
    CO2           1.452 kg (360 g/kWh on average)
    Node share    gpu-07: 91.2 % of its energy (CPUs 25.0 %, 4 GPUs)
    Data          100.0 % of the job's node time has power data

Runs from a Slurm epilog (EpilogSlurmctld: slurmctld still knows the job there); ``--json`` gives
the same as one JSON document.  Exit status 1 when the job is unknown or Prometheus cannot be
asked; a job whose data is incomplete still exits 0, with the gaps named.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import click

from .prometheus import json_lines
from .summary import Prometheus, PrometheusError, Summary, summarize, utc
from .window import JobNotFound, JobWindow, from_prometheus, from_scontrol, valid_job_id

DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
_DURATION = re.compile(r"([0-9]+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Nodes named one by one in the text summary (--json has them all).
TEXT_NODES = 20


def _seconds(text: str) -> float:
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise click.BadParameter(f"{text!r}: a duration like 30d, 12h or 90m")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def find_window(job_id: str, source: str, prom: Prometheus, cluster: str, lookback: float) -> JobWindow:
    """The job's window from ``source`` (auto: scontrol while slurmctld knows the job, else Prometheus)."""
    errors = []
    if source in ("auto", "scontrol") and (source == "scontrol" or shutil.which("scontrol")):
        try:
            return from_scontrol(job_id)
        except (JobNotFound, OSError) as exc:
            if source == "scontrol":
                raise JobNotFound(str(exc)) from None
            errors.append(str(exc))
    try:
        return from_prometheus(job_id, prom.query, cluster, lookback)
    except JobNotFound as exc:
        raise JobNotFound("; ".join([*errors, str(exc)])) from None


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s"


def _kwh(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.4g} kWh"


def as_dict(summary: Summary) -> dict[str, Any]:
    w = summary.window
    cost, co2 = summary.total("cost_eur"), summary.total("co2_kg")
    return {
        "job_id": w.job_id,
        "cluster": w.cluster or None,
        "user": w.user or None,
        "account": w.account or None,
        "partition": w.partition or None,
        "state": w.state or None,
        "window_source": w.source,
        "start": None if summary.start is None else utc(summary.start),
        "end": None if summary.end is None else utc(summary.end),
        "duration_seconds": None if summary.start is None else summary.end - summary.start,  # type: ignore[operator]
        "rule_interval_seconds": summary.interval or None,
        "nodes": list(w.nodes) or [n.node for n in summary.nodes],
        "energy_kwh": {**summary.energy_kwh, "it": summary.it_energy_kwh},
        "methods": summary.methods,
        "power_watts": {"average": summary.average_watts, "peak": summary.peak_watts},
        "cost_eur": cost,
        "cost_complete": bool(summary.periods) and summary.unknown_kwh("cost_eur") == 0,
        "unpriced_kwh": summary.unknown_kwh("cost_eur"),
        "co2_kg": co2,
        "co2_complete": bool(summary.periods) and summary.unknown_kwh("co2_kg") == 0,
        "facility": _facility_totals(summary),
        "periods": [
            {
                "area": p.area or None,
                "start": utc(p.start),
                "end": utc(p.end),
                "energy_kwh": p.energy_kwh,
                "energy_kwh_by_part": p.parts,
                "price_eur_per_mwh": p.price_eur_per_mwh,
                "cost_eur": p.cost_eur,
                "carbon_grams_per_kwh": p.carbon_grams_per_kwh,
                "co2_kg": p.co2_kg,
            }
            for p in summary.periods
        ],
        "node_share": [
            {
                "node": n.node,
                "energy_kwh": n.energy_kwh,
                "node_energy_kwh": n.node_energy_kwh,
                "share_of_node_energy": None if not n.node_energy_kwh else n.energy_kwh / n.node_energy_kwh,
                "cpu_share": n.cpu_share,
                "gpus": n.gpus,
                "coverage": n.coverage,
            }
            for n in summary.nodes
        ],
        "coverage": summary.coverage,
        "statements": summary.statements,
    }


def _facility_totals(summary: Summary) -> dict[str, Any] | None:
    if "facility" not in summary.energy_kwh:
        return None
    return {
        "energy_kwh": summary.energy_kwh["facility"],
        "cost_eur": summary.total("facility_cost_eur"),
        "co2_kg": summary.total("facility_co2_kg"),
    }


def as_text(summary: Summary) -> str:
    w = summary.window
    owner = ", ".join(
        x
        for x in (
            f"account {w.account}" if w.account else "",
            f"partition {w.partition}" if w.partition else "",
        )
        if x
    )
    head = f"Job {w.job_id}" + (f" (cluster {w.cluster})" if w.cluster else "")
    head += (
        (f" of {w.user}" if w.user else "")
        + (f" ({owner})" if owner else "")
        + (f": {w.state}" if w.state else "")
    )
    lines = [head]

    def row(name: str, value: str) -> None:
        lines.append(f"{name:<14}{value}")

    if summary.start is not None and summary.end is not None:
        span = _duration(summary.end - summary.start)
        row("Window", f"{utc(summary.start)} to {utc(summary.end)} ({span}), from {w.source}")
    nodes = list(w.nodes) or [n.node for n in summary.nodes]
    if nodes:
        row(
            "Nodes",
            ", ".join(nodes[:TEXT_NODES])
            + (f" and {len(nodes) - TEXT_NODES} more" if len(nodes) > TEXT_NODES else ""),
        )
    if summary.energy_kwh:
        parts = ", ".join(
            f"{p} {_kwh(summary.energy_kwh[p])} ({summary.methods.get(p, '')})"
            for p in ("gpu", "rest")
            if p in summary.energy_kwh
        )
        row("Energy", f"{_kwh(summary.it_energy_kwh)}: {parts}")
    facility = _facility_totals(summary)
    if facility:
        row("Facility", f"{_kwh(facility['energy_kwh'])} overhead, apart from the IT energy")
    if summary.average_watts is not None:
        peak = "" if summary.peak_watts is None else f", peak {summary.peak_watts:.0f} W"
        row("Power", f"average {summary.average_watts:.0f} W{peak}")
    if summary.periods:
        _money_rows(summary, row)
    for n in summary.nodes[:TEXT_NODES]:
        share = (
            "" if not n.node_energy_kwh else f"{100 * n.energy_kwh / n.node_energy_kwh:.1f} % of its energy"
        )
        held = ", ".join(
            x
            for x in (
                "" if n.cpu_share is None else f"CPUs {100 * n.cpu_share:.1f} %",
                f"{n.gpus} GPUs" if n.gpus else "",
            )
            if x
        )
        row("Node share", f"{n.node}: {share or 'no power data'}" + (f" ({held})" if held else ""))
    if summary.coverage is not None:
        row("Data", f"{100 * summary.coverage:.1f} % of the job's node time has power data")
    if summary.statements:
        lines.append("Notes")
        lines += [f"  - {s}" for s in summary.statements]
    return "\n".join(lines) + "\n"


def _money_rows(summary: Summary, row: Any) -> None:
    cost, co2, it = summary.total("cost_eur"), summary.total("co2_kg"), summary.it_energy_kwh or 0.0
    priced = [p for p in summary.periods if p.price_eur_per_mwh is not None]
    unpriced = summary.unknown_kwh("cost_eur")
    tail = f"; incomplete: {unpriced:.4g} kWh unpriced" if unpriced else ""
    row(
        "Cost",
        ("unknown" if cost is None else f"{cost:.4f} EUR") + f" over {len(priced)} market periods{tail}",
    )
    missing = summary.unknown_kwh("co2_kg")
    known_kwh = it - missing
    mean = f" ({1000 * co2 / known_kwh:.0f} g/kWh on average)" if co2 is not None and known_kwh > 0 else ""
    row(
        "CO2",
        ("unknown" if co2 is None else f"{co2:.4g} kg")
        + mean
        + (f"; incomplete: {missing:.4g} kWh without CO2" if missing else ""),
    )


@click.command("job")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of the text summary.")
@click.option(
    "--prometheus",
    "url",
    envvar="POWERPLANE_PROMETHEUS_URL",
    default=DEFAULT_PROMETHEUS,
    show_default=True,
    help="The Prometheus with the accounting rules (env POWERPLANE_PROMETHEUS_URL).",
)
@click.option(
    "--bearer-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file holding the bearer token Prometheus wants (never on the command line).",
)
@click.option("--cluster", default="", help="The cluster label of the job's series (where job IDs repeat).")
@click.option(
    "--slurm",
    "source",
    type=click.Choice(["auto", "scontrol", "prometheus"]),
    default="auto",
    show_default=True,
    help="Where the job's window and nodes come from: scontrol, the Slurm exporter's series, or "
    "scontrol while slurmctld knows the job.",
)
@click.option(
    "--lookback", default="30d", show_default=True, help="How far back the Prometheus source looks."
)
@click.option(
    "--query-log",
    type=click.Path(dir_okay=False, writable=True),
    help="Write one JSON line per query here: query, time, seconds, bytes, samples read.",
)
def command(
    job_id: str,
    as_json: bool,
    url: str,
    bearer_token_file: Path | None,
    cluster: str,
    source: str,
    lookback: str,
    query_log: str | None,
) -> None:
    """A job's energy, cost and CO2 (seff-style) from Prometheus over its exact window."""
    try:
        valid_job_id(job_id)
        token = (
            bearer_token_file.read_text().strip()
            if bearer_token_file
            else os.environ.get("POWERPLANE_PROMETHEUS_TOKEN")
        )
        prom = Prometheus(url, token or None)
        with contextlib.ExitStack() as stack:
            if query_log:
                prom.query_log = json_lines(stack.enter_context(open(query_log, "w", encoding="utf-8")))
            window = find_window(job_id, source, prom, cluster, _seconds(lookback))
            summary = summarize(prom, window, cluster=cluster)
    except (JobNotFound, PrometheusError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {query_log}: {exc.strerror or exc}") from None
    click.echo(json.dumps(as_dict(summary), indent=2) if as_json else as_text(summary), nl=as_json)
