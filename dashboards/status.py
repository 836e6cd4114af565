"""System status: the HPC status board — availability, exporters and targets, data age, alerts."""

from __future__ import annotations

import grafanalib.core as g

from .common import (
    STATUS_MAPPINGS,
    THRESHOLDS,
    Layout,
    bargauge,
    dashboard,
    drilldown,
    stat,
    state_timeline,
    steps,
    table,
)

UID = "powerplane-status"
C = 'cluster=~"$cluster"'


def healthy(by: str) -> str:
    """1 per healthy node and 0 per other node, labelled with ``by`` from the inventory."""
    return f"(node:powerplane_status:state == bool 0) * on(node) group_left({by}) powerplane_node_info{{{C}}}"


def build() -> g.Dashboard:
    layout = Layout()
    layout.row("Availability").add(
        stat(
            "Nodes healthy",
            [(f"sum({healthy('cluster')})", "healthy")],
            "short",
            w=4,
        ),
        stat(
            "Nodes degraded or offline",
            [(f"count({healthy('cluster')} == 0) or vector(0)", "not healthy")],
            "short",
            thresholds=steps(1, colors=("red",)),
            w=4,
        ),
        stat(
            "Firing alerts",
            [('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")],
            "short",
            thresholds=steps(1, colors=("red",)),
            w=4,
        ),
        bargauge(
            "Availability per partition",
            [(f"avg by (partition) ({healthy('partition')})", "{{partition}}")],
            "percentunit",
            thresholds=steps(0.9, 1, base="red", colors=("orange", "green")),
            max_value=1,
            w=6,
            h=4,
        ),
        bargauge(
            "Availability per rack",
            [(f"avg by (rack) ({healthy('rack')})", "{{rack}}")],
            "percentunit",
            thresholds=steps(0.9, 1, base="red", colors=("orange", "green")),
            max_value=1,
            links=[
                drilldown("powerplane-rack", "Rack ${__field.labels.rack}", rack="${__field.labels.rack}")
            ],
            w=6,
            h=4,
        ),
    )
    layout.add(
        state_timeline(
            "Node status",
            [
                (
                    "node:powerplane_status:state * on(node) group_left() "
                    f"max by (node) (powerplane_node_info{{{C}}})",
                    "{{node}}",
                )
            ],
            "none",
            mappings=STATUS_MAPPINGS,
            thresholds=steps(1, 2),
            description="0 healthy, 1 degraded, 2 offline, per node (the recording rule's states).",
        ),
    )
    layout.row("Exporters and targets").add(
        bargauge(
            "Targets up per job",
            [("avg by (job) (up)", "{{job}}")],
            "percentunit",
            thresholds=steps(0.99, 1, base="red", colors=("orange", "green")),
            max_value=1,
            w=8,
        ),
        bargauge(
            "Collectors succeeding",
            [
                (
                    "avg by (exporter, collector) (powerplane_scrape_collector_success)",
                    "{{exporter}} {{collector}}",
                )
            ],
            "percentunit",
            thresholds=steps(0.99, 1, base="red", colors=("orange", "green")),
            max_value=1,
            w=8,
        ),
        bargauge(
            "Data age per job",
            [("time() - max by (job) (last_over_time(timestamp(up == 1)[1h:]))", "{{job}}")],
            "s",
            thresholds=steps(*THRESHOLDS["data_age_seconds"], colors=("red",)),
            max_value=THRESHOLDS["data_age_seconds"][0] * 2,
            description="Time since each job last delivered data; red above 10 minutes.",
            w=8,
        ),
    )
    layout.row("Alerts").add(
        table(
            "Active alerts",
            [('ALERTS{alertstate="firing"}', "{{alertname}}")],
            "none",
            hide=("Time", "__name__", "Value", "alertstate"),
            w=24,
        ),
    )
    return dashboard(
        UID,
        "Availability per system, partition and rack; exporters and targets up; data age; active alerts.",
        layout,
        ["cluster"],
        refresh="30s",
        time_from="now-3h",
        extra_tags=["status"],
    )
