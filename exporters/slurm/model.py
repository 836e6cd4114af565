"""The scheduler's state as the exporter keeps it, read field by field from Slurm's JSON.

slurmrestd and the CLI's ``--json`` output share one vocabulary per data-parser version
(v0.0.38 in Slurm 22.05 up to v0.0.44 in 25.11).  The versions differ in a few ways, and each
is handled where the field is read, from the shape of the value, never from a version number:

- numbers are plain (``42``), ``null`` (not set) or ``{"set": true, "infinite": false,
  "number": 42}`` (v0.0.39+): ``number()``;
- states are a string plus ``state_flags`` (v0.0.38: ``"mixed"``, ``["DRAIN"]``) or a list
  (``["MIXED", "DRAIN"]``): ``tokens()``;
- a job's per-node allocation is ``job_resources.allocated_nodes`` (up to v0.0.39/40) or
  ``job_resources.nodes.allocation`` (v0.0.40+).

The two large listings (nodes, jobs) are decoded by msgspec into ``NodeRecord`` and
``JobRecord``: structs naming only the fields read here, in every version's form, so the
decoder checks their types and skips everything else without building it (``stream.py``).
The small listings are decoded as plain objects and read with ``number()``, ``text()``, ...
Each record then becomes a small frozen object; a record with a field of the wrong type is
skipped and named in an error (``nodes[12].cpus: expected a number, got str``) while the others
are kept.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

MIB = 1 << 20


class FieldError(ValueError):
    """A field of a record has the wrong type or form; the message names the field."""


# --- field readers ---------------------------------------------------------------------------


class Number(msgspec.Struct, frozen=True, gc=False):
    """A number as v0.0.39+ writes it: ``{"set": true, "infinite": false, "number": 42}``."""

    set: bool = True
    infinite: bool = False
    number: int | float | None = None


#: A numeric field as any version writes it (msgspec checks the form while decoding).
Num = int | float | Number | None
#: A state or flag set: a string (``"mixed"``, ``"IDLE+DRAIN"``) or a list of strings.
Tokens = str | list[str] | None


def num(value: Num, default: float | None = None) -> float | None:
    """A decoded ``Num``: ``None`` (or ``default``) when unset, inf when infinite."""
    if value is None:
        return default
    if type(value) is Number:
        if value.infinite:
            return math.inf
        if not value.set or value.number is None:
            return default
        return float(value.number)
    return float(value)  # type: ignore[arg-type]


def whole(value: Num, default: int = 0) -> int:
    """A decoded ``Num`` as an integer (``default`` when unset or infinite)."""
    if type(value) is int:
        return value
    found = num(value)
    return default if found is None or math.isinf(found) else int(found)


def number(record: Mapping[str, Any], key: str, default: float | None = None) -> float | None:
    """A numeric field in any version's form; ``None`` (or ``default``) when unset, inf when infinite."""
    value = record.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise FieldError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        if value.get("infinite") is True:
            return math.inf
        if value.get("set") is False:
            return default
        inner = value.get("number")
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return float(inner)
    raise FieldError(f"{key}: expected a number, got {_short(value)}")


def integer(record: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = number(record, key)
    if value is None or math.isinf(value):
        return default
    return int(value)


def text(record: Mapping[str, Any], key: str, default: str = "") -> str:
    value = record.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        return value
    raise FieldError(f"{key}: expected a string, got {_short(value)}")


def tokens(record: Mapping[str, Any], key: str, flags_key: str | None = None) -> frozenset[str]:
    """A state or flag set in either form (a string plus a flags list, or a list), upper-cased."""
    found: set[str] = set()
    for k in (key, flags_key) if flags_key else (key,):
        value = record.get(k)
        if value is None:
            continue
        if isinstance(value, str):
            found.update(part.strip().upper() for part in value.split("+") if part.strip())
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            found.update(v.upper() for v in value)
        else:
            raise FieldError(f"{k}: expected a string or a list of strings, got {_short(value)}")
    return frozenset(found)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- node states -----------------------------------------------------------------------------

#: The documented node states, in precedence order: a node is in the first whose condition holds.
NODE_STATES: tuple[str, ...] = (
    "down",
    "not_responding",
    "fail",
    "failing",
    "drained",
    "draining",
    "powered_down",
    "powering_down",
    "powering_up",
    "rebooting",
    "maintenance",
    "reserved",
    "planned",
    "completing",
    "error",
    "allocated",
    "mixed",
    "idle",
    "future",
    "unknown",
)
#: States in which a node takes no new work (the "other" column of sinfo's A/I/O/T).
UNAVAILABLE: frozenset[str] = frozenset(
    {
        "down",
        "not_responding",
        "fail",
        "failing",
        "drained",
        "draining",
        "powered_down",
        "powering_down",
        "powering_up",
        "rebooting",
        "maintenance",
        "error",
        "future",
        "unknown",
    }
)
_BUSY = frozenset({"ALLOCATED", "ALLOC", "MIXED"})
_FLAG_STATES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"NOT_RESPONDING"}), "not_responding"),
    (frozenset({"POWERED_DOWN"}), "powered_down"),
    (frozenset({"POWERING_DOWN"}), "powering_down"),
    (frozenset({"POWERING_UP"}), "powering_up"),
    (frozenset({"REBOOT_ISSUED", "REBOOT_REQUESTED"}), "rebooting"),
    (frozenset({"MAINTENANCE", "MAINT"}), "maintenance"),
    (frozenset({"RESERVED"}), "reserved"),
    (frozenset({"PLANNED"}), "planned"),
    (frozenset({"COMPLETING"}), "completing"),
)
_BASE_STATES = {
    "ALLOCATED": "allocated",
    "ALLOC": "allocated",
    "MIXED": "mixed",
    "IDLE": "idle",
    "FUTURE": "future",
    "ERROR": "error",
}


def node_state(states: frozenset[str]) -> str:
    """One of ``NODE_STATES`` for a node's base state and flags (unknown tokens are ignored)."""
    if "DOWN" in states:
        return "down"
    busy = bool(states & _BUSY) or "COMPLETING" in states
    if "FAIL" in states:
        return "failing" if busy else "fail"
    if "DRAIN" in states:
        return "draining" if busy else "drained"
    for flags, state in _FLAG_STATES:
        if states & flags:
            return state
    for token, state in _BASE_STATES.items():
        if token in states:
            return state
    return "unknown"


# --- GRES --------------------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")  # not \d: that takes any script's digits, which int() refuses
_GRES_SPLIT = re.compile(r",(?![^()]*\))")
_IDX = re.compile(r"\(IDX:([^)]*)\)")


@dataclass(frozen=True)
class Gres:
    """One GRES entry: ``gpu:h100:4(S:0-1)`` or, allocated, ``gpu:h100:2(IDX:0-1)``."""

    name: str
    type: str
    count: int
    indexes: tuple[int, ...] = ()


def parse_gres(value: str, where: str = "gres") -> list[Gres]:
    """Every entry of a GRES string; ``N/A`` and ``(null)`` are empty."""
    if not value or value in ("N/A", "(null)"):
        return []
    out = []
    for entry in _GRES_SPLIT.split(value):
        entry = entry.strip()
        if not entry:
            continue
        match = _IDX.search(entry)
        indexes = parse_ranges(match.group(1), where) if match else ()
        head = entry.split("(", 1)[0]
        parts = head.split(":")
        name, count = parts[0], 1
        kind = ""
        if len(parts) > 1 and _is_count(parts[-1]):
            count = _count(parts[-1], where)
            kind = ":".join(parts[1:-1])
        elif len(parts) > 1:
            kind = ":".join(parts[1:])
        if not name:
            raise FieldError(f"{where}: cannot read GRES entry {_short(entry)}")
        out.append(Gres(name, kind, count, indexes))
    return out


def _is_count(part: str) -> bool:
    return bool(re.fullmatch(r"[0-9]+[KMGT]?", part))


def _count(part: str, where: str) -> int:
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if part[-1] in scale:
        return int(part[:-1]) * scale[part[-1]]
    return int(part)


def parse_ranges(value: str, where: str = "IDX") -> tuple[int, ...]:
    """``0-2,5`` → (0, 1, 2, 5); ``N/A`` or empty → ().  At most 4096 indexes."""
    value = value.strip()
    if not value or value == "N/A":
        return ()
    out: list[int] = []
    for part in value.split(","):
        lo, sep, hi = part.partition("-")
        if not _DIGITS.fullmatch(lo) or (sep and not _DIGITS.fullmatch(hi)):
            raise FieldError(f"{where}: cannot read index range {_short(value)}")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first or last - first + len(out) >= 4096:
            raise FieldError(f"{where}: index range {_short(value)} is out of bounds")
        out.extend(range(first, last + 1))
    return tuple(out)


def gpus_by_type(entries: Iterable[Gres]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for g in entries:
        if g.name == "gpu":
            totals[g.type] = totals.get(g.type, 0) + g.count
    return totals


# --- records -----------------------------------------------------------------------------------


class Node(msgspec.Struct, frozen=True, gc=False):
    name: str
    state: str
    partitions: tuple[str, ...]
    cpus: int
    alloc_cpus: int
    memory_bytes: float
    alloc_memory_bytes: float
    gpus: tuple[tuple[str, int], ...]  # (GRES type, configured count)
    alloc_gpus: tuple[tuple[str, int], ...]  # (GRES type, allocated count)
    reason: str
    reason_since: float | None

    @property
    def available(self) -> bool:
        return self.state not in UNAVAILABLE


class NodeRecord(msgspec.Struct, gc=False):
    """The fields of a node the exporter reads, in any version's form (the others are skipped)."""

    name: str | None = None
    state: Tokens = None
    state_flags: Tokens = None
    effective_cpus: Num = None
    cpus: Num = None
    partitions: Tokens = None
    alloc_cpus: Num = None
    real_memory: Num = None
    alloc_memory: Num = None
    gres: str | None = None
    gres_used: str | None = None
    reason: str | None = None
    reason_changed_at: Num = None


#: The node fields read (tests feed records of any shape built from them).
NODE_FIELDS = tuple(NodeRecord.__struct_fields__)


def parse_node(record: NodeRecord) -> Node:
    if not record.name:
        raise FieldError("name: missing")
    reason_since = num(record.reason_changed_at)
    return Node(
        name=record.name,
        state=_node_state(record.state, record.state_flags),
        partitions=_names(record.partitions),
        cpus=whole(record.effective_cpus) or whole(record.cpus),
        alloc_cpus=whole(record.alloc_cpus),
        memory_bytes=whole(record.real_memory) * MIB,
        alloc_memory_bytes=whole(record.alloc_memory) * MIB,
        gpus=_gpus(record.gres, "gres"),
        alloc_gpus=_gpus(record.gres_used, "gres_used"),
        reason=record.reason or "",
        reason_since=reason_since if reason_since else None,
    )


# Nodes and jobs repeat a few states, GRES strings and names many thousand times: what they
# become is computed once per distinct value (bounded: a hostile listing cannot grow them).
_CACHE_SIZE = 4096
_STATES: dict[Any, str] = {}
_GRES: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {}
_NAMES: dict[Any, tuple[str, ...]] = {}


def _key(value: Tokens) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _upper(value: Tokens) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        return {part.strip().upper() for part in value.split("+") if part.strip()}
    return {v.upper() for v in value}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) < _CACHE_SIZE:
        cache[key] = value
    return value


def _node_state(state: Tokens, flags: Tokens) -> str:
    key = (_key(state), _key(flags))
    found = _STATES.get(key)
    if found is None:
        found = _remember(_STATES, key, node_state(frozenset(_upper(state) | _upper(flags))))
    return found


def _gpus(value: str | None, where: str) -> tuple[tuple[str, int], ...]:
    if not value:
        return ()
    key = (value, where)
    found = _GRES.get(key)
    if found is None:
        found = _remember(_GRES, key, tuple(sorted(gpus_by_type(parse_gres(value, where)).items())))
    return found


def _names(value: Tokens) -> tuple[str, ...]:
    """A list of names (or a comma-separated string, as some versions write it), shared."""
    if not value:
        return ()
    key = _key(value)
    found = _NAMES.get(key)
    if found is None:
        names = value.split(",") if isinstance(value, str) else value
        found = _remember(_NAMES, key, tuple(sys.intern(v) for v in names if v))
    return found


def _share(value: str | None) -> str:
    """Short names repeated across records (users, accounts, QoS, reasons) held once."""
    return sys.intern(value) if value and len(value) <= 64 else (value or "")


#: Partition states as Slurm names them, lower-cased.
PARTITION_STATES: tuple[str, ...] = ("up", "down", "drain", "inactive")


@dataclass(frozen=True)
class Partition:
    name: str
    state: str
    default: bool
    max_time_seconds: float | None
    default_time_seconds: float | None
    max_nodes_per_job: float | None
    total_cpus: int
    total_nodes: int


def _minutes(value: float | None) -> float | None:
    if value is None:
        return None
    return math.inf if math.isinf(value) or value < 0 else value * 60.0


def _limit(value: float | None) -> float | None:
    if value is None:
        return None
    return math.inf if math.isinf(value) or value < 0 else value


def parse_partition(record: Mapping[str, Any]) -> Partition:
    name = text(record, "name")
    if not name:
        raise FieldError("name: missing")
    nested = record.get("partition")
    if isinstance(nested, Mapping):  # v0.0.40+: partition.state, maximums.time, nodes.total, ...
        state = tokens(nested, "state")
        maximums = _mapping(record, "maximums")
        defaults = _mapping(record, "defaults")
        max_time = _minutes(number(maximums, "time"))
        default_time = _minutes(number(defaults, "time"))
        max_nodes = _limit(number(maximums, "nodes"))
        total_cpus = integer(_mapping(record, "cpus"), "total")
        total_nodes = integer(_mapping(record, "nodes"), "total")
    else:
        state = tokens(record, "state")
        max_time = _minutes(number(record, "max_time_limit"))
        default_time = _minutes(number(record, "default_time_limit"))
        max_nodes = _limit(number(record, "maximum_nodes_per_job"))
        total_cpus = integer(record, "total_cpus")
        total_nodes = integer(record, "total_nodes")
    current = next((s.lower() for s in state if s.lower() in PARTITION_STATES), "unknown")
    flags = tokens(record, "flags") | state
    return Partition(
        name, current, "DEFAULT" in flags, max_time, default_time, max_nodes, total_cpus, total_nodes
    )


def _mapping(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FieldError(f"{key}: expected an object, got {_short(value)}")
    return value


#: Job states counted per partition (every one always exposed, 0 when absent).
JOB_STATES: tuple[str, ...] = (
    "pending",
    "running",
    "suspended",
    "completing",
    "configuring",
    "completed",
    "cancelled",
    "failed",
    "timeout",
    "preempted",
    "node_fail",
    "boot_fail",
    "deadline",
    "out_of_memory",
)
_JOB_STATE_ALIASES = {"CANCELED": "cancelled"}
_JOB_FLAG_STATES = ("COMPLETING", "CONFIGURING")


class NodeAllocation(msgspec.Struct, frozen=True, gc=False):
    node: str
    cpus: int
    memory_bytes: float
    gpus: tuple[tuple[str, int], ...] = ()  # (GRES type, GPU index)


class Job(msgspec.Struct, frozen=True, gc=False):
    job_id: str
    state: str
    reason: str
    partitions: tuple[str, ...]
    user: str
    account: str
    qos: str
    name: str
    cpus: int
    start_time: float | None
    allocations: tuple[NodeAllocation, ...] = ()


# --- a job as the versions write it: only the fields read ----------------------------------------


class _AllocatedNode(msgspec.Struct, gc=False):
    """v0.0.38/39: ``job_resources.allocated_nodes[]``."""

    nodename: str | None = None
    cpus: Num = None
    memory_allocated: Num = None
    #: {"0": {"cores": {"0": "allocated", ...}}, ...}: kept as JSON, counted once per distinct text
    sockets: msgspec.Raw = msgspec.Raw(b"null")


class _Count(msgspec.Struct, gc=False):
    count: Num = None


class _Allocated(msgspec.Struct, gc=False):
    allocated: Num = None


class _NodeAllocation(msgspec.Struct, gc=False):
    """v0.0.40+: ``job_resources.nodes.allocation[]``."""

    name: str | None = None
    cpus: _Count | None = None
    memory: _Allocated | None = None


class _Nodes(msgspec.Struct, gc=False):
    allocation: list[_NodeAllocation] | None = None


class _Resources(msgspec.Struct, gc=False):
    nodes: str | _Nodes | None = None  # v0.0.38: the node list as a string
    allocated_nodes: list[_AllocatedNode] | None = None


class JobRecord(msgspec.Struct, gc=False):
    """The fields of a job the exporter reads, in any version's form (the others are skipped)."""

    job_id: Num = None
    job_state: Tokens = None
    state_reason: str | None = None
    partition: Tokens = None
    user_name: str | None = None
    account: str | None = None
    qos: str | None = None
    name: str | None = None
    cpus: Num = None
    start_time: Num = None
    job_resources: _Resources | None = None
    gres_detail: list[str] | None = None


def job_state(states: frozenset[str]) -> str:
    for flag in _JOB_FLAG_STATES:
        if flag in states:
            return flag.lower()
    for s in states:
        low = _JOB_STATE_ALIASES.get(s, s.lower())
        if low in JOB_STATES:
            return low
    return "other"


_JOB_STATES: dict[Any, str] = {}


def _job_state(value: Tokens) -> str:
    key = _key(value)
    found = _JOB_STATES.get(key)
    if found is None:
        found = _remember(_JOB_STATES, key, job_state(frozenset(_upper(value))))
    return found


def parse_job(record: JobRecord) -> Job:
    job_id = whole(record.job_id, -1)
    if job_id < 0:
        raise FieldError("job_id: missing")
    state = _job_state(record.job_state)
    cpus = whole(record.cpus)
    allocations: tuple[NodeAllocation, ...] = ()
    if state in ("running", "completing", "suspended"):
        allocations = _allocations(record, cpus)
    start = num(record.start_time)
    return Job(
        job_id=str(job_id),
        state=state,
        reason=_share(record.state_reason),
        partitions=_names(record.partition),
        user=_share(record.user_name),
        account=_share(record.account),
        qos=_share(record.qos),
        name=_share(record.name),
        cpus=cpus,
        start_time=start if start else None,
        allocations=allocations,
    )


def _allocations(record: JobRecord, job_cpus: int) -> tuple[NodeAllocation, ...]:
    resources = record.job_resources
    if resources is None:
        return ()
    rows: list[tuple[str, int | None, int, float]] = []  # node, cpus (None: count cores), cores, memory
    if isinstance(resources.nodes, _Nodes):  # v0.0.40+
        for item in resources.nodes.allocation or ():
            count = whole(item.cpus.count) if item.cpus else 0
            memory = float(whole(item.memory.allocated) * MIB) if item.memory else 0.0
            rows.append((item.name or "", count, 0, memory))
    else:
        for held in resources.allocated_nodes or ():
            listed = whole(held.cpus)
            given = listed if listed > 0 else None
            cores = _cores(held.sockets) if given is None else 0
            rows.append((held.nodename or "", given, cores, float(whole(held.memory_allocated) * MIB)))
    # v0.0.38 lists allocated cores, not CPUs: scale by the job's CPUs per allocated core.
    cores_total = sum(r[2] for r in rows if r[1] is None)
    scale = job_cpus // cores_total if cores_total and job_cpus % cores_total == 0 else 1
    detail = record.gres_detail or []
    if detail and len(detail) != len(rows):
        raise FieldError(f"gres_detail: {len(detail)} entries for {len(rows)} allocated nodes")
    out = []
    for i, (node, cpus, cores, memory) in enumerate(rows):
        gpus = _gpu_indexes(detail[i]) if detail else ()
        out.append(
            NodeAllocation(sys.intern(node), cpus if cpus is not None else cores * scale, memory, gpus)
        )
    return tuple(out)


def _records(record: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = record.get(key)
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        return value
    raise FieldError(f"{key}: expected a list of objects, got {_short(value)}")


_CORES: dict[bytes, int] = {}
_GPU_INDEXES: dict[str, tuple[tuple[str, int], ...]] = {}


def _cores(sockets: msgspec.Raw) -> int:
    key = bytes(sockets)
    found = _CORES.get(key)
    if found is None:
        found = _remember(_CORES, key, _allocated_cores(msgspec.json.decode(key)))
    return found


def _gpu_indexes(detail: str) -> tuple[tuple[str, int], ...]:
    """(GRES type, index) of every GPU in a ``gres_detail`` entry (``gpu:h100:2(IDX:0-1)``)."""
    found = _GPU_INDEXES.get(detail)
    if found is None:
        gpus = tuple(
            (g.type, idx) for g in parse_gres(detail, "gres_detail") if g.name == "gpu" for idx in g.indexes
        )
        found = _remember(_GPU_INDEXES, detail, gpus)
    return found


def _allocated_cores(sockets: Any) -> int:
    if not isinstance(sockets, Mapping):
        return 0
    count = 0
    for socket in sockets.values():
        cores = socket.get("cores") if isinstance(socket, Mapping) else None
        if isinstance(cores, Mapping):
            count += sum(1 for v in cores.values() if isinstance(v, str) and v.startswith("allocated"))
    return count


@dataclass(frozen=True)
class Reservation:
    name: str
    partition: str
    flags: tuple[str, ...]
    start: float | None
    end: float | None
    node_count: int


def parse_reservation(record: Mapping[str, Any]) -> Reservation:
    name = text(record, "name")
    if not name:
        raise FieldError("name: missing")
    flags = tuple(sorted(f.lower() for f in tokens(record, "flags")))
    partition = text(record, "partition")
    return Reservation(
        name,
        "" if partition == "(null)" else partition,
        flags,
        number(record, "start_time"),
        number(record, "end_time"),
        integer(record, "node_count"),
    )


@dataclass(frozen=True)
class Controller:
    hostname: str
    mode: str
    up: bool


def parse_ping(record: Mapping[str, Any]) -> Controller:
    # v0.0.38: "ping": "UP"; v0.0.41+: "pinged": "UP" and "responding": true.
    responding = record.get("responding")
    pinged = text(record, "pinged") or text(record, "ping")
    up = responding if isinstance(responding, bool) else pinged.upper() == "UP"
    return Controller(text(record, "hostname"), text(record, "mode") or "primary", up)


@dataclass(frozen=True)
class Rpc:
    type: str
    count: float
    total_seconds: float


@dataclass(frozen=True)
class Diag:
    values: Mapping[str, float]  # sdiag statistics by their JSON name
    rpcs: Sequence[Rpc]


#: sdiag statistics read (JSON names); the others are ignored.
DIAG_FIELDS: tuple[str, ...] = (
    "server_thread_count",
    "agent_queue_size",
    "agent_count",
    "agent_thread_count",
    "dbd_agent_queue_size",
    "schedule_cycle_max",
    "schedule_cycle_last",
    "schedule_cycle_total",
    "schedule_cycle_mean",
    "schedule_cycle_mean_depth",
    "schedule_cycle_per_minute",
    "schedule_queue_length",
    "jobs_submitted",
    "jobs_started",
    "jobs_completed",
    "jobs_canceled",
    "jobs_failed",
    "jobs_pending",
    "jobs_running",
    "bf_backfilled_jobs",
    "bf_cycle_counter",
    "bf_cycle_mean",
    "bf_cycle_last",
    "bf_cycle_max",
    "bf_depth_mean",
    "bf_queue_len",
    "bf_active",
    "req_time_start",
)


def parse_diag(statistics: Mapping[str, Any]) -> Diag:
    values: dict[str, float] = {}
    for key in DIAG_FIELDS:
        raw = statistics.get(key)
        if isinstance(raw, bool):
            values[key] = 1.0 if raw else 0.0
            continue
        value = number(statistics, key)
        if value is not None and not math.isinf(value):
            values[key] = value
    rpcs = []
    for item in _records(statistics, "rpcs_by_message_type"):
        rpcs.append(
            Rpc(
                text(item, "message_type") or str(integer(item, "type_id")),
                number(item, "count") or 0.0,
                (number(item, "total_time") or 0.0) / 1e6,
            )
        )
    return Diag(values, rpcs)
