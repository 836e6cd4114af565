"""The PromQL the status page runs: a fixed catalogue, overridable by name in the config.

Each query answers for every system at once (grouped by ``cluster``, or by ``instance`` for
node_exporter series that the config assigns to systems), so a refresh runs the same set of
queries however many systems and viewers there are.  The scheduler's names are the Slurm
exporter's (docs/METRICS.md); login nodes and filesystems are node_exporter's.

``$today`` stands for the time since local midnight in the page's time zone, as a PromQL
duration (``[$today:1m]`` → ``[38460s:1m]``), so "energy today" needs no rule of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, time
from zoneinfo import ZoneInfo

#: name → PromQL.  The labels each query must keep are in ``LABELS``.
DEFAULTS: dict[str, str] = {
    # Compute nodes per partition and state (idle, allocated, mixed, drained, down, reserved, ...).
    "partition_nodes": "sum by (cluster, partition, state) (powerplane_slurm_partition_nodes)",
    "partition_jobs": 'sum by (cluster, partition, state) (powerplane_slurm_jobs{state=~"running|pending"})',
    # Counted inside Prometheus: the page never sees a user name, only how many there are.
    "partition_users": (
        "count by (cluster, partition) (count by (cluster, partition, user) (powerplane_slurm_job_info))"
    ),
    "partition_cpu_ratio": (
        'sum by (cluster, partition) (powerplane_slurm_partition_cpus{state="allocated"})'
        ' / sum by (cluster, partition) (powerplane_slurm_partition_cpus{state="total"})'
    ),
    "partition_gpu_ratio": (
        'sum by (cluster, partition) (powerplane_slurm_partition_gpus{state="allocated"})'
        ' / sum by (cluster, partition) (powerplane_slurm_partition_gpus{state="total"})'
    ),
    "partition_memory_ratio": (
        'sum by (cluster, partition) (powerplane_slurm_partition_memory_bytes{state="allocated"})'
        ' / sum by (cluster, partition) (powerplane_slurm_partition_memory_bytes{state="total"})'
    ),
    # Maintenance reservations only (the MAINT flag), with their start and end.
    "reservations": (
        "max by (cluster, reservation, partition, flags) "
        '(powerplane_slurm_reservation_info{flags=~"(.*,)?maint(,.*)?"})'
    ),
    "reservation_start": (
        "max by (cluster, reservation) (powerplane_slurm_reservation_start_timestamp_seconds)"
    ),
    "reservation_end": "max by (cluster, reservation) (powerplane_slurm_reservation_end_timestamp_seconds)",
    # Login nodes (node_exporter): the config names their `instance` label values.
    "login_up": "min by (instance) (up)",
    "login_load": "max by (instance) (node_load1)",
    "login_cpus": 'count by (instance) (node_cpu_seconds_total{mode="idle"})',
    "login_users": 'sum by (instance) (node_logind_sessions{class="user"})',
    # Filesystems (node_exporter): the config names `instance` and `mountpoint`.
    "fs_size": "max by (instance, mountpoint) (node_filesystem_size_bytes)",
    "fs_avail": "max by (instance, mountpoint) (node_filesystem_avail_bytes)",
    "fs_readonly": "max by (instance, mountpoint) (node_filesystem_readonly)",
    "fs_error": "max by (instance, mountpoint) (node_filesystem_device_error)",
    # Power and energy (the shipped recording rules), when power.enabled.
    "power_watts": "sum by (cluster) (cluster:powerplane_power_watts:sum)",
    "energy_today_joules": (
        "sum by (cluster) (sum_over_time(cluster:powerplane_power_watts:sum[$today:1m])) * 60"
    ),
    "cost_today": (
        "sum by (cluster) (sum_over_time(cluster:powerplane_energy_cost_eur_per_hour:sum[$today:1m])) / 60"
    ),
}

POWER_QUERIES = frozenset({"power_watts", "energy_today_joules", "cost_today"})

#: The labels the page reads from each query's series (others are ignored, never shown).
LABELS: dict[str, tuple[str, ...]] = {
    "partition_nodes": ("cluster", "partition", "state"),
    "partition_jobs": ("cluster", "partition", "state"),
    "partition_users": ("cluster", "partition"),
    "partition_cpu_ratio": ("cluster", "partition"),
    "partition_gpu_ratio": ("cluster", "partition"),
    "partition_memory_ratio": ("cluster", "partition"),
    "reservations": ("cluster", "reservation", "partition", "flags"),
    "reservation_start": ("cluster", "reservation"),
    "reservation_end": ("cluster", "reservation"),
    "login_up": ("instance",),
    "login_load": ("instance",),
    "login_cpus": ("instance",),
    "login_users": ("instance",),
    "fs_size": ("instance", "mountpoint"),
    "fs_avail": ("instance", "mountpoint"),
    "fs_readonly": ("instance", "mountpoint"),
    "fs_error": ("instance", "mountpoint"),
    "power_watts": ("cluster",),
    "energy_today_joules": ("cluster",),
    "cost_today": ("cluster",),
}


@dataclass(frozen=True)
class NodeClasses:
    """Which Slurm node states count as down, drained, reserved or available (the rest: other)."""

    down: frozenset[str]
    drained: frozenset[str]
    reserved: frozenset[str]
    available: frozenset[str]

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(NodeClasses))

    def classify(self, state: str) -> str:
        for key in self.names():
            if state in getattr(self, key):
                return key
        return "other"


def default_node_classes() -> NodeClasses:
    return NodeClasses(
        down=frozenset({"down", "not_responding", "fail", "failing", "error", "unknown"}),
        drained=frozenset({"drained", "draining"}),
        reserved=frozenset({"reserved", "maintenance", "planned"}),
        available=frozenset({"idle", "mixed", "allocated", "completing"}),
    )


def filesystem_query_name(system: str, index: int, what: str) -> str:
    """The name of a filesystem's configured ``check`` or ``used_ratio`` query."""
    return f"fs.{system}.{index}.{what}"


def expand(expr: str, now: datetime, zone: ZoneInfo) -> str:
    """``expr`` with ``$today`` replaced by the seconds since local midnight (at least 60)."""
    if "$today" not in expr:
        return expr
    # Through timestamps: wall-clock arithmetic on aware datetimes would ignore a DST change.
    midnight = datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone)
    seconds = max(60, int(now.timestamp() - midnight.timestamp()))
    return expr.replace("$today", f"{seconds}s")
