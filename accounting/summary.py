"""One job's ledger over its exact window: energy per part, power, cost per market period, CO2,
its share of each node, and how complete the data was.

The job's shares come from the accounting rules (``powerplane.accounting.model``): its allocated
CPU share of each node's rest and its fraction of each GPU it holds.  Slurm allocations do not
change while a job runs, so when a share is the same over the whole window it is applied to the
node's *measured* power from the job's first second to its last, whatever the Slurm exporter's
scrape interval (its series only appear a scrape after the start).  A share that changed (a GPU
shared for part of the job) is integrated from the recorded per-job series instead, and the
summary says so.  GPU energy comes from the GPUs' energy counters (their increase over the window)
when they cover it without a reset, else from integrated power; the rest of the node is
integrated from the best node power.  Cost sums each market period's energy at that period's
price; CO2 each period's energy at its carbon intensity.  Gaps are named, never filled.

Every integral reads raw samples over a range (``sum_over_time`` of a recorded series times the
rules' interval, ``avg_over_time`` of a scraped one), once per market period, so a day of a
thousand nodes costs a few range reads, not a query per step.  Each sample of the GPUs (a day of
8,000 is 11.5 million) is read as few times as the figures allow: the GPUs a job held alone are
known from the index (the series API), so its fractions are compared over the window only where
another owner held one of its GPUs, and a job holding every GPU of its nodes takes their power
whole from the node's recorded GPU power (one series per node, not one per GPU, and no join); the
counters' per-node increase gives the job's total too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import math
import statistics
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from powerplane.exporters.runtime.config import Secret

from . import model
from .prometheus import (
    BasicAuthSettings,
    ClientSettings,
    PrometheusClient,
    QueryError,
    QueryRecord,
    Series,
)
from .window import JobWindow

#: A Prometheus answer larger than this is refused (a 1,000-node day is a few MB).
MAX_ANSWER_BYTES = 256 << 20
#: Named gaps are listed for this many nodes at most (the count of the others is given).
MAX_GAP_NODES = 10
DEFAULT_PERIOD_SECONDS = 900.0
#: How far the GPU exporter's clock may run behind Prometheus's when its counter's start is compared
#: with the job's.
COUNTER_CLOCK_LEEWAY_S = 60.0


class PrometheusError(RuntimeError):
    pass


_T = TypeVar("_T")


class Prometheus:
    """The queries the job summary needs, through the shared client (``accounting/prometheus.py``:
    bounded bodies, timeouts, retries with backoff, errors that name the server and never its
    credentials).  Synchronous for the summary's arithmetic; ``many`` asks several at once."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Prometheus URL {parts.scheme}://{parts.hostname or ''}: not an http(s) URL")
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        #: The URL as errors may show it: no user, no password.
        self.where = urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
        auth = None
        if not token and parts.username is not None:
            password = Secret("the URL", urllib.parse.unquote(parts.password or ""))
            auth = BasicAuthSettings(urllib.parse.unquote(parts.username), password)
        self.settings = ClientSettings(
            url=self.where,
            basic_auth=auth,
            bearer_token=Secret("the bearer token", token) if token else None,
            timeout=timeout,
            max_body_bytes=MAX_ANSWER_BYTES,
        )
        #: Called with every answered query when set (``powerplane job --query-log``).
        self.query_log: Callable[[QueryRecord], None] | None = None

    def many(self, *calls: Callable[[PrometheusClient], Awaitable[_T]]) -> list[_T]:
        """The calls' answers, asked concurrently over one connection pool."""

        async def ask() -> list[_T]:
            async with PrometheusClient(self.settings) as client:
                client.query_log = self.query_log
                return list(await asyncio.gather(*(call(client) for call in calls)))

        try:
            return asyncio.run(ask())
        except QueryError as exc:
            raise PrometheusError(f"Prometheus {self.where}: {exc}") from None

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        (found,) = self.many(_instant(expr, at))
        return found

    def queries(self, at: float, *exprs: str) -> list[list[dict[str, Any]]]:
        """Several instant queries at ``at``, asked at once."""
        return self.many(*(_instant(expr, at) for expr in exprs))

    def query_samples(self, expr: str, at: float) -> list[dict[str, Any]]:
        """A range selector's raw samples (``expr`` is ``selector[range]``)."""

        async def call(client: PrometheusClient) -> list[dict[str, Any]]:
            return [_rows(s) for s in await client.query_matrix(expr, at)]

        (found,) = self.many(call)
        return found

    def rule_interval(self, record: str) -> float | None:
        """The evaluation interval of the rule group recording ``record``."""

        async def call(client: PrometheusClient) -> list[dict[str, Any]]:
            return await client.rule_groups("record")

        (groups,) = self.many(call)
        for group in groups:
            rules = group.get("rules")
            if isinstance(rules, list) and any(
                isinstance(r, dict) and r.get("name") == record for r in rules
            ):
                try:
                    return float(group.get("interval") or 0) or None
                except (TypeError, ValueError):
                    raise PrometheusError(
                        f"Prometheus {self.where}: rule group interval {group.get('interval')!r}"
                    ) from None
        return None

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        (found,) = self.many(_ranged(expr, start, end, step))
        return found


def _instant(expr: str, at: float) -> Callable[[PrometheusClient], Awaitable[list[dict[str, Any]]]]:
    async def call(client: PrometheusClient) -> list[dict[str, Any]]:
        return [{"metric": dict(x.labels), "value": (x.time, x.value)} for x in await client.query(expr, at)]

    return call


def _ranged(
    expr: str, start: float, end: float, step: float
) -> Callable[[PrometheusClient], Awaitable[list[dict[str, Any]]]]:
    async def call(client: PrometheusClient) -> list[dict[str, Any]]:
        return [_rows(s) for s in await client.query_range(expr, start, end, step)]

    return call


def _rows(series: Series) -> dict[str, Any]:
    return {
        "metric": dict(series.labels),
        "values": list(zip(series.times.tolist(), series.values.tolist(), strict=True)),
    }


# --- the result ----------------------------------------------------------------------------------


@dataclass
class Period:
    """One market period of one area, clipped to the job's window."""

    area: str
    start: float
    end: float
    #: kWh by part (gpu, rest, and facility when configured).
    parts: dict[str, float] = field(default_factory=dict)
    price_eur_per_mwh: float | None = None
    carbon_grams_per_kwh: float | None = None

    @property
    def energy_kwh(self) -> float:
        """IT energy (facility overhead apart)."""
        return sum(v for k, v in self.parts.items() if k in model.PARTS)

    def _rate(self, value: float | None, kwh: float) -> float | None:
        return None if value is None else kwh * value / 1000

    @property
    def cost_eur(self) -> float | None:
        return self._rate(self.price_eur_per_mwh, self.energy_kwh)

    @property
    def co2_kg(self) -> float | None:
        return self._rate(self.carbon_grams_per_kwh, self.energy_kwh)

    @property
    def facility_cost_eur(self) -> float | None:
        return self._rate(self.price_eur_per_mwh, self.parts.get("facility", 0.0))

    @property
    def facility_co2_kg(self) -> float | None:
        return self._rate(self.carbon_grams_per_kwh, self.parts.get("facility", 0.0))


@dataclass
class NodeShare:
    node: str
    energy_kwh: float
    node_energy_kwh: float | None
    cpu_share: float | None
    gpus: int
    coverage: float


@dataclass
class Summary:
    window: JobWindow
    start: float | None = None
    end: float | None = None
    #: The accounting rules' evaluation interval: each recorded sample stands for that long.
    interval: float = 0.0
    energy_kwh: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    average_watts: float | None = None
    peak_watts: float | None = None
    periods: list[Period] = field(default_factory=list)
    nodes: list[NodeShare] = field(default_factory=list)
    coverage: float | None = None
    statements: list[str] = field(default_factory=list)

    @property
    def it_energy_kwh(self) -> float | None:
        parts = [self.energy_kwh[p] for p in model.PARTS if p in self.energy_kwh]
        return sum(parts) if parts else None

    def total(self, attr: str) -> float | None:
        """The sum of a per-period figure (cost, CO2) over the priced periods; None when none is."""
        known = [v for p in self.periods if (v := getattr(p, attr)) is not None]
        return sum(known) if known else None

    def unknown_kwh(self, attr: str) -> float:
        """IT energy of the periods whose ``attr`` (price, carbon) is unknown."""
        return sum(p.energy_kwh for p in self.periods if getattr(p, attr) is None)


# --- PromQL --------------------------------------------------------------------------------------


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _range(seconds: float) -> str:
    """A range that holds ``(t - seconds, t]``: Prometheus 2's ranges hold both ends."""
    return f"{max(1, round(seconds * 1000) - 1)}ms"


@dataclass(frozen=True)
class _Q:
    """The job's expressions over its window ``(end - range_s, end]``."""

    job: str
    end: float
    range_s: int
    cluster: str = ""
    interval: float = 60.0
    #: Read the (constant) shares over this many seconds before the end instead of the whole window.
    near: int | None = None
    #: The nodes the job held (a literal alternation): the fleet-wide series are read there only.
    nodes_re: str = ""
    #: The job held every GPU of its nodes alone: its GPU part is their whole power (no GPU-by-GPU join).
    whole_gpus: bool = False
    #: The one market area of all the job's nodes, when they share one: sums need no join with the
    #: nodes' areas (which a range query would otherwise read again at every step).
    area: str = ""

    def of(self, metric: str, *matchers: str) -> str:
        """``metric`` on the job's nodes (all of them while those are not known yet), and ``matchers``."""
        nodes = (f'node=~"{_esc(self.nodes_re)}"',) if self.nodes_re else ()
        found = ", ".join((*nodes, *matchers))
        return f"{metric}{{{found}}}" if found else metric

    @property
    def sel(self) -> str:
        cluster = f', cluster="{_esc(self.cluster)}"' if self.cluster else ""
        return f'hpc_job="{_esc(self.job)}"{cluster}'

    def over(self, series: str, fn: str = "max_over_time", near: bool = False) -> str:
        seconds = self.near if near and self.near else self.range_s
        return f"{fn}({series}[{seconds}s] @ {self.end:.3f})"

    @property
    def cpu_shares(self) -> str:
        return self.over(f"{model.JOB_CPU_SHARE}{{{self.sel}}}", near=True)

    def fractions(self, fn: str = "max_over_time") -> str:
        """The job's fraction of each GPU unit it held (its holder series times the unit's share)."""
        near = fn == "max_over_time"
        share = self.over(self.of(model.GPU_SHARE), fn, near=near)
        return (
            f"{self.over(f'{model.JOB_HOLDER}{{{self.sel}}}', near=near)}\n"
            f"* on (node, gpu, gpu_instance) group_left () {share}"
        )

    @property
    def gpu_fractions(self) -> str:
        return f"sum by (node, gpu) ({self.fractions()})"

    @property
    def nodes(self) -> str:
        return (
            f"(max by (node) ({self.cpu_shares}) or max by (node) "
            f"({self.over(f'{model.JOB_HOLDER}{{{self.sel}}}', near=True)}))"
        )

    def energy(self, part: str, constant: bool, seconds: float, at: float | None) -> str:
        """Joules of the job's ``part`` per node over ``(at - seconds, at]`` (at each step when None)."""
        pin = "" if at is None else f" @ {at:.3f}"
        window = f"[{_range(seconds)}]{pin}"
        if not constant:
            recorded = f'{model.JOB_POWER}{{{self.sel}, part="{part}"}}'
            return f"sum by (node) (sum_over_time({recorded}{window})) * {self.interval:g}"
        if part == "rest":
            return (
                f"clamp_min(sum_over_time({self.of(model.REST)}{window}), 0) * {self.interval:g}\n"
                f"* on (node) group_left () {self.cpu_shares}"
            )
        # Scraped, not recorded: its average over the range (at least two rule intervals, so a short
        # edge still has a sample) times the range.
        avg = f"[{_range(max(seconds, 2 * self.interval))}]{pin}"
        if self.whole_gpus:
            # Every GPU of its nodes is the job's alone: the node's GPU power, recorded once per node
            # (the rest of the node is that less, by the same rule), is read instead of each GPU's.
            node = f"max by (node) (avg_over_time({self.of(model.NODE_GPU_POWER)}{avg}))"
            return f"{node} * {seconds:g}"
        watts = f"max by (node, gpu) (avg_over_time({self.of(model.GPU_POWER)}{avg}))"
        held = f"on (node, gpu) group_right () {self.gpu_fractions}"
        return f"sum by (node) (\n  {watts} * {seconds:g}\n  * {held}\n)"

    @property
    def area_map(self) -> str:
        area = (
            f"max by (node, area) ({self.over('powerplane_node_info', 'last_over_time', near=True)}"
            f" * on (cluster) group_left (area) max by (cluster, area)"
            f" ({self.over('powerplane_cluster_info', 'last_over_time', near=True)}))"
        )
        return f"({area} or ({self.nodes} * 0 + 1 unless on (node) {area}))"

    def by_area(self, expr: str) -> str:
        if self.area:
            return f'label_replace(sum (\n  {expr}\n), "area", "{_esc(self.area)}", "area", "")'
        return f"sum by (area) (\n  ({expr})\n  * on (node) group_left (area) {self.area_map}\n)"


def _scalar(result: Sequence[Mapping[str, Any]]) -> float | None:
    if not result:
        return None
    value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None


def _by_node(result: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {r["metric"].get("node", ""): float(r["value"][1]) for r in result}


def _by_area(result: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {r["metric"].get("area", ""): float(r["value"][1]) for r in result}


def _grid(start: float, end: float, period: float) -> list[tuple[float, float]]:
    """The market periods ``[a, b)`` that meet ``[start, end]``, aligned like the market's."""
    first = math.floor(start / period) * period
    count = max(1, math.ceil((end - first) / period))
    return [(first + i * period, first + (i + 1) * period) for i in range(count)]


def _cuts(start: float, end: float, period: float) -> list[tuple[float, float]]:
    """The window cut at the market periods' edges."""
    return [(max(a, start), min(b, end)) for a, b in _grid(start, end, period)]


def utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _span(a: float, b: float) -> str:
    return f"{time.strftime('%H:%M:%S', time.gmtime(a))}-{time.strftime('%H:%M:%S', time.gmtime(b))} UTC"


# --- the computation -----------------------------------------------------------------------------


def summarize(prom: Prometheus, window: JobWindow, *, cluster: str = "", now: float | None = None) -> Summary:
    """The job's summary (``Summary.statements`` says what could not be known, and why)."""
    now = time.time() if now is None else now
    summary = Summary(window, statements=list(window.notes))
    job = window.job_id
    if window.source == "scontrol" and not window.nodes:
        summary.statements.append(
            f"job {job} ran on no nodes (state {window.state or 'unknown'}): there is nothing to account"
        )
        return summary
    if window.start is None:
        summary.statements.append(f"job {job} has not started (state {window.state or 'unknown'})")
        return summary
    end = window.end if window.end is not None else now
    if window.end is None:
        summary.statements.append(f"job {job} is still running: the figures run to {utc(end)}")
    if end <= window.start:
        summary.statements.append(f"job {job} ran for no measurable time ({utc(window.start)} to {utc(end)})")
        return summary
    summary.start, summary.end = window.start, end
    interval = prom.rule_interval(model.REST)
    if interval is None:
        summary.statements.append("this Prometheus does not evaluate the accounting rules: nothing to read")
        return summary
    summary.interval = interval
    q = _Q(job, end, math.ceil(end - window.start), cluster or window.cluster, interval)
    shares = _shares(prom, q, summary)
    if shares is None:
        return summary
    on_nodes = dataclasses.replace(q, nodes_re=_alternation(shares.nodes), whole_gpus=shares.whole_gpus)
    q = _near(prom, on_nodes, shares)
    counters = _counter_exprs(q, summary, shares)
    nodes = _node_exprs(q, shares, gpu_integrated=not counters)
    # The per-node and counter queries need nothing from the periods: asked while those are.
    with concurrent.futures.ThreadPoolExecutor(1) as ahead:
        answers = ahead.submit(prom.queries, q.end, *counters, *nodes)
        _periods(prom, q, summary, shares.constant)
        found = answers.result()
    counted = _gpu_counters(prom, q, summary, shares, found[: len(counters)])
    _nodes(prom, q, summary, shares, counted, found[len(counters) :])
    _gaps(prom, q, summary)
    if summary.coverage == 0:
        # Nothing was measured: the energy is unknown, not zero.
        summary.energy_kwh, summary.periods, summary.peak_watts = {}, [], None
        summary.statements.append(f"no power data on any node of job {job}: energy, cost and CO2 are unknown")
    it = summary.it_energy_kwh
    if it is not None:
        summary.average_watts = it * 3.6e6 / (end - window.start)
    return summary


def _alternation(nodes: Iterable[str]) -> str:
    """``nodes`` as a regular expression's literal alternation, in a stable order."""
    return "|".join(re_escape(n) for n in sorted(nodes))


#: A GPU unit the job held: (node, gpu, gpu_instance).
_Unit = tuple[str, str, str]


@dataclass(frozen=True)
class _Shares:
    """What the job held over its window and whether it held still."""

    #: Per part (rest, gpu): the job's shares did not change during the window.
    constant: dict[str, bool]
    #: The job's CPU share of each node (its largest over the window).
    cpu: dict[str, float]
    #: The job's fraction of each GPU unit (its largest over the window).
    units: dict[_Unit, float]
    #: It held every GPU of its nodes alone over the window.
    whole_gpus: bool = False

    @property
    def nodes(self) -> set[str]:
        return set(self.cpu) | {u[0] for u in self.units}

    @property
    def gpus(self) -> set[tuple[str, str]]:
        return {(node, gpu) for node, gpu, _i in self.units}


def _unit(labels: Mapping[str, str]) -> _Unit:
    return labels.get("node", ""), labels.get("gpu", ""), labels.get("gpu_instance", "")


def _series(
    match: str, start: float, end: float
) -> Callable[[PrometheusClient], Awaitable[list[dict[str, str]]]]:
    async def call(client: PrometheusClient) -> list[dict[str, str]]:
        return await client.series(match, start, end)

    return call


def _shares(prom: Prometheus, q: _Q, summary: Summary) -> _Shares | None:
    """The job's CPU shares and GPU fractions over the window and whether they held still; None: never
    seen."""
    start = q.end - q.range_s
    cpu_rows, cpu_low, held = prom.many(
        _instant(q.cpu_shares, q.end),
        _instant(q.over(f"{model.JOB_CPU_SHARE}{{{q.sel}}}", "min_over_time"), q.end),
        # The index, not the samples: which GPU units the job held.
        _series(f"{model.JOB_HOLDER}{{{q.sel}}}", start, q.end),
    )
    cpu_max, cpu_min = _by_node(cpu_rows), _by_node(cpu_low)
    seen = set(cpu_max) | {h.get("node", "") for h in held}
    job = q.job
    if not seen:
        summary.statements.append(
            f"Prometheus has no allocation of job {job} (the accounting rules never saw it: a job shorter "
            "than the Slurm exporter's scrape interval, or no Slurm exporter): its energy is unknown, "
            "not zero"
        )
        return None
    absent = sorted(set(summary.window.nodes) - seen)
    if absent:
        shown = ", ".join(absent[:10]) + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
        summary.statements.append(
            f"Slurm lists {shown} for job {job}, but Prometheus has no allocation there"
        )
    on_nodes = dataclasses.replace(q, nodes_re=_alternation(seen))
    alone, whole_gpus = _held_alone(prom, on_nodes, held)
    if alone:
        units = {_unit(h): 1.0 for h in held}
        gpu_constant = True
    else:
        gpu_max, gpu_min = prom.queries(q.end, on_nodes.fractions(), on_nodes.fractions("min_over_time"))
        units = {_unit(r["metric"]): float(r["value"][1]) for r in gpu_max}
        lows = {_unit(r["metric"]): float(r["value"][1]) for r in gpu_min}
        gpu_constant = all(abs(v - lows.get(k, -1)) < 1e-9 for k, v in units.items())
    cpu_constant = all(abs(cpu_max[n] - cpu_min.get(n, -1)) < 1e-9 for n in cpu_max)
    if not cpu_constant:
        summary.statements.append(
            "the job's CPU share of a node changed during the job: its rest of node is integrated from "
            "the recorded per-job series (a scrape may be missing at each end)"
        )
    if not gpu_constant:
        summary.statements.append(
            "the job's share of a GPU changed during the job (shared for part of it): its GPU energy is "
            "integrated from the recorded per-job series"
        )
    summary.methods["gpu"] = "integrated GPU power"
    summary.methods["rest"] = "integrated best node power minus GPUs"
    return _Shares({"rest": cpu_constant, "gpu": gpu_constant}, cpu_max, units, whole_gpus)


#: Above this many distinct sets of held GPUs (nodes grouped by the GPUs the job held there), the
#: index is listed whole rather than asked once per set for the GPUs outside it.
MAX_GPU_SETS = 16


def _held_alone(prom: Prometheus, q: _Q, held: Sequence[Mapping[str, str]]) -> tuple[bool, bool]:
    """Whether the job held each of its whole GPUs alone over the window, and whether those were all
    the GPUs of its nodes.  Alone, its fraction of each is 1 throughout (a holder series is 1, a whole
    GPU's share 1 / its holders: the model's rules), and the index says so: a day of a thousand
    nodes' fractions need not be read twice to compare.  The index is asked only for the exceptions
    (other owners' holder series on the job's nodes, power series of GPUs it did not hold), which are
    none in the common case: listing a thousand nodes' GPU series costs more than the check."""
    units = [_unit(h) for h in held]
    if not held or any(u[2] for u in units) or len({u[:2] for u in units}) < len(units):
        return False, False  # MIG instances (a share of memory) or one GPU under two series: compare
    start, mine = q.end - q.range_s, {u[:2] for u in units}
    # Series not of this job (another job id, or the same id in another cluster) on its nodes.
    others = [q.of(model.JOB_HOLDER, f'hpc_job!="{_esc(q.job)}"'), q.of(model.POD_HOLDER)]
    if q.cluster:
        others.append(q.of(model.JOB_HOLDER, f'cluster!="{_esc(q.cluster)}"'))
    by_node: dict[str, set[str]] = defaultdict(set)
    for node, gpu in mine:
        by_node[node].add(gpu)
    sets: dict[frozenset[str], list[str]] = defaultdict(list)
    for node, gpus in by_node.items():
        sets[frozenset(gpus)].append(node)
    if len(sets) <= MAX_GPU_SETS:
        # Per set of held GPUs, the power series of the other GPUs of those nodes: none, if it held all.
        unheld = [
            dataclasses.replace(q, nodes_re=_alternation(nodes)).of(
                model.GPU_POWER, f'gpu!~"{_esc(_alternation(gpus))}"'
            )
            for gpus, nodes in sets.items()
        ]
    else:
        unheld = [q.of(model.GPU_POWER)]
    *owners, powered = prom.many(
        *(_series(match, start, q.end) for match in others),
        _gather(*(_series(match, start, q.end) for match in unheld)),
    )
    alone = not any(_unit(h)[:2] in mine for found in owners for h in found)
    return alone, alone and {_unit(g)[:2] for g in powered} <= mine


def _gather(
    *calls: Callable[[PrometheusClient], Awaitable[list[dict[str, str]]]],
) -> Callable[[PrometheusClient], Awaitable[list[dict[str, str]]]]:
    """One call answering the concatenated answers of ``calls`` (asked at once)."""

    async def call(client: PrometheusClient) -> list[dict[str, str]]:
        return [row for found in await asyncio.gather(*(c(client) for c in calls)) for row in found]

    return call


def _near(prom: Prometheus, q: _Q, whole: _Shares) -> _Q:
    """``q`` reading the shares over the last minutes of the window when they are all there (they held
    still: the whole window says no more, and a day of a thousand nodes' GPUs is many samples)."""
    near = dataclasses.replace(q, near=min(q.range_s, max(600, int(10 * q.interval))))
    if near.near == q.range_s:
        return q
    counts = prom.queries(q.end, f"count({near.cpu_shares})", f"count({near.fractions()})")
    cpus, gpus = (round(_scalar(c) or 0) for c in counts)
    return near if (cpus, gpus) == (len(whole.cpu), len(whole.units)) else q


_Energy = Callable[[float, float | None], str]


def _energies(
    prom: Prometheus, q: _Q, exprs: Mapping[str, _Energy], cuts: list[tuple[float, float]]
) -> dict[str, list[dict[str, float]]]:
    """Joules by area in each of ``cuts``, per part: the full periods in one range query, the edges
    alone, every part's queries asked at once."""
    inner = [i for i, (a, b) in enumerate(cuts) if 0 < i < len(cuts) - 1]
    edges = sorted({0, len(cuts) - 1})
    first, last = (cuts[inner[0]][1], cuts[inner[-1]][1]) if inner else (0.0, 0.0)
    period = cuts[inner[0]][1] - cuts[inner[0]][0] if inner else 0.0
    calls = []
    for expr in exprs.values():
        if inner:
            calls.append(_ranged(q.by_area(expr(period, None)), first, last, period))
        calls += [_instant(q.by_area(expr(b - a, b)), q.end) for a, b in (cuts[i] for i in edges)]
    answers = iter(prom.many(*calls))
    out: dict[str, list[dict[str, float]]] = {}
    for part in exprs:
        found: list[dict[str, float]] = [{} for _ in cuts]
        for r in next(answers) if inner else ():
            area = r["metric"].get("area", "")
            for t, v in r.get("values", []):
                i = inner[0] + round((float(t) - first) / period)
                if i in inner and math.isfinite(float(v)):
                    found[i][area] = float(v)
        for i in edges:
            found[i] = _by_area(next(answers))
        out[part] = found
    return out


def _value_in(samples: Sequence[tuple[float, float]], lo: float, hi: float) -> float | None:
    values = [v for t, v in samples if lo <= t < hi]
    return statistics.median(values) if values else None


def _curve(prom: Prometheus, metric: str, area: str, grid: list[tuple[float, float]]) -> list[float | None]:
    """Each period's value of a per-area series: the median of its middle half (a scrape's lag at the
    change does not count).  A period whose middle half is still to come (under way now) takes the
    later half of what it has so far; a period without samples has no value (a gap, said as such)."""
    period = grid[0][1] - grid[0][0]
    now = time.time()
    until = min(grid[-1][1], now)
    rows = prom.query_samples(f'{metric}{{area="{_esc(area)}"}}[{_range(until - grid[0][0])}]', until)
    samples = sorted((float(t), float(v)) for r in rows for t, v in r.get("values", []))
    out = []
    for a, _b in grid:
        if a + 3 * period / 4 <= now:
            out.append(_value_in(samples, a + period / 4, a + 3 * period / 4))
        else:
            out.append(_value_in(samples, a + (now - a) / 2, now + 1))
    return out


def _period_length(prom: Prometheus, q: _Q, areas: Sequence[str], summary: Summary) -> float:
    lengths = set()
    for area in areas:
        found = _scalar(
            prom.query(
                q.over(f'powerplane_market_period_seconds{{area="{_esc(area)}"}}', "last_over_time"), q.end
            )
        )
        if found and found > 0:
            lengths.add(found)
    if len(lengths) > 1:
        summary.statements.append(
            f"the job's market areas have periods of {sorted(lengths)} s: the shortest is used"
        )
    return min(lengths) if lengths else DEFAULT_PERIOD_SECONDS


def _part_energy(q: _Q, part: str, constant: bool) -> _Energy:
    def expr(seconds: float, at: float | None) -> str:
        return q.energy(part, constant, seconds, at)

    return expr


def _periods(prom: Prometheus, q: _Q, summary: Summary, constant: Mapping[str, bool]) -> None:
    """Energy per market period and part, with the period's price and carbon intensity."""
    assert summary.start is not None and summary.end is not None
    areas = sorted(_by_area(prom.query(f"count by (area) ({q.area_map})", q.end)))
    if len(areas) == 1 and areas[0]:
        q = dataclasses.replace(q, area=areas[0])
    period = _period_length(prom, q, [a for a in areas if a], summary)
    cuts = _cuts(summary.start, summary.end, period)
    grid = _grid(summary.start, summary.end, period)
    energies = _energies(prom, q, {part: _part_energy(q, part, constant[part]) for part in model.PARTS}, cuts)
    facility = f"{model.JOBS.series('powerplane_facility_power_watts', 'attributed')}{{{q.sel}}}"
    if prom.query(f"count({q.over(facility, 'last_over_time')})", q.end):

        def overhead(seconds: float, at: float | None) -> str:
            pin = "" if at is None else f" @ {at:.3f}"
            return f"sum by (node) (sum_over_time({facility}[{_range(seconds)}]{pin})) * {q.interval:g}"

        energies.update(_energies(prom, q, {"facility": overhead}, cuts))
        summary.methods["facility"] = (
            "integrated facility overhead (the accounting rules' PUE or facility meter)"
        )
    for area in areas:
        prices = (
            _curve(prom, "powerplane_market_price_eur_per_mwh", area, grid) if area else [None] * len(grid)
        )
        carbon = (
            _curve(prom, "powerplane_grid_carbon_intensity_grams_per_kwh", area, grid) if area else prices
        )
        for i, (a, b) in enumerate(cuts):
            parts = {part: e[i][area] / 3.6e6 for part, e in energies.items() if area in e[i]}
            if parts:
                summary.periods.append(Period(area, a, b, parts, prices[i], carbon[i]))
    for part in energies:
        summary.energy_kwh[part] = sum(p.parts.get(part, 0.0) for p in summary.periods)
    peak = prom.query(f"max({q.over(f'{model.JOB_TOTAL}{{{q.sel}}}')})", q.end)
    summary.peak_watts = _scalar(peak)
    _price_statements(summary)


def _price_statements(summary: Summary) -> None:
    no_area = sum(p.energy_kwh for p in summary.periods if not p.area)
    if no_area:
        summary.statements.append(
            f"{no_area:.4g} kWh ran on nodes with no market area in the inventory (powerplane_node_info, "
            "powerplane_cluster_info): unpriced and without CO2"
        )
    for p in summary.periods:
        if not p.area or not p.energy_kwh:
            continue
        if p.price_eur_per_mwh is None:
            summary.statements.append(
                f"no price for {p.area} {_span(p.start, p.end)}: {p.energy_kwh:.4g} kWh unpriced, the cost "
                "is incomplete"
            )
        if p.carbon_grams_per_kwh is None:
            summary.statements.append(
                f"no carbon intensity for {p.area} {_span(p.start, p.end)}: {p.energy_kwh:.4g} kWh without "
                "CO2, the CO2 is incomplete"
            )


def _counter_exprs(q: _Q, summary: Summary, shares: _Shares) -> list[str]:
    """Each GPU's energy counter at the window's two ends and when its exporter began counting it
    (none: the counters cannot apply, power is integrated)."""
    if not shares.gpus or not shares.constant["gpu"]:
        return []
    assert summary.start is not None
    # Two samples of each GPU, not its whole window (``increase`` would read every sample); the
    # job's fractions are known already and applied here, not joined again in each query.
    return [
        f"max by (node, gpu) ({q.of(metric)} @ {at:.3f})"
        for metric, at in (
            (model.GPU_ENERGY, summary.start),
            (model.GPU_ENERGY, q.end),
            (model.GPU_ENERGY_START, q.end),
        )
    ]


def _by_gpu(result: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    return {(r["metric"].get("node", ""), r["metric"].get("gpu", "")): float(r["value"][1]) for r in result}


def _reset_gpus(prom: Prometheus, q: _Q, gpus: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Of ``gpus``, those whose energy counter dropped during the window: their whole window is read."""
    on_nodes = dataclasses.replace(q, nodes_re=_alternation({node for node, _gpu in gpus}))
    counters = on_nodes.of(model.GPU_ENERGY)
    found = prom.query(f"max by (node, gpu) (resets({counters}[{q.range_s}s] @ {q.end:.3f})) > 0", q.end)
    return sorted(k for k in _by_gpu(found) if k in gpus)


def _gpu_counters(
    prom: Prometheus, q: _Q, summary: Summary, shares: _Shares, answers: Sequence[list[dict[str, Any]]]
) -> dict[str, float] | None:
    """GPU energy from the GPUs' energy counters where they cover the window without a reset (the
    answers to ``_counter_exprs``): the joules of each node; None: integrated power is used."""
    if not answers:
        return None
    assert summary.start is not None
    integrated = summary.energy_kwh.get("gpu", 0.0)
    fractions: dict[tuple[str, str], float] = defaultdict(float)
    for (node, gpu, _instance), fraction in shares.units.items():
        fractions[node, gpu] += fraction
    at_start, at_end, started = (_by_gpu(a) for a in answers)
    reasons = []
    for readings, where in ((at_start, "start"), (at_end, "end")):
        missing = sum(k not in readings for k in fractions)
        if missing > 0:
            reasons.append(f"{missing} of its GPUs have no energy counter at the job's {where}")
    if not reasons:
        # A counter drops only when its exporter starts again: one counted since before the job
        # (a minute's leeway for the exporter's clock) ran through it without a drop.  The others,
        # restarted during the job or exposed by an exporter that does not say, are checked.
        since = summary.start - COUNTER_CLOCK_LEEWAY_S
        unsure = {k for k in fractions if not started.get(k, math.inf) <= since}
        for node, gpu in _reset_gpus(prom, q, unsure)[:MAX_GAP_NODES] if unsure else ():
            reasons.append(
                f"the energy counter of GPU {gpu} on {node} reset during the job (an exporter restart with "
                "a driver reload)"
            )
    if reasons:
        summary.statements += [f"GPU energy is integrated from power: {reason}" for reason in reasons]
        return None
    per_node: dict[str, float] = defaultdict(float)
    for k, fraction in fractions.items():
        per_node[k[0]] += (at_end[k] - at_start[k]) * fraction
    if not all(math.isfinite(j) for j in per_node.values()):
        return None
    counted = sum(per_node.values()) / 3.6e6
    summary.methods["gpu"] = (
        "energy counters (increase of powerplane_gpu_energy_joules_total x the job's share)"
    )
    if integrated > 0:
        scale = counted / integrated
        for p in summary.periods:  # the counters give the total, integrated power its spread over periods
            if "gpu" in p.parts:
                p.parts["gpu"] *= scale
        if abs(scale - 1) > 0.05:
            summary.statements.append(
                f"the GPUs' energy counters read {100 * (scale - 1):+.1f} % against their integrated power "
                "(power is sampled once a scrape); the counters are used"
            )
    summary.energy_kwh["gpu"] = counted
    return per_node


def _node_exprs(q: _Q, shares: _Shares, gpu_integrated: bool) -> list[str]:
    """Per node: the job's rest, the node's energy and samples, the job's CPU share, where the meters
    disagree, and (``gpu_integrated``) the job's GPU energy from power."""
    e, seconds = q.end, q.range_s
    window = f"[{_range(seconds)}] @ {e:.3f}"
    exprs = [
        q.energy("rest", shares.constant["rest"], seconds, e),
        # A node's best source may change during the job (one series per source): they add up.
        f"sum by (node) (sum_over_time({q.of(model.BEST)}{window})) * {q.interval:g} and on (node) {q.nodes}",
        f"sum by (node) (count_over_time({q.of(model.BEST)}{window})) and on (node) {q.nodes}",
        q.cpu_shares,
        f"min_over_time({q.of(model.REST)}{window}) < 0 and on (node) {q.nodes}",
    ]
    if gpu_integrated:
        exprs.append(q.energy("gpu", shares.constant["gpu"], seconds, e))
    return exprs


def _nodes(
    prom: Prometheus,
    q: _Q,
    summary: Summary,
    shares: _Shares,
    counted: dict[str, float] | None,
    answers: Sequence[list[dict[str, Any]]],
) -> None:
    """Per node (the answers to ``_node_exprs``): the job's energy, the node's, the job's CPU share and
    GPUs, and the data's coverage (``counted``: the GPU energy per node from the counters, if they held)."""
    rest, node_energy, counts, cpu, lowest, *integrated = (_by_node(a) for a in answers)
    gpu = counted if counted is not None else integrated[0] if integrated else None
    if gpu is None:  # the counters were to be used, but one reset: power is integrated after all
        gpu = _by_node(prom.query(q.energy("gpu", shares.constant["gpu"], q.range_s, q.end), q.end))
    gpus: dict[str, int] = defaultdict(int)
    for node, _gpu, _instance in shares.units:
        gpus[node] += 1
    expected = max(1.0, q.range_s / q.interval)
    for node in sorted(set(cpu) | set(gpus)):
        total = node_energy.get(node)
        summary.nodes.append(
            NodeShare(
                node,
                (rest.get(node, 0.0) + gpu.get(node, 0.0)) / 3.6e6,
                None if total is None else total / 3.6e6,
                cpu.get(node),
                gpus.get(node, 0),
                min(1.0, counts.get(node, 0) / expected),
            )
        )
    if summary.nodes:
        summary.coverage = sum(n.coverage for n in summary.nodes) / len(summary.nodes)
    # Name the nodes whose GPUs read more than the node's own meter during the job.
    for node, watts in sorted(lowest.items()):
        summary.statements.append(
            f"{node}: its GPUs read more than the node's power meter during the job (the rest of the node "
            f"down to {watts:.0f} W): the meters disagree, and the job's rest of node counts 0 there"
        )


def _gaps(prom: Prometheus, q: _Q, summary: Summary) -> None:
    """Name each node without power data, and the gaps of (at most MAX_GAP_NODES) nodes with some."""
    assert summary.start is not None and summary.end is not None
    for n in summary.nodes:
        if n.coverage == 0:
            summary.statements.append(
                f"{n.node}: no power data during the job: its energy there is missing, not estimated"
            )
    # A sample stands for one rule interval; a node missing more than one has a gap.
    partial = [n.node for n in summary.nodes if 0 < n.coverage < 1 - 1.5 * q.interval / q.range_s]
    if len(partial) > MAX_GAP_NODES:
        summary.statements.append(f"{len(partial) - MAX_GAP_NODES} more nodes have gaps in their power data")
    if not partial:
        return
    on_nodes = dataclasses.replace(q, nodes_re=_alternation(partial[:MAX_GAP_NODES]))
    rows = prom.query_samples(f"{on_nodes.of(model.BEST)}[{_range(q.range_s)}]", q.end)
    times: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        times[r["metric"].get("node", "")] += [float(t) for t, _v in r.get("values", [])]
    limit = 1.5 * q.interval
    for node in partial[:MAX_GAP_NODES]:
        stamps = [summary.start, *sorted(times.get(node, [])), summary.end]
        for a, b in itertools.pairwise(stamps):
            if b - a > limit:
                summary.statements.append(
                    f"{node}: no power data {_span(a, b)} ({b - a:.0f} s): that energy is missing, not "
                    "estimated"
                )


def re_escape(name: str) -> str:
    """A node name as a literal in a PromQL (RE2) regex."""
    return "".join("\\" + ch if ch in r".+*?()|[]{}^$\\" else ch for ch in name)
