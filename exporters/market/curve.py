"""The price curve: delivery periods in UTC with their day-ahead price in EUR/MWh.

A ``Curve`` is an ordered tuple of non-overlapping ``Period``s.  Periods may differ in length
(a curve can hold an hourly day next to a quarter-hourly one), so nothing here assumes 96
periods a day: a delivery day is the span between two local midnights of the area, which is
23, 24 or 25 hours long (92, 96 or 100 quarter-hours).  All instants are timezone-aware UTC
``datetime``s; local time only decides where a day begins.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

#: Default local time zone of each bidding zone (the clock its delivery day follows).
AREA_TIMEZONES: dict[str, str] = {
    "DE-LU": "Europe/Berlin",
    "AT": "Europe/Vienna",
    "BE": "Europe/Brussels",
    "BG": "Europe/Sofia",
    "CH": "Europe/Zurich",
    "CZ": "Europe/Prague",
    "DK1": "Europe/Copenhagen",
    "DK2": "Europe/Copenhagen",
    "EE": "Europe/Tallinn",
    "ES": "Europe/Madrid",
    "FI": "Europe/Helsinki",
    "FR": "Europe/Paris",
    "GR": "Europe/Athens",
    "HR": "Europe/Zagreb",
    "HU": "Europe/Budapest",
    "IT-NORD": "Europe/Rome",
    "IT-CNOR": "Europe/Rome",
    "IT-CSUD": "Europe/Rome",
    "IT-SUD": "Europe/Rome",
    "IT-SICI": "Europe/Rome",
    "IT-SARD": "Europe/Rome",
    "LT": "Europe/Vilnius",
    "LV": "Europe/Riga",
    "NL": "Europe/Amsterdam",
    "NO1": "Europe/Oslo",
    "NO2": "Europe/Oslo",
    "NO3": "Europe/Oslo",
    "NO4": "Europe/Oslo",
    "NO5": "Europe/Oslo",
    "PL": "Europe/Warsaw",
    "PT": "Europe/Lisbon",
    "RO": "Europe/Bucharest",
    "SE1": "Europe/Stockholm",
    "SE2": "Europe/Stockholm",
    "SE3": "Europe/Stockholm",
    "SE4": "Europe/Stockholm",
    "SI": "Europe/Ljubljana",
    "SK": "Europe/Bratislava",
}
DEFAULT_TIMEZONE = "Europe/Berlin"


def area_timezone(area: str, override: str | None = None) -> ZoneInfo:
    """The time zone whose midnights bound ``area``'s delivery days."""
    return ZoneInfo(override or AREA_TIMEZONES.get(area, DEFAULT_TIMEZONE))


def utc(value: datetime) -> datetime:
    """``value`` as aware UTC; a naive value is refused (it has no defined instant)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC start and end of local delivery ``day`` (23, 24 or 25 hours apart)."""
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    return start, end


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    """The local delivery day that ``instant`` falls in."""
    return utc(instant).astimezone(tz).date()


def format_utc(instant: datetime) -> str:
    return utc(instant).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant with an offset or ``Z``; naive text is an error."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return utc(value)


@dataclass(frozen=True, order=True)
class Period:
    """One delivery period [start, end) and its price in EUR/MWh."""

    start: datetime
    end: datetime
    price: float

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("period bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"period ending {format_utc(self.end)} does not end after its start")
        if not math.isfinite(self.price):
            raise ValueError(f"period at {format_utc(self.start)}: price {self.price} is not finite")

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


@dataclass(frozen=True)
class Curve:
    """Day-ahead prices of one area: ordered, non-overlapping periods.

    ``source`` names the provider each stretch came from (merged curves keep the first), and
    ``fetched_at`` is when the data was obtained from it (for ``data_age``).
    """

    area: str
    periods: tuple[Period, ...] = ()
    source: str = ""
    fetched_at: datetime | None = None
    _starts: tuple[datetime, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        periods = tuple(sorted(self.periods, key=lambda p: p.start))
        for before, after in itertools.pairwise(periods):
            if after.start < before.end:
                raise ValueError(
                    f"{self.area}: periods starting {format_utc(before.start)} and "
                    f"{format_utc(after.start)} overlap"
                )
        object.__setattr__(self, "periods", periods)
        object.__setattr__(self, "_starts", tuple(p.start for p in periods))

    # --- building -----------------------------------------------------------------------

    @classmethod
    def uniform(
        cls,
        area: str,
        start: datetime,
        step: timedelta,
        prices: Iterable[float],
        source: str = "",
        fetched_at: datetime | None = None,
    ) -> Curve:
        """Consecutive periods of length ``step`` from ``start``."""
        begin = utc(start)
        periods = tuple(
            Period(begin + i * step, begin + (i + 1) * step, float(p)) for i, p in enumerate(prices)
        )
        return cls(area, periods, source, fetched_at)

    def merge(self, other: Curve) -> Curve:
        """This curve with ``other``'s periods added where this one has none."""
        kept = list(self.periods)
        kept.extend(period for period in other.periods if not self.between(period.start, period.end))
        fetched = [t for t in (self.fetched_at, other.fetched_at) if t is not None]
        return Curve(self.area, tuple(kept), self.source or other.source, min(fetched) if fetched else None)

    # --- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.periods)

    def __iter__(self) -> Iterator[Period]:
        return iter(self.periods)

    def __bool__(self) -> bool:
        return bool(self.periods)

    @property
    def start(self) -> datetime | None:
        return self.periods[0].start if self.periods else None

    @property
    def end(self) -> datetime | None:
        return self.periods[-1].end if self.periods else None

    def period_at(self, instant: datetime) -> Period | None:
        """The period containing ``instant`` (start inclusive, end exclusive), if any."""
        from bisect import bisect_right

        i = bisect_right(self._starts, utc(instant)) - 1
        if i >= 0 and self.periods[i].contains(utc(instant)):
            return self.periods[i]
        return None

    def price_at(self, instant: datetime) -> float | None:
        period = self.period_at(instant)
        return period.price if period else None

    def next_period(self, instant: datetime) -> Period | None:
        """The period that starts where the one containing ``instant`` ends."""
        current = self.period_at(instant)
        return self.period_at(current.end) if current else None

    def between(self, start: datetime, end: datetime) -> tuple[Period, ...]:
        """Periods overlapping [start, end)."""
        from bisect import bisect_left

        begin, finish = utc(start), utc(end)
        i = max(0, bisect_left(self._starts, begin) - 1)
        out = []
        for period in self.periods[i:]:
            if period.start >= finish:
                break
            if period.end > begin:
                out.append(period)
        return tuple(out)

    def slice(self, start: datetime, end: datetime) -> Curve:
        """The periods that lie wholly inside [start, end)."""
        inside = tuple(p for p in self.between(start, end) if p.start >= start and p.end <= end)
        return replace(self, periods=inside)

    def covers(self, start: datetime, end: datetime) -> bool:
        """Whether [start, end) is covered without gaps."""
        cursor = utc(start)
        for period in self.between(start, end):
            if period.start > cursor:
                return False
            cursor = max(cursor, period.end)
        return cursor >= utc(end)

    def day(self, day: date, tz: ZoneInfo) -> Curve:
        """The periods of local delivery ``day``."""
        return self.slice(*day_bounds(day, tz))

    def has_day(self, day: date, tz: ZoneInfo) -> bool:
        return self.covers(*day_bounds(day, tz))

    # --- statistics ---------------------------------------------------------------------

    def stats(self) -> DayStats | None:
        """Min, max and time-weighted mean of the periods (None when empty)."""
        if not self.periods:
            return None
        prices = [p.price for p in self.periods]
        seconds = sum(p.seconds for p in self.periods)
        mean = sum(p.price * p.seconds for p in self.periods) / seconds
        return DayStats(min(prices), max(prices), mean, len(self.periods))

    def rank_ratio(self, instant: datetime, tz: ZoneInfo) -> float | None:
        """Where the current period's price ranks within its local day: 0 cheapest, 1 dearest.

        The share of the day's other periods that are strictly cheaper, so ties rank alike.
        """
        current = self.period_at(instant)
        if current is None:
            return None
        day = self.day(local_day(instant, tz), tz)
        others = len(day.periods) - 1
        if others <= 0:
            return 0.0
        cheaper = sum(1 for p in day.periods if p.price < current.price)
        return cheaper / others

    def cheapest_window(
        self, instant: datetime, length: timedelta, horizon: timedelta = timedelta(hours=24)
    ) -> tuple[datetime, float] | None:
        """Start and mean price of the cheapest ``length`` window within ``horizon`` of now.

        Windows start at period boundaries from the current period on, are covered without
        gaps, and end no later than ``instant + horizon``.  None when no window fits.
        """
        current = self.period_at(instant)
        if current is None:
            return None
        limit = utc(instant) + horizon
        candidates = [p for p in self.between(current.start, limit) if p.start >= current.start]
        best: tuple[datetime, float] | None = None
        for i, first in enumerate(candidates):
            end = first.start + length
            if end > limit:
                break
            total = 0.0
            cursor = first.start
            for period in candidates[i:]:
                if period.start != cursor or cursor >= end:
                    break
                take = (min(period.end, end) - period.start).total_seconds()
                total += period.price * take
                cursor = period.end
            if cursor < end:
                continue
            mean = total / length.total_seconds()
            if best is None or mean < best[1]:
                best = (first.start, mean)
        return best

    # --- serialisation ------------------------------------------------------------------

    def period_json(self, period: Period, tz: ZoneInfo | None = None) -> dict[str, Any]:
        """One period as the curve endpoint writes it (``value`` and, for its readers, ``price``)."""
        return {
            "start": format_utc(period.start),
            "end": format_utc(period.end),
            "seconds": int(period.seconds),
            "value": period.price,
            "price": period.price,
            **({"local_start": period.start.astimezone(tz).isoformat()} if tz else {}),
        }

    def to_json(self, tz: ZoneInfo | None = None, unit: str = "EUR/MWh") -> dict[str, Any]:
        """A JSON-ready document (the exporter's curve endpoint serves this).

        Each period's ``value`` is in ``unit``; ``price`` repeats it, so that a reader of price
        curves (``from_json``, the controller's curve signal) reads any curve unchanged.
        """
        doc: dict[str, Any] = {
            "area": self.area,
            "unit": unit,
            "source": self.source,
            "fetched_at": format_utc(self.fetched_at) if self.fetched_at else None,
            "periods": [self.period_json(p, tz) for p in self.periods],
        }
        if tz is not None:
            doc["timezone"] = str(tz)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Curve:
        """The inverse of ``to_json``; raises ``ValueError`` naming the bad field."""
        try:
            area = str(doc["area"])
            periods = tuple(
                Period(parse_instant(p["start"]), parse_instant(p["end"]), float(_value(p)))
                for p in doc["periods"]
            )
            fetched = doc.get("fetched_at")
            return cls(
                area, periods, str(doc.get("source") or ""), parse_instant(fetched) if fetched else None
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"curve document: missing or mistyped field {exc}") from None


def _value(period: Mapping[str, Any]) -> Any:
    # Documents written before "value" existed carry only "price".
    return period["price"] if "price" in period else period["value"]


@dataclass(frozen=True)
class DayStats:
    min: float
    max: float
    mean: float
    count: int


def combine(curves: Sequence[Curve], area: str) -> Curve:
    """Merge curves in order of preference (earlier ones win where they overlap)."""
    result = Curve(area)
    for curve in curves:
        result = result.merge(curve) if result else curve
    return result
