"""The Slurm exporter's collectors: scheduler, partitions, nodes, jobs, reservations.

Each collector reads its endpoints through the shared ``Snapshots`` (one fetch per endpoint and
interval, whatever the number of scrapers) and fails alone: a slurmctld that refuses the job
list leaves the node states served.  Records that cannot be read are skipped, counted in
``powerplane_slurm_unreadable_records`` and named in the collector's error.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric

from ..runtime import Collector, CollectorError, Deadline, Partial
from ..runtime.metrics import MetricSpec
from . import metrics as m
from .config import JobsConfig, Limits, Privacy
from .families import Line, RecordLines, escape, number
from .model import (
    JOB_STATES,
    NODE_STATES,
    PARTITION_STATES,
    Controller,
    Diag,
    Job,
    Node,
    Partition,
    Reservation,
)
from .sources import DIAG, JOBS, NODES, PARTITIONS, PING, RESERVATIONS, Endpoint, Listing, Meta, Snapshots

_AIOT = ("allocated", "idle", "other", "total")
#: Seconds before the scrape deadline at which a collector stops waiting and renders what it has.
DEADLINE_MARGIN = 0.05
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Fetched:
    listings: Mapping[str, Listing[Any] | None]

    def records(self, endpoint: Endpoint[Any]) -> Sequence[Any]:
        listing = self.listings.get(endpoint.name)
        return listing.records if listing is not None else ()


class SlurmCollector(Collector[Fetched]):
    """Reads ``endpoints`` through the snapshots; ``families`` turns them into metrics."""

    endpoints: tuple[Endpoint[Any], ...] = ()
    #: Render even when every endpoint failed (the scheduler's up 0).
    render_on_failure = False

    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        #: The records last rendered and their families: an unchanged listing is not rendered again.
        self._rendered: tuple[tuple[Any, ...], list[Metric]] = ((), [])

    async def fetch(self, deadline: Deadline) -> Fetched | Partial[Fetched]:
        tasks = [asyncio.ensure_future(self.snapshots.get(e)) for e in self.endpoints]
        # Stop waiting just before the scrape's deadline so that what did arrive (and up 0) is
        # still rendered; a fetch still running goes on for the next scrape (Snapshots shields it).
        _done, late = await asyncio.wait(tasks, timeout=max(0.0, deadline.remaining() - DEADLINE_MARGIN))
        for task in late:
            task.cancel()
        listings: dict[str, Listing[Any] | None] = {}
        errors: list[str] = []
        for endpoint, task in zip(self.endpoints, tasks, strict=True):
            listings[endpoint.name] = None
            if task in late:
                errors.append(f"{endpoint.name}: no answer before the scrape deadline")
            elif task.exception() is not None:
                errors.append(_cause(endpoint, task.exception()))  # type: ignore[arg-type]
            else:
                listing = task.result()
                listings[endpoint.name] = listing
                errors.extend(listing.errors)
        fetched = Fetched(listings)
        if all(v is None for v in listings.values()) and not self.render_on_failure:
            raise CollectorError("; ".join(errors))
        return Partial(fetched, errors) if errors else fetched

    def render(self, snapshot: Fetched) -> Iterable[Metric]:
        stamp, unreadable, dropped = (
            m.SNAPSHOT_TIME.family(),
            m.UNREADABLE.family(),
            m.DROPPED_RECORDS.family(),
        )
        for name, listing in snapshot.listings.items():
            if listing is None:
                continue
            stamp.add_metric([name], listing.fetched_at)
            unreadable.add_metric([name], float(_unreadable(listing)))
            dropped.add_metric([name], float(listing.dropped))
        yield from (stamp, unreadable, dropped)
        records = tuple(None if lst is None else lst.records for lst in snapshot.listings.values())
        seen, families = self._rendered
        if len(seen) != len(records) or any(a is not b for a, b in zip(seen, records, strict=False)):
            families = list(self.families(snapshot))
            self._rendered = (records, families)
        yield from families

    def families(self, snapshot: Fetched) -> Iterator[Metric]:
        raise NotImplementedError


def _cause(endpoint: Endpoint[Any], exc: BaseException) -> str:
    if isinstance(exc, CollectorError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"{endpoint.name}: deadline exceeded"
    return f"{endpoint.name}: {type(exc).__name__}: {exc}"


def _unreadable(listing: Listing[Any]) -> int:
    count = 0
    for error in listing.errors:
        more = re.match(r"(\d+) more ", error)
        count += int(more.group(1)) if more else 1
    return count


def _clean(text: str, limit: int) -> str:
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- scheduler -------------------------------------------------------------------------------


class SchedulerCollector(SlurmCollector):
    """slurmctld's health: ping, sdiag's cycle times and backfill, RPCs, cluster info."""

    name = "scheduler"
    endpoints = (PING, DIAG)
    render_on_failure = True

    def __init__(self, snapshots: Snapshots, limits: Limits, source: str) -> None:
        super().__init__(snapshots)
        self.limits = limits
        self.source = source

    def families(self, snapshot: Fetched) -> Iterator[Metric]:
        controllers: Sequence[Controller] = snapshot.records(PING)
        up = m.UP.family()
        up.add_metric([], 1.0 if any(c.up for c in controllers) else 0.0)
        yield up
        family = m.CONTROLLER_UP.family()
        for c in controllers:
            family.add_metric([c.hostname, c.mode], 1.0 if c.up else 0.0)
        yield family
        metas = [lst.meta for lst in snapshot.listings.values() if lst is not None and lst.meta != Meta()]
        meta = metas[0] if metas else Meta()
        if any(lst is not None for lst in snapshot.listings.values()):
            info = m.CLUSTER_INFO.family()
            info.add_metric([meta.cluster, meta.release, meta.api, self.source], 1.0)
            yield info
        diags: Sequence[Diag] = snapshot.records(DIAG)
        if diags:
            yield from self._diag(diags[0])

    def _diag(self, diag: Diag) -> Iterator[Metric]:
        v = diag.values
        us = 1e-6
        per_scheduler = (
            (m.CYCLE_LAST, ("schedule_cycle_last", "bf_cycle_last"), us),
            (m.CYCLE_MEAN, ("schedule_cycle_mean", "bf_cycle_mean"), us),
            (m.CYCLE_MAX, ("schedule_cycle_max", "bf_cycle_max"), us),
            (m.CYCLES, ("schedule_cycle_total", "bf_cycle_counter"), 1.0),
            (m.QUEUE_LENGTH, ("schedule_queue_length", "bf_queue_len"), 1.0),
            (m.DEPTH_MEAN, ("schedule_cycle_mean_depth", "bf_depth_mean"), 1.0),
        )
        for spec, (main, backfill), scale in per_scheduler:
            family = spec.family()
            for scheduler, key in (("main", main), ("backfill", backfill)):
                if key in v:
                    family.add_metric([scheduler], v[key] * scale)
            yield family
        for spec, key in (
            (m.BACKFILL_ACTIVE, "bf_active"),
            (m.BACKFILLED, "bf_backfilled_jobs"),
            (m.SERVER_THREADS, "server_thread_count"),
            (m.AGENT_QUEUE, "agent_queue_size"),
            (m.DBD_QUEUE, "dbd_agent_queue_size"),
            (m.STATS_RESET, "req_time_start"),
        ):
            if key in v:
                family = spec.family()
                family.add_metric([], v[key])
                yield family
        events = m.JOB_EVENTS.family()
        for event in ("submitted", "started", "completed", "canceled", "failed"):
            if f"jobs_{event}" in v:
                events.add_metric([event], v[f"jobs_{event}"])
        yield events
        yield from self._rpcs(diag)

    def _rpcs(self, diag: Diag) -> Iterator[Metric]:
        cap = self.limits.max_rpc_types
        ranked = sorted(diag.rpcs, key=lambda r: (-r.count, r.type))
        kept, rest = ranked[:cap], ranked[cap:]
        counts, times = m.RPCS.family(), m.RPC_TIME.family()
        for rpc in kept:
            counts.add_metric([rpc.type], rpc.count)
            times.add_metric([rpc.type], rpc.total_seconds)
        if rest:
            counts.add_metric(["other"], sum(r.count for r in rest))
            times.add_metric(["other"], sum(r.total_seconds for r in rest))
        yield counts
        yield times
        dropped = m.DROPPED_SERIES.family()
        dropped.add_metric([m.RPCS.name], float(max(0, len(rest) - 1)))
        yield dropped


# --- partitions ------------------------------------------------------------------------------


def _seconds(family: Any, partition: str, value: float | None) -> None:
    if value is not None:
        family.add_metric([partition], value)


class PartitionCollector(SlurmCollector):
    """Partition states and limits."""

    name = "partitions"
    endpoints = (PARTITIONS,)

    def families(self, snapshot: Fetched) -> Iterator[Metric]:
        partitions: Sequence[Partition] = snapshot.records(PARTITIONS)
        state, info = m.PARTITION_STATE.family(), m.PARTITION_INFO.family()
        max_time, default_time = m.PARTITION_MAX_TIME.family(), m.PARTITION_DEFAULT_TIME.family()
        max_nodes = m.PARTITION_MAX_NODES.family()
        for p in partitions:
            for s in PARTITION_STATES:
                state.add_metric([p.name, s], 1.0 if p.state == s else 0.0)
            info.add_metric([p.name, "true" if p.default else "false"], 1.0)
            _seconds(max_time, p.name, p.max_time_seconds)
            _seconds(default_time, p.name, p.default_time_seconds)
            _seconds(max_nodes, p.name, p.max_nodes_per_job)
        yield from (state, info, max_time, default_time, max_nodes)


# --- nodes -----------------------------------------------------------------------------------


class _Totals:
    """CPUs, memory and GPUs of a set of nodes split as sinfo does: allocated, idle, other, total."""

    __slots__ = ("cpus", "gpus", "memory", "states")

    def __init__(self) -> None:
        self.states: Counter[str] = Counter()
        self.cpus = [0.0, 0.0, 0.0, 0.0]
        self.memory = [0.0, 0.0, 0.0, 0.0]
        self.gpus: dict[str, list[float]] = {}

    def add(self, node: Node) -> None:
        self.states[node.state] += 1
        _split(self.cpus, node.cpus, node.alloc_cpus, node.available)
        _split(self.memory, node.memory_bytes, node.alloc_memory_bytes, node.available)
        allocated = dict(node.alloc_gpus)
        for kind, total in node.gpus:
            _split(
                self.gpus.setdefault(kind, [0.0, 0.0, 0.0, 0.0]),
                total,
                allocated.get(kind, 0),
                node.available,
            )


def _split(into: list[float], total: float, allocated: float, available: bool) -> None:
    allocated = min(allocated, total)
    into[0] += allocated
    into[1 if available else 2] += total - allocated
    into[3] += total


class NodeCollector(SlurmCollector):
    """Per-node state, reason and allocation; per-partition and cluster totals."""

    name = "nodes"
    endpoints = (NODES,)
    per_node = (
        m.NODE_STATE,
        m.NODE_PARTITION,
        m.NODE_REASON,
        m.NODE_REASON_TIME,
        m.NODE_CPUS,
        m.NODE_MEMORY,
        m.NODE_GPUS,
    )

    def __init__(self, snapshots: Snapshots, limits: Limits) -> None:
        super().__init__(snapshots)
        self.limits = limits
        self._lines = RecordLines(self._node_lines, self.per_node)
        self._line = (
            Line(m.NODE_STATE, "node", "state").head,
            Line(m.NODE_PARTITION, "node", "partition").head,
            Line(m.NODE_REASON, "node", "reason").head,
            Line(m.NODE_REASON_TIME, "node").head,
            Line(m.NODE_CPUS, "node", "state").head,
            Line(m.NODE_MEMORY, "node", "state").head,
            Line(m.NODE_GPUS, "node", "type", "state").head,
        )

    def families(self, snapshot: Fetched) -> Iterator[Metric]:
        nodes = list(_unique(snapshot.records(NODES)))
        yield from self._lines.families(nodes)
        cluster = _Totals()
        partitions: dict[str, _Totals] = defaultdict(_Totals)
        for node in nodes:
            cluster.add(node)
            for partition in node.partitions:
                partitions[partition].add(node)
        yield from _totals(partitions, cluster)

    def _node_lines(self, node: Node) -> tuple[str, ...]:
        state, member, reason, since, cpus, memory, gpus = self._line
        name = escape(node.name)
        why = when = ""
        if node.reason:
            text = escape(_clean(node.reason, self.limits.reason_length))
            why = f'{reason}node="{name}",reason="{text}"}} 1.0\n'
            if node.reason_since:
                when = f'{since}node="{name}"}} {number(node.reason_since)}\n'
        allocated = dict(node.alloc_gpus)
        return (
            f'{state}node="{name}",state="{node.state}"}} 1.0\n',
            "".join(f'{member}node="{name}",partition="{escape(p)}"}} 1.0\n' for p in node.partitions),
            why,
            when,
            f'{cpus}node="{name}",state="allocated"}} {number(node.alloc_cpus)}\n'
            f'{cpus}node="{name}",state="total"}} {number(node.cpus)}\n',
            f'{memory}node="{name}",state="allocated"}} {number(node.alloc_memory_bytes)}\n'
            f'{memory}node="{name}",state="total"}} {number(node.memory_bytes)}\n',
            "".join(
                f'{gpus}node="{name}",type="{escape(kind)}",state="allocated"}} '
                f"{number(min(allocated.get(kind, 0), total))}\n"
                f'{gpus}node="{name}",type="{escape(kind)}",state="total"}} {number(total)}\n'
                for kind, total in node.gpus
            ),
        )


def _unique(nodes: Iterable[Node]) -> Iterator[Node]:
    seen: set[str] = set()
    for node in nodes:
        if node.name not in seen:
            seen.add(node.name)
            yield node


def _totals(partitions: Mapping[str, _Totals], cluster: _Totals) -> Iterator[Metric]:
    p_nodes, p_cpus = m.PARTITION_NODES.family(), m.PARTITION_CPUS.family()
    p_memory, p_gpus = m.PARTITION_MEMORY.family(), m.PARTITION_GPUS.family()
    for name in sorted(partitions):
        t = partitions[name]
        for s in NODE_STATES:
            p_nodes.add_metric([name, s], float(t.states.get(s, 0)))
        for i, s in enumerate(_AIOT):
            p_cpus.add_metric([name, s], t.cpus[i])
            p_memory.add_metric([name, s], t.memory[i])
            for kind, split in t.gpus.items():
                p_gpus.add_metric([name, kind, s], split[i])
    yield from (p_nodes, p_cpus, p_memory, p_gpus)
    c_nodes, c_cpus, c_memory, c_gpus = m.NODES.family(), m.CPUS.family(), m.MEMORY.family(), m.GPUS.family()
    for s in NODE_STATES:
        c_nodes.add_metric([s], float(cluster.states.get(s, 0)))
    for i, s in enumerate(_AIOT):
        c_cpus.add_metric([s], cluster.cpus[i])
        c_memory.add_metric([s], cluster.memory[i])
        for kind, split in cluster.gpus.items():
            c_gpus.add_metric([kind, s], split[i])
    yield from (c_nodes, c_cpus, c_memory, c_gpus)


# --- jobs ------------------------------------------------------------------------------------

_ACTIVE = ("running", "pending")


class JobCollector(SlurmCollector):
    """Queues per partition, active users, and the job → node/GPU mapping of running jobs."""

    name = "jobs"
    endpoints = (JOBS,)

    def __init__(self, snapshots: Snapshots, jobs: JobsConfig, privacy: Privacy) -> None:
        super().__init__(snapshots)
        self.jobs = jobs
        self.privacy = privacy
        mapping = (m.JOB_INFO, m.JOB_START, m.JOB_ALLOCATION, m.JOB_GPU, m.JOB_NAME)
        self._lines = RecordLines(self._job_lines, mapping)
        self._line = (
            Line(m.JOB_INFO, "job_id", "user", "account", "partition", "qos").head,
            Line(m.JOB_START, "job_id").head,
            Line(m.JOB_ALLOCATION, "job_id", "node", "resource").head,
            Line(m.JOB_GPU, "job_id", "node", "gpu").head,
            Line(m.JOB_NAME, "job_id", "name").head,
        )

    def families(self, snapshot: Fetched) -> Iterator[Metric]:
        jobs: Sequence[Job] = snapshot.records(JOBS)
        counts: Counter[tuple[str, str]] = Counter()
        pending: Counter[tuple[str, str]] = Counter()
        cpus: Counter[tuple[str, str]] = Counter()
        users: dict[tuple[str, str], set[str]] = defaultdict(set)
        cluster_users: dict[str, set[str]] = {s: set() for s in _ACTIVE}
        partitions: set[str] = set()
        for job in jobs:
            for partition in job.partitions or ("",):
                partitions.add(partition)
                counts[partition, job.state] += 1
                if job.state == "pending":
                    pending[partition, job.reason or "None"] += 1
                if job.state in _ACTIVE:
                    cpus[partition, job.state] += job.cpus
                    users[partition, job.state].add(job.user)
            if job.state in _ACTIVE:
                cluster_users[job.state].add(job.user)
        states = (*JOB_STATES, "other")
        family = m.JOBS.family()
        for partition in sorted(partitions):
            for s in states:
                family.add_metric([partition, s], float(counts.get((partition, s), 0)))
        yield family
        family = m.JOBS_PENDING.family()
        for (partition, reason), n in sorted(pending.items()):
            family.add_metric([partition, reason], float(n))
        yield family
        cpu_family, user_family = m.JOBS_CPUS.family(), m.PARTITION_USERS.family()
        for partition in sorted(partitions):
            for s in _ACTIVE:
                cpu_family.add_metric([partition, s], float(cpus.get((partition, s), 0)))
                user_family.add_metric([partition, s], float(len(users.get((partition, s), ()))))
        yield cpu_family
        yield user_family
        family = m.USERS.family()
        for s in _ACTIVE:
            family.add_metric([s], float(len(cluster_users[s])))
        yield family
        dropped = m.DROPPED_SERIES.family()
        yield from self._breakdown(
            jobs, m.ACCOUNT_JOBS, self.jobs.by_account, self.privacy.account, "account", dropped
        )
        yield from self._breakdown(jobs, m.USER_JOBS, self.jobs.by_user, self.privacy.user, "user", dropped)
        if self.jobs.mapping:
            yield from self._mapping(jobs, dropped)
        yield dropped

    def _breakdown(
        self, jobs: Sequence[Job], spec: MetricSpec, cap: int, privacy: Any, attr: str, dropped: Any
    ) -> Iterator[Metric]:
        if cap <= 0:
            return
        counts: Counter[tuple[str, str, str]] = Counter()
        for job in jobs:
            if job.state in _ACTIVE:
                owner = privacy(getattr(job, attr))
                if owner is not None:
                    for partition in job.partitions or ("",):
                        counts[owner, partition, job.state] += 1
        per_owner: Counter[str] = Counter()
        for (owner, _p, _s), n in counts.items():
            per_owner[owner] += n
        kept = {o for o, _n in heapq.nlargest(cap, per_owner.items(), key=lambda item: (item[1], item[0]))}
        family = spec.family()
        lost = 0
        for (owner, partition, state), n in sorted(counts.items()):
            if owner in kept:
                family.add_metric([owner, partition, state], float(n))
            else:
                lost += 1
        yield family
        dropped.add_metric([spec.name], float(lost))

    def _mapping(self, jobs: Sequence[Job], dropped: Any) -> Iterator[Metric]:
        running = [j for j in jobs if j.state == "running"]
        cap = self.jobs.max_mapped
        mapped = running
        if len(running) > cap:
            # Keep the longest-running jobs: their energy has accrued most.
            mapped = heapq.nsmallest(cap, running, key=lambda j: (j.start_time or math.inf, j.job_id))
        dropped.add_metric([m.JOB_INFO.name], float(len(running) - len(mapped)))
        info, start, allocation, gpus, names = self._lines.families(mapped)
        yield from (info, start, allocation, gpus)
        if self.jobs.names:
            yield names

    def _job_lines(self, job: Job) -> tuple[str, ...]:
        info, start, allocation, gpus, names = self._line
        jid = escape(job.job_id)
        user = escape(self.privacy.user(job.user) or "")
        account = escape(self.privacy.account(job.account) or "")
        held: list[str] = []
        indexes: list[str] = []
        for a in job.allocations:
            where = f'{allocation}job_id="{jid}",node="{escape(a.node)}",resource='
            held.append(
                f'{where}"cpus"}} {number(a.cpus)}\n{where}"memory_bytes"}} {number(a.memory_bytes)}\n'
                f'{where}"gpus"}} {number(len(a.gpus))}\n'
            )
            indexes.extend(
                f'{gpus}job_id="{jid}",node="{escape(a.node)}",gpu="{i}"}} 1.0\n' for _t, i in a.gpus
            )
        return (
            f'{info}job_id="{jid}",user="{user}",account="{account}",'
            f'partition="{escape(",".join(job.partitions))}",qos="{escape(job.qos)}"}} 1.0\n',
            f'{start}job_id="{jid}"}} {number(job.start_time)}\n' if job.start_time else "",
            "".join(held),
            "".join(indexes),
            f'{names}job_id="{jid}",name="{escape(_clean(job.name, 200))}"}} 1.0\n'
            if self.jobs.names
            else "",
        )


# --- reservations ----------------------------------------------------------------------------


class ReservationCollector(SlurmCollector):
    """Reservations and maintenance windows with their start and end."""

    name = "reservations"
    endpoints = (RESERVATIONS,)

    def families(self, snapshot: Fetched) -> Iterator[Metric]:
        reservations: Sequence[Reservation] = snapshot.records(RESERVATIONS)
        info, start, end = (
            m.RESERVATION_INFO.family(),
            m.RESERVATION_START.family(),
            m.RESERVATION_END.family(),
        )
        nodes = m.RESERVATION_NODES.family()
        for r in reservations:
            info.add_metric([r.name, r.partition, ",".join(r.flags)], 1.0)
            if r.start is not None:
                start.add_metric([r.name], r.start)
            if r.end is not None:
                end.add_metric([r.name], r.end)
            nodes.add_metric([r.name], float(r.node_count))
        yield from (info, start, end, nodes)
