"""HTML from the status document: Jinja2 with autoescaping, every value escaped.

Rendered pages are cached per (view, data generation, minute): viewers between two refreshes
get the same bytes (and the same gzip), so a thousand viewers cost one render per view and
minute; ages ("4 min ago") are exact to the minute.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from .config import StatusPageConfig
from .model import Snapshot, document

STATIC = resources.files("powerplane.statuspage").joinpath("static")
STATUS_TEXT = {
    "up": "operational",
    "degraded": "degraded",
    "maintenance": "maintenance",
    "down": "outage",
    "no_data": "no data",
}
FS_TEXT = {"ok": "available", "degraded": "degraded (read-only)", "down": "unavailable", "unknown": "no data"}


@dataclass(frozen=True)
class Body:
    """A rendered answer and its gzip form."""

    data: bytes
    gzipped: bytes
    content_type: str


def _body(data: bytes, content_type: str) -> Body:
    return Body(data, gzip.compress(data, compresslevel=6, mtime=0), content_type)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return "just now"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min ago"
    hours = round(minutes / 60)
    return f"{hours} h ago" if hours < 48 else f"{round(hours / 24)} days ago"


def _scaled(value: float | None, units: tuple[tuple[float, str], ...], digits: int = 1) -> str:
    if value is None:
        return "—"
    for factor, unit in units:
        if abs(value) >= factor:
            return f"{value / factor:.{digits}f} {unit}"
    factor, unit = units[-1]
    return f"{value / factor:.{digits}f} {unit}"


def environment(config: StatusPageConfig) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("powerplane.statuspage", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    zone = config.zone

    def when(value: str | None) -> Markup:
        if value is None:
            return Markup("—")
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(zone)
        text = moment.strftime("%a %d %b %H:%M ") + (moment.tzname() or "")
        return Markup('<time datetime="{}">{}</time>').format(value, text)

    def level(value: float) -> str:
        if value >= config.critical_ratio:
            return "critical"
        return "warning" if value >= config.warning_ratio else "ok"

    env.globals.update(
        when=when,
        age=_age,
        level=level,
        warn=config.warning_ratio,
        crit=config.critical_ratio,
        tz_name=config.timezone,
        status_text=lambda s: STATUS_TEXT.get(s, s),
        fs_text=lambda s: FS_TEXT.get(s, s),
        percent=lambda v: f"{v * 100:.0f}\u00a0%",
        size=lambda v: _scaled(v, ((1 << 50, "PiB"), (1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"))),
        watts=lambda v: _scaled(v, ((1e6, "MW"), (1e3, "kW"), (1.0, "W"))),
        energy=lambda v: _scaled(v, ((3.6e12, "GWh"), (3.6e9, "MWh"), (3.6e6, "kWh"))),
        money=lambda v, currency: "—" if v is None else f"{v:,.2f} {currency}",
    )
    return env


class Renderer:
    """The document, its pages and its JSON for one snapshot, cached until the minute turns."""

    def __init__(self, config: StatusPageConfig) -> None:
        self.config = config
        self.env = environment(config)
        self._page = self.env.get_template("page.html")
        self._app = self.env.get_template("app.html")
        self._key: tuple[int, int] | None = None
        self._doc: dict[str, Any] = {}
        self._cache: dict[tuple[str, ...], Body] = {}
        #: Renders done (not served from the cache); the tests read it.
        self.renders = 0

    def _current(self, snapshot: Snapshot, now: datetime) -> dict[str, Any]:
        key = (snapshot.generation, int(now.timestamp() // 60))
        if key != self._key:
            # A new snapshot or minute: everything rendered before is out of date.
            self._key, self._cache = key, {}
            self._doc = document(self.config, snapshot, now)
        return self._doc

    def _cached(
        self, snapshot: Snapshot, now: datetime, key: tuple[str, ...], make: Callable[[dict[str, Any]], Body]
    ) -> Body:
        doc = self._current(snapshot, now)
        body = self._cache.get(key)
        if body is None:
            self.renders += 1
            body = self._cache[key] = make(doc)
        return body

    def page(self, snapshot: Snapshot, now: datetime, system: str | None, fragment: bool) -> Body:
        """The overview (``system`` None) or a system's tab; ``fragment``: the content only."""

        def make(doc: dict[str, Any]) -> Body:
            current = next((s for s in doc["systems"] if s["name"] == system), None)
            template = self._app if fragment else self._page
            html = template.render(doc=doc, current=current, base="../" if system else "")
            return _body(html.encode(), "text/html; charset=utf-8")

        return self._cached(snapshot, now, ("page", system or "", "f" if fragment else ""), make)

    def json(self, snapshot: Snapshot, now: datetime, what: str, system: str | None = None) -> Body:
        """``status`` (one ``system`` or all), ``outages`` or ``reservations`` as JSON."""

        def make(doc: dict[str, Any]) -> Body:
            meta = {"generated_at": doc["generated_at"], "data_generation": doc["data_generation"]}
            if what == "status" and system is not None:
                value: Any = {**meta, **next(s for s in doc["systems"] if s["name"] == system)}
            elif what == "status":
                value = doc
            else:
                value = {**meta, what: doc[what]}
            data = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()
            return _body(data, "application/json")

        return self._cached(snapshot, now, ("json", what, system or ""), make)


def static_files() -> dict[str, Body]:
    """The stylesheet, the script and the icon, read once."""
    types = {
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".svg": "image/svg+xml",
    }
    return {
        p.name: _body(p.read_bytes(), types[Path(p.name).suffix])
        for p in sorted(STATIC.iterdir(), key=lambda p: p.name)
        if Path(p.name).suffix in types
    }
