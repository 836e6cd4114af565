"""The pure policy core: from a signal and the time to the caps a node should have.

Nothing here does I/O or reads the clock: every function takes the instant it decides for, so
the whole behaviour is table-testable (DST days, midnight, missing periods, hysteresis, dwell).

Time is UTC inside.  Periods are aligned on the Unix epoch (15-minute periods start at :00,
:15, :30 and :45 of every hour, in UTC and in every zone whose offset is a multiple of 15
minutes); schedules are written in a local time zone and evaluated per instant, so a
"Saturday" or an "18:00-22:00" window follows the local clock across DST changes.

A decision's ``watts`` is the node budget, or ``None`` for "no cap": the hardware default.
The policy never falls back to the hardest cap: a lost signal holds the last cap for a bounded
time, then releases.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

T = TypeVar("T")
DEFAULT_PERIOD = timedelta(minutes=15)
#: How much of a curve a look-ahead decision reads around the instant it decides for (a local
#: day of 25 hours is covered from either end).
OUTLOOK_SPAN = timedelta(days=2)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class PolicyError(ValueError):
    """A policy that cannot be evaluated; each error names the field at fault."""

    def __init__(self, *errors: str) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(errors))


def utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise PolicyError(f"naive datetime {instant.isoformat()}: give a time zone")
    return instant.astimezone(UTC)


# --- periods -------------------------------------------------------------------------------


def period_start(instant: datetime, period: timedelta = DEFAULT_PERIOD) -> datetime:
    """The start of the period containing ``instant`` (aligned on the epoch, in UTC)."""
    seconds = period.total_seconds()
    if seconds <= 0:
        raise PolicyError("period must be positive")
    ts = utc(instant).timestamp()
    return datetime.fromtimestamp(math.floor(ts / seconds) * seconds, UTC)


def next_boundary(instant: datetime, period: timedelta = DEFAULT_PERIOD) -> datetime:
    """The next period start strictly after ``instant``."""
    return period_start(instant, period) + period


# --- policy model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Linear:
    """The rule of three: ``watts = max_watts * f``, clamped to [min_watts, max_watts].

    ``f`` is the signal's position in [signal_min, signal_max] (0..1, clamped); with
    ``direction = "inverse"`` (the default, for prices) it is ``1 - position``, so a high price
    gives a low cap.  With ``signal_min = 0`` and ``direct`` this is the original design's
    ``cap = max * signal / signal_max, at least min``.
    """

    min_watts: float
    max_watts: float
    signal_min: float
    signal_max: float
    direction: Literal["inverse", "direct"] = "inverse"

    def __post_init__(self) -> None:
        if not 0 < self.min_watts <= self.max_watts:
            raise PolicyError("linear: need 0 < minWatts <= maxWatts")
        if not self.signal_min < self.signal_max:
            raise PolicyError("linear: need signalMin < signalMax")

    def watts(self, signal: float) -> float:
        position = (signal - self.signal_min) / (self.signal_max - self.signal_min)
        position = min(1.0, max(0.0, position))
        fraction = 1.0 - position if self.direction == "inverse" else position
        return min(self.max_watts, max(self.min_watts, self.max_watts * fraction))

    def level(self, signal: float) -> str:
        position = (signal - self.signal_min) / (self.signal_max - self.signal_min)
        high = position if self.direction == "inverse" else 1.0 - position
        return "high" if high >= 2 / 3 else "normal" if high >= 1 / 3 else "low"


@dataclass(frozen=True)
class Band:
    """Signals at or above ``above`` are in this band; ``watts None`` means no cap."""

    above: float
    watts: float | None
    level: str


@dataclass(frozen=True)
class Bands:
    """Threshold bands with hysteresis.

    The band is the highest one whose threshold the signal reaches.  Going up happens as soon
    as a threshold is reached; going down only once the signal is ``hysteresis`` below the
    current band's threshold, so a price wobbling around a threshold does not flap the cap.
    Below every threshold the ``base`` band applies (no cap unless ``base_watts`` is set).
    """

    bands: tuple[Band, ...]
    hysteresis: float = 0.0
    base_watts: float | None = None
    base_level: str = "low"

    def __post_init__(self) -> None:
        thresholds = [b.above for b in self.bands]
        if not thresholds:
            raise PolicyError("bands: at least one band is needed")
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise PolicyError("bands: thresholds ('above') must be strictly increasing")
        if self.hysteresis < 0:
            raise PolicyError("bands: hysteresis must be >= 0")

    def index(self, signal: float, current: int | None) -> int:
        """The band index for ``signal`` (-1: base) given the ``current`` one."""
        raw = -1
        for i, band in enumerate(self.bands):
            if signal >= band.above:
                raw = i
        if current is None or raw >= current:
            return raw
        # Moving down: leave each band only when clearly below its threshold.
        index = current
        while index > raw and signal < self.bands[index].above - self.hysteresis:
            index -= 1
        return index

    def watts(self, index: int) -> float | None:
        return self.base_watts if index < 0 else self.bands[index].watts

    def level(self, index: int) -> str:
        return self.base_level if index < 0 else self.bands[index].level


class Priced(Protocol):
    """A delivery period with its price (the market's ``Period`` is one)."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def price(self) -> float: ...


@dataclass(frozen=True)
class LookAhead:
    """Cap hardest in the day's most expensive periods, within a daily work budget.

    The plan covers the local day (``schedule.timezone``) of the period decided for, from the
    day's prices known ahead (the day-ahead curve).  Throughput under a cap ``c`` is modelled as
    ``(c / max_watts) ** exponent`` of the full-power throughput, a concave curve (0 < exponent
    < 1; 1 would be throughput proportional to power), and a node is assumed to draw its full
    ``max_watts`` when uncapped, so the work it loses is never more than planned.  Among all
    caps in [min_watts, max_watts] whose day's work lost is at most ``work_budget`` of the day's
    work, the plan takes those of least energy cost.  Its solution has one parameter, the
    day's cap threshold price ``k``: a period whose price is at or below ``k`` (or at or below
    ``price_floor``) is not capped, a dearer one is capped at
    ``max_watts * (k / price) ** (1 / (1 - exponent))``, at least ``min_watts`` — the dearer
    the period, the harder the cap.  ``k`` is the lowest threshold that keeps within the budget
    (found by bisection: the work lost falls as ``k`` rises).

    The plan is a pure function of the day's prices, so every period of a day follows the same
    plan whenever it is computed.  Periods of the day missing from the curve are left out of it.
    """

    min_watts: float
    max_watts: float
    work_budget: float
    exponent: float = 0.5
    price_floor: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.min_watts <= self.max_watts:
            raise PolicyError("lookahead: need 0 < minWatts <= maxWatts")
        if not 0.0 <= self.work_budget <= 1.0:
            raise PolicyError("lookahead: workBudget must be within 0..1")
        if not 0.0 < self.exponent < 1.0:
            raise PolicyError("lookahead: exponent must be within 0..1 (exclusive)")

    def cap(self, price: float, threshold: float) -> float | None:
        """The cap of a period at ``price`` under the day's ``threshold`` (None: no cap)."""
        if price <= self.price_floor or price <= threshold:
            return None
        ratio = (threshold / price) ** (1.0 / (1.0 - self.exponent)) if threshold > 0 else 0.0
        watts = round(max(self.min_watts, self.max_watts * ratio), 3)
        return None if watts >= self.max_watts else watts

    def loss(self, watts: float | None) -> float:
        """Share of the full-power throughput lost under ``watts`` (the model above)."""
        return 0.0 if watts is None else 1.0 - (watts / self.max_watts) ** self.exponent

    def threshold(self, prices: Sequence[float], seconds: Sequence[float]) -> float:
        """The day's cap threshold price ``k``: the lowest that keeps the work lost in budget."""
        return _threshold(self, tuple(prices), tuple(seconds))

    def level(self, watts: float | None) -> str:
        if watts is None:
            return "low"
        return "peak" if math.isclose(watts, self.min_watts) else "high"

    def plan(
        self, now: datetime, signal: float, outlook: Sequence[Priced], tz: ZoneInfo, period: timedelta
    ) -> float | None:
        """The cap of the period containing ``now`` (its price: ``signal``) from the day's curve."""
        start = period_start(now, period)
        day = utc(now).astimezone(tz).date()
        periods = {start: (signal, period.total_seconds())}
        for p in outlook:
            begin = utc(p.start)
            if begin != start and begin.astimezone(tz).date() == day and math.isfinite(p.price):
                periods[begin] = (float(p.price), (utc(p.end) - begin).total_seconds())
        # In time order: every period of a day asks for the same plan (one cached threshold).
        ordered = [periods[k] for k in sorted(periods)]
        return self.cap(signal, self.threshold([p for p, _ in ordered], [s for _, s in ordered]))


@functools.lru_cache(maxsize=256)
def _threshold(rule: LookAhead, prices: tuple[float, ...], seconds: tuple[float, ...]) -> float:
    # Cached: every period of a day (and every node of a simulation) plans the same day.
    total = sum(seconds)
    budget = rule.work_budget * total
    dear = [p for p in prices if p > rule.price_floor]
    if not dear or total <= 0:
        return max(prices, default=0.0)

    def lost(k: float) -> float:
        return sum(rule.loss(rule.cap(p, k)) * s for p, s in zip(prices, seconds, strict=True))

    if lost(0.0) <= budget:
        return 0.0  # the budget allows the hardest cap in every period dearer than the floor
    low, high = 0.0, max(dear)  # lost(high) == 0 <= budget
    for _ in range(60):
        mid = (low + high) / 2
        if lost(mid) <= budget:
            high = mid
        else:
            low = mid
    return high


@dataclass(frozen=True)
class Override:
    """A schedule override: in this window the policy's cap is replaced by ``watts`` or none."""

    days: frozenset[int] = frozenset(range(7))  # Monday = 0
    start: time = time(0)
    end: time | None = None  # None: until midnight
    dates: frozenset[date] = frozenset()
    action: Literal["release", "cap"] = "release"
    watts: float | None = None
    name: str = ""

    def matches(self, local: datetime) -> bool:
        if self.dates and local.date() not in self.dates:
            return False
        if local.weekday() not in self.days:
            return False
        clock = local.time().replace(tzinfo=None)
        if self.end is None or self.end == time(0):
            return clock >= self.start
        if self.start <= self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end  # a window across midnight


@dataclass(frozen=True)
class Budget:
    """How a node budget is split: ``cpu_share`` to CPU packages, the rest to GPUs."""

    cpu_share: float = 1.0
    short_term: bool = False
    #: short_term (PL2) as a multiple of the long_term cap written with it.
    short_term_ratio: float = 1.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.cpu_share <= 1.0:
            raise PolicyError("budget.cpuShare must be within 0..1")
        if self.short_term_ratio < 1.0:
            raise PolicyError("budget.shortTermRatio must be >= 1")


@dataclass(frozen=True)
class Policy:
    name: str
    rule: Linear | Bands | LookAhead
    period: timedelta = DEFAULT_PERIOD
    dwell: timedelta = timedelta(0)
    hold: timedelta = timedelta(hours=1)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    overrides: tuple[Override, ...] = ()
    budget: Budget = field(default_factory=Budget)
    dry_run: bool = False


@dataclass(frozen=True)
class State:
    """What the policy remembers between decisions (kept by the agent, not on disk)."""

    watts: float | None = None
    level: str = "none"
    band: int | None = None
    changed_at: datetime | None = None
    signal_at: datetime | None = None
    signal: float | None = None


@dataclass(frozen=True)
class Decision:
    period_start: datetime
    watts: float | None
    level: str
    reason: str
    signal: float | None
    override: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "period_start": self.period_start.isoformat().replace("+00:00", "Z"),
            "watts": self.watts,
            "level": self.level,
            "reason": self.reason,
            "signal": self.signal,
            "override": self.override or None,
        }


def decide(
    policy: Policy,
    state: State,
    now: datetime,
    signal: float | None,
    outlook: Sequence[Priced] = (),
) -> tuple[Decision, State]:
    """The node budget for the period containing ``now``, and the state to keep.

    Reasons: ``signal`` (computed from the signal), ``dwell`` (kept: the last change is too
    recent), ``override`` (a schedule window), ``signal-lost-hold`` and
    ``signal-lost-release`` (no signal for this period).  ``outlook`` is the price curve around
    ``now`` (only the look-ahead rule reads it: the other periods of the day).
    """
    now = utc(now)
    start = period_start(now, policy.period)
    if signal is not None and not math.isfinite(signal):
        signal = None
    local = now.astimezone(policy.timezone)
    for override in policy.overrides:
        if override.matches(local):
            forced = override.watts if override.action == "cap" else None
            new = replace(
                state,
                watts=forced,
                level="override",
                changed_at=now if forced != state.watts else state.changed_at,
                signal_at=now if signal is not None else state.signal_at,
                signal=signal if signal is not None else state.signal,
            )
            return Decision(start, forced, "override", "override", signal, override.name or "override"), new

    if signal is None:
        if state.signal_at is not None and now - state.signal_at <= policy.hold:
            return Decision(start, state.watts, state.level, "signal-lost-hold", None), state
        changed = state.changed_at if state.watts is None else now
        new = replace(state, watts=None, level="unknown", band=None, changed_at=changed)
        return Decision(start, None, "unknown", "signal-lost-release", None), new

    if isinstance(policy.rule, Linear):
        watts: float | None = round(policy.rule.watts(signal), 3)
        level = policy.rule.level(signal)
        band = None
    elif isinstance(policy.rule, LookAhead):
        watts = policy.rule.plan(now, signal, outlook, policy.timezone, policy.period)
        level = policy.rule.level(watts)
        band = None
    else:
        band = policy.rule.index(signal, state.band)
        watts = policy.rule.watts(band)
        level = policy.rule.level(band)

    seen = replace(state, signal_at=now, signal=signal)
    if watts == state.watts:
        return Decision(start, watts, level, "signal", signal), replace(seen, level=level, band=band)
    if state.changed_at is not None and policy.dwell and now - state.changed_at < policy.dwell:
        # Keep the current cap (and band, so hysteresis is measured from what is applied).
        return Decision(start, state.watts, state.level, "dwell", signal), seen
    new = replace(seen, watts=watts, level=level, band=band, changed_at=now)
    return Decision(start, watts, level, "signal", signal), new


# --- budget split ------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainLimits:
    """A domain's allowed range as the actuator reads it (watts).

    ``max_watts`` is the lower of the hardware's maximum and ``original_watts``, the limit in
    force before powerplane first wrote it: a cap may lower a limit, never raise it.
    """

    domain: str  # "package-0", "gpu-1", ...
    kind: Literal["cpu", "gpu"]
    min_watts: float
    max_watts: float
    original_watts: float | None = None


def rapl_limits(domain: str, hardware_watts: float, original_watts: float) -> DomainLimits:
    """A RAPL package's range: up to the original limit (within the maximum), down to 1/8 of it.

    RAPL has no minimum file; below about an eighth of the maximum packages stop making progress.
    """
    top = min(hardware_watts, original_watts)
    return DomainLimits(domain, "cpu", min(round(hardware_watts / 8, 3), top), top, original_watts)


def gpu_limits(domain: str, min_watts: float, max_watts: float, original_watts: float | None) -> DomainLimits:
    """A GPU's range: NVML's limit constraints, topped by the original limit when it is known."""
    top = max_watts if original_watts is None else min(max_watts, original_watts)
    return DomainLimits(domain, "gpu", min(min_watts, top), top, original_watts)


@dataclass(frozen=True)
class DomainCap:
    domain: str
    kind: Literal["cpu", "gpu"]
    watts: float | None  # None: release to the original limit
    #: Why the share asked for was moved into the domain's range (empty: it was within).
    note: str = ""

    @property
    def clamped(self) -> bool:
        return bool(self.note)


def clamp_note(asked: float, watts: float, bound: str) -> str:
    return f"{asked:g} W asked, clamped to {bound} {watts:g} W"


def split(budget: Budget, watts: float | None, domains: Sequence[DomainLimits]) -> list[DomainCap]:
    """Split a node budget between CPU packages and GPUs, each within its allowed range.

    With no GPU the whole budget goes to the CPU packages (and vice versa); within a kind it is
    divided equally.  A share above a device's range is lowered to its top (the original limit:
    a cap never raises one); a share below its minimum is raised to that minimum, since the
    hardware refuses anything lower and skipping the device would leave it uncapped.  Either way
    the cap carries a note saying so.
    """
    if watts is None or not math.isfinite(watts):
        return [DomainCap(d.domain, d.kind, None) for d in domains]
    cpus = [d for d in domains if d.kind == "cpu"]
    gpus = [d for d in domains if d.kind == "gpu"]
    share = budget.cpu_share if cpus and gpus else (1.0 if cpus else 0.0)
    caps = []
    for group, total in ((cpus, watts * share), (gpus, watts * (1.0 - share))):
        for d in group:
            each = total / len(group)
            note = ""
            if each > d.max_watts and not math.isclose(each, d.max_watts):
                top = "the original limit" if d.max_watts == d.original_watts else "the hardware maximum"
                note = clamp_note(round(each, 3), d.max_watts, top)
            elif each < d.min_watts and not math.isclose(each, d.min_watts):
                note = clamp_note(round(each, 3), d.min_watts, "the hardware minimum")
            bounded = min(d.max_watts, max(d.min_watts, each))
            caps.append(DomainCap(d.domain, d.kind, round(bounded, 3), note))
    order = {d.domain: i for i, d in enumerate(domains)}
    return sorted(caps, key=lambda c: order[c.domain])


# --- parsing (from the CRD spec's camelCase) -------------------------------------------------

#: Watts of a node budget or of one device's cap.
WATTS_RANGE = (1.0, 1_000_000.0)
#: Signal values and band thresholds (prices in EUR/MWh, headroom in watts, ...).
SIGNAL_RANGE = (-1e12, 1e12)
#: How long a cap is kept (dwell) or held after the signal is lost: at most a week.
DURATION_RANGE = (0, 7 * 86400)

#: The range of every number a spec holds, by field (``[]``: any list item).  The CRD states
#: the same bounds for the API server; a test keeps the two equal.
BOUNDS: dict[str, tuple[float, float]] = {
    "signal.static.value": SIGNAL_RANGE,
    "policy.linear.minWatts": WATTS_RANGE,
    "policy.linear.maxWatts": WATTS_RANGE,
    "policy.linear.signalMin": SIGNAL_RANGE,
    "policy.linear.signalMax": SIGNAL_RANGE,
    "policy.bands.hysteresis": (0.0, SIGNAL_RANGE[1]),
    "policy.bands.baseWatts": WATTS_RANGE,
    "policy.bands.thresholds[].above": SIGNAL_RANGE,
    "policy.bands.thresholds[].watts": WATTS_RANGE,
    "policy.lookahead.minWatts": WATTS_RANGE,
    "policy.lookahead.maxWatts": WATTS_RANGE,
    "policy.lookahead.workBudget": (0.0, 1.0),
    "policy.lookahead.exponent": (0.05, 0.95),
    "policy.lookahead.priceFloor": SIGNAL_RANGE,
    "budget.cpuShare": (0.0, 1.0),
    "budget.shortTermRatio": (1.0, 4.0),
    "schedule.overrides[].watts": WATTS_RANGE,
    "periodSeconds": (1, 86400),
    "minDwellSeconds": DURATION_RANGE,
    "signalLostHoldSeconds": DURATION_RANGE,
}
#: Levels become node label values.
LEVEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_ITEM = re.compile(r"\[\d+\]")


class SpecReader:
    """Reads a spec field by field, collecting every problem with its path instead of raising.

    Whatever the spec holds (an API server prunes unknown keys but checks nothing the CRD does
    not say; a hand-made document may hold anything), reading it never raises: each problem
    becomes one error naming its field, and the caller raises them all at once.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def mapping(
        self, parent: Mapping[str, Any], key: str, where: str, required: bool = False
    ) -> dict[str, Any]:
        path = f"{where}.{key}" if where else key
        value = parent.get(key)
        if value is None:
            if required:
                self.fail(where or "spec", f"missing field {key!r}")
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be an object, not {type(value).__name__}")
            return {}
        return dict(value)

    def items(self, parent: Mapping[str, Any], key: str, where: str, limit: int) -> list[Any]:
        path = f"{where}.{key}" if where else key
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"must be a list, not {type(value).__name__}")
            return []
        if len(value) > limit:
            self.fail(path, f"{len(value)} items: at most {limit}")
            return []
        return value

    def number(
        self, parent: Mapping[str, Any], key: str, where: str, default: float | None = None
    ) -> float | None:
        path = f"{where}.{key}" if where else key
        value = parent.get(key, default)
        if value is None:
            return None
        low, high = BOUNDS[_ITEM.sub("[]", path)]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"must be a number, not {type(value).__name__}")
        elif isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"{value} is not a finite number")
        # Compared before any conversion: a huge integer compares exactly, float() would overflow.
        elif value < low:
            self.fail(path, f"{value:g} is out of range: must be at least {low:g}")
        elif value > high:
            self.fail(path, f"{value:g} is out of range: must be at most {high:g}")
        else:
            return float(value)
        return None

    def seconds(self, parent: Mapping[str, Any], key: str, default: int) -> timedelta:
        value = self.number(parent, key, "", default)
        if value is None:
            return timedelta(seconds=default)
        if not value.is_integer():
            self.fail(key, f"{value:g} must be a whole number of seconds")
        return timedelta(seconds=value)

    def string(
        self,
        parent: Mapping[str, Any],
        key: str,
        where: str,
        default: str = "",
        pattern: re.Pattern[str] | None = None,
    ) -> str:
        path = f"{where}.{key}" if where else key
        value = parent.get(key, default)
        if not isinstance(value, str):
            self.fail(path, f"must be a string, not {type(value).__name__}")
            return default
        if len(value) > 253:
            self.fail(path, f"{len(value)} characters: at most 253")
            return default
        if pattern is not None and not pattern.match(value):
            self.fail(path, f"{value!r} does not match {pattern.pattern}")
            return default
        return value

    def build(self, where: str, make: Callable[[], T]) -> T | None:
        """``make()``, its PolicyError (a semantic check of a dataclass) recorded at ``where``."""
        try:
            return make()
        except PolicyError as exc:
            self.errors += [f"{where}: {e}" if where else e for e in exc.errors]
            return None


def _linear(f: SpecReader, spec: Mapping[str, Any]) -> Linear | None:
    where = "policy.linear"
    for key in ("minWatts", "maxWatts", "signalMax"):
        if key not in spec:
            f.fail(where, f"missing field {key!r}")
    low, high = f.number(spec, "minWatts", where), f.number(spec, "maxWatts", where)
    smin, smax = f.number(spec, "signalMin", where, 0.0), f.number(spec, "signalMax", where)
    direction = f.string(spec, "direction", where, "inverse")
    if direction not in ("inverse", "direct"):
        f.fail(f"{where}.direction", f"{direction!r} is not inverse or direct")
        return None
    if low is None or high is None or smin is None or smax is None:
        return None
    return f.build(where, lambda: Linear(low, high, smin, smax, direction))  # type: ignore[arg-type]


def _bands(f: SpecReader, spec: Mapping[str, Any]) -> Bands | None:
    where = "policy.bands"
    if "thresholds" not in spec:
        f.fail(where, "missing field 'thresholds'")
    bands = []
    for i, item in enumerate(f.items(spec, "thresholds", where, MAX_BANDS)):
        at = f"{where}.thresholds[{i}]"
        if not isinstance(item, Mapping):
            f.fail(at, "must be an object")
            continue
        if "above" not in item or "level" not in item:
            f.fail(at, "needs 'above' and 'level'")
            continue
        above, watts = f.number(item, "above", at), f.number(item, "watts", at)
        level = f.string(item, "level", at, pattern=LEVEL)
        bands.append(Band(above or 0.0, watts, level))
    hysteresis = f.number(spec, "hysteresis", where, 0.0)
    base = f.number(spec, "baseWatts", where)
    base_level = f.string(spec, "baseLevel", where, "low", LEVEL)
    if f.errors:
        return None
    return f.build(where, lambda: Bands(tuple(bands), hysteresis or 0.0, base, base_level))


#: The signals that carry a curve ahead (the look-ahead rule plans from it).
CURVE_SIGNALS = ("curveFile", "market")


def _lookahead(f: SpecReader, spec: Mapping[str, Any], signal: Any) -> LookAhead | None:
    where = "policy.lookahead"
    for key in ("minWatts", "maxWatts", "workBudget"):
        if key not in spec:
            f.fail(where, f"missing field {key!r}")
    if isinstance(signal, Mapping) and signal and not set(signal) & set(CURVE_SIGNALS):
        f.fail(where, "plans from the prices ahead: the signal must be curveFile or market")
    low, high = f.number(spec, "minWatts", where), f.number(spec, "maxWatts", where)
    budget = f.number(spec, "workBudget", where)
    exponent = f.number(spec, "exponent", where, 0.5)
    floor = f.number(spec, "priceFloor", where, 0.0)
    if low is None or high is None or budget is None or exponent is None or floor is None:
        return None
    return f.build(where, lambda: LookAhead(low, high, budget, exponent, floor))


def _time(f: SpecReader, spec: Mapping[str, Any], key: str, where: str, default: str) -> time | None:
    text = f.string(spec, key, where, default)
    if key == "end" and text == "24:00":
        return time(0)
    match = _CLOCK.match(text)
    if not match:
        f.fail(f"{where}.{key}", f"{text!r} is not HH:MM")
        return None
    return time(int(match[1]), int(match[2]))


def _override(f: SpecReader, spec: Any, where: str, index: int) -> Override | None:
    if not isinstance(spec, Mapping):
        f.fail(where, "must be an object")
        return None
    days = set()
    for day in f.items(spec, "days", where, 14):
        if not isinstance(day, str) or day.lower()[:3] not in WEEKDAYS:
            f.fail(f"{where}.days", f"unknown day {day!r}")
        else:
            days.add(WEEKDAYS.index(day.lower()[:3]))
    dates = set()
    for day in f.items(spec, "dates", where, 366):
        try:
            dates.add(date.fromisoformat(day))
        except (TypeError, ValueError):
            f.fail(f"{where}.dates", f"{day!r} is not a date (YYYY-MM-DD)")
    action = f.string(spec, "action", where, "release")
    if action not in ("release", "cap"):
        f.fail(f"{where}.action", f"{action!r} is not release or cap")
    watts = f.number(spec, "watts", where)
    if action == "cap" and "watts" not in spec:
        f.fail(where, "action 'cap' needs watts")
    start = _time(f, spec, "start", where, "00:00")
    end = _time(f, spec, "end", where, "24:00") if spec.get("end") else None
    name = f.string(spec, "name", where, f"override-{index}")
    return Override(
        days=frozenset(days) if days else frozenset(range(7)),
        start=start or time(0),
        end=end,
        dates=frozenset(dates),
        action="cap" if action == "cap" else "release",
        watts=watts,
        name=name,
    )


def _timezone(f: SpecReader, schedule: Mapping[str, Any]) -> ZoneInfo:
    name = f.string(schedule, "timezone", "schedule", "UTC")
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for a path, OSError for a directory
        f.fail("schedule.timezone", f"unknown time zone {name!r}")
        return ZoneInfo("UTC")


#: Bounds on list lengths, so that a policy's size (and the time a decision takes) is bounded.
MAX_BANDS = 32
MAX_OVERRIDES = 64


def policy_from_spec(name: str, spec: Mapping[str, Any]) -> Policy:
    """Build a ``Policy`` from a ``PowerCapPolicy`` spec; every error at once, each naming its field.

    Only finite numbers within ``BOUNDS`` pass, whatever validated the spec before (or did not).
    """
    f = SpecReader()
    if not isinstance(spec, Mapping):
        raise PolicyError(f"spec: must be an object, not {type(spec).__name__}")
    policy = f.mapping(spec, "policy", "", required=True)
    kind = policy.get("type")
    rule: Linear | Bands | LookAhead | None = None
    if kind == "linear":
        rule = _linear(f, f.mapping(policy, "linear", "policy", required=True))
    elif kind == "bands":
        rule = _bands(f, f.mapping(policy, "bands", "policy", required=True))
    elif kind == "lookahead":
        rule = _lookahead(f, f.mapping(policy, "lookahead", "policy", required=True), spec.get("signal"))
    elif policy:
        f.fail("policy.type", f"unknown type {kind!r}")
    schedule = f.mapping(spec, "schedule", "")
    tz = _timezone(f, schedule)
    overrides = [
        _override(f, o, f"schedule.overrides[{i}]", i)
        for i, o in enumerate(f.items(schedule, "overrides", "schedule", MAX_OVERRIDES))
    ]
    b = f.mapping(spec, "budget", "")
    share, ratio = f.number(b, "cpuShare", "budget", 1.0), f.number(b, "shortTermRatio", "budget", 1.2)
    short = b.get("shortTerm", False)
    if not isinstance(short, bool):
        f.fail("budget.shortTerm", "must be true or false")
    dry_run = spec.get("dryRun", False)
    if not isinstance(dry_run, bool):
        f.fail("dryRun", "must be true or false")
    period = f.seconds(spec, "periodSeconds", 900)
    dwell = f.seconds(spec, "minDwellSeconds", 0)
    hold = f.seconds(spec, "signalLostHoldSeconds", 3600)
    if f.errors or rule is None:
        raise PolicyError(*(f.errors or ["policy: no rule"]))
    return Policy(
        name=name,
        rule=rule,
        period=period,
        dwell=dwell,
        hold=hold,
        timezone=tz,
        overrides=tuple(o for o in overrides if o is not None),
        budget=Budget(
            share if share is not None else 1.0, short is True, ratio if ratio is not None else 1.2
        ),
        dry_run=dry_run is True,
    )


def selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels + matchExpressions) against a node's labels.

    A malformed selector matches nothing (a policy meant for some nodes never caps them all).
    """
    if not selector:
        return True
    match_labels = selector.get("matchLabels") or {} if isinstance(selector, Mapping) else None
    expressions = selector.get("matchExpressions") or [] if isinstance(selector, Mapping) else None
    if not isinstance(match_labels, Mapping) or not isinstance(expressions, list):
        return False
    for key, val in match_labels.items():
        if labels.get(key) != val:
            return False
    for expr in expressions:
        if not isinstance(expr, Mapping):
            return False
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if not isinstance(key, str) or not isinstance(values, list):
            return False
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True
