"""Jobs and pods: the ledger's power, energy, cost and CO2 per job, account, user, pod and namespace,
and what no owner holds per node (the accounting rules, docs/accounting.md).

Energy, cost and CO2 over the selected range integrate the recorded rates (each minute's power,
cost per hour at that minute's price, emissions per hour at that minute's carbon intensity), so a
job that ran across a price change costs what each market period's energy cost: never the last
hour times the current price.
"""

from __future__ import annotations

import grafanalib.core as g

from powerplane.accounting import model

from .common import Layout, Panel, bargauge, dashboard, table, timeseries

UID = "powerplane-jobs"
J = 'hpc_job=~"$hpc_job"'
NS = 'namespace=~"$namespace"'
#: The integration step: the recorded rates are sampled once a minute over the range.
STEP = "1m"
_KWH = " * 60 / 3.6e6"  # a minute's watts, summed → kWh
_PER_MINUTE = " / 60"  # a minute of a rate per hour
_KG = " / 60 / 1000"  # a minute of grams per hour → kg


def _over_range(series: str, by: str, scale: str) -> str:
    """``series`` integrated over the dashboard's range, summed ``by``."""
    return f"sum by ({by}) (sum_over_time({series}[$__range:{STEP}])){scale}"


def _ledger(level: str, selector: str, by: str, legend: str, power: str) -> list[tuple[str, str]]:
    """Energy (kWh), cost (EUR) and CO2 (kg) of ``level`` over the range."""
    matchers = f"{{{selector}}}" if selector else ""
    return [
        (_over_range(power + matchers, by, _KWH), legend),
        (_over_range(f"{level}:powerplane_energy_cost_eur_per_hour:sum{matchers}", by, _PER_MINUTE), legend),
        (_over_range(f"{level}:powerplane_emissions_grams_per_hour:sum{matchers}", by, _KG), legend),
    ]


def _triple(title: str, what: str, queries: list[tuple[str, str]]) -> list[Panel]:
    energy, cost, co2 = queries
    note = (
        " over the selected range, integrated minute by minute at each minute's price and carbon intensity."
    )
    return [
        bargauge(
            f"Energy per {title}", [energy], "kwatth", description=f"IT energy of each {what}{note}", w=8
        ),
        bargauge(
            f"Energy cost per {title}", [cost], "currencyEUR", description=f"Cost of each {what}{note}", w=8
        ),
        bargauge(f"CO2 per {title}", [co2], "masskg", description=f"Emissions of each {what}{note}", w=8),
    ]


def _jobs(layout: Layout) -> None:
    layout.row("HPC jobs").add(
        timeseries(
            "Power per job",
            [(f"{model.JOB_TOTAL}{{{J}}}", "job {{hpc_job}}")],
            "watt",
            description="GPU share plus rest-of-node share of every node the job holds.",
            stacked=True,
            w=24,
        ),
    )
    layout.add(
        *_triple("job", "job", _ledger("hpc_job", J, "cluster, hpc_job", "job {{hpc_job}}", model.JOB_TOTAL))
    )
    layout.add(
        table(
            "Energy per job and part over the range",
            [(_over_range(f"{model.JOBS.power}{{{J}}}", "cluster, hpc_job, part", _KWH), "job {{hpc_job}}")],
            "kwatth",
            description="gpu: the job's share of the GPUs it holds; rest: its allocated-CPU share of the "
            "rest of its nodes (a billing view, docs/accounting.md).",
            w=24,
        ),
    )


def _groups(layout: Layout) -> None:
    layout.row("Accounts and users")
    for group in ("account", "user"):
        layout.add(
            *_triple(
                group,
                f"Slurm {group}'s jobs",
                _ledger(
                    group,
                    "",
                    f"cluster, {group}",
                    f"{{{{{group}}}}}",
                    f"{group}:powerplane_power_watts:attributed",
                ),
            )
        )


def _pods(layout: Layout) -> None:
    layout.row("Pods").add(
        timeseries(
            "Power per pod",
            [(f"sum by (namespace, pod) ({model.PODS.power}{{{NS}}})", "{{namespace}}/{{pod}}")],
            "watt",
            description="GPU share plus measured-CPU share of the rest of the node.",
            stacked=True,
            w=24,
        ),
    )
    layout.add(
        *_triple(
            "pod", "pod", _ledger("pod", NS, "namespace, pod", "{{namespace}}/{{pod}}", model.PODS.power)
        )
    )
    layout.add(
        *_triple(
            "namespace",
            "namespace's pods",
            _ledger(
                "namespace", NS, "namespace", "{{namespace}}", "namespace:powerplane_power_watts:attributed"
            ),
        )
    )


def _unattributed(layout: Layout) -> None:
    layout.row("Unattributed").add(
        timeseries(
            "Unattributed share of each node",
            [(model.UNATTRIBUTED_RATIO, "{{node}}")],
            "percentunit",
            description="Power no job or pod holds (idle GPUs, idle cores, idle nodes) over the node's "
            "power; owners + unattributed = the metered node power.",
            max_value=1,
        ),
        bargauge(
            "Unattributed energy per node",
            [(_over_range(model.UNATTRIBUTED, "node", _KWH), "{{node}}")],
            "kwatth",
            description="Energy of the node no owner held over the selected range.",
        ),
    )


def _attribution(layout: Layout) -> None:
    layout.row("Attribution").add(
        table(
            "GPUs held by pods",
            [(f"{model.POD_HOLDER}{{{NS}}}", "{{namespace}}/{{pod}}")],
            "none",
            hide=("Time", "__name__", "Value"),
        ),
        table(
            "GPUs held by jobs",
            [(f"{model.JOB_HOLDER}{{{J}}}", "job {{hpc_job}}")],
            "none",
            description="From Slurm's GPU allocation (joined on the GPU's minor number) or the job mapping "
            "directory.",
            hide=("Time", "__name__", "Value"),
        ),
    )


def build() -> g.Dashboard:
    layout = Layout()
    for part in (_jobs, _groups, _pods, _unattributed, _attribution):
        part(layout)
    return dashboard(
        UID,
        "Power, energy, cost and CO2 per HPC job, Slurm account and user, pod and namespace, and the power "
        "no owner holds, from the accounting rules.",
        layout,
        ["namespace", "hpc_job"],
    )
