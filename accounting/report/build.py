"""Computing a report: the joins, the prices, the chunked queries, the folds and the rows."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from powerplane.exporters.runtime.http import public_url
from powerplane.rulegen.config import RulesConfig

from ..prometheus import MAX_POINTS, PrometheusClient, QueryError, Series
from . import queries as q
from .fold import EntityFold, GroupPeaks, Matrix, Window, dense, fold_groups
from .model import AlertEpisode, Report
from .rows import assemble

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
#: One set's answers to one kind of query on one chunk: per query name, per entity, the steps.
_Answers = dict[str, dict[Hashable, Matrix]]

logger = logging.getLogger("powerplane.accounting.report")

#: Points one query of one chunk may return (entities x steps): bounds what a chunk holds.
POINT_BUDGET = 1_000_000
#: Bytes of JSON per point of a range answer (``[1772323260,"123456.789"],`` and a share of the
#: labels): chunks are sized to fit the body cap rather than be refused and asked again in halves.
BYTES_PER_POINT = 32
#: Alert episodes listed; more are counted.
MAX_ALERTS = 1000
#: The implicit grouping of everything (the report's total).
TOTAL = "(total)"
#: Chunks of the range evaluated at once (their queries share the client's request limit): the
#: next chunks are computed, on the server's other cores, while one is folded here.
CHUNKS_AHEAD = 2
#: Price and carbon are read this far back from each period's middle (inside the period).
MARKET_LOOKBACK = "420s"


@dataclass(frozen=True)
class Options:
    window: Window
    groupings: tuple[str, ...]
    rules: RulesConfig = field(default_factory=RulesConfig)
    timezone: str = "UTC"
    #: Groups drawn in the power-over-time chart (the rest are summed as "others").
    charted: int = 8


@dataclass
class Inventory:
    """The joins: where nodes sit, which partitions they are in, clusters' market areas, jobs' owners."""

    node: dict[str, dict[str, str]] = field(default_factory=dict)
    partitions: dict[str, set[str]] = field(default_factory=dict)
    area: dict[str, str] = field(default_factory=dict)
    #: (cluster, job id) → user, account, partition; job ids repeat across clusters.
    job: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def node_area(self, node: str, areas: Sequence[str]) -> str | None:
        cluster = self.node.get(node, {}).get("cluster")
        if cluster is not None and cluster in self.area:
            return self.area[cluster]
        # One market area for the whole site: every node is priced there.
        return areas[0] if len(areas) == 1 else None


async def load_inventory(client: PrometheusClient, window: Window) -> Inventory:
    inv = Inventory()
    node_info, partitions, clusters, jobs = await asyncio.gather(
        client.series("powerplane_node_info", window.start, window.end),
        client.series("powerplane_slurm_node_partition_info", window.start, window.end),
        client.series("powerplane_cluster_info", window.start, window.end),
        client.series("powerplane_slurm_job_info", window.start, window.end),
    )
    for labels in sorted(node_info, key=lambda x: sorted(x.items())):
        if labels.get("node"):
            inv.node[labels["node"]] = {k: labels.get(k, "") for k in ("cluster", "row", "rack")}
            if labels.get("partition"):
                inv.partitions.setdefault(labels["node"], set()).add(labels["partition"])
    slurm: dict[str, set[str]] = {}
    for labels in partitions:
        if labels.get("node") and labels.get("partition"):
            slurm.setdefault(labels["node"], set()).add(labels["partition"])
    inv.partitions.update(slurm)  # the scheduler's own view wins over the inventory's
    for labels in clusters:
        if labels.get("cluster") and labels.get("area"):
            inv.area[labels["cluster"]] = labels["area"]
    for labels in jobs:
        if labels.get("job_id"):
            owner = {k: labels.get(k, "") for k in ("user", "account", "partition")}
            inv.job[(labels.get("cluster", ""), labels["job_id"])] = owner
    return inv


async def load_market(client: PrometheusClient, window: Window, metric: str) -> dict[str, np.ndarray]:
    """Per area, the value in each period (NaN where none is known)."""
    half = q.PERIOD_SECONDS / 2
    series = await client.query_range(
        q.price_query(metric, MARKET_LOOKBACK), window.start + half, window.end - half, q.PERIOD_SECONDS
    )
    result: dict[str, np.ndarray] = {}
    for s in series:
        values = np.full(window.periods, np.nan)
        index = np.rint((s.times - window.start - half) / q.PERIOD_SECONDS).astype(np.int64)
        keep = (index >= 0) & (index < window.periods)
        values[index[keep]] = s.values[keep]
        result[s.labels.get("area", "")] = values
    return result


async def metric_names(client: PrometheusClient, window: Window) -> frozenset[str] | None:
    """The metrics with series in the range, from the index; None when the API cannot say."""
    try:
        return frozenset(await client.label_values("__name__", window.start, window.end))
    except QueryError as exc:
        logger.warning("asking every query: %s", exc)
        return None


async def prefetched(
    items: Sequence[K], fetch: Callable[[K], Awaitable[V]], ahead: int
) -> AsyncIterator[tuple[K, V]]:
    """``(item, await fetch(item))`` in the order of ``items``, with up to ``ahead`` fetches running.

    The fetches after the one yielded keep running while the caller works on it; what is held is
    at most ``ahead`` answers besides the one being used.  Leaving early cancels the rest.
    """
    waiting = list(items)
    running: deque[tuple[K, asyncio.Task[V]]] = deque()

    def fill() -> None:
        while waiting and len(running) < max(1, ahead):
            item = waiting.pop(0)
            running.append((item, asyncio.ensure_future(fetch(item))))

    try:
        while waiting or running:
            fill()
            item, task = running.popleft()
            value = await task
            fill()
            yield item, value
    finally:
        for _item, task in running:
            task.cancel()
        await asyncio.gather(*(task for _item, task in running), return_exceptions=True)


class _Limited:
    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)

    async def run(self, job: Awaitable[T]) -> T:
        async with self.semaphore:
            return await job


def _node_key(labels: Mapping[str, str]) -> Hashable:
    return labels.get("node", "")


def _entity_key(names: tuple[str, ...]) -> Callable[[Mapping[str, str]], Hashable]:
    return lambda labels: tuple(labels.get(n, "") for n in names)


@dataclass
class _Set:
    """One entity set being folded: its queries and the groupings that read it."""

    name: str
    fold: EntityFold
    counters: dict[str, str]
    integrated: dict[str, str]
    gauges: dict[str, str]
    key: Callable[[Mapping[str, str]], Hashable]
    groupings: list[str] = field(default_factory=list)


class Builder:
    """Runs the queries of one report and folds them."""

    def __init__(
        self,
        client: PrometheusClient,
        options: Options,
        inventory: Inventory,
        present: frozenset[str] | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.window = options.window
        self.inv = inventory
        #: Metric names with series in the range (None: unknown, every query is asked).
        self.present = present
        self.limit = _Limited(4)
        self.sources = q.sources(options.rules)
        self.gauges = q.gauges(options.rules)
        self.peaks: dict[str, GroupPeaks] = {}
        self.sets = self._sets()

    def _asked(self, expr: str) -> str:
        """``expr``, or "" (not asked: its answer is empty) when a metric it selects has no series."""
        if self.present is None or q.selected_metrics(expr) <= self.present:
            return expr
        return ""

    def _power_query(self, source: q.Source) -> str:
        gauge = self._asked(q.at_step(source.power, self.window.step))
        counter = bool(self._asked(source.counter_query(self.window.step)))
        return gauge and source.power_query(self.window.step, counter_exists=counter)

    def _sets(self) -> dict[str, _Set]:
        w = self.window
        gauge_reduce = {g.name: g.reduce for g in self.gauges}
        names = [s.name for s in self.sources]
        nodes = _Set(
            "nodes",
            EntityFold(w, names, q.PRECEDENCE, gauge_reduce),
            {s.name: self._asked(s.counter_query(w.step)) for s in self.sources},
            {s.name: self._power_query(s) for s in self.sources if s.power},
            {g.name: self._asked(q.at_step(g.query, w.step)) for g in self.gauges},
            _node_key,
            [TOTAL],
        )
        nodes.fold.add_entities(sorted(self.inv.node))
        sets = {"nodes": nodes}
        for name in self.options.groupings:
            grouping = q.GROUPINGS[name]
            if grouping.kind == "node":
                nodes.groupings.append(name)
                continue
            owners = sets.get(grouping.series)
            if owners is None:
                owners = sets[grouping.series] = _Set(
                    grouping.series,
                    EntityFold(w, ["attributed"], [("attributed",)], {}),
                    {},
                    {
                        "attributed": self._asked(
                            q.owner_query(grouping.series, grouping.entity_labels, w.step)
                        )
                    },
                    {},
                    _entity_key(grouping.entity_labels),
                )
            owners.groupings.append(name)
            if "unattributed" not in sets:
                sets["unattributed"] = _Set(
                    "unattributed",
                    EntityFold(w, ["attributed"], [("attributed",)], {}),
                    {},
                    {"attributed": self._asked(q.owner_query(q.UNATTRIBUTED, ("node",), w.step))},
                    {},
                    _node_key,
                )
            sets["unattributed"].groupings.append(name)
        return sets

    # --- membership ----------------------------------------------------------------------------

    def groups_of(self, set_name: str, grouping: str, key: Hashable) -> list[str]:
        if grouping == TOTAL:
            return [TOTAL]
        if set_name == "unattributed":
            return [q.UNATTRIBUTED_GROUP]
        g = q.GROUPINGS[grouping]
        if g.kind == "node":
            node = str(key)
            if grouping == "node":
                return [node or "(no node label)"]
            if grouping == "partition":
                return sorted(self.inv.partitions.get(node, set())) or [q.UNPLACED_GROUP]
            value = self.inv.node.get(node, {}).get(g.label, "")
            return [value or q.UNPLACED_GROUP]
        labels = dict(zip(g.entity_labels, key, strict=True))  # type: ignore[call-overload]
        job = (labels.get("cluster", ""), labels.get("hpc_job", ""))
        value = labels.get(g.label) or self.inv.job.get(job, {}).get(g.label, "")
        return [value or f"(no {g.label})"]

    def membership(self, entity_set: _Set, grouping: str) -> list[tuple[int, str]]:
        return [
            (row, group)
            for row, key in enumerate(entity_set.fold.keys)
            for group in self.groups_of(entity_set.name, grouping, key)
        ]

    # --- the chunked fold ----------------------------------------------------------------------

    async def run(self) -> None:
        entities = max(len(self.inv.node), 1)
        budget = min(POINT_BUDGET, self.client.settings.max_body_bytes // BYTES_PER_POINT)
        steps = min(MAX_POINTS, max(1, budget // entities))
        thresholds = {g.name: g.threshold for g in self.gauges}
        #: Per (set, grouping): the entity count its membership was computed for, and the membership.
        members: dict[tuple[str, str], tuple[int, list[tuple[int, str]]]] = {}
        # Chunks are folded in order (gap runs and peak ties depend on it) while the next ones are
        # being evaluated: Prometheus runs concurrent queries on several cores.
        async for (k0, k1), answers in prefetched(self.window.chunks(steps), self._chunk, CHUNKS_AHEAD):
            for entity_set, (counters, integrated, gauges) in zip(self.sets.values(), answers, strict=True):
                best, gauge_rows = entity_set.fold.fold(k0, k1, counters, integrated, gauges)
                for grouping in entity_set.groupings:
                    peaks = self.peaks.setdefault(grouping, GroupPeaks())
                    # Recomputed only when entities were first seen in this chunk (a job starting).
                    key, count = (entity_set.name, grouping), len(entity_set.fold.keys)
                    if members.get(key, (-1,))[0] != count:
                        members[key] = (count, self.membership(entity_set, grouping))
                    fold_groups(peaks, members[key][1], best, gauge_rows, thresholds, self.window, k0)

    async def _chunk(self, bounds: tuple[int, int]) -> list[tuple[_Answers, _Answers, _Answers]]:
        """Every set's counters, integrated power and gauges on the steps [k0, k1)."""
        k0, k1 = bounds
        a = self.window.start + (k0 + 1) * self.window.step
        b = self.window.start + k1 * self.window.step
        return list(
            await asyncio.gather(
                *(
                    asyncio.gather(
                        self._fetch(entity_set, entity_set.counters, a, b, k0, k1),
                        self._fetch(entity_set, entity_set.integrated, a, b, k0, k1),
                        self._fetch(entity_set, entity_set.gauges, a, b, k0, k1),
                    )
                    for entity_set in self.sets.values()
                )
            )
        )

    async def _fetch(
        self, entity_set: _Set, exprs: Mapping[str, str], a: float, b: float, k0: int, k1: int
    ) -> dict[str, dict[Hashable, Matrix]]:
        names = [n for n, expr in exprs.items() if expr]
        answers: list[list[Series]] = await asyncio.gather(
            *(self.limit.run(self.client.query_range(exprs[n], a, b, self.window.step)) for n in names)
        )
        found = dict(zip(names, answers, strict=True))
        return {n: dense(found.get(n, []), entity_set.key, self.window, k0, k1) for n in exprs}

    async def alerts(self) -> tuple[list[AlertEpisode], int]:
        episodes: list[AlertEpisode] = []
        more = 0
        w = self.window
        async for chunk in self.client.range_chunks(
            q.at_step(q.ALERTS, w.step), w.start + w.step, w.end, w.step
        ):
            for s in chunk.series:
                k = w.step_index(s.times)
                if not len(k):
                    continue
                breaks = np.flatnonzero(np.diff(k) > 1)
                firsts = np.concatenate(([k[0]], k[breaks + 1]))
                lasts = np.concatenate((k[breaks], [k[-1]]))
                for first, last in zip(firsts, lasts, strict=True):
                    start, end = w.start + int(first) * w.step, w.start + (int(last) + 1) * w.step
                    if episodes and _continues(episodes[-1], s.labels, start):
                        episodes[-1] = AlertEpisode(*_fields(episodes[-1])[:4], end)
                    elif len(episodes) < MAX_ALERTS:
                        labels = {k_: v for k_, v in s.labels.items() if k_ not in ("alertname", "severity")}
                        episodes.append(
                            AlertEpisode(
                                s.labels.get("alertname", ""),
                                s.labels.get("severity", ""),
                                labels,
                                start,
                                end,
                            )
                        )
                    else:
                        more += 1
        return sorted(episodes, key=lambda e: (e.start, e.alertname)), more


def _fields(e: AlertEpisode) -> tuple[str, str, Mapping[str, str], float, float]:
    return (e.alertname, e.severity, e.labels, e.start, e.end)


def _continues(last: AlertEpisode, labels: Mapping[str, str], start: float) -> bool:
    """An episode cut by a chunk boundary goes on in the next chunk."""
    rest = {k: v for k, v in labels.items() if k not in ("alertname", "severity")}
    return last.alertname == labels.get("alertname", "") and dict(last.labels) == rest and last.end == start


async def build(client: PrometheusClient, options: Options) -> Report:
    """Run every query of the report and compute its rows."""
    window = options.window
    inventory, prices, carbon, present = await asyncio.gather(
        load_inventory(client, window),
        load_market(client, window, q.PRICE),
        load_market(client, window, q.CARBON),
        metric_names(client, window),
    )
    builder = Builder(client, options, inventory, present)
    (episodes, more), _ = await asyncio.gather(builder.alerts(), builder.run())
    return assemble(builder, prices, carbon, episodes, more, time.time(), public_url(client.base))
