"""File-backed providers: a static curve (YAML or CSV) and the local CSV store.

Static curves serve demos and air-gapped sites.  A YAML file gives either a daily ``profile``
(one price per slot of the local wall-clock day, repeated every day, so the spring and autumn
DST days get 92 and 100 quarter-hours by themselves) or explicit ``periods``, or both
(explicit periods win).  A CSV file has the columns ``start,price`` and optionally ``end``
(instants with a UTC offset).

The store keeps one CSV per area and local delivery day, ``<dir>/<AREA>/<YYYY-MM-DD>.csv``,
written atomically once a day is complete and read back after a restart, so a restarted
exporter does not ask the remote APIs again for days it already has.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from .curve import Curve, Period, area_timezone, day_bounds, format_utc, local_day, parse_instant
from .provider import NotPublished, Provider, ProviderError

_AREA = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,31}$")
STORE_HEADER = ("start", "end", "price_eur_per_mwh", "source")
#: The names a static file may give its value: a price curve's, and a carbon curve's (gCO2eq/kWh).
PRICE_KEYS = ("price", "price_eur_per_mwh")
CARBON_KEYS = ("grams_per_kwh", "value")


def _days(start: datetime, end: datetime, tz: ZoneInfo) -> list[date]:
    first, last = local_day(start, tz), local_day(end - timedelta(microseconds=1), tz)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def read_csv_periods(
    text: str, where: str, default_step: timedelta | None, value_keys: tuple[str, ...] = PRICE_KEYS
) -> list[Period]:
    """Rows ``start,[end,]price`` (a header row names the columns) → periods.

    Blank lines and lines starting with ``#`` are comments; errors give the file's own line number.
    """
    lines = enumerate(text.splitlines(), 1)
    kept = [(n, line) for n, line in lines if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(line for _, line in kept)
    fields = [f.strip() for f in reader.fieldnames or []]
    price_col = next((f for f in value_keys if f in fields), None)
    if "start" not in fields or price_col is None:
        raise ProviderError(
            f"{where}: CSV needs a header with 'start' and {value_keys[0]!r} columns", "malformed"
        )
    periods = []
    for row in reader:
        line = kept[reader.line_num - 1][0]
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        try:
            start = parse_instant(row["start"])
            if row.get("end"):
                end = parse_instant(row["end"])
            elif default_step is not None:
                end = start + default_step
            else:
                raise ValueError("no 'end' column and no resolution configured")
            periods.append(Period(start, end, float(row[price_col])))
        except (ValueError, TypeError) as exc:
            raise ProviderError(f"{where}: line {line}: {exc}", "malformed") from None
    return periods


class StaticProvider(Provider):
    """A static YAML or CSV curve file (re-read when the file changes): prices, or a carbon curve.

    ``value_keys`` names the value's key or column: ``price`` for prices (the default),
    ``grams_per_kwh`` (or ``value``) for carbon intensity.
    """

    kind = "static"

    def __init__(
        self,
        name: str,
        path: Path,
        resolution: timedelta = timedelta(minutes=15),
        timezones: Mapping[str, ZoneInfo] | None = None,
        value_keys: tuple[str, ...] = PRICE_KEYS,
    ) -> None:
        super().__init__(name)
        self.path = Path(path)
        self.resolution = resolution
        self.timezones = dict(timezones or {})
        self.value_keys = value_keys
        self._loaded: tuple[float, _StaticCurve] | None = None

    def _curve(self) -> _StaticCurve:
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            raise ProviderError(f"{self.name}: cannot read {self.path}: {exc.strerror}", "other") from None
        if self._loaded is None or self._loaded[0] != mtime:
            self._loaded = (mtime, load_static(self.path, self.resolution, self.value_keys))
        return self._loaded[1]

    def supports(self, area: str) -> bool:
        try:
            areas = self._curve().areas
        except ProviderError:
            return True  # let fetch report the broken file
        return not areas or area in areas

    async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
        static = self._curve()
        tz = static.timezone or self.timezones.get(area) or area_timezone(area)
        periods = [p for p in static.periods if p.start < end and p.end > start]
        curve = Curve(area, tuple(periods), self.name, datetime.now(UTC))
        if static.profile:
            days = _days(start, end, tz)
            generated = Curve(area, tuple(p for d in days for p in static.profile_day(d, tz)), self.name)
            curve = curve.merge(generated) if curve else generated
        curve = curve.slice(start, end)
        if not curve:
            raise NotPublished(f"{self.name}: {self.path.name} has no prices for {area} in the span")
        return Curve(area, curve.periods, self.name, datetime.now(UTC))


class _StaticCurve:
    def __init__(
        self,
        periods: list[Period],
        profile: list[float],
        step: timedelta,
        timezone: ZoneInfo | None,
        areas: frozenset[str],
    ) -> None:
        self.periods = sorted(periods)
        self.profile = profile
        self.step = step
        self.timezone = timezone
        self.areas = areas

    def profile_day(self, day: date, tz: ZoneInfo) -> list[Period]:
        """The day's periods, each priced by the profile slot of its local wall-clock time."""
        start, end = day_bounds(day, tz)
        minutes = int(self.step.total_seconds() // 60)
        out = []
        cursor = start
        while cursor < end:
            local = cursor.astimezone(tz)
            slot = (local.hour * 60 + local.minute) // minutes
            out.append(Period(cursor, cursor + self.step, self.profile[slot % len(self.profile)]))
            cursor += self.step
        return out


def load_static(
    path: Path, default_step: timedelta, value_keys: tuple[str, ...] = PRICE_KEYS
) -> _StaticCurve:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProviderError(f"{where}: cannot read: {exc.strerror}", "other") from None
    except UnicodeDecodeError:
        raise ProviderError(f"{where}: not UTF-8 text", "malformed") from None
    if path.suffix.lower() == ".csv":
        periods = read_csv_periods(text, where, default_step, value_keys)
        return _StaticCurve(periods, [], default_step, None, frozenset())
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProviderError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}", "malformed") from None
    return parse_static(doc, where, default_step, value_keys)


def parse_static(
    doc: Any, where: str, default_step: timedelta, value_keys: tuple[str, ...] = PRICE_KEYS
) -> _StaticCurve:
    if not isinstance(doc, dict):
        raise ProviderError(f"{where}: a static curve is a mapping", "malformed")
    unknown = set(doc) - {"area", "areas", "timezone", "resolution_minutes", "profile", "periods"}
    if unknown:
        raise ProviderError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}", "malformed")
    step = default_step
    if "resolution_minutes" in doc:
        minutes = doc["resolution_minutes"]
        if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes not in (15, 30, 60):
            raise ProviderError(f"{where}: resolution_minutes must be 15, 30 or 60", "malformed")
        step = timedelta(minutes=minutes)
    tz = None
    if doc.get("timezone") is not None:
        try:
            tz = ZoneInfo(str(doc["timezone"]))
        except (ValueError, KeyError, OSError):
            raise ProviderError(f"{where}: unknown timezone {doc['timezone']!r}", "malformed") from None
    raw_areas = doc.get("areas", [doc["area"]] if "area" in doc else [])
    if not isinstance(raw_areas, list) or not all(isinstance(a, str) for a in raw_areas):
        raise ProviderError(f"{where}: areas must be a list of area codes", "malformed")
    profile = doc.get("profile") or []
    slots = int(timedelta(days=1) / step)
    if not isinstance(profile, list) or any(
        isinstance(p, bool) or not isinstance(p, int | float) for p in profile
    ):
        raise ProviderError(f"{where}: profile must be a list of numbers", "malformed")
    if profile and len(profile) != slots:
        raise ProviderError(
            f"{where}: profile has {len(profile)} prices; a day of {step} periods has {slots}", "malformed"
        )
    periods = []
    for i, item in enumerate(doc.get("periods") or []):
        try:
            start = parse_instant(str(item["start"]))
            end = parse_instant(str(item["end"])) if "end" in item else start + step
            key = next((k for k in value_keys if k in item), value_keys[0])
            periods.append(Period(start, end, float(item[key])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(f"{where}: periods[{i}]: {exc}", "malformed") from None
    if not profile and not periods:
        raise ProviderError(f"{where}: neither a profile nor periods", "malformed")
    try:
        Curve("check", tuple(periods))
    except ValueError as exc:
        raise ProviderError(f"{where}: {exc}", "malformed") from None
    return _StaticCurve(periods, [float(p) for p in profile], step, tz, frozenset(raw_areas))


class CsvStore(Provider):
    """One CSV per area and local delivery day; a provider for what it has, and a write-through cache."""

    kind = "csv_store"

    def __init__(self, name: str, path: Path, timezones: Mapping[str, ZoneInfo] | None = None) -> None:
        super().__init__(name)
        self.path = Path(path)
        self.timezones = dict(timezones or {})

    def tz(self, area: str) -> ZoneInfo:
        return self.timezones.get(area) or area_timezone(area)

    def file(self, area: str, day: date) -> Path:
        if not _AREA.match(area):
            raise ProviderError(f"{self.name}: area {area[:40]!r} is not a bidding-zone code", "other")
        return self.path / area / f"{day.isoformat()}.csv"

    def read_day(self, area: str, day: date) -> Curve | None:
        """The stored day, or None when it is absent; a damaged file is an error naming it."""
        path = self.file(area, day)
        try:
            text = path.read_text(encoding="utf-8")
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ProviderError(f"{self.name}: cannot read {path}: {exc.strerror}", "other") from None
        except UnicodeDecodeError:
            raise ProviderError(f"{self.name}: {path}: not UTF-8 text", "malformed") from None
        periods = read_csv_periods(text, str(path), None)
        sources = {row.get("source", "") for row in csv.DictReader(io.StringIO(text))}
        try:
            curve = Curve(area, tuple(periods), next(iter(sources - {""}), self.name), _utc_mtime(mtime))
        except ValueError as exc:
            raise ProviderError(f"{self.name}: {path}: {exc}", "malformed") from None
        return curve.day(day, self.tz(area))

    def write_day(self, curve: Curve, day: date) -> bool:
        """Store ``curve``'s periods of ``day`` if the day is complete; returns whether it wrote."""
        tz = self.tz(curve.area)
        if not curve.has_day(day, tz):
            return False
        path = self.file(curve.area, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(STORE_HEADER)
        for p in curve.day(day, tz).periods:
            writer.writerow((format_utc(p.start), format_utc(p.end), repr(p.price), curve.source))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(out.getvalue())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
        curve = Curve(area, source=self.name)
        for day in _days(start, end, self.tz(area)):
            stored = self.read_day(area, day)
            if stored:
                curve = curve.merge(stored) if curve else stored
        curve = curve.slice(start, end)
        if not curve:
            raise NotPublished(f"{self.name}: nothing stored for {area} in the span")
        return curve


def _utc_mtime(mtime: float) -> datetime:
    return datetime.fromtimestamp(mtime, UTC)
