"""One job's ledger over its exact window: energy per part, power, cost per market period, CO2,
its share of each node, and how complete the data was.

The job's shares come from the accounting rules (``powerplane.accounting.model``): its allocated
CPU share of each node's rest and its fraction of each GPU it holds.  Slurm allocations do not
change while a job runs, so when a share is the same over the whole window it is applied to the
node's *measured* power from the job's first second to its last, whatever the Slurm exporter's
scrape interval (its series only appear a scrape after the start).  A share that changed (a GPU
shared for part of the job) is integrated from the recorded per-job series instead, and the
summary says so.  GPU energy comes from the GPUs' energy counters (``increase`` over the window)
when they cover it without a reset, else from integrated power; the rest of the node is
integrated from the best node power.  Cost sums each market period's energy at that period's
price; CO2 each period's energy at its carbon intensity.  Gaps are named, never filled.
"""

from __future__ import annotations

import base64
import json
import math
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import model
from .window import JobWindow

#: A Prometheus answer larger than this is refused (a 1,000-node day is a few MB).
MAX_ANSWER_BYTES = 256 << 20
#: Named gaps are listed for this many nodes at most (the count of the others is given).
MAX_GAP_NODES = 10
DEFAULT_PERIOD_SECONDS = 900.0


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    """The few queries the job summary needs (POSTed: a selector may name many nodes)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Prometheus URL {parts.scheme}://{parts.hostname or ''}: not an http(s) URL")
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        #: The URL as errors may show it: no user, no password.
        self.where = urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
        self.headers: dict[str, str] = {}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif parts.username is not None:
            pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        self.timeout = timeout

    def _api(self, path: str, params: Mapping[str, str]) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            f"{self.where}/api/v1/{path}", data=urllib.parse.urlencode(params).encode(), headers=self.headers
        )
        where = self.where
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                body = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            raise PrometheusError(f"Prometheus {where} {path}: HTTP {exc.code}: {detail[:300]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusError(f"Prometheus {where}: {getattr(exc, 'reason', exc)}") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise PrometheusError(f"Prometheus {where} {path}: answer over {MAX_ANSWER_BYTES} bytes")
        try:
            return json.loads(body)["data"]
        except (ValueError, KeyError, TypeError):
            raise PrometheusError(f"Prometheus {where} {path}: not a Prometheus API answer") from None

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        data = self._api("query", {"query": expr, "time": f"{at:.3f}"})
        return list(data.get("result", [])) if data.get("resultType") == "vector" else []

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return list(self._api("query_range", params).get("result", []))


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
    step: float = 0.0
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


@dataclass(frozen=True)
class _Q:
    """The job's expressions over its window ``[end - range, end]``."""

    job: str
    end: float
    range_s: int
    cluster: str = ""

    @property
    def sel(self) -> str:
        cluster = f', cluster="{_esc(self.cluster)}"' if self.cluster else ""
        return f'hpc_job="{_esc(self.job)}"{cluster}'

    def over(self, series: str, fn: str = "max_over_time") -> str:
        return f"{fn}({series}[{self.range_s}s] @ {self.end:.3f})"

    @property
    def cpu_shares(self) -> str:
        return self.over(f"{model.JOB_CPU_SHARE}{{{self.sel}}}")

    def fractions(self, fn: str = "max_over_time") -> str:
        """The job's fraction of each GPU unit it held (its holder series times the unit's share)."""
        return (
            f"{self.over(f'{model.JOB_HOLDER}{{{self.sel}}}')}\n"
            f"* on (node, gpu, gpu_instance) group_left () {self.over(model.GPU_SHARE, fn)}"
        )

    @property
    def nodes(self) -> str:
        return (
            f"(max by (node) ({self.cpu_shares}) or max by (node) "
            f"({self.over(f'{model.JOB_HOLDER}{{{self.sel}}}')}))"
        )

    def rest_power(self, constant: bool) -> str:
        if not constant:
            return f'{model.JOB_POWER}{{{self.sel}, part="rest"}}'
        return f"clamp_min({model.REST}, 0) * on (node) group_left () {self.cpu_shares}"

    def gpu_power(self, constant: bool) -> str:
        if not constant:
            return f'{model.JOB_POWER}{{{self.sel}, part="gpu"}}'
        return (
            "max by (node, gpu) (powerplane_gpu_power_watts)\n* on (node, gpu) group_right ()"
            f" sum by (node, gpu) ({self.fractions()})"
        )

    @property
    def area_map(self) -> str:
        area = (
            f"max by (node, area) ({self.over('powerplane_node_info', 'last_over_time')}"
            f" * on (cluster) group_left (area) max by (cluster, area)"
            f" ({self.over('powerplane_cluster_info', 'last_over_time')}))"
        )
        return f"({area} or ({self.nodes} * 0 + 1 unless on (node) {area}))"

    def by_area(self, expr: str) -> str:
        return f"sum by (area) (\n  ({expr})\n  * on (node) group_left (area) {self.area_map}\n)"


def choose_step(seconds: float) -> float:
    """Fine enough for the edges and the market periods, and under Prometheus's 11,000 points."""
    return float(max(1, min(60, math.ceil(seconds / 1000)), math.ceil(seconds / 10000)))


def _samples(series: Mapping[str, Any]) -> list[tuple[float, float]]:
    out = []
    for t, v in series.get("values", []):
        value = float(v)
        if math.isfinite(value):
            out.append((float(t), value))
    return out


def _scalar(result: Sequence[Mapping[str, Any]]) -> float | None:
    if not result:
        return None
    value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None


def _by_node(result: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {r["metric"].get("node", ""): float(r["value"][1]) for r in result}


def _grid(start: float, end: float, period: float) -> list[tuple[float, float]]:
    first = math.floor(start / period) * period
    count = max(1, math.ceil((end - first) / period))
    return [(first + i * period, first + (i + 1) * period) for i in range(count)]


def _integrate(
    samples: Sequence[tuple[float, float]], start: float, end: float, step: float, cuts: Sequence[float]
) -> dict[int, float]:
    """Joules per interval between ``cuts`` (each sample stands for its step, clipped to the window)."""
    energy: dict[int, float] = defaultdict(float)
    for t, watts in samples:
        a, b = max(start, t - step / 2), min(end, t + step / 2)
        for i in range(len(cuts) - 1):
            lo, hi = max(a, cuts[i]), min(b, cuts[i + 1])
            if hi > lo:
                energy[i] += watts * (hi - lo)
    return energy


def utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _span(a: float, b: float) -> str:
    return f"{time.strftime('%H:%M:%S', time.gmtime(a))}-{time.strftime('%H:%M:%S', time.gmtime(b))} UTC"


# --- the computation -----------------------------------------------------------------------------


def summarize(
    prom: Prometheus,
    window: JobWindow,
    *,
    cluster: str = "",
    step: float | None = None,
    now: float | None = None,
) -> Summary:
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
    summary.step = step or choose_step(end - window.start)
    q = _Q(job, end, math.ceil(end - window.start), cluster or window.cluster)
    constant = _shares(prom, q, summary)
    if constant is None:
        return summary
    parts = {part: _power(prom, q, part, constant[part], summary) for part in model.PARTS}
    _periods(prom, q, summary, parts)
    _gpu_counters(prom, q, summary, constant["gpu"])
    _facility(prom, q, summary)
    _nodes(prom, q, summary, constant)
    if summary.coverage == 0:
        # Nothing was measured: the energy is unknown, not zero.
        summary.energy_kwh, summary.periods, summary.peak_watts = {}, [], None
        summary.statements.append(f"no power data on any node of job {job}: energy, cost and CO2 are unknown")
    it = summary.it_energy_kwh
    if it is not None:
        summary.average_watts = it * 3.6e6 / (end - window.start)
    return summary


def _shares(prom: Prometheus, q: _Q, summary: Summary) -> dict[str, bool] | None:
    """Whether the job's CPU shares and GPU fractions held still over the window; None: never seen."""
    cpu_max = _by_node(prom.query(q.cpu_shares, q.end))
    cpu_min = _by_node(prom.query(q.over(f"{model.JOB_CPU_SHARE}{{{q.sel}}}", "min_over_time"), q.end))
    gpu_max = prom.query(q.fractions(), q.end)
    gpu_min = prom.query(q.fractions("min_over_time"), q.end)
    seen = set(cpu_max) | {r["metric"].get("node", "") for r in gpu_max}
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
    cpu_constant = all(abs(cpu_max[n] - cpu_min.get(n, -1)) < 1e-9 for n in cpu_max)
    values = {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in gpu_max}
    lows = {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in gpu_min}
    gpu_constant = all(abs(v - lows.get(k, -1)) < 1e-9 for k, v in values.items())
    if not cpu_constant:
        summary.statements.append(
            "the job's CPU share of a node changed during the job: its rest of node is "
            "integrated from the recorded per-job series (a scrape may be missing at each end)"
        )
    if not gpu_constant:
        summary.statements.append(
            "the job's share of a GPU changed during the job (shared for part of it): its "
            "GPU energy is integrated from the recorded per-job series"
        )
    summary.methods["gpu"] = "integrated GPU power"
    summary.methods["rest"] = "integrated best node power minus GPUs"
    return {"rest": cpu_constant, "gpu": gpu_constant}


def _power(
    prom: Prometheus, q: _Q, part: str, constant: bool, summary: Summary
) -> dict[str, list[tuple[float, float]]]:
    """The job's power in ``part`` over the window, by market area ("" for nodes without one)."""
    expr = q.rest_power(constant) if part == "rest" else q.gpu_power(constant)
    assert summary.start is not None and summary.end is not None
    result = prom.query_range(q.by_area(expr), summary.start, summary.end, summary.step)
    return {r["metric"].get("area", ""): _samples(r) for r in result}


def _value_in(samples: Sequence[tuple[float, float]], lo: float, hi: float) -> float | None:
    values = [v for t, v in samples if lo <= t < hi]
    return statistics.median(values) if values else None


def _curve(
    prom: Prometheus, metric: str, area: str, grid: list[tuple[float, float]], step: float
) -> list[float | None]:
    """Each period's value of a per-area series: the median of its middle half (a scrape's lag at the
    change does not count).  A period whose middle half is still to come (under way now) takes the
    later half of what it has so far; a period without samples has no value (a gap, said as such)."""
    period = grid[0][1] - grid[0][0]
    now = time.time()
    result = prom.query_range(
        f'max({metric}{{area="{_esc(area)}"}})', grid[0][0], min(grid[-1][1], now), step
    )
    samples = _samples(result[0]) if result else []
    out = []
    for a, _b in grid:
        if a + 3 * period / 4 <= now:
            out.append(_value_in(samples, a + period / 4, a + 3 * period / 4))
        else:
            out.append(_value_in(samples, a + (now - a) / 2, now + 1))
    return out


def _periods(prom: Prometheus, q: _Q, summary: Summary, parts: Mapping[str, Mapping[str, Any]]) -> None:
    """Energy per market period and part, with the period's price and carbon intensity."""
    assert summary.start is not None and summary.end is not None
    start, end, step = summary.start, summary.end, summary.step
    areas = sorted({area for by_area in parts.values() for area in by_area})
    peak: dict[float, float] = defaultdict(float)
    for area in areas:
        period = DEFAULT_PERIOD_SECONDS
        if area:
            found = _scalar(
                prom.query(
                    q.over(f'powerplane_market_period_seconds{{area="{_esc(area)}"}}', "last_over_time"),
                    q.end,
                )
            )
            period = found if found and found > 0 else DEFAULT_PERIOD_SECONDS
        grid = _grid(start, end, period)
        pstep = max(1.0, min(step, period / 8))
        prices = (
            _curve(prom, "powerplane_market_price_eur_per_mwh", area, grid, pstep)
            if area
            else [None] * len(grid)
        )
        carbon = (
            _curve(prom, "powerplane_grid_carbon_intensity_grams_per_kwh", area, grid, pstep)
            if area
            else [None] * len(grid)
        )
        periods = [
            Period(area, max(a, start), min(b, end), {}, p, c)
            for (a, b), p, c in zip(grid, prices, carbon, strict=True)
        ]
        cuts = [start, *[a for a, _b in grid[1:]], end]
        for part, by_area in parts.items():
            samples = by_area.get(area, [])
            for t, watts in samples:
                peak[t] += watts
            for i, joules in _integrate(samples, start, end, step, cuts).items():
                periods[i].parts[part] = periods[i].parts.get(part, 0.0) + joules / 3.6e6
        summary.periods += [p for p in periods if p.parts]
    for part in parts:
        summary.energy_kwh[part] = sum(p.parts.get(part, 0.0) for p in summary.periods)
    summary.peak_watts = max(peak.values()) if peak else None
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


def _gpu_counters(prom: Prometheus, q: _Q, summary: Summary, constant: bool) -> None:
    """GPU energy from the GPUs' energy counters where they cover the window without a reset."""
    integrated = summary.energy_kwh.get("gpu", 0.0)
    fractions = f"sum by (node, gpu) ({q.fractions()})"
    held = prom.query(fractions, q.end)
    if not held or not constant:
        return
    assert summary.start is not None
    e = f"{q.end:.3f}"
    reasons = []
    for at, where in ((summary.start, "start"), (q.end, "end")):
        have = prom.query(
            f"max by (node, gpu) ({model.GPU_ENERGY} @ {at:.3f}) and on (node, gpu) {fractions}", q.end
        )
        if len(have) < len(held):
            reasons.append(f"{len(held) - len(have)} of its GPUs have no energy counter at the job's {where}")
    window = f"[{q.range_s}s] @ {e}"
    resets = prom.query(
        f"max by (node, gpu) (resets({model.GPU_ENERGY}{window})) > 0 and on (node, gpu) {fractions}", q.end
    )
    for r in resets[:MAX_GAP_NODES]:
        m = r["metric"]
        reasons.append(
            f"the energy counter of GPU {m.get('gpu')} on {m.get('node')} reset during the job (an exporter "
            "restart with a driver reload)"
        )
    if reasons:
        summary.statements += [f"GPU energy is integrated from power: {reason}" for reason in reasons]
        return
    joules = _scalar(
        prom.query(
            f"sum(max by (node, gpu) (increase({model.GPU_ENERGY}{window})) * on (node, gpu) {fractions})",
            q.end,
        )
    )
    if joules is None:
        return
    counted = joules / 3.6e6
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


def _facility(prom: Prometheus, q: _Q, summary: Summary) -> None:
    assert summary.start is not None and summary.end is not None
    series = f"{model.JOBS.series('powerplane_facility_power_watts', 'attributed')}{{{q.sel}}}"
    result = prom.query_range(q.by_area(series), summary.start, summary.end, summary.step)
    if not result:
        return
    by_period = {(p.area, p.start): p for p in summary.periods}
    for r in result:
        area = r["metric"].get("area", "")
        mine = sorted((p for p in summary.periods if p.area == area), key=lambda p: p.start)
        if not mine:
            continue
        cuts = [p.start for p in mine] + [mine[-1].end]
        for i, joules in _integrate(_samples(r), summary.start, summary.end, summary.step, cuts).items():
            by_period[(area, mine[i].start)].parts["facility"] = joules / 3.6e6
    summary.energy_kwh["facility"] = sum(p.parts.get("facility", 0.0) for p in summary.periods)
    summary.methods["facility"] = "integrated facility overhead (the accounting rules' PUE or facility meter)"


def _nodes(prom: Prometheus, q: _Q, summary: Summary, constant: Mapping[str, bool]) -> None:
    """Per node: the job's energy, the node's, the job's CPU share and GPUs, and the data's coverage."""
    step = summary.step
    e = f"{q.end:.3f}"

    def integral(expr: str) -> dict[str, float]:
        found = prom.query(
            f"sum by (node) (sum_over_time(({expr})[{q.range_s}s:{step:g}s] @ {e})) * {step:g}", q.end
        )
        return _by_node(found)

    rest = integral(q.rest_power(constant["rest"]))
    if summary.methods.get("gpu", "").startswith("energy counters"):
        # The counters already cover the window: per node they cost a range read, not a subquery.
        fractions = f"sum by (node, gpu) ({q.fractions()})"
        window = f"[{q.range_s}s] @ {e}"
        gpu = _by_node(
            prom.query(
                f"sum by (node) (max by (node, gpu) (increase({model.GPU_ENERGY}{window})) * on (node, gpu) "
                f"{fractions})",
                q.end,
            )
        )
    else:
        gpu = integral(q.gpu_power(constant["gpu"]))
    present = f"max by (node) ({model.BEST}) and on (node) {q.nodes}"
    node_energy = integral(present)
    counts = _by_node(prom.query(f"count_over_time(({present})[{q.range_s}s:{step:g}s] @ {e})", q.end))
    cpu = _by_node(prom.query(q.cpu_shares, q.end))
    gpus: dict[str, int] = defaultdict(int)
    for r in prom.query(q.over(f"{model.JOB_HOLDER}{{{q.sel}}}"), q.end):
        gpus[r["metric"].get("node", "")] += 1
    expected = max(1, math.floor(q.end / step) - math.floor((q.end - q.range_s) / step))
    for node in sorted(set(cpu) | set(gpus)):
        mine = rest.get(node, 0.0) + gpu.get(node, 0.0)
        total = node_energy.get(node)
        summary.nodes.append(
            NodeShare(
                node,
                mine / 3.6e6,
                None if total is None else total / 3.6e6,
                cpu.get(node),
                gpus.get(node, 0),
                min(1.0, counts.get(node, 0) / expected),
            )
        )
    if summary.nodes:
        summary.coverage = sum(n.coverage for n in summary.nodes) / len(summary.nodes)
    _gaps(prom, summary, expected)


def _gaps(prom: Prometheus, summary: Summary, expected: int) -> None:
    assert summary.start is not None and summary.end is not None
    empty = [n.node for n in summary.nodes if n.coverage == 0]
    for node in empty:
        summary.statements.append(
            f"{node}: no power data during the job: its energy there is missing, not estimated"
        )
    partial = [n.node for n in summary.nodes if 0 < n.coverage < 1 - 1.5 / expected]
    if len(partial) > MAX_GAP_NODES:
        summary.statements.append(f"{len(partial) - MAX_GAP_NODES} more nodes have gaps in their power data")
    if not partial:
        return
    names = "|".join(re_escape(n) for n in partial[:MAX_GAP_NODES])
    step = summary.step
    found = prom.query_range(
        f'max by (node) ({model.BEST}{{node=~"{_esc(names)}"}})', summary.start, summary.end, step
    )
    start = summary.start
    seen = {r["metric"].get("node", ""): {round((t - start) / step) for t, _v in _samples(r)} for r in found}
    steps = int((summary.end - start) // step) + 1
    for node in partial[:MAX_GAP_NODES]:
        have = seen.get(node, set())
        run: list[float] = []
        for k in range(steps):
            if k not in have:
                run.append(start + k * step)
            elif run:
                _gap(summary, node, run, step)
                run = []
        if run:
            _gap(summary, node, run, step)


def _gap(summary: Summary, node: str, run: list[float], step: float) -> None:
    a, b = run[0], min(run[-1] + step, summary.end or run[-1])
    summary.statements.append(
        f"{node}: no power data {_span(a, b)} ({b - a:.0f} s): that energy is missing, not estimated"
    )


def re_escape(name: str) -> str:
    """A node name as a literal in a PromQL (RE2) regex."""
    return "".join("\\" + ch if ch in r".+*?()|[]{}^$\\" else ch for ch in name)
