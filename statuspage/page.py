"""The status page's data: one refresh per interval, however many viewers.

``StatusPage.current()`` returns the snapshot, refreshing it when it is older than
``refresh.data_seconds``.  Concurrent viewers share one refresh (single flight), and a failed
refresh counts as a refresh too, so an unreachable Prometheus is retried once per interval, not
once per viewer.  A query or source that fails keeps its last good answer with its old time:
the page goes on showing it, marked with its age, rather than going blank.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from powerplane.exporters.runtime import ConfigError, FailureLog

from .config import StatusPageConfig
from .model import Result, Snapshot
from .outages import Announcement, OutagesFile
from .queries import DEFAULTS, POWER_QUERIES, expand, filesystem_query_name
from .upstream import Alert, AlertmanagerClient, PrometheusClient, QueryError, Sample, UpstreamError

logger = logging.getLogger("powerplane.statuspage")
T = TypeVar("T")
Clock = Callable[[], float]


def configured_queries(config: StatusPageConfig) -> dict[str, str]:
    """name → PromQL of every query a refresh runs (``$today`` not yet expanded)."""
    overrides = dict(config.queries)
    queries = {
        name: overrides.get(name, expr)
        for name, expr in DEFAULTS.items()
        if config.power or name not in POWER_QUERIES
    }
    for system in config.systems:
        for i, fs in enumerate(system.filesystems):
            for what in ("check", "used_ratio"):
                expr = getattr(fs, what)
                if expr:
                    queries[filesystem_query_name(system.name, i, what)] = expr
    return queries


class StatusPage:
    """The cached snapshot and the refresh that renews it."""

    def __init__(
        self,
        config: StatusPageConfig,
        clock: Clock = time.time,
        prometheus: PrometheusClient | None = None,
        alertmanager: AlertmanagerClient | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.prometheus = prometheus or PrometheusClient(config.prometheus, config.max_series)
        self.alertmanager = alertmanager or (
            AlertmanagerClient(config.alertmanager) if config.alertmanager else None
        )
        self.outages = OutagesFile(config.outages_file) if config.outages_file else None
        self.queries = configured_queries(config)
        self.snapshot = Snapshot(0, 0.0)
        self.failures = FailureLog(logger)
        #: Refreshes by result, the last one's duration and each source's last outcome.
        self.refreshes = {"success": 0, "failure": 0}
        self.last_duration = 0.0
        self.sources: dict[str, bool] = {}
        self._refreshing: asyncio.Task[Snapshot] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def current(self) -> Snapshot:
        """The snapshot, refreshed first if it is older than the data interval."""
        snapshot = self.snapshot
        if snapshot.generation and self.clock() - snapshot.taken_at < self.config.data_seconds:
            return snapshot
        return await self.refresh()

    async def refresh(self) -> Snapshot:
        """Refresh now, or join the refresh already running."""
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(self._done)
        # A viewer that goes away does not cancel the refresh the others wait for.
        return await asyncio.shield(self._refreshing)

    def _done(self, _task: asyncio.Task[Snapshot]) -> None:
        self._refreshing = None

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        await self.prometheus.close()
        if self.alertmanager is not None:
            await self.alertmanager.close()

    async def _refresh(self) -> Snapshot:
        started = time.monotonic()
        now = self.clock()
        previous = self.snapshot
        queries, alerts, announcements = await asyncio.gather(
            self._queries(previous, now), self._alerts(previous, now), self._announcements(previous, now)
        )
        snapshot = Snapshot(previous.generation + 1, now, queries, alerts, announcements)
        failed = any(r.error for r in queries.values()) or any(
            r is not None and r.error for r in (alerts, announcements)
        )
        self.refreshes["failure" if failed else "success"] += 1
        self.last_duration = time.monotonic() - started
        self.snapshot = snapshot
        return snapshot

    def _outcome(self, source: str, error: str | None, key: str = "") -> None:
        fkey = ("statuspage", source, key) if key else ("statuspage", source)
        if error is None:
            self.failures.success(fkey)
        else:
            self.failures.failure(fkey, error)

    async def _queries(self, previous: Snapshot, now: float) -> dict[str, Result[tuple[Sample, ...]]]:
        moment = datetime.fromtimestamp(now, UTC)
        exprs = {name: expand(expr, moment, self.config.zone) for name, expr in self.queries.items()}
        old = previous.queries
        try:
            answers = await self.prometheus.query_batch(exprs, now)
        except UpstreamError as exc:
            self.sources["prometheus"] = False
            self._outcome("prometheus", str(exc))
            return {name: _failed(old.get(name), str(exc)) for name in exprs}
        self.sources["prometheus"] = True
        self._outcome("prometheus", None)
        results: dict[str, Result[tuple[Sample, ...]]] = {}
        for name in exprs:
            answer = answers.get(name, QueryError("no answer"))
            if isinstance(answer, QueryError):
                self._outcome("prometheus", f"query {name}: {answer}", name)
                results[name] = _failed(old.get(name), f"query {name}: {answer}")
            else:
                self._outcome("prometheus", None, name)
                results[name] = Result(tuple(answer), now)
        return results

    async def _alerts(self, previous: Snapshot, now: float) -> Result[tuple[Alert, ...]] | None:
        client = self.alertmanager
        if client is None:
            return None
        return await self._source("alertmanager", client.public_alerts, previous.alerts, now)

    async def _announcements(self, previous: Snapshot, now: float) -> Result[tuple[Announcement, ...]] | None:
        outages = self.outages
        if outages is None:
            return None

        async def load() -> tuple[Announcement, ...]:
            return await asyncio.to_thread(outages.load)

        return await self._source("outages", load, previous.announcements, now)

    async def _source(
        self,
        name: str,
        fetch: Callable[[], Awaitable[Any]],
        old: Result[Any] | None,
        now: float,
    ) -> Result[Any]:
        try:
            value = tuple(await fetch())
        except (UpstreamError, ConfigError) as exc:
            cause = str(exc).replace("\n", "; ")
            self.sources[name] = False
            self._outcome(name, cause)
            return _failed(old, cause)
        self.sources[name] = True
        self._outcome(name, None)
        return Result(value, now)


def _failed(old: Result[T] | None, error: str) -> Result[T]:
    """The last good answer kept, with its own time, and the current error."""
    if old is None:
        return Result(None, None, error)
    return Result(old.value, old.fetched_at, error)


def query_counts(page: StatusPage) -> Mapping[str, int]:
    """Requests each upstream has received from this page."""
    counts = {"prometheus": page.prometheus.requests}
    if page.alertmanager is not None:
        counts["alertmanager"] = page.alertmanager.requests
    return counts
