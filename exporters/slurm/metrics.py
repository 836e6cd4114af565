"""Every series the Slurm exporter emits."""

from __future__ import annotations

from ..runtime.metrics import MetricSpec
from .model import JOB_STATES, NODE_STATES

_P = "powerplane_slurm_"

# --- the scheduler ----------------------------------------------------------------------------
UP = MetricSpec(
    _P + "up",
    "gauge",
    "Whether slurmctld answered through the source and a controller reports UP (1) or not (0).",
)
CONTROLLER_UP = MetricSpec(
    _P + "controller_up",
    "gauge",
    "Whether each slurmctld (primary, backup) answers a ping (1) or not (0).",
    ("controller", "mode"),
)
CLUSTER_INFO = MetricSpec(
    _P + "cluster_info",
    "info",
    "The Slurm cluster, its release and the API (data parser) version read, and the source "
    "(slurmrestd or cli); constant 1.",
    ("slurm_cluster", "version", "api", "source"),
)
SNAPSHOT_TIME = MetricSpec(
    _P + "snapshot_timestamp_seconds",
    "gauge",
    "When the data of this endpoint was read from Slurm, or confirmed unchanged (update_time); a "
    "snapshot is reused for min_interval.",
    ("endpoint",),
)
UNREADABLE = MetricSpec(
    _P + "unreadable_records",
    "gauge",
    "Records of the last answer that could not be read (wrong types, missing fields) and were skipped.",
    ("endpoint",),
)
DROPPED_RECORDS = MetricSpec(
    _P + "dropped_records",
    "gauge",
    "Records of the last answer beyond limits.max_records, not read.",
    ("endpoint",),
)
DROPPED_SERIES = MetricSpec(
    _P + "dropped_series",
    "gauge",
    "Series left out of this scrape by a configured cap (jobs.max_mapped, jobs.by_account, "
    "jobs.by_user, limits.max_rpc_types), by the family they would have been in.",
    ("family",),
)
CYCLE_LAST = MetricSpec(
    _P + "scheduler_cycle_last_seconds",
    "gauge",
    "Duration of the last scheduling cycle (scheduler=main|backfill, from sdiag).",
    ("scheduler",),
)
CYCLE_MEAN = MetricSpec(
    _P + "scheduler_cycle_mean_seconds",
    "gauge",
    "Mean duration of the scheduling cycles since sdiag's statistics were last reset.",
    ("scheduler",),
)
CYCLE_MAX = MetricSpec(
    _P + "scheduler_cycle_max_seconds",
    "gauge",
    "Longest scheduling cycle since the statistics were last reset.",
    ("scheduler",),
)
CYCLES = MetricSpec(
    _P + "scheduler_cycles_total",
    "counter",
    "Scheduling cycles run (resets when sdiag's statistics reset, at midnight or by sdiag --reset).",
    ("scheduler",),
)
QUEUE_LENGTH = MetricSpec(
    _P + "scheduler_queue_length",
    "gauge",
    "Jobs the last cycle of each scheduler looked at.",
    ("scheduler",),
)
DEPTH_MEAN = MetricSpec(
    _P + "scheduler_depth_mean",
    "gauge",
    "Mean number of jobs processed per scheduling cycle.",
    ("scheduler",),
)
BACKFILL_ACTIVE = MetricSpec(
    _P + "backfill_active", "gauge", "Whether a backfill cycle was running when the statistics were read."
)
BACKFILLED = MetricSpec(
    _P + "backfilled_jobs_total",
    "counter",
    "Jobs started by the backfill scheduler since slurmctld started.",
)
JOB_EVENTS = MetricSpec(
    _P + "scheduler_jobs_total",
    "counter",
    "Jobs by event (submitted, started, completed, canceled, failed) since the statistics were reset.",
    ("event",),
)
SERVER_THREADS = MetricSpec(_P + "server_threads", "gauge", "Active slurmctld server threads.")
AGENT_QUEUE = MetricSpec(
    _P + "agent_queue_size", "gauge", "Outgoing RPCs slurmctld has queued for retry (agent queue)."
)
DBD_QUEUE = MetricSpec(
    _P + "dbd_agent_queue_size", "gauge", "Messages slurmctld has queued for slurmdbd (0 without slurmdbd)."
)
RPCS = MetricSpec(
    _P + "rpcs_total",
    "counter",
    "RPCs slurmctld handled by message type (the most frequent limits.max_rpc_types; the rest as other).",
    ("type",),
)
RPC_TIME = MetricSpec(
    _P + "rpc_duration_seconds_total",
    "counter",
    "Time slurmctld spent handling RPCs, by message type.",
    ("type",),
)
STATS_RESET = MetricSpec(
    _P + "statistics_reset_timestamp_seconds",
    "gauge",
    "When sdiag's statistics were last reset ('Data since').",
)
SCHEDULER = (
    UP,
    CONTROLLER_UP,
    CLUSTER_INFO,
    CYCLE_LAST,
    CYCLE_MEAN,
    CYCLE_MAX,
    CYCLES,
    QUEUE_LENGTH,
    DEPTH_MEAN,
    BACKFILL_ACTIVE,
    BACKFILLED,
    JOB_EVENTS,
    SERVER_THREADS,
    AGENT_QUEUE,
    DBD_QUEUE,
    RPCS,
    RPC_TIME,
    STATS_RESET,
)

# --- partitions ------------------------------------------------------------------------------
PARTITION_STATE = MetricSpec(
    _P + "partition_state",
    "gauge",
    "Partition state: 1 for the current one of up, down, drain, inactive; 0 for the others.",
    ("partition", "state"),
    values={"state": ("up", "down", "drain", "inactive")},
)
PARTITION_INFO = MetricSpec(
    _P + "partition_info",
    "info",
    "A partition and whether it is the default one (default=true|false); constant 1.",
    ("partition", "default"),
)
PARTITION_MAX_TIME = MetricSpec(
    _P + "partition_max_time_seconds",
    "gauge",
    "Longest run time a job may ask for in the partition (+Inf: unlimited).",
    ("partition",),
)
PARTITION_DEFAULT_TIME = MetricSpec(
    _P + "partition_default_time_seconds",
    "gauge",
    "Run time a job gets when it asks for none (absent: none set).",
    ("partition",),
)
PARTITION_MAX_NODES = MetricSpec(
    _P + "partition_max_nodes_per_job",
    "gauge",
    "Most nodes one job may use in the partition (+Inf: unlimited).",
    ("partition",),
)
PARTITIONS = (
    PARTITION_STATE,
    PARTITION_INFO,
    PARTITION_MAX_TIME,
    PARTITION_DEFAULT_TIME,
    PARTITION_MAX_NODES,
)

_AT = ("allocated", "total")
_RP = ("running", "pending")

# --- nodes -----------------------------------------------------------------------------------
_STATES_DOC = (
    "down, not_responding, fail, failing, drained, draining, powered_down, powering_down, "
    "powering_up, rebooting, maintenance, reserved, planned, completing, error, allocated, mixed, "
    "idle, future, unknown (docs/slurm.md: the first that applies)"
)
NODE_STATE = MetricSpec(
    _P + "node_state",
    "gauge",
    "The node's state, one series per node with value 1: " + _STATES_DOC + ".",
    ("node", "state"),
    values={"state": NODE_STATES},
)
NODE_PARTITION = MetricSpec(
    _P + "node_partition_info",
    "info",
    "A partition the node belongs to (constant 1; join on node).",
    ("node", "partition"),
)
NODE_REASON = MetricSpec(
    _P + "node_reason_info",
    "info",
    "Why the node is drained, down or failed, as the administrator or Slurm wrote it (truncated to "
    "limits.reason_length); constant 1.",
    ("node", "reason"),
)
NODE_REASON_TIME = MetricSpec(
    _P + "node_reason_timestamp_seconds",
    "gauge",
    "Since when the node's reason is set.",
    ("node",),
)
NODE_CPUS = MetricSpec(
    _P + "node_cpus",
    "gauge",
    "CPUs of the node by state: allocated, total.",
    ("node", "state"),
    values={"state": _AT},
)
NODE_MEMORY = MetricSpec(
    _P + "node_memory_bytes",
    "gauge",
    "Memory of the node for jobs by state: allocated, total (Slurm's RealMemory).",
    ("node", "state"),
    values={"state": _AT},
)
NODE_GPUS = MetricSpec(
    _P + "node_gpus",
    "gauge",
    "GPUs (GRES gpu) of the node by type and state: allocated, total.",
    ("node", "type", "state"),
    values={"state": _AT},
)
_AIOT_VALUES = ("allocated", "idle", "other", "total")
_AIOT = "allocated, idle, other (on nodes taking no new work: down, drained, ...), total"
PARTITION_NODES = MetricSpec(
    _P + "partition_nodes",
    "gauge",
    "Nodes of the partition in each node state (every state exposed, 0 when none): " + _STATES_DOC + ".",
    ("partition", "state"),
    values={"state": NODE_STATES},
)
PARTITION_CPUS = MetricSpec(
    _P + "partition_cpus",
    "gauge",
    "CPUs of the partition's nodes by state: " + _AIOT + ".",
    ("partition", "state"),
    values={"state": _AIOT_VALUES},
)
PARTITION_MEMORY = MetricSpec(
    _P + "partition_memory_bytes",
    "gauge",
    "Memory of the partition's nodes by state: " + _AIOT + ".",
    ("partition", "state"),
    values={"state": _AIOT_VALUES},
)
PARTITION_GPUS = MetricSpec(
    _P + "partition_gpus",
    "gauge",
    "GPUs of the partition's nodes by GRES type and state: " + _AIOT + ".",
    ("partition", "type", "state"),
    values={"state": _AIOT_VALUES},
)
NODES = MetricSpec(
    _P + "nodes",
    "gauge",
    "Nodes of the cluster in each node state (each node once, whatever its partitions).",
    ("state",),
    values={"state": NODE_STATES},
)
CPUS = MetricSpec(
    _P + "cpus",
    "gauge",
    "CPUs of the cluster by state: " + _AIOT + ".",
    ("state",),
    values={"state": _AIOT_VALUES},
)
MEMORY = MetricSpec(
    _P + "memory_bytes",
    "gauge",
    "Memory of the cluster by state: " + _AIOT + ".",
    ("state",),
    values={"state": _AIOT_VALUES},
)
GPUS = MetricSpec(
    _P + "gpus",
    "gauge",
    "GPUs of the cluster by type and state: " + _AIOT + ".",
    ("type", "state"),
    values={"state": _AIOT_VALUES},
)
NODE_METRICS = (
    NODE_STATE,
    NODE_PARTITION,
    NODE_REASON,
    NODE_REASON_TIME,
    NODE_CPUS,
    NODE_MEMORY,
    NODE_GPUS,
    PARTITION_NODES,
    PARTITION_CPUS,
    PARTITION_MEMORY,
    PARTITION_GPUS,
    NODES,
    CPUS,
    MEMORY,
    GPUS,
)

# --- jobs ------------------------------------------------------------------------------------
JOBS = MetricSpec(
    _P + "jobs",
    "gauge",
    "Jobs slurmctld knows of by partition and state (pending, running, suspended, completing, "
    "configuring, completed, cancelled, failed, timeout, preempted, node_fail, boot_fail, deadline, "
    "out_of_memory, other; finished jobs stay listed for MinJobAge). A job submitted to several "
    "partitions counts in each.",
    ("partition", "state"),
    values={"state": (*JOB_STATES, "other")},
)
JOBS_PENDING = MetricSpec(
    _P + "jobs_pending",
    "gauge",
    "Pending jobs by partition and the reason Slurm gives (Priority, Resources, ...).",
    ("partition", "reason"),
)
JOBS_CPUS = MetricSpec(
    _P + "jobs_cpus",
    "gauge",
    "CPUs of running (allocated) and pending (requested) jobs by partition.",
    ("partition", "state"),
    values={"state": _RP},
)
PARTITION_USERS = MetricSpec(
    _P + "partition_users",
    "gauge",
    "Distinct users with running or pending jobs in the partition (a count: never the names).",
    ("partition", "state"),
    values={"state": _RP},
)
USERS = MetricSpec(
    _P + "users",
    "gauge",
    "Distinct users with running or pending jobs in the cluster.",
    ("state",),
    values={"state": _RP},
)
ACCOUNT_JOBS = MetricSpec(
    _P + "account_jobs",
    "gauge",
    "Running and pending jobs by account and partition (jobs.by_account: the accounts with most "
    "jobs; privacy.accounts applies).",
    ("account", "partition", "state"),
    values={"state": _RP},
)
USER_JOBS = MetricSpec(
    _P + "user_jobs",
    "gauge",
    "Running and pending jobs by user and partition (only with jobs.by_user; privacy.users applies).",
    ("user", "partition", "state"),
    values={"state": _RP},
)
JOB_INFO = MetricSpec(
    _P + "job_info",
    "info",
    "A running job, its owner and where it runs (constant 1; privacy.users/accounts apply, '' when "
    "dropped). Join on job_id.",
    ("job_id", "user", "account", "partition", "qos"),
)
JOB_NAME = MetricSpec(
    _P + "job_name_info",
    "info",
    "A running job's name (only with jobs.names: true).",
    ("job_id", "name"),
)
JOB_START = MetricSpec(
    _P + "job_start_timestamp_seconds", "gauge", "When the running job started.", ("job_id",)
)
JOB_ALLOCATION = MetricSpec(
    _P + "job_allocation",
    "gauge",
    "What a running job holds on each of its nodes: resource=cpus, memory_bytes or gpus.",
    ("job_id", "node", "resource"),
    values={"resource": ("cpus", "memory_bytes", "gpus")},
)
JOB_GPU = MetricSpec(
    _P + "job_gpu_info",
    "info",
    "A GPU a running job holds: gpu is the index Slurm reports (IDX), the GPU exporter's gpu label; "
    "constant 1. Join on node and gpu.",
    ("job_id", "node", "gpu"),
)
JOB_METRICS = (
    JOBS,
    JOBS_PENDING,
    JOBS_CPUS,
    PARTITION_USERS,
    USERS,
    ACCOUNT_JOBS,
    USER_JOBS,
    JOB_INFO,
    JOB_NAME,
    JOB_START,
    JOB_ALLOCATION,
    JOB_GPU,
)

# --- reservations ------------------------------------------------------------------------------
RESERVATION_INFO = MetricSpec(
    _P + "reservation_info",
    "info",
    "A reservation, its partition ('' when it names nodes) and its flags (lower case, comma "
    "separated, e.g. ignore_jobs,maint,spec_nodes); constant 1.",
    ("reservation", "partition", "flags"),
)
RESERVATION_START = MetricSpec(
    _P + "reservation_start_timestamp_seconds", "gauge", "When the reservation starts.", ("reservation",)
)
RESERVATION_END = MetricSpec(
    _P + "reservation_end_timestamp_seconds", "gauge", "When the reservation ends.", ("reservation",)
)
RESERVATION_NODES = MetricSpec(
    _P + "reservation_nodes", "gauge", "Nodes the reservation holds.", ("reservation",)
)
RESERVATIONS = (RESERVATION_INFO, RESERVATION_START, RESERVATION_END, RESERVATION_NODES)

COMMON = (SNAPSHOT_TIME, UNREADABLE, DROPPED_RECORDS, DROPPED_SERIES)
METRICS = SCHEDULER + PARTITIONS + NODE_METRICS + JOB_METRICS + RESERVATIONS + COMMON
