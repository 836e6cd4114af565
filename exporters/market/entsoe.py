"""ENTSO-E Transparency Platform: day-ahead prices (A44) and the total load forecast (A65).

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

XML is parsed with defusedxml with DTDs forbidden: entity expansion ("billion laughs") and
external entities are refused before anything is expanded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ..runtime import Secret
from .curve import Curve, Period, format_utc
from .provider import HttpProvider, LoadForecast, NotPublished, ProviderError

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
#: Largest document accepted: a year of quarter-hours is ~3 MB; anything far larger is not a price doc.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
#: Most periods one Period element may span (a year of quarter-hours is 35,136).
MAX_PERIODS = 40_000


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _children(element: Element, name: str) -> Iterator[Element]:
    for child in element:
        if _local(child.tag) == name:
            yield child


def _text(element: Element, path: str, where: str) -> str:
    """Text of the descendant at dotted-local-name ``path`` (``timeInterval/start``)."""
    node: Element | None = element
    for part in path.split("/"):
        node = _child(node, part) if node is not None else None
    if node is None or node.text is None or not node.text.strip():
        raise ProviderError(f"{where}: missing {path}", "malformed")
    return node.text.strip()


def _optional_text(element: Element, name: str) -> str | None:
    node = _child(element, name)
    return node.text.strip() if node is not None and node.text and node.text.strip() else None


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


def parse_xml(body: bytes, what: str) -> Element:
    """Parse an ENTSO-E answer safely; DTDs (and so entities) are refused outright."""
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ProviderError(f"{what}: document of {len(body)} bytes is too large", "malformed")
    try:
        root: Element = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ProviderError(f"{what}: refused hostile XML ({type(exc).__name__})", "malformed") from None
    except ParseError as exc:
        raise ProviderError(f"{what}: malformed XML: {exc}", "malformed") from None
    return root


def acknowledgement_reason(root: Element) -> str:
    reasons = []
    for reason in _children(root, "Reason"):
        code = _optional_text(reason, "code") or ""
        text = _optional_text(reason, "text") or ""
        reasons.append(" ".join(part for part in (code, text) if part))
    # The text is the platform's; keep it short in logs.
    return "; ".join(reasons)[:300] or "no reason given"


@dataclass(frozen=True)
class _Series:
    sequence: str | None
    curve_type: str
    periods: tuple[tuple[datetime, datetime, timedelta, tuple[tuple[int, float], ...]], ...]


def _series(root: Element, value_field: str, what: str) -> list[_Series]:
    out = []
    for index, ts in enumerate(_children(root, "TimeSeries"), start=1):
        where = f"{what}: TimeSeries {index}"
        currency = _optional_text(ts, "currency_Unit.name")
        if value_field == "price.amount" and currency not in (None, "EUR"):
            raise ProviderError(f"{where}: currency {currency[:8]!r} is not EUR", "malformed")
        unit = _optional_text(ts, "price_Measure_Unit.name")
        if value_field == "price.amount" and unit not in (None, "MWH"):
            raise ProviderError(f"{where}: price unit {unit[:8]!r} is not MWH", "malformed")
        periods = []
        for pindex, period in enumerate(_children(ts, "Period"), start=1):
            pwhere = f"{where} Period {pindex}"
            start = _instant(_text(period, "timeInterval/start", pwhere), pwhere)
            end = _instant(_text(period, "timeInterval/end", pwhere), pwhere)
            step = parse_resolution(_text(period, "resolution", pwhere), pwhere)
            if end <= start:
                raise ProviderError(f"{pwhere}: timeInterval ends before it starts", "malformed")
            points = []
            for point in _children(period, "Point"):
                try:
                    position = int(_text(point, "position", pwhere))
                    amount = float(_text(point, value_field, pwhere))
                except ValueError:
                    raise ProviderError(f"{pwhere}: Point with a non-numeric field", "malformed") from None
                if position < 1 or amount != amount or amount in (float("inf"), float("-inf")):
                    raise ProviderError(f"{pwhere}: Point position {position} out of range", "malformed")
                points.append((position, amount))
            periods.append((start, end, step, tuple(sorted(points))))
        out.append(
            _Series(
                _optional_text(ts, "classificationSequence_AttributeInstanceComponent.position"),
                _optional_text(ts, "curveType") or "A01",
                tuple(periods),
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


def parse_prices(
    body: bytes, area: str, sequence: int | None = 1, source: str = "entsoe", what: str = "entsoe A44"
) -> Curve:
    """An A44 document → a ``Curve``; raises ``NotPublished`` or ``ProviderError``."""
    root = parse_xml(body, what)
    kind = _local(root.tag)
    if kind == "Acknowledgement_MarketDocument":
        raise NotPublished(f"{what}: no data ({acknowledgement_reason(root)})")
    if kind != "Publication_MarketDocument":
        raise ProviderError(f"{what}: unexpected document {kind[:64]!r}", "malformed")
    series = _series(root, "price.amount", what)
    if not series:
        raise NotPublished(f"{what}: document without TimeSeries")
    sequenced = [s for s in series if s.sequence is not None]
    if sequenced and sequence is not None:
        chosen = [s for s in sequenced if s.sequence == str(sequence)]
        if not chosen:
            present = ", ".join(sorted({s.sequence or "" for s in sequenced}))
            raise ProviderError(
                f"{what}: {area}: classificationSequence position {sequence} is missing (present: "
                f"{present}); not substituting another auction's prices",
                "sequence_missing",
            )
        series = chosen
    by_step: dict[timedelta, list[Period]] = {}
    for s in series:
        for step, periods in _expand(s, what).items():
            by_step.setdefault(step, []).extend(periods)
    curve = Curve(area, source=source)
    for step in sorted(by_step):  # finest resolution first: it wins where they overlap
        layer = Curve(area, tuple(_dedupe(by_step[step])), source)
        curve = curve.merge(layer) if curve else layer
    if not curve:
        raise NotPublished(f"{what}: document without points")
    return curve


def _dedupe(periods: list[Period]) -> list[Period]:
    # Two series of one resolution may repeat a period (a re-publication): keep the first.
    seen: dict[datetime, Period] = {}
    for p in periods:
        seen.setdefault(p.start, p)
    return list(seen.values())


def parse_load(body: bytes, area: str, what: str = "entsoe A65") -> LoadForecast:
    """An A65 (total load forecast) document → MW per period."""
    root = parse_xml(body, what)
    kind = _local(root.tag)
    if kind == "Acknowledgement_MarketDocument":
        raise NotPublished(f"{what}: no data ({acknowledgement_reason(root)})")
    if kind != "GL_MarketDocument":
        raise ProviderError(f"{what}: unexpected document {kind[:64]!r}", "malformed")
    points: dict[datetime, tuple[datetime, datetime, float]] = {}
    for s in _series(root, "quantity", what):
        for _step, periods in sorted(_expand(s, what).items(), key=lambda item: item[0]):
            for p in periods:
                points.setdefault(p.start, (p.start, p.end, p.price))
    if not points:
        raise NotPublished(f"{what}: document without points")
    return LoadForecast(area, tuple(points[k] for k in sorted(points)))


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

    async def _query(self, params: dict[str, str], what: str) -> bytes:
        # The token travels as a query parameter (the API's only way); it never enters a message.
        status, body, headers = await self.get({**params, "securityToken": self.token.reveal()}, what)
        if status == 200:
            return body
        detail = ""
        if body.lstrip().startswith(b"<"):
            try:
                root = parse_xml(body, what)
                if _local(root.tag) == "Acknowledgement_MarketDocument":
                    reason = acknowledgement_reason(root)
                    if status == 400 and "no matching data" in reason.lower():
                        raise NotPublished(f"{what}: no data ({reason})")
                    detail = reason
            except NotPublished:
                raise
            except ProviderError:
                pass
        raise self.status_error(status, headers, what, detail)

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
        )
        return parse_load(body, area, what)
