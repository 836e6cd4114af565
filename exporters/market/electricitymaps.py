"""Electricity Maps: grid carbon intensity (gCO2eq/kWh, lifecycle) with your own API token.

``GET {url}/carbon-intensity/history?zone=DE`` answers the last 24 hours, hourly::

    {"zone": "DE", "history": [{"zone": "DE", "carbonIntensity": 302, "datetime": "2026-05-21T10:00:00.000Z",
      "updatedAt": "…", "emissionFactorType": "lifecycle", "isEstimated": false, …}, …]}

and, where the plan includes it, ``/carbon-intensity/forecast?zone=DE`` the hours ahead as
``{"zone": "DE", "forecast": [{"carbonIntensity": 280, "datetime": "…"}, …]}``.  Each entry's
``datetime`` starts its hour; a ``null`` intensity is a gap.  The token goes in the
``auth-token`` header, never in the URL, a log line or an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from ..runtime import Secret
from ..runtime.http import read_json
from .curve import Curve, Period, format_utc, parse_instant
from .provider import HttpProvider, NotPublished, ProviderError

DEFAULT_URL = "https://api.electricitymaps.com/v3"
#: Largest answer read: a day of hourly entries is ~8 KB.
MAX_BODY_BYTES = 1024 * 1024
#: Most entries read from one answer (a history or forecast is 24-72 hours).
MAX_ENTRIES = 2_000
STEP = timedelta(hours=1)
#: Bidding zone → Electricity Maps zone where they differ (``electricity_maps_zone:`` per area
#: in the config adds or overrides); other areas use their own code (AT, BE, FR, NL, PL, …).
DEFAULT_ZONES: dict[str, str] = {
    "DE-LU": "DE",
    "DK1": "DK-DK1",
    "DK2": "DK-DK2",
    "NO1": "NO-NO1",
    "NO2": "NO-NO2",
    "NO3": "NO-NO3",
    "NO4": "NO-NO4",
    "NO5": "NO-NO5",
    "SE1": "SE-SE1",
    "SE2": "SE-SE2",
    "SE3": "SE-SE3",
    "SE4": "SE-SE4",
    "IT-NORD": "IT-NO",
    "IT-CNOR": "IT-CNO",
    "IT-CSUD": "IT-CSO",
    "IT-SUD": "IT-SO",
    "IT-SICI": "IT-SIC",
    "IT-SARD": "IT-SAR",
}


def parse_intensities(doc: Any, key: str, area: str, what: str, source: str) -> list[Period]:
    """The ``history`` or ``forecast`` list of an answer → hourly periods; errors name the entry."""
    if not isinstance(doc, dict):
        raise ProviderError(f"{what}: answer is not a JSON object", "malformed")
    entries = doc.get(key)
    if not isinstance(entries, list):
        raise ProviderError(f"{what}: {key!r} must be a list", "malformed")
    if len(entries) > MAX_ENTRIES:
        raise ProviderError(
            f"{what}: {key!r} has {len(entries)} entries (at most {MAX_ENTRIES})", "too_large"
        )
    periods: dict[datetime, Period] = {}
    for i, entry in enumerate(entries):
        where = f"{what}: {key}[{i}]"
        if not isinstance(entry, dict):
            raise ProviderError(f"{where} is not an object", "malformed")
        value, stamp = entry.get("carbonIntensity"), entry.get("datetime")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ProviderError(f"{where}.carbonIntensity is not a number", "malformed")
        if not 0 <= value <= 5000:
            raise ProviderError(f"{where}.carbonIntensity {value} is outside 0..5000 g/kWh", "malformed")
        if not isinstance(stamp, str):
            raise ProviderError(f"{where}.datetime is not a string", "malformed")
        try:
            start = parse_instant(stamp[:40])
        except ValueError:
            raise ProviderError(
                f"{where}.datetime {stamp[:40]!r} is not an instant with an offset", "malformed"
            ) from None
        periods.setdefault(start, Period(start, start + STEP, float(value)))
    try:
        Curve(area, tuple(periods.values()), source)
    except ValueError as exc:  # overlapping entries: not whole hours apart
        raise ProviderError(f"{what}: {exc}", "malformed") from None
    return list(periods.values())


class ElectricityMapsProvider(HttpProvider):
    """Carbon intensity from the Electricity Maps API (history, and the forecast when enabled)."""

    kind = "electricity_maps"

    def __init__(
        self,
        name: str,
        token: Secret,
        url: str = DEFAULT_URL,
        timeout: float = 30.0,
        zones: Mapping[str, str] | None = None,
        forecast: bool = False,
    ) -> None:
        super().__init__(name, url.rstrip("/"), timeout)
        self.token = token
        self.zones = {**DEFAULT_ZONES, **(zones or {})}
        self.forecast = forecast

    async def _get(self, endpoint: str, area: str, what: str) -> list[Period]:
        key = endpoint.rsplit("/", 1)[-1]

        async def read(response: aiohttp.ClientResponse) -> Any:
            if response.status == 404:
                raise NotPublished(f"{what}: no data for zone (HTTP 404)")
            if response.status != 200:
                raise self.status_error(response.status, response.headers, what)
            return await read_json(response, MAX_BODY_BYTES)

        doc = await self.get(
            {"zone": self.zones.get(area, area)},
            what,
            read,
            path=endpoint,
            headers={"auth-token": self.token.reveal()},
        )
        return parse_intensities(doc, key, area, what, self.name)

    async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
        what = f"{self.name} {area} {format_utc(start)}..{format_utc(end)}"
        periods = await self._get("/carbon-intensity/history", area, what + " history")
        if self.forecast:
            seen = {p.start for p in periods}
            ahead = await self._get("/carbon-intensity/forecast", area, what + " forecast")
            # Measured hours win over forecast ones for the same hour.
            periods += [p for p in ahead if p.start not in seen]
        try:
            curve = Curve(area, tuple(periods), self.name, datetime.now(UTC)).slice(start, end)
        except ValueError as exc:  # forecast hours that overlap measured ones
            raise ProviderError(f"{what}: {exc}", "malformed") from None
        if not curve:
            raise NotPublished(f"{what}: no carbon intensity in the span")
        return curve
