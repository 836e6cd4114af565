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


ACTIVE = 'state=~"running|pending"'
NODES = "powerplane_slurm_partition_nodes"
RESERVED = 'state="reserved"'
UNAVAILABLE = 'state!~"idle|mixed|allocated|completing|planned|reserved"'
AVAILABLE = 'state=~"idle|mixed|allocated|completing|planned"'


def _slurm(metric: str, by: str, matcher: str = "") -> str:
    """A Slurm exporter series once per cluster however many exporter replicas report it."""
    return f"max by ({by}) ({metric}{{{C}{', ' + matcher if matcher else ''}}})"


def _scheduler(layout: Layout) -> None:
    """The scheduler's view (Slurm exporter): per partition, queues, reservations, freshness."""
    ratio = "partition:powerplane_slurm_{}_allocated:ratio{{" + C + "}}"
    busy = steps(0.8, 0.95, base="green", colors=("orange", "red"))
    layout.row("Scheduler (Slurm)").add(
        stat(
            "slurmctld",
            [(f"min({_slurm('powerplane_slurm_up', 'cluster')})", "up")],
            "none",
            mappings=[
                {
                    "type": "value",
                    "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}},
                }
            ],
            w=3,
        ),
        stat(
            "Last updated",
            [(f"time() - max({_slurm('powerplane_slurm_snapshot_timestamp_seconds', 'endpoint')})", "age")],
            "s",
            thresholds=steps(THRESHOLDS["data_age_seconds"][0], colors=("orange",)),
            description="Age of the Slurm data; orange when older than 10 minutes.",
            w=3,
        ),
        stat(
            "Jobs",
            [
                (
                    f"sum by (state) ({_slurm('powerplane_slurm_jobs', 'partition, state', ACTIVE)})",
                    "{{state}}",
                )
            ],
            "short",
            w=4,
        ),
        stat(
            "Active users",
            [(f"sum by (state) ({_slurm('powerplane_slurm_users', 'state')})", "{{state}}")],
            "short",
            w=4,
        ),
        bargauge(
            "Nodes available / down / reserved",
            [
                (
                    f"sum by (partition) ({_slurm(NODES, 'partition, state', AVAILABLE)})",
                    "{{partition}} available",
                ),
                (
                    f"sum by (partition) ({_slurm(NODES, 'partition, state', UNAVAILABLE)})",
                    "{{partition}} down",
                ),
                (
                    f"sum by (partition) ({_slurm(NODES, 'partition, state', RESERVED)})",
                    "{{partition}} reserved",
                ),
            ],
            "short",
            w=10,
            h=4,
        ),
    )
    layout.add(
        bargauge(
            "CPUs allocated per partition",
            [(ratio.format("cpus"), "{{partition}}")],
            "percentunit",
            thresholds=busy,
            max_value=1,
            w=8,
        ),
        bargauge(
            "GPUs allocated per partition",
            [(ratio.format("gpus"), "{{partition}}")],
            "percentunit",
            thresholds=busy,
            max_value=1,
            w=8,
        ),
        bargauge(
            "Memory allocated per partition",
            [(ratio.format("memory"), "{{partition}}")],
            "percentunit",
            thresholds=busy,
            max_value=1,
            w=8,
        ),
    )
    layout.add(
        table(
            "Queue: pending jobs by reason",
            [(_slurm("powerplane_slurm_jobs_pending", "partition, reason"), "{{partition}} {{reason}}")],
            "short",
            hide=("Time", "__name__"),
            w=8,
        ),
        table(
            "Upcoming reservations and maintenance (starts in)",
            [
                (
                    _slurm("powerplane_slurm_reservation_start_timestamp_seconds", "reservation")
                    + " - time()",
                    "{{reservation}}",
                )
            ],
            "s",
            hide=("Time", "__name__"),
            w=8,
        ),
        table(
            "Drained and down nodes",
            [(_slurm("powerplane_slurm_node_reason_info", "node, reason"), "{{node}}")],
            "none",
            hide=("Time", "__name__", "Value"),
            w=8,
        ),
    )


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
    _scheduler(layout)
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
