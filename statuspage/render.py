"""HTML and JSON from the status document: Jinja2 with autoescaping, every value escaped.

Every view (the overview, each system's tab, their fragments, the JSON answers) is rendered at
once per (data generation, minute) into a ``Rendition``: immutable bytes, their gzip and their
ETag, with the response headers of each built in advance.  Viewers between two refreshes get
those bytes with no rendering, templating, JSON encoding or compression, so a thousand viewers
cost one render of each view per minute; ages ("4 min ago") are exact to the minute.  The
server swaps the reference to the rendition: a viewer never waits on a lock or on the refresh.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
class Variant:
    """One encoding of an answer: its bytes, its strong ETag, its headers for a 200 and a 304."""

    data: bytes
    etag: str
    headers: Mapping[str, str]
    not_modified: Mapping[str, str]

    def matches(self, if_none_match: str) -> bool:
        """Whether ``If-None-Match`` names this answer (weak comparison, as RFC 9110 asks)."""
        for tag in if_none_match.split(","):
            tag = tag.strip()
            if tag == "*" or tag.removeprefix("W/") == self.etag:
                return True
        return False


@dataclass(frozen=True)
class Body:
    """An answer prepared once, as is and gzipped (each encoding has its own ETag)."""

    plain: Variant
    gzipped: Variant

    @property
    def data(self) -> bytes:
        return self.plain.data

    def variant(self, accept_encoding: str) -> Variant:
        # A substring test: "gzip;q=0" is not worth parsing for; every browser sends "gzip".
        return self.gzipped if "gzip" in accept_encoding else self.plain


def prepare(
    data: bytes, content_type: str, cache: str = "no-cache", headers: Mapping[str, str] | None = None
) -> Body:
    """``data`` with its gzip, ETags and response headers (``headers`` added to each)."""
    tag = hashlib.blake2b(data, digest_size=12).hexdigest()
    common = {**(headers or {}), "Cache-Control": cache, "Vary": "Accept-Encoding"}

    def variant(body: bytes, etag: str, encoding: str | None) -> Variant:
        not_modified = {**common, "ETag": etag}
        full = {**not_modified, "Content-Type": content_type}
        if encoding:
            full["Content-Encoding"] = encoding
        return Variant(body, etag, full, not_modified)

    # Compressed once per minute at most, so the smallest output is worth the time.
    gzipped = gzip.compress(data, compresslevel=9, mtime=0)
    return Body(variant(data, f'"{tag}"', None), variant(gzipped, f'"{tag}-gzip"', "gzip"))


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


#: A view: ("page" | "fragment" | "status", a system's name or "" for all) or ("outages" |
#: "reservations", "").
View = tuple[str, str]
HTML = "text/html; charset=utf-8"
JSON = "application/json"


@dataclass(frozen=True)
class Rendition:
    """Every view of one snapshot, valid from ``valid_from`` until ``valid_until`` (clock time)."""

    generation: int
    valid_from: float
    valid_until: float
    bodies: Mapping[View, Body] = field(default_factory=dict)

    def serves(self, generation: int, now: float) -> bool:
        """Whether this rendition is the answer at ``now`` for that snapshot generation."""
        return generation == self.generation and self.valid_from <= now < self.valid_until


class Renderer:
    """The rendition of the current snapshot and minute; ``latest`` is read without a lock."""

    def __init__(self, config: StatusPageConfig, headers: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.headers = dict(headers or {})
        self.env = environment(config)
        self._page = self.env.get_template("page.html")
        self._app = self.env.get_template("app.html")
        #: Replaced whole, never changed: a reader holding it sees one consistent set of views.
        self.latest = Rendition(0, 0.0, 0.0)
        #: Renditions made (each renders every view once); the tests read it.
        self.renditions = 0

    def rendition(self, snapshot: Snapshot, now: float) -> Rendition:
        """The rendition of ``snapshot`` at ``now``, made now unless the latest one serves."""
        latest, minute = self.latest, now // 60 * 60
        if latest.generation == snapshot.generation and latest.valid_from == minute:
            # Also when the data is already due (a refresh slower than the interval): the
            # viewers who waited for it get the one rendition, not one each.
            return latest
        # The hot path serves it until the minute turns (the ages change) or the data is due.
        # Valid from this minute only, so a clock stepped back does not keep it.
        until = min(minute + 60, snapshot.taken_at + self.config.data_seconds)
        rendition = Rendition(snapshot.generation, minute, until, self._render(snapshot, now))
        self.renditions += 1
        self.latest = rendition
        return rendition

    def _render(self, snapshot: Snapshot, now: float) -> dict[View, Body]:
        doc = document(self.config, snapshot, datetime.fromtimestamp(now, UTC))
        meta = {"generated_at": doc["generated_at"], "data_generation": doc["data_generation"]}
        bodies = {
            ("page", ""): self._html(self._page, doc, None),
            ("fragment", ""): self._html(self._app, doc, None),
            ("status", ""): self._json(doc),
            ("outages", ""): self._json({**meta, "outages": doc["outages"]}),
            ("reservations", ""): self._json({**meta, "reservations": doc["reservations"]}),
        }
        for system in doc["systems"]:
            name = system["name"]
            bodies["page", name] = self._html(self._page, doc, system)
            bodies["fragment", name] = self._html(self._app, doc, system)
            bodies["status", name] = self._json({**meta, **system})
        return bodies

    def _html(self, template: jinja2.Template, doc: dict[str, Any], current: dict[str, Any] | None) -> Body:
        html = template.render(doc=doc, current=current, base="../" if current else "")
        return prepare(html.encode(), HTML, headers=self.headers)

    def _json(self, value: Any) -> Body:
        data = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()
        return prepare(data, JSON, headers=self.headers)


def static_files(headers: Mapping[str, str] | None = None) -> dict[str, Body]:
    """The stylesheet, the script and the icon, read once."""
    types = {
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".svg": "image/svg+xml",
    }
    return {
        p.name: prepare(p.read_bytes(), types[Path(p.name).suffix], "public, max-age=3600", headers)
        for p in sorted(STATIC.iterdir(), key=lambda p: p.name)
        if Path(p.name).suffix in types
    }
