"""Keeping each area's curve current: fallback across providers, a schedule, backoff, the store.

An ``AreaFeed`` holds the curve of one area for today and tomorrow (local delivery days).  A
refresh round asks the providers in the configured order for the days still missing (the
store first, when configured) and stops at the first that completes them; a provider that
failed is skipped until its backoff has passed (doubling from ``retry_min`` to
``retry_max``, or the server's Retry-After).  Rounds run:

- at start-up, and with backoff while today is incomplete;
- at the publication time (13:00 Europe/Berlin by default) and every ``pending_interval``
  after it while tomorrow is still missing;
- every ``interval`` otherwise (a few times a day), re-reading both days so that a corrected
  publication is picked up, and at local midnight.

A ``CarbonFeed`` holds one area's grid carbon intensity from its own provider chain, with the
same backoff and error accounting (``ProviderHealth``, ``fetch_from``): a round every
``interval`` (15 min) asks for the local day so far through tomorrow and keeps the first answer
with a current value (``current_period``).

Scrapes never trigger a fetch: they read what the feed has (the metric help says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..runtime import log
from .curve import Curve, Period, day_bounds, format_utc, local_day
from .entsoe import EntsoeProvider
from .files import CsvStore
from .provider import LoadForecast, NotPublished, Provider, ProviderError

logger = logging.getLogger("powerplane.market")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RefreshPolicy:
    """When rounds run (seconds unless said otherwise)."""

    #: Local "HH:MM" in ``publication_timezone`` after which tomorrow's prices are expected.
    publication: str = "13:00"
    publication_timezone: str = "Europe/Berlin"
    interval: float = 6 * 3600.0
    pending_interval: float = 15 * 60.0
    retry_min: float = 60.0
    retry_max: float = 3600.0

    def published_at(self, now: datetime) -> datetime:
        """Today's publication instant (UTC) in the publication time zone."""
        zone = ZoneInfo(self.publication_timezone)
        hh, mm = (int(x) for x in self.publication.split(":"))
        return datetime.combine(local_day(now, zone), time(hh, mm), zone).astimezone(UTC)


@dataclass
class _Backoff:
    failures: int = 0
    until: datetime | None = None


class ProviderHealth:
    """One feed's view of its providers: backoff, error counters, once-per-condition logging.

    A failed provider is skipped until its backoff has passed (doubling from ``retry_min`` to
    ``retry_max``, or longer when the server sent Retry-After); each failure counts under its
    reason (the ``fetch_errors_total`` metrics); a warning is logged when a provider starts
    failing or fails differently, and one info line when it recovers.
    """

    def __init__(
        self, area: str, retry_min: float, retry_max: float, clock: Clock, **log_fields: str
    ) -> None:
        self.area = area
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.clock = clock
        self.log_fields = log_fields
        self.errors: Counter[tuple[str, str]] = Counter()
        self._backoff: dict[str, _Backoff] = {}
        self._last_reason: dict[str, str] = {}

    def ready(self, provider: str, now: datetime) -> bool:
        backoff = self._backoff.get(provider)
        return not (backoff and backoff.until and now < backoff.until)

    def waits(self, now: datetime) -> list[datetime]:
        """When the providers now backing off may be asked again."""
        return [b.until for b in self._backoff.values() if b.until and b.until > now]

    def not_published(self, provider: str, exc: ProviderError) -> None:
        self.errors[(provider, exc.reason)] += 1
        log(
            logger,
            logging.DEBUG,
            "not published",
            area=self.area,
            **self.log_fields,
            provider=provider,
            cause=str(exc),
        )

    def succeeded(self, provider: str) -> None:
        self._backoff.pop(provider, None)
        if self._last_reason.pop(provider, None) is not None:
            log(logger, logging.INFO, "fetch recovered", area=self.area, **self.log_fields, provider=provider)

    def failed(self, provider: str, exc: ProviderError, remember: bool = True) -> None:
        """Count and log a failure; with ``remember``, back the provider off."""
        self.errors[(provider, exc.reason)] += 1
        # Once per condition at warning level, not once per retry.
        level = logging.DEBUG if self._last_reason.get(provider) == exc.reason else logging.WARNING
        self._last_reason[provider] = exc.reason
        log(
            logger,
            level,
            "fetch failed",
            area=self.area,
            **self.log_fields,
            provider=provider,
            reason=exc.reason,
            cause=str(exc),
        )
        if not remember:
            return
        backoff = self._backoff.setdefault(provider, _Backoff())
        backoff.failures += 1
        delay = min(self.retry_max, self.retry_min * 2 ** (backoff.failures - 1))
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, 6 * 3600.0))
        backoff.until = self.clock() + timedelta(seconds=delay)

    def retry_delay(self, failed_rounds: int) -> float:
        """Seconds before the next round after ``failed_rounds`` rounds without data."""
        return float(min(self.retry_max, self.retry_min * 2.0 ** max(0, failed_rounds - 1)))

    def not_before(self, candidate: datetime, now: datetime, providers: int) -> datetime:
        """``candidate``, or later when every provider is backing off (none could answer)."""
        waits = self.waits(now)
        if waits and len(waits) >= providers:
            return max(candidate, min(waits))
        return candidate


async def fetch_from(
    health: ProviderHealth, provider: Provider, area: str, start: datetime, end: datetime
) -> Curve | None:
    """One provider's answer for [start, end), or None (the failure counted, logged, backed off)."""
    try:
        fresh = await provider.fetch(area, start, end)
    except NotPublished as exc:
        health.not_published(provider.name, exc)
        return None
    except ProviderError as exc:
        health.failed(provider.name, exc)
        return None
    except Exception as exc:  # a provider bug must not stop the feed
        health.failed(provider.name, ProviderError(f"{provider.name}: {type(exc).__name__}: {exc}"))
        logger.debug("provider raised", exc_info=exc)
        return None
    health.succeeded(provider.name)
    return fresh


class Feed:
    """A curve kept current in the background: ``refresh`` whenever due, until cancelled."""

    area: str
    clock: Clock
    next_refresh: datetime | None
    health: ProviderHealth

    def due(self, now: datetime) -> bool:
        return self.next_refresh is None or now >= self.next_refresh

    async def refresh(self) -> None:
        raise NotImplementedError

    async def run(self, tick: float = 30.0) -> None:
        """Refresh whenever due, until cancelled."""
        while True:
            if self.due(self.clock()):
                try:
                    await self.refresh()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep the loop alive whatever a round does
                    log(logger, logging.ERROR, "refresh round failed", area=self.area, cause=repr(exc))
                    self.next_refresh = self.clock() + timedelta(seconds=self.health.retry_min)
            await asyncio.sleep(tick)


@dataclass(frozen=True)
class FeedState:
    """An immutable view of a feed for one scrape."""

    area: str
    timezone: ZoneInfo
    curve: Curve
    fetched_at: datetime | None
    errors: dict[tuple[str, str], int]
    providers: tuple[str, ...]
    load: LoadForecast | None


class AreaFeed(Feed):
    """The price curve of one area, kept current from a fallback chain of providers."""

    def __init__(
        self,
        area: str,
        timezone: ZoneInfo,
        providers: Sequence[Provider],
        store: CsvStore | None = None,
        policy: RefreshPolicy | None = None,
        clock: Clock = system_clock,
        load_provider: EntsoeProvider | None = None,
    ) -> None:
        self.area = area
        self.timezone = timezone
        self.providers = [p for p in providers if p.supports(area)]
        self.store = store
        self.policy = policy or RefreshPolicy()
        self.clock = clock
        self.load_provider = load_provider
        self.curve = Curve(area)
        self.load: LoadForecast | None = None
        self.health = ProviderHealth(area, self.policy.retry_min, self.policy.retry_max, clock)
        self.errors = self.health.errors
        self.next_refresh: datetime | None = None  # None: due now
        self._last_full: datetime | None = None
        self._failed_rounds = 0
        self._lock = asyncio.Lock()

    # --- state --------------------------------------------------------------------------

    def days(self, now: datetime) -> tuple[date, date]:
        today = local_day(now, self.timezone)
        return today, today + timedelta(days=1)

    def has_day(self, day: date) -> bool:
        return self.curve.has_day(day, self.timezone)

    def state(self) -> FeedState:
        return FeedState(
            self.area,
            self.timezone,
            self.curve,
            self.curve.fetched_at,
            dict(self.errors),
            tuple(p.name for p in self.providers),
            self.load,
        )

    # --- one round ----------------------------------------------------------------------

    async def refresh(self, full: bool | None = None) -> None:
        """One round: fill missing days (or all, on the routine refresh); schedule the next."""
        async with self._lock:
            now = self.clock()
            today, tomorrow = self.days(now)
            if full is None:
                full = self._last_full is not None and (now - self._last_full).total_seconds() >= (
                    self.policy.interval
                )
            # Keep only today onwards: yesterday is of no use to any metric.
            self.curve = self.curve.slice(
                day_bounds(today, self.timezone)[0], datetime.max.replace(tzinfo=UTC)
            )
            if self.store is not None:
                self._read_store((today, tomorrow))
            missing = [d for d in (today, tomorrow) if not self.has_day(d)]
            if missing:
                await self._fetch_days(missing, now, self.providers)
            elif full:
                # Re-read both days for corrections, but only from providers the chain prefers
                # at least as much as the current source: a static fallback never overwrites
                # published prices.
                await self._fetch_days([today, tomorrow], now, self._preferred())
            if self.has_day(today) and self.has_day(tomorrow) and (full or self._last_full is None):
                self._last_full = now
            if self.load_provider is not None and (
                full or self.load is None or self.load.peak(*day_bounds(tomorrow, self.timezone)) is None
            ):
                await self._fetch_load(today, tomorrow)
            self.next_refresh = self._schedule(now)

    def _read_store(self, days: Sequence[date]) -> None:
        assert self.store is not None
        for day in days:
            if self.has_day(day):
                continue
            try:
                stored = self.store.read_day(self.area, day)
            except ProviderError as exc:
                self.health.failed(self.store.name, exc)
                continue
            if stored and stored.has_day(day, self.timezone):
                self.curve = self.curve.merge(stored) if self.curve else stored

    def _preferred(self) -> list[Provider]:
        names = [p.name for p in self.providers]
        if self.curve.source not in names:
            return list(self.providers)
        return self.providers[: names.index(self.curve.source) + 1]

    async def _fetch_days(self, days: Sequence[date], now: datetime, providers: Sequence[Provider]) -> bool:
        missing = list(days)
        attempted = False
        for provider in providers:
            if not missing:
                break
            if not self.health.ready(provider.name, now):
                continue
            start = day_bounds(missing[0], self.timezone)[0]
            end = day_bounds(missing[-1], self.timezone)[1]
            attempted = True
            fresh = await fetch_from(self.health, provider, self.area, start, end)
            if fresh is None:
                continue
            # Fresh data replaces what was held for the same periods.
            self.curve = fresh.merge(self.curve) if self.curve else fresh
            # Stamped with the feed's clock: data age is measured on the same clock as "now".
            self.curve = Curve(self.area, self.curve.periods, fresh.source, self.clock())
            done = [d for d in missing if fresh.has_day(d, self.timezone)]
            for day in done:
                if self.store is not None and provider is not self.store:
                    try:
                        self.store.write_day(self.curve, day)
                    except OSError as exc:
                        log(logger, logging.WARNING, "cannot write store", area=self.area, cause=exc.strerror)
            missing = [d for d in missing if d not in done]
        ok = not missing
        if ok or self.has_day(days[0]):
            self._failed_rounds = 0
        elif attempted:  # a round skipped for backoff is not another failure
            self._failed_rounds += 1
        return ok

    async def _fetch_load(self, today: date, tomorrow: date) -> None:
        assert self.load_provider is not None
        start, end = day_bounds(today, self.timezone)[0], day_bounds(tomorrow, self.timezone)[1]
        try:
            self.load = await self.load_provider.fetch_load(self.area, start, end)
        except NotPublished as exc:
            self.health.not_published(self.load_provider.name, exc)
        except ProviderError as exc:
            self.health.failed(self.load_provider.name, exc, remember=False)

    def _schedule(self, now: datetime) -> datetime:
        today, tomorrow = self.days(now)
        midnight = day_bounds(tomorrow, self.timezone)[0]
        routine = now + timedelta(seconds=self.policy.interval)
        if not self.has_day(today):
            candidates = [now + timedelta(seconds=self.health.retry_delay(self._failed_rounds))]
        elif not self.has_day(tomorrow):
            published = self.policy.published_at(now)
            if now < published:
                candidates = [published]
            else:
                candidates = [now + timedelta(seconds=self.policy.pending_interval)]
        else:
            candidates = [routine]
        # Never before a provider's backoff ends, unless none is usable at all.
        candidate = self.health.not_before(candidates[0], now, len(self.providers))
        return min(candidate, midnight + timedelta(seconds=1))


@dataclass(frozen=True)
class CarbonPolicy:
    """When carbon rounds run and how old a value may be (seconds)."""

    #: Between rounds while the feed has a current value: actual generation is published
    #: every quarter-hour, an hour or so after real time.
    interval: float = 900.0
    #: A value older than this (its period ended that long ago) is no current value.
    max_age: float = 3 * 3600.0
    retry_min: float = 60.0
    retry_max: float = 3600.0


def current_period(curve: Curve, now: datetime, max_age: float) -> Period | None:
    """The period containing ``now``, else the newest one that ended within ``max_age``.

    Measured intensities lag real time (ENTSO-E publishes actual generation about an hour
    late), so "current" is the latest known value while it is recent enough; its age is
    exported beside it.
    """
    period = curve.period_at(now)
    if period is not None:
        return period
    ended = [p for p in curve.between(now - timedelta(seconds=max_age), now) if p.end <= now]
    return ended[-1] if ended else None


@dataclass(frozen=True)
class CarbonState:
    """An immutable view of a carbon feed for one scrape."""

    area: str
    timezone: ZoneInfo
    curve: Curve
    errors: dict[tuple[str, str], int]
    providers: tuple[str, ...]
    max_age: float

    def current(self, now: datetime) -> Period | None:
        return current_period(self.curve, now, self.max_age)


class CarbonFeed(Feed):
    """The grid carbon intensity of one area, from a fallback chain of providers.

    Each round asks the providers in order for the local day so far (at least ``max_age``
    back) through the end of tomorrow, and keeps the first answer that has a current value
    (``current_period``).  An answer without one (the source lags too far behind) counts as
    ``stale`` and the next provider is asked; if none has a current value the held curve is
    kept while it still has one.  Failed providers back off as in the price feed.
    """

    def __init__(
        self,
        area: str,
        timezone: ZoneInfo,
        providers: Sequence[Provider],
        policy: CarbonPolicy | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.area = area
        self.timezone = timezone
        self.providers = [p for p in providers if p.supports(area)]
        self.policy = policy or CarbonPolicy()
        self.clock = clock
        self.curve = Curve(area)
        self.health = ProviderHealth(
            area, self.policy.retry_min, self.policy.retry_max, clock, series="carbon"
        )
        self.errors = self.health.errors
        self.next_refresh: datetime | None = None
        self._failed_rounds = 0
        self._lock = asyncio.Lock()

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        today = local_day(now, self.timezone)
        start = min(day_bounds(today, self.timezone)[0], now - timedelta(seconds=self.policy.max_age))
        return start, day_bounds(today + timedelta(days=1), self.timezone)[1]

    def state(self) -> CarbonState:
        return CarbonState(
            self.area,
            self.timezone,
            self.curve,
            dict(self.errors),
            tuple(p.name for p in self.providers),
            self.policy.max_age,
        )

    async def refresh(self) -> None:
        """One round: the first provider with a current value wins; schedule the next round."""
        async with self._lock:
            now = self.clock()
            start, end = self.window(now)
            adopted = attempted = False
            candidate: Curve | None = None
            for provider in self.providers:
                if not self.health.ready(provider.name, now):
                    continue
                attempted = True
                fresh = await fetch_from(self.health, provider, self.area, start, end)
                if fresh is None:
                    continue
                curve = Curve(self.area, fresh.slice(start, end).periods, provider.name, self.clock())
                if current_period(curve, now, self.policy.max_age) is not None:
                    self.curve, adopted = curve, True
                    break
                newest = format_utc(curve.end) if curve.end else "nothing"
                self.health.failed(
                    provider.name,
                    ProviderError(f"{provider.name}: {self.area}: newest value ends {newest}", "stale"),
                    remember=False,
                )
                candidate = candidate or curve
            held = current_period(self.curve, now, self.policy.max_age) is not None
            if not adopted and not held and candidate is not None:
                self.curve = candidate  # no current value either way; the newer data serves the day
            self.curve = self.curve.slice(start, datetime.max.replace(tzinfo=UTC))
            if adopted or held:
                self._failed_rounds = 0
            elif attempted:
                self._failed_rounds += 1
            delay = (
                self.policy.interval
                if adopted
                else min(self.policy.interval, self.health.retry_delay(max(1, self._failed_rounds)))
            )
            self.next_refresh = self.health.not_before(
                now + timedelta(seconds=delay), now, len(self.providers)
            )


class Market:
    """Every configured area's price and carbon feeds, their refresh loops and the providers."""

    def __init__(
        self,
        feeds: Sequence[AreaFeed],
        providers: Sequence[Provider],
        tick: float = 30.0,
        carbon: Sequence[CarbonFeed] = (),
    ) -> None:
        self.feeds = {feed.area: feed for feed in feeds}
        self.carbon = {feed.area: feed for feed in carbon}
        self.providers = list(providers)
        self.tick = tick
        self._tasks: list[asyncio.Task[None]] = []

    def _all(self) -> list[tuple[str, Feed]]:
        return [(f"market-{a}", f) for a, f in self.feeds.items()] + [
            (f"carbon-{a}", f) for a, f in self.carbon.items()
        ]

    def ensure_running(self) -> None:
        """Start the refresh loops in the running event loop (idempotent)."""
        loop = asyncio.get_running_loop()
        running = {t.get_name(): t for t in self._tasks if not t.done()}
        for name, feed in self._all():
            if name not in running:
                running[name] = loop.create_task(feed.run(self.tick), name=name)
        self._tasks = list(running.values())

    async def refresh_all(self) -> None:
        await asyncio.gather(*(feed.refresh() for _name, feed in self._all()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for provider in self.providers:
            await provider.close()

    def states(self) -> list[FeedState]:
        return [feed.state() for feed in self.feeds.values()]

    def carbon_states(self) -> list[CarbonState]:
        return [feed.state() for feed in self.carbon.values()]
