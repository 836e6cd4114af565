"""From what the upstreams answered to what the page shows: one document for HTML and JSON.

``Snapshot`` is what a refresh gathered (each query's samples with the time they were fetched,
the public alerts, the announcements).  ``document(config, snapshot, now)`` turns it into a
plain, JSON-ready dict; the HTML templates render that same dict, so the page and
``/api/v1/status`` always say the same thing.  Nothing here does I/O and nothing here reads a
label the config did not ask for: user names never reach this module (Prometheus counts users
before answering), and an alert contributes only its name, summary, severity, system and start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from .config import Filesystem, StatusPageConfig, System
from .outages import Announcement
from .queries import LABELS, POWER_QUERIES, filesystem_query_name
from .upstream import Alert, Sample

T = TypeVar("T")

#: Which queries (and sources) each section of a system is built from.
SECTIONS: dict[str, tuple[str, ...]] = {
    "availability": ("partition_nodes", "login_up", "login_load", "login_cpus", "login_users"),
    "utilisation": (
        "partition_jobs",
        "partition_users",
        "partition_cpu_ratio",
        "partition_gpu_ratio",
        "partition_memory_ratio",
    ),
    "filesystems": ("fs_size", "fs_avail", "fs_readonly", "fs_error"),
    "outages": ("reservations", "reservation_start", "reservation_end"),
    "power": tuple(sorted(POWER_QUERIES)),
}
#: Sources other than Prometheus queries, by the section they feed.
ALERTS, ANNOUNCEMENTS = "alertmanager", "outages"


@dataclass(frozen=True)
class Result(Generic[T]):
    """The last good answer of one query or source, when it came, and the current error."""

    value: T | None = None
    fetched_at: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Snapshot:
    generation: int
    taken_at: float
    queries: Mapping[str, Result[tuple[Sample, ...]]] = field(default_factory=dict)
    alerts: Result[tuple[Alert, ...]] | None = None
    announcements: Result[tuple[Announcement, ...]] | None = None


def iso(ts: float | datetime | None) -> str | None:
    if ts is None:
        return None
    moment = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Series:
    """One system's view of the snapshot's query results."""

    def __init__(self, snapshot: Snapshot, system: System) -> None:
        self.snapshot = snapshot
        self.system = system

    def samples(self, name: str) -> list[Sample]:
        result = self.snapshot.queries.get(name)
        if result is None or result.value is None:
            return []
        # Queries grouped by cluster answer for every system; the others (node_exporter series,
        # a filesystem's own check) are picked out by the labels the config names.
        if LABELS.get(name, ())[:1] == ("cluster",):
            return [s for s in result.value if s.labels.get("cluster", "") == self.system.cluster]
        return list(result.value)

    def by(self, name: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {tuple(s.labels.get(k, "") for k in labels): s.value for s in self.samples(name)}


def _ratio(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else min(1.0, max(0.0, value))


def _partitions(config: StatusPageConfig, series: _Series) -> list[dict[str, Any]]:
    nodes = series.by("partition_nodes", "partition", "state")
    jobs = series.by("partition_jobs", "partition", "state")
    users = series.by("partition_users", "partition")
    ratios = {k: series.by(f"partition_{k}_ratio", "partition") for k in ("cpu", "gpu", "memory")}
    seen = sorted({p for p, _ in nodes} | {p for p, _ in jobs} | {p for (p,) in users})
    names = list(series.system.partitions) or [p for p in seen if p]
    out = []
    for name in names:
        counts = dict.fromkeys(("available", "down", "drained", "reserved", "other"), 0)
        for (partition, state), count in nodes.items():
            if partition == name:
                counts[config.node_classes.classify(state)] += int(count)
        known = any(p == name for p, _ in nodes)
        out.append(
            {
                "name": name,
                "nodes": {"total": sum(counts.values()), **counts} if known else None,
                "jobs": {
                    state: int(jobs[(name, state)]) if (name, state) in jobs else None
                    for state in ("running", "pending")
                },
                "users": int(users[(name,)]) if (name,) in users else None,
                "utilisation": {k: _ratio(v.get((name,))) for k, v in ratios.items()},
            }
        )
    return out


def _login_nodes(series: _Series) -> list[dict[str, Any]]:
    values = {q: series.by(q, "instance") for q in ("login_up", "login_load", "login_cpus", "login_users")}

    def get(query: str, node: str) -> float | None:
        return values[query].get((node,))

    out = []
    for node in series.system.login_nodes:
        up, cpus, users = get("login_up", node), get("login_cpus", node), get("login_users", node)
        out.append(
            {
                "name": node,
                "up": None if up is None else up >= 1,
                "load1": get("login_load", node),
                "cpus": None if cpus is None else int(cpus),
                "users": None if users is None else int(users),
            }
        )
    return out


def _filesystem(series: _Series, index: int, fs: Filesystem) -> dict[str, Any]:
    if fs.check is not None:
        check = series.samples(filesystem_query_name(series.system.name, index, "check"))
        used = series.samples(filesystem_query_name(series.system.name, index, "used_ratio"))
        status = "unknown" if not check else ("ok" if min(s.value for s in check) >= 1 else "down")
        return {
            "name": fs.name,
            "status": status,
            "used_ratio": _ratio(max(s.value for s in used)) if used else None,
            "size_bytes": None,
            "avail_bytes": None,
        }
    key = (fs.instance or "", fs.mountpoint or "")
    size = series.by("fs_size", "instance", "mountpoint").get(key)
    avail = series.by("fs_avail", "instance", "mountpoint").get(key)
    readonly = series.by("fs_readonly", "instance", "mountpoint").get(key)
    error = series.by("fs_error", "instance", "mountpoint").get(key)
    if error is not None and error >= 1:
        status = "down"
    elif size is None:
        status = "unknown"
    elif readonly is not None and readonly >= 1:
        status = "degraded"
    else:
        status = "ok"
    ratio = 1 - avail / size if size and avail is not None else None
    return {
        "name": fs.name,
        "status": status,
        "used_ratio": _ratio(ratio),
        "size_bytes": size,
        "avail_bytes": avail,
    }


def _event(
    kind: str,
    title: str,
    severity: str,
    start: datetime | float | None,
    end: datetime | float | None,
    systems: Sequence[str],
    now: datetime,
    description: str = "",
    url: str | None = None,
) -> dict[str, Any]:
    begin = start if isinstance(start, datetime) or start is None else datetime.fromtimestamp(start, UTC)
    finish = end if isinstance(end, datetime) or end is None else datetime.fromtimestamp(end, UTC)
    return {
        "kind": kind,
        "title": title,
        "severity": severity,
        "start": iso(begin),
        "end": iso(finish),
        "active": (begin is None or begin <= now) and (finish is None or finish > now),
        "systems": list(systems),
        "description": description,
        "url": url,
    }


def reservations(config: StatusPageConfig, snapshot: Snapshot, now: datetime) -> list[dict[str, Any]]:
    """Maintenance reservations not yet over, for every system, soonest first."""
    out = []
    for system in config.systems:
        series = _Series(snapshot, system)
        starts = series.by("reservation_start", "reservation")
        ends = series.by("reservation_end", "reservation")
        for sample in series.samples("reservations"):
            name = sample.labels.get("reservation", "")
            start, end = starts.get((name,)), ends.get((name,))
            if end is not None and end <= now.timestamp():
                continue
            partition = sample.labels.get("partition", "")
            where = f"partition {partition}" if partition else "reserved nodes"
            label = f" ({name})" if config.show_reservation_names and name else ""
            event = _event(
                "reservation", f"Maintenance: {where}{label}", "maintenance", start, end, [system.name], now
            )
            event["partition"] = partition or None
            out.append(event)
    return sorted(out, key=lambda e: (e["start"] or "", e["title"]))


def outages(config: StatusPageConfig, snapshot: Snapshot, now: datetime) -> list[dict[str, Any]]:
    """Public alerts, announcements that have not ended and maintenance reservations."""
    known = {s.cluster: s.name for s in config.systems}
    every = [s.name for s in config.systems]
    events = []
    for alert in snapshot.alerts.value or () if snapshot.alerts else ():
        systems = [known[alert.system]] if alert.system in known else every
        events.append(_event("alert", alert.summary, alert.severity, alert.starts_at, None, systems, now))
    for item in snapshot.announcements.value or () if snapshot.announcements else ():
        if item.ended(now):
            continue
        systems = [s for s in every if item.applies_to(s)]
        events.append(
            _event(
                "announcement",
                item.title,
                item.severity,
                item.start,
                item.end,
                systems,
                now,
                item.description,
                item.url,
            )
        )
    events.extend(reservations(config, snapshot, now))
    order = ("critical", "warning", "maintenance", "info")
    return sorted(events, key=lambda e: (not e["active"], order.index(e["severity"]), e["start"] or ""))


def _section(
    config: StatusPageConfig,
    snapshot: Snapshot,
    results: Iterable[Result[Any] | None],
    has_data: bool,
    now: float,
) -> dict[str, Any]:
    answered = [r for r in results if r is not None]
    times = [r.fetched_at for r in answered if r.fetched_at is not None]
    updated = min(times) if times else None
    age = None if updated is None else max(0.0, now - updated)
    if updated is None or not has_data:
        freshness = "no_data"
    elif age is not None and age >= config.critical_seconds:
        freshness = "critical"
    elif age is not None and age >= config.warning_seconds:
        freshness = "warning"
    else:
        freshness = "fresh"
    return {
        "updated": iso(updated),
        "age_seconds": None if age is None else round(age),
        "freshness": freshness,
        "error": any(r.error for r in answered) or not answered,
    }


def _status(system: dict[str, Any]) -> str:
    sections = system["sections"]
    if all(sections[k]["freshness"] == "no_data" for k in ("availability", "utilisation", "filesystems")):
        return "no_data"
    active = [e["severity"] for e in system["outages"] if e["active"]]
    logins = [n["up"] for n in system["login_nodes"] if n["up"] is not None]
    nodes = [p["nodes"] for p in system["partitions"] if p["nodes"]]
    if "critical" in active or (logins and not any(logins)):
        return "down"
    if nodes and sum(n["total"] for n in nodes) > 0 and sum(n["available"] for n in nodes) == 0:
        return "down"
    if "maintenance" in active:
        return "maintenance"
    if "warning" in active or (logins and not all(logins)):
        return "degraded"
    if any(fs["status"] in ("down", "degraded") for fs in system["filesystems"]):
        return "degraded"
    return "up"


def system_document(
    config: StatusPageConfig, snapshot: Snapshot, system: System, events: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    series = _Series(snapshot, system)
    q = snapshot.queries.get
    partitions = _partitions(config, series)
    logins = _login_nodes(series)
    filesystems = [_filesystem(series, i, fs) for i, fs in enumerate(system.filesystems)]
    fs_queries = [
        filesystem_query_name(system.name, i, what)
        for i, fs in enumerate(system.filesystems)
        for what in ("check", "used_ratio")
        if getattr(fs, what)
    ]
    power_on = config.power and system.power
    power = {k: (series.samples(k)[0].value if series.samples(k) else None) for k in sorted(POWER_QUERIES)}
    ts = now.timestamp()
    utilisation = any(
        p["users"] is not None
        or any(v is not None for v in (*p["jobs"].values(), *p["utilisation"].values()))
        for p in partitions
    )
    sections = {
        "availability": _section(
            config,
            snapshot,
            map(q, SECTIONS["availability"]),
            any(p["nodes"] for p in partitions) or any(n["up"] is not None for n in logins),
            ts,
        ),
        "utilisation": _section(config, snapshot, map(q, SECTIONS["utilisation"]), utilisation, ts),
        "filesystems": _section(
            config,
            snapshot,
            [*map(q, SECTIONS["filesystems"]), *map(q, fs_queries)],
            any(fs["status"] != "unknown" for fs in filesystems),
            ts,
        ),
        "outages": _section(
            config,
            snapshot,
            [*map(q, SECTIONS["outages"]), snapshot.alerts, snapshot.announcements],
            True,
            ts,
        ),
    }
    if power_on:
        sections["power"] = _section(
            config, snapshot, map(q, SECTIONS["power"]), any(v is not None for v in power.values()), ts
        )
    doc: dict[str, Any] = {
        "name": system.name,
        "title": system.title,
        "description": system.description,
        "sections": sections,
        "login_nodes": logins,
        "login_summary": {
            "up": sum(1 for n in logins if n["up"]),
            "known": sum(1 for n in logins if n["up"] is not None),
            "total": len(logins),
        },
        "partitions": partitions,
        "filesystems": filesystems,
        "outages": [e for e in events if system.name in e["systems"]],
        "power": (
            {
                "watts": power["power_watts"],
                "energy_today_joules": power["energy_today_joules"],
                "cost_today": power["cost_today"],
                "currency": config.currency,
            }
            if power_on
            else None
        ),
    }
    doc["status"] = _status(doc)
    return doc


def document(config: StatusPageConfig, snapshot: Snapshot, now: datetime) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data (``/api/v1/status``)."""
    events = outages(config, snapshot, now)
    return {
        "title": config.title,
        "generated_at": iso(now),
        "data_generation": snapshot.generation,
        "refresh_seconds": config.page_seconds,
        "staleness": {"warning_seconds": config.warning_seconds, "critical_seconds": config.critical_seconds},
        "systems": [system_document(config, snapshot, s, events, now) for s in config.systems],
        "outages": events,
        "reservations": [e for e in events if e["kind"] == "reservation"],
    }
