"""ENTSO-E Transparency Platform: day-ahead prices (A44), load forecast (A65), generation (A75).

The REST API answers XML.  Facts this parser relies on:

- A price document is a ``Publication_MarketDocument`` of ``TimeSeries``, each with one or
  more ``Period``s (``timeInterval`` start/end in UTC, a ``resolution`` such as ``PT15M`` or
  ``PT60M``) of ``Point``s (1-based ``position``, ``price.amount`` in EUR/MWh).
- ``curveType`` A03 ("variable sized block") leaves out a point whose price repeats the
  previous one: the missing positions take the last price given, up to the period's end.
  A01 lists every position; a missing one is a gap.
- One document can hold series of different resolutions for the same span (a PT60M and a
  PT15M series); the finest resolution wins where they overlap.
- DE-LU and AT publish two series told apart by
  ``classificationSequence_AttributeInstanceComponent.position``: 1 is the SDAC auction, 2
  the separate EXAA auction.  Wherever a document carries positions, the configured one (1)
  is pinned; when it is missing the fetch fails with reason ``sequence_missing`` (and the
  next provider is tried) instead of silently using the other auction.
- No data is answered with an ``Acknowledgement_MarketDocument`` (often HTTP 200 or 400),
  whose ``Reason`` text explains why.
- Actual generation per production type (A75, processType A16) is a ``GL_MarketDocument``
  with one ``TimeSeries`` per production type (``MktPSRType/psrType``, B01…B20) and
  direction: generation carries ``inBiddingZone_Domain``, consumption (pumping, charging)
  ``outBiddingZone_Domain``; quantities are MW averaged over each period.

Answers are streamed into an incremental, defused parser (``entsoe_xml``) under a byte cap
(``MAX_DOCUMENT_BYTES``, counted after decompression) and an element cap: no answer, however
large or deeply compressed, is held whole.  DTDs are forbidden, so entity expansion ("billion
laughs") and external entities are refused before anything is expanded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp

from ..runtime import Secret, log
from ..runtime.http import BodyError, feed_body, read_body
from .carbon import DEFAULT_MIN_COVERAGE, factor_table, intensity
from .curve import Curve, Period, format_utc
from .entsoe_xml import XmlDocument, XmlStream, parse_document
from .provider import HttpProvider, LoadForecast, NotPublished, ProviderError

logger = logging.getLogger("powerplane.market")

DEFAULT_URL = "https://web-api.tp.entsoe.eu/api"

#: Bidding zone → ENTSO-E EIC code (``eic:`` in the config overrides or adds).
AREA_EIC: dict[str, str] = {
    "DE-LU": "10Y1001A1001A82H",
    "AT": "10YAT-APG------L",
    "BE": "10YBE----------2",
    "BG": "10YCA-BULGARIA-R",
    "CH": "10YCH-SWISSGRIDZ",
    "CZ": "10YCZ-CEPS-----N",
    "DK1": "10YDK-1--------W",
    "DK2": "10YDK-2--------M",
    "EE": "10Y1001A1001A39I",
    "ES": "10YES-REE------0",
    "FI": "10YFI-1--------U",
    "FR": "10YFR-RTE------C",
    "GR": "10YGR-HTSO-----Y",
    "HR": "10YHR-HEP------M",
    "HU": "10YHU-MAVIR----U",
    "IT-NORD": "10Y1001A1001A73I",
    "IT-CNOR": "10Y1001A1001A70O",
    "IT-CSUD": "10Y1001A1001A71M",
    "IT-SUD": "10Y1001A1001A788",
    "IT-SICI": "10Y1001A1001A75E",
    "IT-SARD": "10Y1001A1001A74G",
    "LT": "10YLT-1001A0008Q",
    "LV": "10YLV-1001A00074",
    "NL": "10YNL----------L",
    "NO1": "10YNO-1--------2",
    "NO2": "10YNO-2--------T",
    "NO3": "10YNO-3--------J",
    "NO4": "10YNO-4--------9",
    "NO5": "10Y1001A1001A48H",
    "PL": "10YPL-AREA-----S",
    "PT": "10YPT-REN------W",
    "RO": "10YRO-TEL------P",
    "SE1": "10Y1001A1001A44P",
    "SE2": "10Y1001A1001A45N",
    "SE3": "10Y1001A1001A46L",
    "SE4": "10Y1001A1001A47J",
    "SI": "10YSI-ELES-----O",
    "SK": "10YSK-SEPS-----K",
}


_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?$")
#: Largest (decompressed) answer read: two days of generation per production type are ~1 MB.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
#: Largest error answer read for its acknowledgement reason.
MAX_ERROR_BYTES = 64 * 1024
#: Most periods one Period element may span (a year of quarter-hours is 35,136).
MAX_PERIODS = 40_000


def parse_resolution(text: str, where: str) -> timedelta:
    match = _DURATION.match(text)
    if not match or not (match.group(1) or match.group(2)):
        raise ProviderError(f"{where}: unsupported resolution {text[:16]!r}", "malformed")
    step = timedelta(hours=int(match.group(1) or 0), minutes=int(match.group(2) or 0))
    if step <= timedelta(0):
        raise ProviderError(f"{where}: resolution {text!r} is zero", "malformed")
    return step


def _instant(text: str, where: str) -> datetime:
    # ENTSO-E writes minutes only ("2025-10-25T22:00Z"); accept seconds too.
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ProviderError(f"{where}: bad instant {text[:32]!r}", "malformed") from None
    # Far-off years would overflow the interval arithmetic; no price document needs them.
    if not 1990 <= value.year <= 9000:
        raise ProviderError(f"{where}: bad instant {text[:32]!r} (year out of range)", "malformed")
    return value


def _field(fields: dict[str, str], name: str, where: str) -> str:
    value = fields.get(name)
    if not value:
        raise ProviderError(f"{where}: missing {name}", "malformed")
    return value


def _document(body: bytes | XmlDocument, what: str, value_field: str) -> XmlDocument:
    return body if isinstance(body, XmlDocument) else parse_document(body, what, value_field)


@dataclass(frozen=True)
class _Series:
    sequence: str | None
    curve_type: str
    periods: tuple[tuple[datetime, datetime, timedelta, tuple[tuple[int, float], ...]], ...]
    #: The production type (A75) and whether the series is consumption (outBiddingZone only).
    psr_type: str | None = None
    consumption: bool = False


def _series(doc: XmlDocument, value_field: str, what: str) -> list[_Series]:
    out = []
    for index, ts in enumerate(doc.series, start=1):
        where = f"{what}: TimeSeries {index}"
        fields = ts.fields
        currency = fields.get("currency_Unit.name")
        if value_field == "price.amount" and currency not in (None, "EUR"):
            raise ProviderError(f"{where}: currency {currency[:8]!r} is not EUR", "malformed")
        unit = fields.get("price_Measure_Unit.name")
        if value_field == "price.amount" and unit not in (None, "MWH"):
            raise ProviderError(f"{where}: price unit {unit[:8]!r} is not MWH", "malformed")
        quantity_unit = fields.get("quantity_Measure_Unit.name")
        if value_field == "quantity" and quantity_unit not in (None, "MAW"):
            raise ProviderError(f"{where}: quantity unit {quantity_unit[:8]!r} is not MAW (MW)", "malformed")
        periods = []
        for pindex, period in enumerate(ts.periods, start=1):
            pwhere = f"{where} Period {pindex}"
            start = _instant(_field(period.fields, "timeInterval/start", pwhere), pwhere)
            end = _instant(_field(period.fields, "timeInterval/end", pwhere), pwhere)
            step = parse_resolution(_field(period.fields, "resolution", pwhere), pwhere)
            if end <= start:
                raise ProviderError(f"{pwhere}: timeInterval ends before it starts", "malformed")
            periods.append((start, end, step, tuple(sorted(period.points))))
        out.append(
            _Series(
                fields.get("classificationSequence_AttributeInstanceComponent.position"),
                fields.get("curveType") or "A01",
                tuple(periods),
                fields.get("psrType"),
                "outBiddingZone_Domain.mRID" in fields and "inBiddingZone_Domain.mRID" not in fields,
            )
        )
    return out


def _expand(series: _Series, what: str) -> dict[timedelta, list[Period]]:
    """Periods by resolution, A03 gaps forward-filled."""
    by_step: dict[timedelta, list[Period]] = {}
    for start, end, step, points in series.periods:
        count = int((end - start) / step)
        if count > MAX_PERIODS:
            raise ProviderError(f"{what}: interval of {count} periods is implausibly long", "malformed")
        if start + count * step != end:
            raise ProviderError(
                f"{what}: interval {format_utc(start)}..{format_utc(end)} is not a whole number of {step}",
                "malformed",
            )
        given = dict(points)
        if any(p > count for p in given):
            raise ProviderError(f"{what}: Point position beyond the interval's {count} periods", "malformed")
        last: float | None = None
        for position in range(1, count + 1):
            if position in given:
                last = given[position]
            elif series.curve_type != "A03":
                last = None  # A01: a missing point is a gap, not a repeat
            if last is None:
                continue
            begin = start + (position - 1) * step
            by_step.setdefault(step, []).append(Period(begin, begin + step, last))
            if series.curve_type != "A03":
                last = None
    return by_step


def _check_kind(doc: XmlDocument, expected: str, what: str) -> None:
    if doc.kind == "Acknowledgement_MarketDocument":
        raise NotPublished(f"{what}: no data ({doc.acknowledgement_reason()})")
    if doc.kind != expected:
        raise ProviderError(f"{what}: unexpected document {doc.kind!r}", "malformed")


def _layers(series: list[_Series], area: str, source: str, what: str) -> Curve:
    """The series' periods as one curve, A03 gaps filled; the finest resolution wins on overlaps."""
    by_step: dict[timedelta, list[Period]] = {}
    for s in series:
        for step, periods in _expand(s, what).items():
            by_step.setdefault(step, []).extend(periods)
    curve = Curve(area, source=source)
    for step in sorted(by_step):  # finest resolution first: it wins where they overlap
        layer = Curve(area, tuple(_dedupe(by_step[step])), source)
        curve = curve.merge(layer) if curve else layer
    return curve


def parse_prices(
    body: bytes | XmlDocument,
    area: str,
    sequence: int | None = 1,
    source: str = "entsoe",
    what: str = "entsoe A44",
) -> Curve:
    """An A44 document → a ``Curve``; raises ``NotPublished`` or ``ProviderError``."""
    doc = _document(body, what, "price.amount")
    _check_kind(doc, "Publication_MarketDocument", what)
    series = _series(doc, "price.amount", what)
    if not series:
        raise NotPublished(f"{what}: document without TimeSeries")
    sequenced = [s for s in series if s.sequence is not None]
    if sequenced and sequence is not None:
        chosen = [s for s in sequenced if s.sequence == str(sequence)]
        if not chosen:
            present = ", ".join(sorted({s.sequence or "" for s in sequenced}))
            raise ProviderError(
                f"{what}: {area}: classificationSequence position {sequence} is missing (present: "
                f"{present[:80]}); not substituting another auction's prices",
                "sequence_missing",
            )
        series = chosen
    curve = _layers(series, area, source, what)
    if not curve:
        raise NotPublished(f"{what}: document without points")
    return curve


def _dedupe(periods: list[Period]) -> list[Period]:
    # Two series of one resolution may repeat a period (a re-publication): keep the first.
    seen: dict[datetime, Period] = {}
    for p in periods:
        seen.setdefault(p.start, p)
    return list(seen.values())


def parse_load(body: bytes | XmlDocument, area: str, what: str = "entsoe A65") -> LoadForecast:
    """An A65 (total load forecast) document → MW per period."""
    doc = _document(body, what, "quantity")
    _check_kind(doc, "GL_MarketDocument", what)
    points: dict[datetime, tuple[datetime, datetime, float]] = {}
    for s in _series(doc, "quantity", what):
        for _step, periods in sorted(_expand(s, what).items(), key=lambda item: item[0]):
            for p in periods:
                points.setdefault(p.start, (p.start, p.end, p.price))
    if not points:
        raise NotPublished(f"{what}: document without points")
    return LoadForecast(area, tuple(points[k] for k in sorted(points)))


#: The key of generation without a production type (a TimeSeries lacking MktPSRType).
UNTYPED = "untyped"


def parse_generation(body: bytes | XmlDocument, area: str, what: str = "entsoe A75") -> dict[str, Curve]:
    """An A75 (actual generation per production type) document → MW per period, by psrType.

    Consumption series (pumped storage pumping, batteries charging: an ``outBiddingZone``
    without an ``inBiddingZone``) are not generation and are left out.  A series without a
    production type is kept under ``UNTYPED``: it is generation whose emissions are unknown.
    Several series of one type (a span split by the platform, two resolutions) are merged, the
    finest resolution winning where they overlap.
    """
    doc = _document(body, what, "quantity")
    _check_kind(doc, "GL_MarketDocument", what)
    by_type: dict[str, list[_Series]] = {}
    for s in _series(doc, "quantity", what):
        if not s.consumption:
            by_type.setdefault((s.psr_type or UNTYPED)[:8], []).append(s)
    generation = {code: _layers(series, area, code, what) for code, series in sorted(by_type.items())}
    generation = {code: curve for code, curve in generation.items() if curve}
    if not generation:
        raise NotPublished(f"{what}: document without generation points")
    return generation


def _stamp(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y%m%d%H%M")


class EntsoeProvider(HttpProvider):
    """Day-ahead prices from the ENTSO-E Transparency Platform (your own security token)."""

    kind = "entsoe"

    def __init__(
        self,
        name: str,
        token: Secret,
        url: str = DEFAULT_URL,
        timeout: float = 30.0,
        sequence: int | None = 1,
        eic: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, url, timeout)
        self.token = token
        self.sequence = sequence
        self.eic = {**AREA_EIC, **(eic or {})}

    def supports(self, area: str) -> bool:
        return area in self.eic

    def _domain(self, area: str) -> str:
        try:
            return self.eic[area]
        except KeyError:
            raise ProviderError(f"{self.name}: no EIC code known for area {area!r}", "other") from None

    async def _query(self, params: dict[str, str], what: str, value_field: str) -> XmlDocument:
        """One API request, its XML streamed into the incremental parser under the byte cap."""

        async def read(response: aiohttp.ClientResponse) -> XmlDocument:
            if response.status == 200:
                stream = XmlStream(what, value_field)
                await feed_body(response, stream.feed, MAX_DOCUMENT_BYTES)
                return stream.close()
            raise await self._refusal(response, what)

        # The token travels as a query parameter (the API's only way); it never enters a message.
        return await self.get({**params, "securityToken": self.token.reveal()}, what, read)

    async def _refusal(self, response: aiohttp.ClientResponse, what: str) -> ProviderError:
        """The error for a non-200 answer, with the acknowledgement's reason when it has one."""
        detail = ""
        try:
            body = await read_body(response, MAX_ERROR_BYTES)
        except BodyError:
            body = b""
        if body.lstrip().startswith(b"<"):
            try:
                doc = parse_document(body, what)
            except ProviderError:
                doc = XmlDocument()
            if doc.kind == "Acknowledgement_MarketDocument":
                detail = doc.acknowledgement_reason()
                if response.status == 400 and "no matching data" in detail.lower():
                    return NotPublished(f"{what}: no data ({detail})")
        return self.status_error(response.status, response.headers, what, detail)

    async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
        domain = self._domain(area)
        what = f"{self.name} A44 {area} {format_utc(start)}..{format_utc(end)}"
        body = await self._query(
            {
                "documentType": "A44",
                "in_Domain": domain,
                "out_Domain": domain,
                "periodStart": _stamp(start),
                "periodEnd": _stamp(end),
            },
            what,
            "price.amount",
        )
        curve = parse_prices(body, area, self.sequence, self.name, what)
        return Curve(area, curve.slice(start, end).periods, self.name, datetime.now(UTC))

    async def fetch_load(self, area: str, start: datetime, end: datetime) -> LoadForecast:
        domain = self._domain(area)
        what = f"{self.name} A65 {area} {format_utc(start)}..{format_utc(end)}"
        body = await self._query(
            {
                "documentType": "A65",
                "processType": "A01",
                "outBiddingZone_Domain": domain,
                "periodStart": _stamp(start),
                "periodEnd": _stamp(end),
            },
            what,
            "quantity",
        )
        return parse_load(body, area, what)


class EntsoeCarbonProvider(EntsoeProvider):
    """Grid carbon intensity from ENTSO-E's actual generation per production type (A75, A16).

    ``fetch`` answers a ``Curve`` of gCO2eq/kWh per period (see ``carbon.intensity``), so it
    stands in the carbon feed's fallback chain like any other provider.
    """

    def __init__(
        self,
        name: str,
        token: Secret,
        url: str = DEFAULT_URL,
        timeout: float = 30.0,
        eic: dict[str, str] | None = None,
        factors: Mapping[str, float] | None = None,
        min_coverage: float = DEFAULT_MIN_COVERAGE,
    ) -> None:
        super().__init__(name, token, url, timeout, None, eic)
        self.factors = dict(factors) if factors is not None else factor_table()
        self.min_coverage = min_coverage
        self._reported: set[tuple[str, str]] = set()

    async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
        domain = self._domain(area)
        what = f"{self.name} A75 {area} {format_utc(start)}..{format_utc(end)}"
        doc = await self._query(
            {
                "documentType": "A75",
                "processType": "A16",
                "in_Domain": domain,
                "periodStart": _stamp(start),
                "periodEnd": _stamp(end),
            },
            what,
            "quantity",
        )
        generation = parse_generation(doc, area, what)
        try:
            result = intensity(area, generation, self.factors, start, end, self.min_coverage, self.name)
        except ProviderError as exc:
            raise ProviderError(f"{what}: {exc}", exc.reason) from None
        for code in result.unknown_types:
            if (area, code) not in self._reported:  # once per area and code, not per fetch
                self._reported.add((area, code))
                log(
                    logger,
                    logging.WARNING,
                    "production type without an emission factor",
                    area=area,
                    provider=self.name,
                    psr_type=code,
                )
        if not result.curve:
            raise NotPublished(
                f"{what}: no period where generation with a known emission factor covers "
                f"{self.min_coverage:.0%} of the total ({result.gaps} incomplete)"
            )
        return Curve(area, result.curve.periods, self.name, datetime.now(UTC))
