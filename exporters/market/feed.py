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
from .curve import Curve, day_bounds, local_day
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


class AreaFeed:
    """The curve of one area, kept current from a fallback chain of providers."""

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
        self.errors: Counter[tuple[str, str]] = Counter()
        self.next_refresh: datetime | None = None  # None: due now
        self._backoff: dict[str, _Backoff] = {}
        self._last_reason: dict[str, str] = {}
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

    def due(self, now: datetime) -> bool:
        return self.next_refresh is None or now >= self.next_refresh

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
                self._failed(self.store.name, exc)
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
            backoff = self._backoff.get(provider.name)
            if backoff and backoff.until and now < backoff.until:
                continue
            start = day_bounds(missing[0], self.timezone)[0]
            end = day_bounds(missing[-1], self.timezone)[1]
            attempted = True
            try:
                fresh = await provider.fetch(self.area, start, end)
            except NotPublished as exc:
                self.errors[(provider.name, exc.reason)] += 1
                log(
                    logger,
                    logging.DEBUG,
                    "not published",
                    area=self.area,
                    provider=provider.name,
                    cause=str(exc),
                )
                continue
            except ProviderError as exc:
                self._failed(provider.name, exc)
                continue
            except Exception as exc:  # a provider bug must not stop the feed
                self._failed(provider.name, ProviderError(f"{provider.name}: {type(exc).__name__}: {exc}"))
                logger.debug("provider raised", exc_info=exc)
                continue
            self._backoff.pop(provider.name, None)
            if self._last_reason.pop(provider.name, None) is not None:
                log(logger, logging.INFO, "fetch recovered", area=self.area, provider=provider.name)
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
        except ProviderError as exc:
            if isinstance(exc, NotPublished):
                self.errors[(self.load_provider.name, exc.reason)] += 1
            else:
                self._failed(self.load_provider.name, exc, remember=False)

    def _failed(self, provider: str, exc: ProviderError, remember: bool = True) -> None:
        self.errors[(provider, exc.reason)] += 1
        # Once per condition at warning level, not once per retry.
        level = logging.DEBUG if self._last_reason.get(provider) == exc.reason else logging.WARNING
        self._last_reason[provider] = exc.reason
        log(
            logger,
            level,
            "fetch failed",
            area=self.area,
            provider=provider,
            reason=exc.reason,
            cause=str(exc),
        )
        if not remember:
            return
        backoff = self._backoff.setdefault(provider, _Backoff())
        backoff.failures += 1
        delay = min(self.policy.retry_max, self.policy.retry_min * 2 ** (backoff.failures - 1))
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, 6 * 3600.0))
        backoff.until = self.clock() + timedelta(seconds=delay)

    def _schedule(self, now: datetime) -> datetime:
        today, tomorrow = self.days(now)
        midnight = day_bounds(tomorrow, self.timezone)[0]
        routine = now + timedelta(seconds=self.policy.interval)
        if not self.has_day(today):
            delay = min(self.policy.retry_max, self.policy.retry_min * 2 ** max(0, self._failed_rounds - 1))
            candidates = [now + timedelta(seconds=delay)]
        elif not self.has_day(tomorrow):
            published = self.policy.published_at(now)
            if now < published:
                candidates = [published]
            else:
                candidates = [now + timedelta(seconds=self.policy.pending_interval)]
        else:
            candidates = [routine]
        # Never before a provider's backoff ends, unless none is usable at all.
        waits = [b.until for b in self._backoff.values() if b.until and b.until > now]
        if waits and len(waits) >= len(self.providers):
            candidates = [max(candidates[0], min(waits))]
        return min([*candidates, midnight + timedelta(seconds=1)])

    # --- background loop ----------------------------------------------------------------

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
                    self.next_refresh = self.clock() + timedelta(seconds=self.policy.retry_min)
            await asyncio.sleep(tick)


class Market:
    """Every configured area's feed, the background refresh and the providers' lifetime."""

    def __init__(self, feeds: Sequence[AreaFeed], providers: Sequence[Provider], tick: float = 30.0) -> None:
        self.feeds = {feed.area: feed for feed in feeds}
        self.providers = list(providers)
        self.tick = tick
        self._tasks: list[asyncio.Task[None]] = []

    def ensure_running(self) -> None:
        """Start the refresh loops in the running event loop (idempotent)."""
        loop = asyncio.get_running_loop()
        running = {t.get_name(): t for t in self._tasks if not t.done()}
        for feed in self.feeds.values():
            name = f"market-{feed.area}"
            if name not in running:
                running[name] = loop.create_task(feed.run(self.tick), name=name)
        self._tasks = list(running.values())

    async def refresh_all(self) -> None:
        await asyncio.gather(*(feed.refresh() for feed in self.feeds.values()))

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
