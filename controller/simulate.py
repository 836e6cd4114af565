"""``powerplane simulate``: replay a PowerCapPolicy over a site's own history.

For every period of the range, the controller's own policy core decides the node budget
(``decide``: the rule, schedules, hysteresis, dwell, signal loss) and splits it between each
node's CPU packages and GPUs within their ranges (``split``: never above the original limit,
never below the hardware minimum); nothing here re-implements a decision.  The caps are then
applied to the measured per-device power through the performance-power model (``perfmodel``):
a device drawing more than its cap draws the cap and keeps the throughput its curve gives.

Inputs: per-device mean power per period from Prometheus (RAPL package energy and GPU energy
counters, their limits from the exporters' limit metrics) or a CSV trace; prices from the
market exporter's curve endpoint, its CSV store or a static curve file; carbon optional.

    powerplane simulate --policy policy.yaml --prometheus http://127.0.0.1:9090 \\
        --from 2026-10-01T00:00:00+02:00 --to 2026-11-01T00:00:00+01:00 \\
        --prices /var/lib/powerplane/market --area DE-LU --format html --out october.html

The report (``simreport``) gives per node and for the cluster: energy and cost without and
with the policy, the cost saved, the work lost, energy and cost per unit of work, periods
capped, hours at each level, and the safety counters.
"""

from __future__ import annotations

import asyncio
import csv
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import click
import numpy as np
import numpy.typing as npt

from powerplane.exporters.market.curve import Curve, Period, parse_instant
from powerplane.exporters.market.files import CARBON_KEYS, PRICE_KEYS, CsvStore, StaticProvider
from powerplane.exporters.market.provider import NotPublished, ProviderError

from .perfmodel import Model
from .policy import (
    OUTLOOK_SPAN,
    Decision,
    DomainCap,
    DomainLimits,
    LookAhead,
    Policy,
    State,
    decide,
    gpu_limits,
    period_start,
    rapl_limits,
    split,
)

FloatArray = npt.NDArray[np.float64]
Kind = Literal["cpu", "gpu"]

#: The longest range one simulation covers (its arrays are devices by periods).
MAX_DAYS = 400
#: The most devices one simulation holds.
MAX_DEVICES = 20_000
_DOMAIN = re.compile(r"^(package|gpu)-(\d{1,6})$")


class SimulationError(Exception):
    """Input the simulation cannot use; the message names the source and the field."""


# --- inputs ----------------------------------------------------------------------------------


@dataclass
class Device:
    """One CPU package or GPU: its mean power per period (NaN: no data) and its range."""

    node: str
    domain: str
    kind: Kind
    watts: FloatArray
    #: The range the controller would use (``split`` clamps into it); None: no limits known.
    limits: DomainLimits | None
    #: The hardware's own minimum, checked independently of the range.
    hardware_min: float = 0.0
    #: Kind of work per period (a curve name), or None: the node's mix from the model.
    work: list[str | None] | None = None


@dataclass
class Timeline:
    """The periods of the range and what the policy and the bill read for each."""

    starts: list[datetime]
    period: timedelta
    prices: FloatArray
    curve: Curve
    signal: list[float | None]
    carbon: FloatArray | None = None

    @property
    def hours(self) -> float:
        return self.period.total_seconds() / 3600


def period_starts(start: datetime, end: datetime, period: timedelta) -> list[datetime]:
    """The period starts in [start, end), aligned as the controller aligns them."""
    first = period_start(start, period)
    if first < start:
        first += period
    if end - first > timedelta(days=MAX_DAYS):
        raise SimulationError(f"--from/--to: at most {MAX_DAYS} days at a time")
    count = int((end - first) / period) if end > first else 0
    if count == 0:
        raise SimulationError("--from/--to: the range holds no whole period")
    return [first + i * period for i in range(count)]


def values_at(curve: Curve, starts: Sequence[datetime]) -> FloatArray:
    out = np.full(len(starts), np.nan)
    for i, start in enumerate(starts):
        price = curve.price_at(start)
        if price is not None:
            out[i] = price
    return out


def make_timeline(
    policy: Policy,
    spec: Mapping[str, Any],
    starts: list[datetime],
    prices: Curve,
    carbon: Curve | None = None,
    signal_values: Sequence[float | None] | None = None,
) -> Timeline:
    """The timeline, the signal read as the agent reads it: a curve signal from ``prices``, a
    static one as its value, a PromQL one from ``signal_values`` (evaluated by the caller)."""
    values = values_at(prices, starts)
    source = spec.get("signal") or {}
    signal: list[float | None]
    if "static" in source:
        signal = [float(source["static"]["value"])] * len(starts)
    elif "promql" in source:
        if signal_values is None:
            raise SimulationError("signal.promql: replaying a PromQL signal needs --prometheus")
        signal = list(signal_values)
    else:
        signal = [None if math.isnan(v) else float(v) for v in values]
    return Timeline(
        starts,
        policy.period,
        values,
        prices,
        signal,
        values_at(carbon, starts) if carbon is not None else None,
    )


# --- the replay ------------------------------------------------------------------------------


def decisions(policy: Policy, timeline: Timeline) -> list[Decision]:
    """The node budget of every period, from one state carried across them as the agent does."""
    state = State()
    out = []
    lookahead = isinstance(policy.rule, LookAhead)
    for start, value in zip(timeline.starts, timeline.signal, strict=True):
        outlook: Sequence[Period] = ()
        if lookahead:
            # What the agent's curve signal reads around the instant (OUTLOOK_SPAN either side).
            outlook = timeline.curve.slice(start - OUTLOOK_SPAN, start + OUTLOOK_SPAN).periods
        decision, state = decide(policy, state, start, value, outlook)
        out.append(decision)
    return out


@dataclass
class DeviceResult:
    """One device's replay: per period its cap, power and work without and with the policy."""

    device: Device
    caps: FloatArray  # NaN: no cap
    power: FloatArray  # with the policy (NaN: no data)
    work0: FloatArray
    work1: FloatArray
    above_original: int = 0
    below_minimum: int = 0
    asked_above: int = 0
    raised_to_minimum: int = 0


@dataclass
class Simulation:
    policy: Policy
    timeline: Timeline
    decisions: list[Decision]
    devices: list[DeviceResult]
    model_source: str = "shipped"
    warnings: list[str] = field(default_factory=list)


def _caps_for(
    policy: Policy, decided: Sequence[Decision], devices: Sequence[Device]
) -> dict[str, list[DomainCap | None]]:
    """Each device's cap per period, by ``split`` over the node's devices that have a range."""
    ranged = [d for d in devices if d.limits is not None]
    limits = [d.limits for d in ranged if d.limits is not None]
    memo: dict[float | None, dict[str, DomainCap]] = {}
    out: dict[str, list[DomainCap | None]] = {d.domain: [] for d in devices}
    for decision in decided:
        caps = memo.get(decision.watts)
        if caps is None:
            caps = {c.domain: c for c in split(policy.budget, decision.watts, limits)}
            memo[decision.watts] = caps
        for d in devices:
            out[d.domain].append(caps.get(d.domain))
    return out


def _replay_device(
    device: Device, caps: Sequence[DomainCap | None], model: Model, hours: float
) -> DeviceResult:
    cls = model.device_class(device.node, device.kind)
    mix = model.for_node(device.node).mix
    cap = np.array([np.nan if c is None or c.watts is None else c.watts for c in caps])
    watts = device.watts
    capped = ~np.isnan(cap) & (cap < watts)
    power = np.where(capped, cap, watts)
    ratio = np.where(capped, cap / np.where(watts > 0, watts, 1.0), 1.0)
    if device.work is None:
        kept = np.where(capped, model.throughput(cls, mix, ratio), 1.0)
    else:
        kept = np.ones(len(watts))
        labels = np.array([w or "" for w in device.work])
        for work in set(labels.tolist()):
            picked = capped & (labels == work)
            if picked.any():
                kept[picked] = model.throughput(cls, {work: 1.0} if work else mix, ratio[picked])
    busy = np.where(np.isnan(watts), 0.0, (watts > cls.idle_watts).astype(float))
    work0 = busy * cls.weight * hours
    result = DeviceResult(device, cap, power, work0, work0 * kept)
    lim = device.limits
    for c in caps:
        if c is None or c.watts is None or lim is None:
            continue
        ceiling = lim.original_watts if lim.original_watts is not None else lim.max_watts
        result.above_original += c.watts > ceiling + 1e-9
        result.below_minimum += c.watts < device.hardware_min - 1e-9
        result.asked_above += c.clamped and math.isclose(c.watts, lim.max_watts)
        result.raised_to_minimum += c.clamped and math.isclose(c.watts, lim.min_watts)
    return result


def simulate(
    policy: Policy, timeline: Timeline, devices: Sequence[Device], model: Model, model_source: str = "shipped"
) -> Simulation:
    """Replay ``policy`` over ``timeline`` on ``devices``."""
    decided = decisions(policy, timeline)
    results: list[DeviceResult] = []
    warnings = []
    by_node: dict[str, list[Device]] = {}
    for d in devices:
        by_node.setdefault(d.node, []).append(d)
        if d.limits is None:
            warnings.append(f"{d.node}/{d.domain}: no power limits known: counted as never capped")
    for node_devices in by_node.values():
        caps = _caps_for(policy, decided, node_devices)
        for d in node_devices:
            results.append(_replay_device(d, caps[d.domain], model, timeline.hours))
    if isinstance(policy.rule, LookAhead) and policy.timezone.key == "UTC":
        warnings.append(
            "lookahead plans UTC days: set schedule.timezone to the market area's zone (e.g. Europe/Berlin)"
        )
    return Simulation(policy, timeline, decided, results, model_source, warnings)


# --- device ranges from what the exporters report ---------------------------------------------


def device_limits(
    domain: str,
    kind: Kind,
    original: float | None,
    hardware_max: float | None,
    hardware_min: float | None,
    cls_min: float = 0.0,
    cls_max: float = 0.0,
) -> tuple[DomainLimits | None, float]:
    """A device's range as the actuators would read it (the same rules, ``rapl_limits`` and
    ``gpu_limits``), from its reported limits, else from its model class; and its hardware minimum."""
    original = original if original is not None else (cls_max or None)
    hardware_max = hardware_max if hardware_max is not None else (cls_max or original)
    if original is None or hardware_max is None or original <= 0 or hardware_max <= 0:
        return None, 0.0
    if kind == "cpu":
        limits = rapl_limits(domain, hardware_max, original)
        if cls_min:
            limits = DomainLimits(domain, "cpu", min(cls_min, limits.max_watts), limits.max_watts, original)
        return limits, limits.min_watts
    low = hardware_min if hardware_min is not None else cls_min
    limits = gpu_limits(domain, low, hardware_max, original)
    return limits, low


def kind_of(domain: str, where: str) -> Kind:
    match = _DOMAIN.match(domain)
    if match is None:
        raise SimulationError(f"{where}: domain {domain[:40]!r} is not package-N or gpu-N")
    return "cpu" if match[1] == "package" else "gpu"


# --- a CSV trace -----------------------------------------------------------------------------

TRACE_COLUMNS = ("time", "node", "domain", "watts")


def _instant(text: str) -> datetime:
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        return parse_instant(text)


class _Trace:
    """Samples of a CSV trace summed per device and period (memory: devices by periods)."""

    def __init__(self, path: Path, starts: Sequence[datetime], period: timedelta) -> None:
        self.path = path
        self.index = {start: i for i, start in enumerate(starts)}
        self.count = len(starts)
        self.period = period
        self.sums: dict[tuple[str, str], tuple[FloatArray, FloatArray]] = {}
        self.work: dict[tuple[str, str], list[str | None]] = {}
        self.ranges: dict[tuple[str, str], dict[str, float]] = {}

    def add(self, row: Mapping[str, str | None], where: str, nodes: re.Pattern[str] | None) -> None:
        try:
            at = _instant(row["time"] or "")
            watts = float(row["watts"] or "")
        except (ValueError, TypeError, OverflowError):
            raise SimulationError(f"{where}: time or watts is not a valid value") from None
        if not math.isfinite(watts) or watts < 0:
            raise SimulationError(f"{where}: watts must be a finite number >= 0")
        node, domain = (row["node"] or "").strip(), (row["domain"] or "").strip()
        if not node or len(node) > 253:
            raise SimulationError(f"{where}: node must be a name of 1..253 characters")
        kind_of(domain, where)
        i = self.index.get(period_start(at, self.period))
        if i is None or (nodes is not None and not nodes.fullmatch(node)):
            return
        key = (node, domain)
        if key not in self.sums:
            if len(self.sums) >= MAX_DEVICES:
                raise SimulationError(f"{self.path}: more than {MAX_DEVICES} devices")
            self.sums[key] = (np.zeros(self.count), np.zeros(self.count))
            self.work[key] = [None] * self.count
        total, count = self.sums[key]
        total[i] += watts
        count[i] += 1
        if row.get("work"):
            self.work[key][i] = str(row["work"]).strip()[:63]
        for col in ("min_watts", "max_watts", "original_watts"):
            if row.get(col):
                try:
                    value = float(str(row[col]))
                except ValueError:
                    raise SimulationError(f"{where}: {col} is not a number") from None
                if not math.isfinite(value) or value < 0:
                    raise SimulationError(f"{where}: {col} must be a finite number >= 0")
                self.ranges.setdefault(key, {})[col] = value

    def devices(self, model: Model) -> list[Device]:
        out = []
        for (node, domain), (total, count) in sorted(self.sums.items()):
            kind = kind_of(domain, str(self.path))
            known = self.ranges.get((node, domain), {})
            cls = model.device_class(node, kind)
            limits, low = device_limits(
                domain,
                kind,
                known.get("original_watts"),
                known.get("max_watts"),
                known.get("min_watts"),
                cls.min_watts,
                cls.max_watts,
            )
            mean = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
            labels = self.work[(node, domain)]
            out.append(Device(node, domain, kind, mean, limits, low, labels if any(labels) else None))
        return out


def read_trace(
    path: Path,
    starts: Sequence[datetime],
    period: timedelta,
    model: Model,
    nodes: re.Pattern[str] | None = None,
) -> list[Device]:
    """Devices from a CSV trace: ``time,node,domain,watts`` (+ ``work``, ``min_watts``,
    ``max_watts``, ``original_watts``); samples are averaged per period, the others left NaN."""
    trace = _Trace(path, starts, period)
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in TRACE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise SimulationError(
                    f"{path}: the header lacks {', '.join(missing)} ({','.join(TRACE_COLUMNS)})"
                )
            for line, row in enumerate(reader, start=2):
                trace.add(row, f"{path}: line {line}", nodes)
    except OSError as exc:
        raise SimulationError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SimulationError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise SimulationError(f"{path}: not a CSV file: {exc}") from None
    return trace.devices(model)


# --- prices and carbon -----------------------------------------------------------------------


async def load_curve(source: str, area: str, start: datetime, end: datetime, carbon: bool = False) -> Curve:
    """A curve over [start, end) from a curve endpoint URL, a CSV store directory or a curve file."""
    from .signals import MarketEndpointSignal, SignalError, check_url

    name = "--carbon" if carbon else "--prices"
    try:
        if source.startswith(("http://", "https://")):
            url = check_url(source, name)
            params = [f"area={area}"] if area and "area=" not in url else []
            params += ["series=carbon"] if carbon and "series=" not in url else []
            if params:
                url += ("&" if "?" in url else "?") + "&".join(params)
            curve = await MarketEndpointSignal(url).curve()
            return curve.slice(start, end)
        path = Path(source)
        if await asyncio.to_thread(path.is_dir):
            if not area:
                raise SimulationError(f"{name}: a CSV store directory needs --area")
            return await CsvStore("store", path).fetch(area, start, end)
        keys = CARBON_KEYS if carbon else PRICE_KEYS
        return await StaticProvider("curve", path, value_keys=keys).fetch(area or "curve", start, end)
    except NotPublished as exc:
        raise SimulationError(f"{name}: {exc}") from None
    except (ProviderError, SignalError) as exc:
        raise SimulationError(f"{name}: {exc}") from None


def price_source(spec: Mapping[str, Any], given: str | None) -> tuple[str, str]:
    """Where the prices come from: ``--prices``, else the policy's own curve signal; and its area."""
    signal = spec.get("signal") or {}
    area = str((signal.get("market") or signal.get("curveFile") or {}).get("area") or "")
    if given:
        return given, area
    if "curveFile" in signal:
        return str(signal["curveFile"]["path"]), area
    if "market" in signal:
        return str(signal["market"]["url"]), area
    raise SimulationError("--prices: give the price curve (the policy's signal is not a curve)")


# --- Prometheus ------------------------------------------------------------------------------

CPU_POWER = 'sum by (node, index) (rate(powerplane_rapl_energy_joules_total{{zone="package"}}[{w}s]))'
GPU_POWER = "sum by (node, gpu) (rate(powerplane_gpu_energy_joules_total[{w}s]))"
RAPL_LIMIT = (
    "max by (node, index) (max_over_time(powerplane_rapl_{metric}"
    '{{zone="package",constraint="long_term"}}[{r}s]))'
)
GPU_LIMIT = (
    "max by (node, gpu, kind) (max_over_time(powerplane_gpu_power_limit_watts"
    '{{kind=~"current|min|max"}}[{r}s]))'
)


def _domain(labels: Mapping[str, str], kind: Kind) -> str | None:
    index = labels.get("index" if kind == "cpu" else "gpu", "")
    if not index.isdigit() or len(index) > 6:
        return None
    return f"{'package' if kind == 'cpu' else 'gpu'}-{int(index)}"


async def read_prometheus(
    client: Any,
    starts: Sequence[datetime],
    period: timedelta,
    model: Model,
    nodes: re.Pattern[str] | None = None,
) -> list[Device]:
    """Devices from Prometheus: mean power per period from the energy counters (a range query
    evaluated at each period's end over the period), limits at their highest over the range."""
    step = period.total_seconds()
    first, last = starts[0].timestamp(), starts[-1].timestamp()
    span = int(last + step - first)
    when = last + step
    power: dict[tuple[str, str], FloatArray] = {}
    kinds: dict[tuple[str, str], Kind] = {}
    for kind, query in (("cpu", CPU_POWER), ("gpu", GPU_POWER)):
        expr = query.format(w=int(step))
        for series in await client.query_range(expr, first + step, when, step):
            node, domain = series.labels.get("node", ""), _domain(series.labels, kind)  # type: ignore[arg-type]
            if not node or domain is None or (nodes is not None and not nodes.fullmatch(node)):
                continue
            values = power.setdefault((node, domain), np.full(len(starts), np.nan))
            if len(power) > MAX_DEVICES:
                raise SimulationError(f"{expr}: more than {MAX_DEVICES} devices")
            slots = np.rint((series.times - first - step) / step).astype(int)
            ok = (slots >= 0) & (slots < len(starts))
            values[slots[ok]] = series.values[ok]
            kinds[(node, domain)] = kind  # type: ignore[assignment]
    limits: dict[tuple[str, str], dict[str, float]] = {}
    for metric, key in (("power_limit_watts", "original"), ("max_power_watts", "max")):
        for sample in await client.query(RAPL_LIMIT.format(metric=metric, r=span), when):
            domain = _domain(sample.labels, "cpu")
            if domain is not None:
                limits.setdefault((sample.labels.get("node", ""), domain), {})[key] = sample.value
    for sample in await client.query(GPU_LIMIT.format(r=span), when):
        domain = _domain(sample.labels, "gpu")
        kind = {"current": "original"}.get(sample.labels.get("kind", ""), sample.labels.get("kind", ""))
        if domain is not None:
            limits.setdefault((sample.labels.get("node", ""), domain), {})[kind] = sample.value
    devices = []
    for (node, domain), watts in sorted(power.items()):
        kind = kinds[(node, domain)]
        known = limits.get((node, domain), {})
        cls = model.device_class(node, kind)
        rng, low = device_limits(
            domain,
            kind,
            known.get("original"),
            known.get("max"),
            known.get("min"),
            cls.min_watts,
            cls.max_watts,
        )
        devices.append(Device(node, domain, kind, watts, rng, low))
    return devices


async def promql_signal(
    client: Any, query: str, starts: Sequence[datetime], period: timedelta
) -> list[float | None]:
    """A PromQL signal at each period start, as the agent's instant query would have read it."""
    step = period.total_seconds()
    series = await client.query_range(query, starts[0].timestamp(), starts[-1].timestamp(), step)
    if len(series) > 1:
        raise SimulationError(f"signal.promql: the query returned {len(series)} series; aggregate it to one")
    out: list[float | None] = [None] * len(starts)
    for s in series:
        for t, v in zip(s.times, s.values, strict=True):
            i = round((t - starts[0].timestamp()) / step)
            if 0 <= i < len(out) and math.isfinite(v):
                out[i] = float(v)
    return out


# --- the command -----------------------------------------------------------------------------


def _parse_time(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SimulationError(f"{option}: {text[:40]!r} is not an ISO-8601 instant") from None
    if value.tzinfo is None:
        raise SimulationError(f"{option}: give a UTC offset (e.g. 2026-10-01T00:00:00+02:00)")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Request:
    """What ``powerplane simulate`` was asked for."""

    policy_file: Path
    start: str
    end: str
    prometheus: str | None = None
    prometheus_config: str | None = None
    trace: Path | None = None
    prices: str | None = None
    area: str = ""
    carbon: str | None = None
    model_file: Path | None = None
    nodes: str | None = None


async def run(request: Request, progress: Callable[[str], None] = lambda _m: None) -> Simulation:
    """Load everything the request names and replay the policy."""
    from powerplane.accounting.prometheus import PrometheusClient, settings_for
    from powerplane.exporters.runtime import ConfigError

    from .agent import load_policy_document
    from .perfmodel import KIND as MODEL_KIND
    from .policy import PolicyError, policy_from_spec

    try:
        doc = load_policy_document(request.policy_file)
        policy = policy_from_spec(str(doc["metadata"]["name"]), doc["spec"])
        model = MODEL_KIND.load(request.model_file) if request.model_file else Model()
    except (PolicyError, ConfigError) as exc:
        raise SimulationError(str(exc)) from None
    start, end = _parse_time(request.start, "--from"), _parse_time(request.end, "--to")
    starts = period_starts(start, end, policy.period)
    try:
        nodes = re.compile(request.nodes) if request.nodes else None
    except re.error as exc:
        raise SimulationError(f"--nodes: not a regular expression: {exc}") from None
    source, area = price_source(doc["spec"], request.prices)
    area = request.area or area
    span = (starts[0] - OUTLOOK_SPAN, starts[-1] + policy.period + OUTLOOK_SPAN)
    progress(f"prices from {source}")
    prices = await load_curve(source, area, *span)
    carbon = await load_curve(request.carbon, area, *span, carbon=True) if request.carbon else None
    signal = doc["spec"].get("signal") or {}
    if (request.prometheus or request.prometheus_config) and request.trace is None:
        async with PrometheusClient(settings_for(request.prometheus, request.prometheus_config)) as client:
            progress("power from Prometheus")
            devices = await read_prometheus(client, starts, policy.period, model, nodes)
            values = None
            if "promql" in signal:
                values = await promql_signal(client, str(signal["promql"]["query"]), starts, policy.period)
    elif request.trace is not None:
        devices = read_trace(request.trace, starts, policy.period, model, nodes)
        values = None
    else:
        raise SimulationError("give --prometheus (or --prometheus-config) or --trace")
    if not devices:
        raise SimulationError("no device has power data in the range (check --from/--to and --nodes)")
    timeline = make_timeline(policy, doc["spec"], starts, prices, carbon, values)
    return simulate(policy, timeline, devices, model, str(request.model_file or "shipped"))


@click.command("simulate")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PowerCapPolicy file (an object or its spec).",
)
@click.option("--from", "start", required=True, help="Start of the range (ISO-8601 with offset).")
@click.option("--to", "end", required=True, help="End of the range (exclusive).")
@click.option("--prometheus", help="Prometheus-compatible API with the power history.")
@click.option(
    "--prometheus-config",
    type=click.Path(exists=True, dir_okay=False),
    help="Client settings (auth, TLS) for it.",
)
@click.option(
    "--trace",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV trace instead of Prometheus: time,node,domain,watts.",
)
@click.option(
    "--prices",
    help="Price curve: the market exporter's /api/v1/curve URL, its CSV store directory or a curve"
    " file (default: the policy's curve signal).",
)
@click.option("--area", default="", help="Bidding zone of the prices (e.g. DE-LU).")
@click.option("--carbon", help="Carbon intensity curve (URL or file), optional.")
@click.option(
    "--model",
    "model_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Performance-power model (model.yaml; default: the shipped curves).",
)
@click.option("--nodes", help="Only nodes whose name matches this regular expression.")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report here (default: standard output).",
)
def command(fmt: str, out: Path | None, **options: Any) -> None:
    """Replay a power-cap policy over measured power and prices: what it saves and costs.

    Exits with status 3 when a cap would have been unsafe (above a device's original limit or
    below its hardware minimum), after writing the report.
    """
    from powerplane.accounting.prometheus import QueryError

    from .simreport import render, summary

    try:
        sim = asyncio.run(run(Request(**options), lambda m: click.echo(m, err=True)))
    except (SimulationError, QueryError) as exc:
        raise click.ClickException(str(exc)) from None
    text = render(sim, fmt)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    if summary(sim)["safety"]["unsafe"]:
        raise SystemExit(3)
