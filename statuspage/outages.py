"""Announced outages and maintenance: a small YAML file the operators edit.

.. code-block:: yaml

    outages:
      - title: Scratch filesystem upgrade
        systems: [alpha]               # omitted or empty: every system
        start: 2026-12-03T08:00:00+01:00
        end: 2026-12-03T12:00:00+01:00 # omitted: until further notice
        severity: maintenance          # info | maintenance | warning | critical
        description: /scratch is read-only during the upgrade.
        url: https://wiki.example/maintenance/scratch

Times need an offset (``+01:00`` or ``Z``).  The page re-reads the file when it changes; a file
that does not validate is logged and the last good one stays in use.  ``powerplane check-config``
validates it like any other config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from powerplane.exporters.runtime import ConfigError, ConfigKind, strict_object

SEVERITIES = ("critical", "warning", "maintenance", "info")
#: Larger files are refused unread.
MAX_BYTES = 1 << 20

_TIME = {"description": "date and time with an offset, e.g. 2026-12-03T08:00:00+01:00"}

SCHEMA: dict[str, Any] = strict_object(
    {
        "outages": {
            "type": ["array", "null"],
            "maxItems": 500,
            "items": strict_object(
                {
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "systems": {
                        "type": "array",
                        "maxItems": 64,
                        "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"},
                    },
                    "start": _TIME,
                    "end": _TIME,
                    "severity": {"enum": list(SEVERITIES)},
                    "description": {"type": "string", "maxLength": 2000},
                    "url": {"type": "string", "pattern": "^https?://[^\\s]+$", "maxLength": 500},
                },
                required=("title", "start"),
            ),
        }
    },
    required=("outages",),
)


@dataclass(frozen=True)
class Announcement:
    title: str
    start: datetime
    end: datetime | None
    severity: str = "maintenance"
    systems: tuple[str, ...] = ()
    description: str = ""
    url: str | None = None

    def applies_to(self, system: str) -> bool:
        return not self.systems or system in self.systems

    def ended(self, now: datetime) -> bool:
        return self.end is not None and self.end <= now

    def active(self, now: datetime) -> bool:
        return self.start <= now and not self.ended(now)


def _when(value: Any, where: str, errors: list[str]) -> datetime | None:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        errors.append(f"{where}: give a time and an offset, not only a date")
        return None
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            errors.append(f"{where}: {value[:40]!r} is not an ISO 8601 date and time")
            return None
    else:
        errors.append(f"{where}: expected a date and time, got {type(value).__name__}")
        return None
    if parsed.tzinfo is None:
        errors.append(f"{where}: give an offset (+01:00 or Z): local times are ambiguous")
        return None
    return parsed


def build(doc: Mapping[str, Any]) -> tuple[Announcement, ...]:
    errors: list[str] = []
    found = []
    for i, item in enumerate(doc.get("outages") or []):
        start = _when(item["start"], f"outages.{i}.start", errors)
        end = _when(item["end"], f"outages.{i}.end", errors) if "end" in item else None
        if start is not None and end is not None and end <= start:
            errors.append(f"outages.{i}.end: must be after start")
        if start is None:
            continue
        found.append(
            Announcement(
                title=item["title"],
                start=start,
                end=end,
                severity=item.get("severity", "maintenance"),
                systems=tuple(item.get("systems") or ()),
                description=item.get("description", ""),
                url=item.get("url"),
            )
        )
    if errors:
        raise ConfigError(errors)
    return tuple(sorted(found, key=lambda a: a.start))


KIND: ConfigKind[tuple[Announcement, ...]] = ConfigKind("outages", SCHEMA, build)


class OutagesFile:
    """The announcements in ``path``, re-read when its size or mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.announcements: tuple[Announcement, ...] = ()
        #: Whether the last read succeeded (or found nothing new to read).
        self.ok = False

    def load(self) -> tuple[Announcement, ...]:
        """The current announcements; ``ConfigError`` when the file is unreadable or invalid (the
        last good ones stay in ``announcements``)."""
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            self.ok = False
            raise ConfigError([f"cannot read: {exc.strerror}"], str(self.path)) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp and self.ok:
            return self.announcements
        if stat.st_size > MAX_BYTES:
            self.ok = False
            raise ConfigError([f"the file is larger than {MAX_BYTES} bytes"], str(self.path))
        try:
            self.announcements = KIND.load(self.path)
        except ConfigError:
            self.ok = False
            raise
        except UnicodeDecodeError:
            self.ok = False
            raise ConfigError(["the file is not UTF-8 text"], str(self.path)) from None
        self._stamp, self.ok = stamp, True
        return self.announcements
