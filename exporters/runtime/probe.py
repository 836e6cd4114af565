"""The multi-target ``/probe`` machinery shared by the Redfish and SNMP exporters.

An exporter implements ``Prober.resolve``: it turns ``target``, ``module`` and ``auth`` query
parameters into a ``ProbeJob`` or refuses them with ``ProbeRequestError`` (HTTP 400).  Only
targets named in the config or matching its allow-list may resolve (``targets.TargetPolicy``
does that for every exporter): the exporter must never be a way to make requests to arbitrary
hosts.

``ProbeRunner`` then runs the job under the scrape deadline with:

- coalescing: concurrent probes with the same key (target, module, auth) share one fetch, unless
  the fetch in flight was given less time than the probe has (a probe with a tiny scrape timeout
  never cuts the others short); a probe waits for a shared fetch no longer than its own deadline;
- a concurrency cap per device (``ProbeJob.device``) and one per process, taken in that order so
  that probes queueing for a busy device hold no process slot; a probe that has no slot by half
  its deadline answers at once, ``target_up 0`` with the reason (``powerplane_probes_not_started_total``);
- partial results: each collector succeeds or fails on its own;
- a fresh registry (``Scrape``) per probe with ``powerplane_target_up`` and the duration;
- failures logged once per target and condition, forgotten ``state_ttl`` after the target's
  last probe (``state.ExpiringMap``), like every other per-target state.

    powerplane_target_up{exporter="redfish"} 1.0
    powerplane_probe_duration_seconds{exporter="redfish"} 0.412
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import Metric

from .builtin import (
    DEVICE_STRINGS,
    PROBE_DURATION,
    PROBE_STATE,
    PROBES,
    PROBES_COALESCED,
    PROBES_IN_FLIGHT,
    PROBES_NOT_STARTED,
    TARGET_UP,
)
from .collector import Collector, Deadline, DeviceText, Outcome, Scrape, describe_error, run_collectors
from .logs import FailureLog
from .metrics import MetricSpec
from .state import DEFAULT_STATE_TTL, Clock, ExpiringMap, release_if_due

#: Seconds the whole probe may outlast its deadline, so per-collector timeouts win the race.
COLLECTOR_GRACE = 0.1
#: A fetch in flight may have been given this much less time than a probe that joins it (the
#: same scrape timeout, read a moment earlier).
JOIN_SLACK = 0.05


class ProbeRequestError(Exception):
    """A probe request the exporter refuses (unknown target, module or auth): HTTP 400."""


@dataclass(frozen=True)
class ProbeJob:
    """What one probe does: its collectors, its timeout and its keys."""

    target: str
    module: str
    timeout: float
    collectors: Sequence[Collector[Any]]
    #: Identity of the physical device, for the per-device concurrency cap.
    device: str = ""
    #: Everything that makes two probes interchangeable, for coalescing.
    key: Hashable = None
    #: An optional first step (connect, log in, discover); its failure means target_up 0.
    connect: Callable[[Deadline], Awaitable[None]] | None = field(default=None, compare=False)

    def coalesce_key(self) -> Hashable:
        return self.key if self.key is not None else (self.target, self.module)


class Prober(ABC):
    """The exporter side of ``/probe``."""

    exporter: str = "probe"
    #: Seconds the state of a target (here and in the runner) outlives its last probe.
    state_ttl: float = DEFAULT_STATE_TTL
    #: The clock state expiry reads (tests inject one).
    clock: Clock = time.monotonic

    def __init__(self, state_ttl: float = DEFAULT_STATE_TTL, clock: Clock | None = None) -> None:
        self.state_ttl = state_ttl
        self.clock = clock or time.monotonic
        #: Every string a device sends passes through this before it becomes a label value.
        self.text = DeviceText()

    @abstractmethod
    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        """Validate the request's parameters; raise ``ProbeRequestError`` to refuse it."""

    def state_size(self) -> int:
        """Entries of per-target state the prober holds now."""
        return 0

    def sweep(self) -> int:
        """Evict the state of targets unused for ``state_ttl``; the number evicted.

        Every access to an ``ExpiringMap`` evicts too; the runner also calls this now and then, so
        that the state of targets nobody probes any more is released even when no probe comes."""
        return 0

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions and connections (called once at shutdown)."""


class _Slots:
    """Named semaphores that disappear when nobody holds or waits for them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._sems: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        sem, users = self._sems.get(name) or (asyncio.Semaphore(self.size), 0)
        self._sems[name] = (sem, users + 1)
        try:
            async with sem:
                yield
        finally:
            sem, users = self._sems[name]
            if users <= 1:
                del self._sems[name]
            else:
                self._sems[name] = (sem, users - 1)


@dataclass
class _Fetch:
    """A fetch in flight and the time it was given, for probes that would join it."""

    task: asyncio.Task[Scrape]
    budget: float


class NotStarted(Exception):
    """A probe that found no free slot in time: it answers at once instead of at its deadline."""

    def __init__(self, reason: str, cause: str) -> None:
        super().__init__(cause)
        self.reason = reason


class ProbeRunner:
    """Runs probe jobs with coalescing, concurrency caps and deadlines."""

    def __init__(
        self,
        prober: Prober,
        registry: CollectorRegistry,
        max_concurrency: int = 512,
        per_device: int = 2,
    ) -> None:
        self.prober = prober
        logger = logging.getLogger(f"powerplane.{prober.exporter}")
        #: One failure log per target, so that forgetting a target forgets what it logged.
        self.failures: ExpiringMap[str, FailureLog] = ExpiringMap(prober.state_ttl, clock=prober.clock)
        self._new_log = lambda: FailureLog(logger)
        self._limits = (max_concurrency, per_device)
        self._process = asyncio.Semaphore(max_concurrency)
        self._devices = _Slots(per_device)
        self._inflight: dict[Hashable, _Fetch] = {}
        self._probes = _counter(PROBES, registry)
        self._coalesced = _counter(PROBES_COALESCED, registry)
        self._not_started = _counter(PROBES_NOT_STARTED, registry)
        self._active = Gauge(
            PROBES_IN_FLIGHT.name, PROBES_IN_FLIGHT.help, PROBES_IN_FLIGHT.labels, registry=registry
        )
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """The device strings the prober changed, and the per-target state held (``/metrics``)."""
        exporter = self.prober.exporter
        family = DEVICE_STRINGS.family()
        text = self.prober.text
        family.add_metric([exporter, "truncated"], text.truncated)
        family.add_metric([exporter, "invalid"], text.invalid)
        state = PROBE_STATE.family()
        state.add_metric([exporter], float(len(self.failures) + self.prober.state_size()))
        yield from (family, state)

    def sweep(self) -> int:
        """Evict what expired, here and in the prober; the number of entries evicted."""
        return self.failures.sweep() + self.prober.sweep()

    async def sweep_forever(self) -> None:
        """``sweep`` four times per TTL, until cancelled; after many evictions, release the memory."""
        while True:
            await asyncio.sleep(max(1.0, self.prober.state_ttl / 4))
            self.sweep()
            release_if_due()

    async def probe(self, job: ProbeJob, deadline: Deadline) -> Scrape:
        key = job.coalesce_key()
        budget = deadline.remaining()
        fetch = self._inflight.get(key)
        # Join a fetch in flight only if it was given at least this probe's time: a probe with a
        # tiny scrape timeout must not cut short the normal probes that arrive while it runs.
        if fetch is not None and fetch.budget + JOIN_SLACK >= budget:
            self._coalesced.labels(self.prober.exporter).inc()
        else:
            fetch = _Fetch(asyncio.ensure_future(self._run(job, deadline)), budget)
            self._inflight[key] = fetch  # later probes join the fetch with the most time
            fetch.task.add_done_callback(functools.partial(self._done, key, fetch))
        start = time.perf_counter()
        try:
            # shield: a client that hangs up must not cancel a fetch that others are waiting for;
            # and a joiner waits no longer than its own deadline.
            async with asyncio.timeout(deadline.remaining() + 2 * COLLECTOR_GRACE):
                scrape = await asyncio.shield(fetch.task)
        except TimeoutError:
            scrape = _failed(self.prober.exporter, job, "deadline exceeded", time.perf_counter() - start)
        self._probes.labels(self.prober.exporter, "up" if _is_up(scrape) else "down").inc()
        return scrape

    def _done(self, key: Hashable, fetch: _Fetch, _task: object) -> None:
        if self._inflight.get(key) is fetch:
            del self._inflight[key]

    async def _run(self, job: ProbeJob, deadline: Deadline) -> Scrape:
        start = time.perf_counter()
        exporter = self.prober.exporter
        failures = self.failures.get(job.target, self._new_log)
        connect = (exporter, "connect", job.target)
        try:
            async with contextlib.AsyncExitStack() as slots:
                await self._acquire(slots, job, deadline)
                outcomes, up = await self._fetch(job, deadline, failures)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the probe must answer with target_up 0
            if isinstance(exc, NotStarted):
                self._not_started.labels(exporter, exc.reason).inc()
            cause = describe_error(exc)
            failures.failure(connect, cause)
            return _failed(exporter, job, cause, time.perf_counter() - start)
        failures.success(connect)
        return Scrape(exporter, outcomes, _probe_metrics(exporter, up, time.perf_counter() - start))

    async def _acquire(self, slots: contextlib.AsyncExitStack, job: ProbeJob, deadline: Deadline) -> None:
        """A slot of the device, then one of the process, or ``NotStarted`` by half the deadline.

        The device's slot comes first, so probes queueing for a busy device hold no process slot:
        a device that hangs occupies its per-device share of the process, never all of it."""
        device = job.device or job.target
        start_by = time.monotonic() + deadline.remaining() / 2
        process, per_device = self._limits
        waits = (
            (self._devices.hold(device), "device_busy", f"{per_device} probes of {device} are in flight"),
            (self._process, "process_busy", f"the process's {process} probes in flight"),
        )
        for slot, reason, busy in waits:
            try:
                async with asyncio.timeout(max(0.0, start_by - time.monotonic())):
                    await slots.enter_async_context(slot)
            except TimeoutError:
                raise NotStarted(reason, f"not started: {busy} are the most it runs at once") from None

    async def _fetch(
        self, job: ProbeJob, deadline: Deadline, failures: FailureLog
    ) -> tuple[list[Outcome], bool]:
        exporter = self.prober.exporter
        # The outer bound is a little later than the deadline so that each collector's own
        # timeout (at the deadline) fires first: one hanging collector fails alone.
        async with asyncio.timeout(deadline.remaining() + COLLECTOR_GRACE):
            self._active.labels(exporter).inc()
            try:
                if job.connect is not None:
                    async with asyncio.timeout(deadline.remaining()):
                        await job.connect(deadline)
                outcomes = await run_collectors(exporter, job.collectors, deadline, failures, job.target)
            finally:
                self._active.labels(exporter).dec()
        return outcomes, any(o.success for o in outcomes) or not outcomes


def _counter(spec: MetricSpec, registry: CollectorRegistry) -> Counter:
    return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=registry)


def _failed(exporter: str, job: ProbeJob, cause: str, duration: float) -> Scrape:
    outcomes = [Outcome(c.name, False, 0.0, error=cause) for c in job.collectors]
    return Scrape(exporter, outcomes, _probe_metrics(exporter, False, duration))


def _is_up(scrape: Scrape) -> bool:
    for metric in scrape.extra:
        if metric.name == "powerplane_target_up":
            return bool(metric.samples and metric.samples[0].value)
    return False


def _probe_metrics(exporter: str, up: bool, duration: float) -> list[Metric]:
    up_family = TARGET_UP.family()
    up_family.add_metric([exporter], 1.0 if up else 0.0)
    duration_family = PROBE_DURATION.family()
    duration_family.add_metric([exporter], duration)
    return [up_family, duration_family]
