"""The status page's own metrics (on its ``/metrics``): how its upstreams answer, how fresh it is.

powerplane_statuspage_source_up{source="prometheus"} 1
powerplane_statuspage_source_age_seconds{source="alertmanager"} 12.0
powerplane_statuspage_upstream_requests_total{source="prometheus"} 31
powerplane_statuspage_query_up{query="partition_nodes"} 1
powerplane_statuspage_refreshes_total{result="success"} 30
powerplane_statuspage_refresh_duration_seconds 0.021
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import Metric

from powerplane.exporters.runtime import Collector, Deadline
from powerplane.exporters.runtime.metrics import MetricSpec

from .page import StatusPage, query_counts

SOURCE_UP = MetricSpec(
    "powerplane_statuspage_source_up",
    "gauge",
    "Whether the last refresh read this source (prometheus, alertmanager, outages) without error.",
    ("source",),
)
SOURCE_AGE = MetricSpec(
    "powerplane_statuspage_source_age_seconds",
    "gauge",
    "Seconds since this source last answered (what the page shows is at least this old).",
    ("source",),
)
REQUESTS = MetricSpec(
    "powerplane_statuspage_upstream_requests_total",
    "counter",
    "HTTP requests sent to an upstream (prometheus, alertmanager); independent of the number of viewers.",
    ("source",),
)
QUERY_UP = MetricSpec(
    "powerplane_statuspage_query_up",
    "gauge",
    "Whether the configured query answered at the last refresh (1) or was refused (0).",
    ("query",),
)
REFRESHES = MetricSpec(
    "powerplane_statuspage_refreshes_total",
    "counter",
    "Refreshes of the page's data by result (success, failure: some source or query failed).",
    ("result",),
)
REFRESH_DURATION = MetricSpec(
    "powerplane_statuspage_refresh_duration_seconds",
    "gauge",
    "Duration of the last refresh (every upstream request of one interval).",
)
METRICS = (SOURCE_UP, SOURCE_AGE, REQUESTS, QUERY_UP, REFRESHES, REFRESH_DURATION)


@dataclass(frozen=True)
class PageState:
    now: float
    sources: tuple[tuple[str, bool, float | None], ...]
    requests: tuple[tuple[str, int], ...]
    queries: tuple[tuple[str, bool], ...]
    refreshes: tuple[tuple[str, int], ...]
    duration: float


class StatusPageCollector(Collector[PageState]):
    """Reads the page's counters and last snapshot (no upstream request)."""

    name = "statuspage"

    def __init__(self, page: StatusPage) -> None:
        self.page = page

    async def fetch(self, deadline: Deadline) -> PageState:
        page, snap = self.page, self.page.snapshot
        times: dict[str, float | None] = {}
        answered = [r.fetched_at for r in snap.queries.values() if r.fetched_at is not None]
        times["prometheus"] = max(answered) if answered else None
        for name, result in (("alertmanager", snap.alerts), ("outages", snap.announcements)):
            if result is not None:
                times[name] = result.fetched_at
        return PageState(
            now=page.clock(),
            sources=tuple((name, up, times.get(name)) for name, up in sorted(page.sources.items())),
            requests=tuple(sorted(query_counts(page).items())),
            queries=tuple((name, result.error is None) for name, result in sorted(snap.queries.items())),
            refreshes=tuple(sorted(page.refreshes.items())),
            duration=page.last_duration,
        )

    def render(self, snapshot: PageState) -> Iterable[Metric]:
        up, age, requests = SOURCE_UP.family(), SOURCE_AGE.family(), REQUESTS.family()
        for source, ok, fetched in snapshot.sources:
            up.add_metric([source], 1.0 if ok else 0.0)
            if fetched is not None:
                age.add_metric([source], max(0.0, snapshot.now - fetched))
        for source, count in snapshot.requests:
            requests.add_metric([source], float(count))
        queries, refreshes = QUERY_UP.family(), REFRESHES.family()
        for name, ok in snapshot.queries:
            queries.add_metric([name], 1.0 if ok else 0.0)
        for result, count in snapshot.refreshes:
            refreshes.add_metric([result], float(count))
        duration = REFRESH_DURATION.family()
        duration.add_metric([], snapshot.duration)
        return [up, age, requests, queries, refreshes, duration]
