"""The scheduler's rules: partition and cluster utilisation, unavailable nodes, slurmctld down,
stale data, saturated partitions, nodes drained for days and maintenance coming.

Every series is reduced with ``max by`` over its identifying labels (and ``cluster``, which the
Prometheus side adds), so two exporter replicas of one cluster count once.
"""

from __future__ import annotations

from .config import RulesConfig
from .model import Alert, Family, Recording, fmt

#: Node states in which a node takes no new work (powerplane.exporters.slurm.model.UNAVAILABLE).
UNAVAILABLE = (
    "down|not_responding|fail|failing|drained|draining|powered_down|powering_down|powering_up|"
    "rebooting|maintenance|error|future|unknown"
)


def _sum(by: str, split: str, series: str) -> str:
    """``series`` once per replica-independent label set (max), then summed over ``split``."""
    return f"sum by ({by}) (max by ({by}, {split}) ({series}))"


def _share(level: str, name: str, by: str, split: str, metric: str, part: str) -> Recording:
    whole = "" if metric.endswith("nodes") else '{state="total"}'
    return Recording(
        f"{level}:powerplane_slurm_{name}:ratio",
        f"{_sum(by, split, f'{metric}{{{part}}}')}\n/\n{_sum(by, split, metric + whole)} > 0",
    )


def recording(_c: RulesConfig) -> list[Recording]:
    rules = []
    for level, by, prefix in (("partition", "cluster, partition", "partition_"), ("cluster", "cluster", "")):
        for resource in ("cpus", "memory_bytes", "gpus"):
            name = f"{resource.removesuffix('_bytes')}_allocated"
            metric = f"powerplane_slurm_{prefix}{resource}"
            rules.append(_share(level, name, by, "type", metric, 'state="allocated"'))
        nodes = f"powerplane_slurm_{prefix}nodes"
        rules.append(_share(level, "nodes_unavailable", by, "state", nodes, f'state=~"{UNAVAILABLE}"'))
    return rules


def alerts(c: RulesConfig) -> list[Alert]:
    return [
        Alert(
            "PowerplaneSlurmctldDown",
            "max by (cluster) (powerplane_slurm_up) == 0",
            "5m",
            "critical",
            "slurmctld does not answer{{ with $labels.cluster }} on cluster {{ . }}{{ end }}",
            "The Slurm exporter cannot get an answer from slurmctld: no jobs are scheduled and the "
            "scheduler's view is stale.",
        ),
        Alert(
            "PowerplaneSlurmDataStale",
            "time() - max by (cluster, endpoint) (powerplane_slurm_snapshot_timestamp_seconds)"
            f" > {fmt(c.slurm_data_max_age_seconds)}",
            "5m",
            "warning",
            "Slurm {{ $labels.endpoint }} data is stale"
            "{{ with $labels.cluster }} on cluster {{ . }}{{ end }}",
            "The Slurm exporter last read {{ $labels.endpoint }} {{ $value | humanizeDuration }} ago.",
        ),
        Alert(
            "PowerplaneSlurmPartitionSaturated",
            f"(partition:powerplane_slurm_cpus_allocated:ratio > {fmt(c.slurm_saturated_ratio)}"
            f" or partition:powerplane_slurm_gpus_allocated:ratio > {fmt(c.slurm_saturated_ratio)})\n"
            "and on (cluster, partition)\n"
            'max by (cluster, partition) (powerplane_slurm_jobs{state="pending"}) > 0',
            "1h",
            "warning",
            "Partition {{ $labels.partition }} is full and jobs wait",
            "Partition {{ $labels.partition }} has had {{ $value | humanizePercentage }} of its CPUs or "
            "GPUs allocated for an hour while jobs were pending.",
        ),
        Alert(
            "PowerplaneSlurmNodesUnavailable",
            f"cluster:powerplane_slurm_nodes_unavailable:ratio > {fmt(c.slurm_nodes_unavailable_ratio)}",
            "15m",
            "warning",
            "{{ $value | humanizePercentage }} of the Slurm nodes are unavailable",
            "{{ $value | humanizePercentage }} of the nodes{{ with $labels.cluster }} of cluster "
            "{{ . }}{{ end }} are down, drained, failed or powered down.",
        ),
        Alert(
            "PowerplaneSlurmNodeDrainedLong",
            "time() - max by (cluster, node) (powerplane_slurm_node_reason_timestamp_seconds)"
            f" > {fmt(c.slurm_drained_max_seconds)}\n"
            "and on (cluster, node)\n"
            "max by (cluster, node)"
            ' (powerplane_slurm_node_state{state=~"down|drained|draining|fail|failing"}) == 1',
            "1h",
            "warning",
            "Node {{ $labels.node }} has been out of service for {{ $value | humanizeDuration }}",
            "{{ $labels.node }} was drained or went down {{ $value | humanizeDuration }} ago and has not "
            "returned to service; powerplane_slurm_node_reason_info says why.",
        ),
        Alert(
            "PowerplaneSlurmMaintenanceSoon",
            "max by (cluster, reservation) (powerplane_slurm_reservation_start_timestamp_seconds) - time()"
            f" < {fmt(c.slurm_maintenance_notice_seconds)} > 0\n"
            "and on (cluster, reservation)\n"
            'max by (cluster, reservation) (powerplane_slurm_reservation_info{flags=~"(.*,)?maint(,.*)?"})',
            "0m",
            "info",
            "Maintenance reservation {{ $labels.reservation }} starts in {{ $value | humanizeDuration }}",
            "The MAINT reservation {{ $labels.reservation }} begins in {{ $value | humanizeDuration }}; "
            "jobs that would run into it wait.",
        ),
    ]


FAMILY = Family(
    "slurm",
    tests="alerts-slurm.yaml",
    alerts=alerts,
    recording=recording,
    more_tests=("alerts-slurm-days.yaml",),
)
