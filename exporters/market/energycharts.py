"""Energy-Charts (Fraunhofer ISE): day-ahead prices as JSON, no login.

``GET /price?bzn=DE-LU&start=…&end=…`` answers ``{"unix_seconds": [...], "price": [...],
"unit": "EUR / MWh", "license_info": "..."}``: period starts and prices, no period length.
The length is inferred per local delivery day as the most common step between consecutive
starts (so a day switching from hourly to quarter-hourly publication is read correctly, and a
missing stretch stays a gap instead of stretching one period over it).  ``null`` prices are
gaps.  A 404 or an empty list means nothing is published for the span.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from ..runtime.http import read_json
from .curve import Curve, Period, area_timezone, format_utc
from .provider import HttpProvider, NotPublished, ProviderError

DEFAULT_URL = "https://api.energy-charts.info/price"
#: Largest answer read: two days of quarter-hours are ~8 KB, a year ~1.4 MB.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Areas whose Energy-Charts ``bzn`` differs from the bidding-zone code used here.
DEFAULT_ZONES = {"IT-NORD": "IT-North"}
#: The steps a day-ahead market uses; anything else between two starts is a gap.
_STEPS = (timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1))


def parse_prices(doc: Any, area: str, tz: ZoneInfo | None = None, source: str = "energy_charts") -> Curve:
    """An Energy-Charts price document → a ``Curve``; raises ``ProviderError`` naming the field."""
    what = f"{source} {area}"
    if not isinstance(doc, dict):
        raise ProviderError(f"{what}: answer is not a JSON object", "malformed")
    stamps, prices = doc.get("unix_seconds"), doc.get("price")
    if not isinstance(stamps, list) or not isinstance(prices, list):
        raise ProviderError(f"{what}: 'unix_seconds' and 'price' must be lists", "malformed")
    if len(stamps) != len(prices):
        raise ProviderError(
            f"{what}: 'unix_seconds' has {len(stamps)} entries but 'price' has {len(prices)}", "malformed"
        )
    unit = doc.get("unit")
    if unit is not None and (not isinstance(unit, str) or unit.replace(" ", "").upper() != "EUR/MWH"):
        raise ProviderError(f"{what}: unit {str(unit)[:16]!r} is not EUR/MWh", "malformed")
    if not stamps:
        raise NotPublished(f"{what}: no prices published for the span")
    starts: list[datetime] = []
    for i, stamp in enumerate(stamps):
        if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
            raise ProviderError(f"{what}: unix_seconds[{i}] is not a number", "malformed")
        try:
            starts.append(datetime.fromtimestamp(stamp, UTC))
        except (OverflowError, OSError, ValueError):
            raise ProviderError(f"{what}: unix_seconds[{i}] is out of range", "malformed") from None
    if any(b <= a for a, b in itertools.pairwise(starts)):
        raise ProviderError(f"{what}: unix_seconds are not strictly increasing", "malformed")
    zone = tz or area_timezone(area)
    step_of_day = _steps_by_day(starts, zone)
    periods = []
    for i, (start, price) in enumerate(zip(starts, prices, strict=True)):
        if price is None:
            continue
        if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price):
            raise ProviderError(f"{what}: price[{i}] is not a number", "malformed")
        step = step_of_day[start.astimezone(zone).date()]
        periods.append(Period(start, start + step, float(price)))
    if not periods:
        raise NotPublished(f"{what}: every price is null")
    try:
        return Curve(area, tuple(periods), source, datetime.now(UTC))
    except ValueError as exc:
        raise ProviderError(f"{what}: {exc}", "malformed") from None


def _steps_by_day(starts: list[datetime], zone: ZoneInfo) -> dict[Any, timedelta]:
    counts: dict[Any, Counter[timedelta]] = {}
    for a, b in itertools.pairwise(starts):
        if b - a in _STEPS:
            counts.setdefault(a.astimezone(zone).date(), Counter())[b - a] += 1
    result: dict[Any, timedelta] = {}
    overall: Counter[timedelta] = sum(counts.values(), Counter())
    fallback = overall.most_common(1)[0][0] if overall else timedelta(hours=1)
    for start in starts:
        day = start.astimezone(zone).date()
        if day not in result:
            c = counts.get(day)
            # Ties go to the finer step: a 15-minute day with holes is still a 15-minute day.
            result[day] = min(c, key=lambda s: (-c[s], s)) if c else fallback
    return result


class EnergyChartsProvider(HttpProvider):
    """Day-ahead prices from api.energy-charts.info (CC BY 4.0; attribute Energy-Charts)."""

    kind = "energy_charts"

    def __init__(
        self,
        name: str,
        url: str = DEFAULT_URL,
        timeout: float = 30.0,
        zones: dict[str, str] | None = None,
        timezones: dict[str, ZoneInfo] | None = None,
    ) -> None:
        super().__init__(name, url, timeout)
        #: area → Energy-Charts ``bzn`` where the names differ.
        self.zones = {**DEFAULT_ZONES, **(zones or {})}
        self.timezones = dict(timezones or {})

    async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
        what = f"{self.name} {area} {format_utc(start)}..{format_utc(end)}"
        params = {
            "bzn": self.zones.get(area, area),
            "start": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ"),
            "end": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        }

        async def read(response: aiohttp.ClientResponse) -> Any:
            if response.status == 404:
                raise NotPublished(f"{what}: not published (HTTP 404)")
            if response.status != 200:
                raise self.status_error(response.status, response.headers, what)
            return await read_json(response, MAX_BODY_BYTES)

        doc = await self.get(params, what, read)
        curve = parse_prices(doc, area, self.timezones.get(area), self.name)
        return Curve(area, curve.slice(start, end).periods, self.name, curve.fetched_at)
