"""Collectors: fetch a snapshot asynchronously under a deadline, render it synchronously.

A collector has a ``name``, an ``async fetch(deadline)`` that does all the I/O and returns a
snapshot, and a pure ``render(snapshot)`` that yields prometheus_client metric families.
``run_collectors`` wraps every collector: a collector that raises, times out or returns a
``Partial`` is reported as ``powerplane_scrape_collector_success 0`` and logged once per
condition; one that raises ``NoData`` (hardware absent) is not a failure.  A collector that
reads several parts at once (every GPU of a node) returns ``Parts``: each part is reported as a
collector of its own, so one that fails is ``success 0`` while the others export.  The resulting
``Scrape`` is a one-shot registry for ``prometheus_client.generate_latest``: nothing in it
raises or does I/O at exposition time.

    powerplane_scrape_collector_success{exporter="rapl",collector="energy"} 1.0
    powerplane_scrape_collector_duration_seconds{exporter="rapl",collector="energy"} 0.00041
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client.core import Metric

from .builtin import COLLECTOR_DURATION, COLLECTOR_SUCCESS
from .exposition import Family
from .logs import FailureLog

S = TypeVar("S")
logger = logging.getLogger("powerplane.runtime")


class NoData(Exception):  # reads as a condition, like node_exporter's ErrNoData
    """The hardware this collector reads is absent here: not a failure."""


class CollectorError(Exception):
    """A failure whose message is already concise and names the field or request at fault."""


@dataclass(frozen=True)
class Partial(Generic[S]):
    """A snapshot with some parts missing: rendered, but the collector is reported failed."""

    snapshot: S
    errors: Sequence[str]


@dataclass(frozen=True)
class Part:
    """One part of a ``Parts`` snapshot: its name (reported as a collector's), its own time and
    what failed in it (empty: it succeeded)."""

    name: str
    duration: float
    errors: Sequence[str] = ()


@dataclass(frozen=True)
class Parts(Generic[S]):
    """A snapshot of parts read together that succeed or fail each on its own.

    The snapshot is rendered once, with what the parts that answered gave; each part is reported
    as a collector named after it, with its own duration, success and log line.
    """

    snapshot: S
    parts: Sequence[Part]


@dataclass(frozen=True)
class Deadline:
    """An absolute deadline on the event loop's clock."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at


class DeviceText:
    """Strings from devices made fit for label values, once, where they enter the exporter.

    A device may send anything: invalid UTF-8, lone surrogates (JSON's ``"\\ud800"``), CR, NUL
    or BEL, thousands of characters.  A label value must be valid UTF-8, must not break a line
    of the exposition, and should be short.  Calling the instance returns the value with white
    space folded to spaces, other control and format characters dropped, surrogates and bytes
    that are not UTF-8 replaced by U+FFFD and at most ``limit`` characters (the last one an
    ellipsis when cut).  ``truncated`` and ``invalid`` count the values changed, for the
    exporter's ``powerplane_device_strings_sanitised_total``.
    """

    def __init__(self, limit: int = 128) -> None:
        self.limit = limit
        self.truncated = 0
        self.invalid = 0

    def __call__(self, value: object) -> str:
        if isinstance(value, bytes | bytearray):
            text = bytes(value).decode("utf-8", "replace")
            changed = "\ufffd" in text
        else:
            text = value if isinstance(value, str) else str(value)
            changed = False
        if not (text.isascii() and text.isprintable()):
            cleaned = "".join(_clean_char(c) for c in text)
            changed = changed or cleaned != text
            text = cleaned
        text = text.strip()
        if changed:
            self.invalid += 1
        if len(text) > self.limit:
            self.truncated += 1
            text = text[: self.limit - 1] + "…"
        return text


def _clean_char(char: str) -> str:
    if char.isprintable():
        return char
    if char.isspace():
        return " "
    return "\ufffd" if "\ud800" <= char <= "\udfff" else ""


class Collector(ABC, Generic[S]):
    """One source of metrics.  ``fetch`` does the I/O; ``render`` must be pure and fast."""

    name: str = "collector"
    #: False for a collector whose ``fetch`` never suspends (it reads local files such as sysfs,
    #: as node_exporter's collectors do): the scrape then awaits it in place, without a task or
    #: a timer, which cost more than the reads of a small tree.  A timeout could not interrupt
    #: such a fetch anyway: it has no await at which to cancel it.
    waits: bool = True
    #: True for a collector whose ``fetch`` returns by its deadline on its own, with the parts
    #: that answered in time (a part that did not is a failed part): the scrape then sets it no
    #: timer, which would cancel the whole fetch and lose the parts that did answer.
    keeps_deadline: bool = False
    #: The names of the parts a ``Parts`` snapshot reports, for when the whole fetch or render
    #: fails (each part is then reported failed); empty for a collector reported as itself.
    parts: Sequence[str] = ()

    @abstractmethod
    async def fetch(self, deadline: Deadline) -> S | Partial[S] | Parts[S]:
        """Gather a snapshot before ``deadline``; raise ``NoData`` if the hardware is absent."""

    @abstractmethod
    def render(self, snapshot: S) -> Iterable[Metric]:
        """Turn a snapshot into metric families.  Must not do I/O."""


@dataclass
class Outcome:
    """What one collector produced in one scrape."""

    collector: str
    success: bool
    duration: float
    metrics: list[Metric] = field(default_factory=list)
    error: str = ""


def describe_error(exc: BaseException) -> str:
    """A one-line cause for a log line or an HTTP error: no traceback, no secrets."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "deadline exceeded"
    if isinstance(exc, CollectorError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, CollectorError) else text


@dataclass
class _Fetched:
    """What one collector's fetch gave: a snapshot or the exception, and how long it took."""

    snapshot: Any = None
    error: BaseException | None = None
    duration: float = 0.0


async def _fetch(collector: Collector[Any], deadline: Deadline) -> _Fetched:
    start = time.perf_counter()
    try:
        if collector.waits and not collector.keeps_deadline:
            async with asyncio.timeout(deadline.remaining()):
                snapshot = await collector.fetch(deadline)
        else:
            snapshot = await collector.fetch(deadline)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a collector must never take the scrape down
        return _Fetched(error=exc, duration=time.perf_counter() - start)
    return _Fetched(snapshot, None, time.perf_counter() - start)


def _render(
    collector: Collector[Any], fetched: _Fetched, failures: FailureLog, key: tuple[str, ...]
) -> list[Outcome]:
    """Turn a fetch into outcomes (one, or one per part): render the snapshot, classify and log
    the failures.  Never raises."""
    start = time.perf_counter()
    errors: Sequence[str] = ()
    parts: Sequence[Part] = ()
    names = collector.parts or (collector.name,)
    try:
        if fetched.error is not None:
            raise fetched.error
        result = fetched.snapshot
        if isinstance(result, Partial):
            errors = result.errors
            result = result.snapshot
        elif isinstance(result, Parts):
            parts = result.parts
            result = result.snapshot
        metrics = list(collector.render(result))
    except NoData as exc:
        for name in names:
            failures.absent(_key(key, name), str(exc) or "no data")
        return [Outcome(name, True, fetched.duration) for name in names]
    except Exception as exc:  # a render that raises fails its collector only
        cause = describe_error(exc)
        if not isinstance(exc, CollectorError | OSError | TimeoutError):
            logger.debug("collector raised", exc_info=exc)
        duration = fetched.duration + time.perf_counter() - start
        for name in names:
            failures.failure(_key(key, name), cause)
        return [Outcome(name, False, duration, error=cause) for name in names]
    if parts:
        # The families go with the first part's outcome: a scrape exposes every outcome's families.
        outcomes = [_outcome(failures, _key(key, p.name), p.name, p.duration, p.errors) for p in parts]
        outcomes[0].metrics = metrics
        return outcomes
    duration = fetched.duration + time.perf_counter() - start
    return [_outcome(failures, key, collector.name, duration, errors, metrics)]


def _key(key: tuple[str, ...], name: str) -> tuple[str, ...]:
    return (key[0], name, *key[2:])


def _outcome(
    failures: FailureLog,
    key: tuple[str, ...],
    name: str,
    duration: float,
    errors: Sequence[str],
    metrics: list[Metric] | None = None,
) -> Outcome:
    if errors:
        cause = "; ".join(errors)
        failures.failure(key, cause)
        return Outcome(name, False, duration, metrics or [], cause)
    failures.success(key)
    return Outcome(name, True, duration, metrics or [])


class _Lines(Metric):
    """A family merged from parts that are all given as text lines (``text_chunks``): the
    lines are joined, and samples are read from the parts only where something asks for them."""

    def __init__(self, parts: Sequence[Metric]) -> None:
        first = parts[0]
        super().__init__(first.name, first.documentation, first.type, first.unit)
        self.parts = list(parts)
        self.text_chunks = [chunk for part in parts for chunk in part.text_chunks]  # type: ignore[attr-defined]

    @property
    def samples(self) -> list[Any]:
        return [s for part in self.parts for s in part.samples]

    @samples.setter
    def samples(self, value: list[Any]) -> None:
        if value:  # Metric.__init__ sets it empty; the parts give the rest
            raise AttributeError("merged text families read their samples from their parts")


def _merged(parts: Sequence[Metric]) -> Metric:
    rows = [p for p in parts if isinstance(p, Family)]
    if len(rows) == len(parts) and all(p.labelnames == rows[0].labelnames for p in rows):
        return Family.merged(rows)
    if all(getattr(part, "text_chunks", None) is not None for part in parts):
        return _Lines(parts)
    merged = Metric(parts[0].name, parts[0].documentation, parts[0].type, parts[0].unit)
    merged.samples = [s for part in parts for s in part.samples]
    return merged


class Scrape:
    """A one-shot registry: the metrics of one scrape or probe, ready for exposition."""

    def __init__(self, exporter: str, outcomes: Sequence[Outcome], extra: Iterable[Metric] = ()) -> None:
        self.exporter = exporter
        self.outcomes = list(outcomes)
        self.extra = list(extra)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, list[Metric]] = {}
        for outcome in self.outcomes:
            for metric in outcome.metrics:
                families.setdefault(metric.name, []).append(metric)
        for parts in families.values():
            if len(parts) == 1:
                yield parts[0]
                continue
            # Several collectors (one per GPU, say) may emit the same family: expose it once.
            yield _merged(parts)
        yield from self.extra
        success = COLLECTOR_SUCCESS.family()
        duration = COLLECTOR_DURATION.family()
        for outcome in self.outcomes:
            success.add_metric([self.exporter, outcome.collector], 1.0 if outcome.success else 0.0)
            duration.add_metric([self.exporter, outcome.collector], outcome.duration)
        yield success
        yield duration


async def run_collectors(
    exporter: str,
    collectors: Sequence[Collector[Any]],
    deadline: Deadline,
    failures: FailureLog,
    target: str | None = None,
) -> list[Outcome]:
    """Fetch every collector concurrently under ``deadline``, then render them all.

    Rendering starts only when every fetch has finished, so a render may use what another
    collector fetched in the same scrape (the GPU exporter's dcgm labels come from its job and pod
    collectors).  One outcome per collector (one per part for a ``Parts`` snapshot), in order.
    """
    keys = [(exporter, c.name) + ((target,) if target else ()) for c in collectors]
    # Collectors that never wait run first, in place; then the others concurrently.
    inline = {id(c): await _fetch(c, deadline) for c in collectors if not c.waits}
    waiting = [c for c in collectors if c.waits]
    results = []
    if len(waiting) == 1:
        results = [await _fetch(waiting[0], deadline)]
    elif waiting:
        results = list(await asyncio.gather(*(_fetch(c, deadline) for c in waiting)))
    concurrent = iter(results)
    fetched = [next(concurrent) if c.waits else inline[id(c)] for c in collectors]
    return [o for c, f, k in zip(collectors, fetched, keys, strict=True) for o in _render(c, f, failures, k)]
