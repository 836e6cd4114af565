"""Fleet overview: what the whole site draws and costs now, today, and who draws most."""

from __future__ import annotations

import grafanalib.core as g

from .common import THRESHOLDS, Layout, bargauge, dashboard, drilldown, stat, steps, table, timeseries

UID = "powerplane-fleet"
C = 'cluster=~"$cluster"'


def _now(layout: Layout) -> None:
    layout.row("Now").add(
        stat(
            "Cluster power",
            [(f"sum(cluster:powerplane_power_watts:sum{{{C}}})", "power")],
            "watt",
            description="Input power of the selected clusters (best source per node: BMC, PDU, RAPL+GPU).",
        ),
        stat(
            "Energy today",
            [
                (
                    f"sum(avg_over_time(cluster:powerplane_power_watts:sum{{{C}}}[$__range]))"
                    " * $__range_s / 3.6e6",
                    "energy",
                )
            ],
            "kwatth",
            time_from="now/d",
            description="Energy since local midnight, integrated from the cluster power.",
        ),
        stat(
            "Cost today",
            [
                (
                    f"sum(avg_over_time(cluster:powerplane_energy_cost_eur_per_hour:sum{{{C}}}[$__range]))"
                    " * $__range_s / 3600",
                    "cost",
                )
            ],
            "currencyEUR",
            time_from="now/d",
            decimals=2,
            description="Energy cost since local midnight at the day-ahead price of each period.",
        ),
        stat(
            "Price now",
            [("avg by (area) (powerplane_market_price_eur_per_mwh)", "{{area}}")],
            "suffix: €/MWh",
            description="Day-ahead price of the current market period.",
        ),
        stat(
            "Price next period",
            [("avg by (area) (powerplane_market_next_price_eur_per_mwh)", "{{area}}")],
            "suffix: €/MWh",
        ),
        stat(
            "Nodes capped",
            [("count(count by (node) (powerplane_controller_cap_desired_watts)) or vector(0)", "capped")],
            "short",
            description="Nodes where a policy wants a power cap now (no series: hardware default).",
            links=[drilldown("powerplane-market", "Caps per node")],
        ),
    )
    layout.add(
        timeseries(
            "Power by cluster",
            [(f"cluster:powerplane_power_watts:sum{{{C}}}", "{{cluster}}")],
            "watt",
            stacked=True,
            w=16,
        ),
        stat(
            "Firing alerts",
            [('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")],
            "short",
            thresholds=steps(1, colors=("red",)),
            links=[drilldown("powerplane-status", "Alerts")],
            w=4,
            h=8,
        ),
        stat(
            "Cost rate",
            [(f"sum(cluster:powerplane_energy_cost_eur_per_hour:sum{{{C}}})", "EUR/h")],
            "currencyEUR",
            decimals=2,
            description="What the fleet costs per hour at the current price.",
            w=4,
            h=8,
        ),
    )


def _who_draws_most(layout: Layout) -> None:
    layout.row("Who draws most").add(
        bargauge(
            "Top racks by share of budget",
            [
                (
                    "topk(10, rack:powerplane_power_budget_ratio * on(rack) group_left() "
                    f"max by (rack) (powerplane_node_info{{{C}}}))",
                    "{{rack}}",
                )
            ],
            "percentunit",
            thresholds=steps(*THRESHOLDS["rack_budget_ratio"]),
            max_value=1.2,
            links=[
                drilldown("powerplane-rack", "Rack ${__field.labels.rack}", rack="${__field.labels.rack}")
            ],
        ),
        table(
            "Top nodes by power",
            [
                (
                    f"topk(10, node:powerplane_power_watts:best * on(node) group_left(rack) "
                    f"powerplane_node_info{{{C}}})",
                    "{{node}}",
                )
            ],
            "watt",
            links=[drilldown("powerplane-node", "Node ${__data.fields.node}", node="${__data.fields.node}")],
        ),
    )
    layout.add(
        timeseries(
            "Power by rack",
            [(f"rack:powerplane_power_watts:sum{{{C}}}", "{{rack}}")],
            "watt",
            stacked=True,
            w=24,
            links=[
                drilldown("powerplane-rack", "Rack ${__field.labels.rack}", rack="${__field.labels.rack}")
            ],
        ),
    )


def build() -> g.Dashboard:
    layout = Layout()
    _now(layout)
    _who_draws_most(layout)
    return dashboard(
        UID,
        "Site power and energy cost: now, today, over time, and the racks and nodes that draw most.",
        layout,
        ["cluster"],
    )
