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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

DEFAULT_PERIOD = timedelta(minutes=15)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class PolicyError(ValueError):
    """A policy that cannot be evaluated; the message names the field at fault."""


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


def local_day_periods(day: date, tz: ZoneInfo, period: timedelta = DEFAULT_PERIOD) -> list[datetime]:
    """The UTC starts of the periods of a local delivery day (92, 96 or 100 quarter-hours)."""
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    out = []
    cursor = period_start(start, period)
    if cursor < start:
        cursor += period
    while cursor < end:
        out.append(cursor)
        cursor += period
    return out


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
    rule: Linear | Bands
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


def decide(policy: Policy, state: State, now: datetime, signal: float | None) -> tuple[Decision, State]:
    """The node budget for the period containing ``now``, and the state to keep.

    Reasons: ``signal`` (computed from the signal), ``dwell`` (kept: the last change is too
    recent), ``override`` (a schedule window), ``signal-lost-hold`` and
    ``signal-lost-release`` (no signal for this period).
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
    """A domain's hardware range as the actuator reads it (watts)."""

    domain: str  # "package-0", "gpu-1", ...
    kind: Literal["cpu", "gpu"]
    min_watts: float
    max_watts: float
    default_watts: float | None = None


@dataclass(frozen=True)
class DomainCap:
    domain: str
    kind: Literal["cpu", "gpu"]
    watts: float | None  # None: release to the hardware default
    clamped: bool = False


def split(budget: Budget, watts: float | None, domains: Sequence[DomainLimits]) -> list[DomainCap]:
    """Split a node budget between CPU packages and GPUs, each within its hardware range.

    With no GPU the whole budget goes to the CPU packages (and vice versa); within a kind it is
    divided equally.  A share below a device's minimum is raised to that minimum (and marked
    ``clamped``): the hardware refuses anything lower, and the alternative, skipping the
    device, would leave it uncapped.
    """
    if watts is None:
        return [DomainCap(d.domain, d.kind, None) for d in domains]
    cpus = [d for d in domains if d.kind == "cpu"]
    gpus = [d for d in domains if d.kind == "gpu"]
    share = budget.cpu_share if cpus and gpus else (1.0 if cpus else 0.0)
    caps = []
    for group, total in ((cpus, watts * share), (gpus, watts * (1.0 - share))):
        for d in group:
            each = total / len(group)
            bounded = min(d.max_watts, max(d.min_watts, each))
            caps.append(
                DomainCap(d.domain, d.kind, round(bounded, 3), clamped=not math.isclose(bounded, each))
            )
    order = {d.domain: i for i, d in enumerate(domains)}
    return sorted(caps, key=lambda c: order[c.domain])


# --- parsing (from the CRD spec's camelCase) -------------------------------------------------


def _time(text: str, where: str) -> time:
    try:
        hours, minutes = text.split(":")
        if text == "24:00":
            return time(0)
        return time(int(hours), int(minutes))
    except ValueError:
        raise PolicyError(f"{where}: {text!r} is not HH:MM") from None


def _seconds(value: Any, where: str) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PolicyError(f"{where}: must be a non-negative number of seconds")
    return timedelta(seconds=float(value))


def policy_from_spec(name: str, spec: Mapping[str, Any]) -> Policy:
    """Build a ``Policy`` from a validated ``PowerCapPolicy`` spec; errors name the field."""
    try:
        rule_spec = spec["policy"]
        kind = rule_spec["type"]
        rule: Linear | Bands
        if kind == "linear":
            lin = rule_spec["linear"]
            rule = Linear(
                float(lin["minWatts"]),
                float(lin["maxWatts"]),
                float(lin.get("signalMin", 0.0)),
                float(lin["signalMax"]),
                lin.get("direction", "inverse"),
            )
        elif kind == "bands":
            b = rule_spec["bands"]
            rule = Bands(
                tuple(
                    Band(float(x["above"]), None if x.get("watts") is None else float(x["watts"]), x["level"])
                    for x in b["thresholds"]
                ),
                float(b.get("hysteresis", 0.0)),
                None if b.get("baseWatts") is None else float(b["baseWatts"]),
                b.get("baseLevel", "low"),
            )
        else:
            raise PolicyError(f"policy.type: unknown type {kind!r}")
        tz_name = spec.get("schedule", {}).get("timezone", "UTC")
        try:
            tz = ZoneInfo(tz_name)
        except Exception:
            raise PolicyError(f"schedule.timezone: unknown time zone {tz_name!r}") from None
        overrides = []
        for i, o in enumerate(spec.get("schedule", {}).get("overrides", [])):
            where = f"schedule.overrides[{i}]"
            days = o.get("days")
            if days is not None:
                bad = [d for d in days if d.lower()[:3] not in WEEKDAYS]
                if bad:
                    raise PolicyError(f"{where}.days: unknown day(s) {bad}")
            action = o.get("action", "release")
            if action == "cap" and o.get("watts") is None:
                raise PolicyError(f"{where}: action 'cap' needs watts")
            overrides.append(
                Override(
                    days=frozenset(WEEKDAYS.index(d.lower()[:3]) for d in days)
                    if days
                    else frozenset(range(7)),
                    start=_time(o.get("start", "00:00"), f"{where}.start"),
                    end=_time(o["end"], f"{where}.end") if o.get("end") else None,
                    dates=frozenset(date.fromisoformat(d) for d in o.get("dates", [])),
                    action=action,
                    watts=None if o.get("watts") is None else float(o["watts"]),
                    name=o.get("name", f"override-{i}"),
                )
            )
        budget_spec = spec.get("budget", {})
        budget = Budget(
            float(budget_spec.get("cpuShare", 1.0)),
            bool(budget_spec.get("shortTerm", False)),
            float(budget_spec.get("shortTermRatio", 1.2)),
        )
        period = _seconds(spec.get("periodSeconds", 900), "periodSeconds")
        if period.total_seconds() < 1:
            raise PolicyError("periodSeconds: must be at least 1")
        return Policy(
            name=name,
            rule=rule,
            period=period,
            dwell=_seconds(spec.get("minDwellSeconds", 0), "minDwellSeconds"),
            hold=_seconds(spec.get("signalLostHoldSeconds", 3600), "signalLostHoldSeconds"),
            timezone=tz,
            overrides=tuple(overrides),
            budget=budget,
            dry_run=bool(spec.get("dryRun", False)),
        )
    except KeyError as exc:
        raise PolicyError(f"missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PolicyError):
            raise
        raise PolicyError(f"invalid value: {exc}") from None


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels + matchExpressions) against a node's labels."""
    if not selector:
        return True
    for key, val in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != val:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
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
