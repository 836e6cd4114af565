"""Simulated day-ahead markets: price curves, fake ENTSO-E and Energy-Charts servers, the demo part.

Nothing here is real market data: every curve is computed from a made-up daily shape (night
trough, morning ramp, a solar dip with negative prices at noon, an evening peak), and every
XML or JSON document is written by this module in the shape the real APIs use.

The fake servers answer on 127.0.0.1 and can be told to misbehave for the next requests::

    fake = FakeEntsoe(token="t0ken", curves={"DE-LU": curve})
    url = await fake.start()
    fake.fail("429", times=2)        # 401, 429, 503, timeout, empty, ack, malformed, hostile
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import yaml
from aiohttp import web

from powerplane.exporters.market.curve import Curve, Period, area_timezone, day_bounds, format_utc, local_day
from powerplane.exporters.market.entsoe import AREA_EIC

QUARTER = timedelta(minutes=15)
PUBLICATION_NS = "urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3"
LOAD_NS = "urn:iec62325.351:tc57wg16:451-6:generationloaddocument:3:0"
ACK_NS = "urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:7:0"

#: A billion-laughs document: entity expansion that a safe parser must refuse.
BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n<Publication_MarketDocument>&lol9;</Publication_MarketDocument>\n"
)
#: An external entity pointing at a local file.
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE doc [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b"<Publication_MarketDocument><TimeSeries>&xxe;</TimeSeries></Publication_MarketDocument>\n"
)


MIB = 1 << 20


def _compressed(fill: bytes, size: int, wbits: int) -> bytes:
    """``size`` bytes of ``fill`` compressed a MiB at a time (never materialised whole)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = fill * MIB
    parts = []
    for offset in range(0, size, MIB):
        parts.append(compressor.compress(block[: min(MIB, size - offset)]))
    parts.append(compressor.flush())
    return b"".join(parts)


@functools.lru_cache(maxsize=8)
def gzip_bomb(
    inflated: int = 1 << 30, member: int = 64 << 20, prefix: bytes = b"", fill: bytes = b"\0"
) -> bytes:
    """``prefix`` then ``fill`` up to ``inflated`` bytes, gzip-compressed to about 1/1000: 1 GiB in ~1 MB.

    Built from concatenated gzip members (RFC 1952 allows several; HTTP clients inflate them
    all), so that making a 1 GiB bomb costs one 64 MiB compression instead of a 1 GiB one.
    With ``prefix`` an XML or JSON opening and ``fill`` whitespace, the inflated body stays
    well-formed as far as it goes, so only a byte cap stops it (not a parse error).
    """
    count, rest = divmod(inflated - len(prefix), member)
    head = gzip.compress(prefix, 9) if prefix else b""
    body = _compressed(fill, member, 31) * count
    return head + body + (_compressed(fill, rest, 31) if rest else b"")


@functools.lru_cache(maxsize=4)
def deflate_bomb(inflated: int = 64 << 20) -> bytes:
    """``inflated`` zero bytes as one zlib stream (HTTP ``Content-Encoding: deflate``)."""
    return _compressed(b"\0", inflated, 15)


_XML_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<Publication_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3">'
    b"<mRID>hostile</mRID><TimeSeries><curveType>A01</curveType><Period><timeInterval>"
    b"<start>2025-11-20T23:00Z</start><end>2025-11-21T23:00Z</end></timeInterval>"
    b"<resolution>PT15M</resolution>"
)


def _repeat(unit: bytes, total: int, chunk: int = MIB) -> Iterator[bytes]:
    """``unit`` repeated to ``total`` bytes, in chunks of about ``chunk``."""
    block = unit * max(1, chunk // len(unit))
    sent = 0
    while sent < total:
        piece = block[: total - sent]
        sent += len(piece)
        yield piece


def hostile_xml(kind: str) -> Iterator[bytes]:
    """The body of a hostile ENTSO-E answer, generated chunk by chunk (never held whole).

    - ``huge``: a 100 MB price document, its bulk in long ``mRID`` texts (few elements);
    - ``tiny_elements``: 16 MiB of valid Points, one per ~70 bytes (under a 16 MiB byte cap);
    - ``long_text``: one 15 MiB number in ``price.amount``;
    - ``deep``: 16 MiB of nested elements;
    - ``endless``: a document that never ends (bounded here at 4 GiB).
    """
    yield _XML_HEAD
    if kind == "huge":
        text = (
            b"<Point><position>1</position><price.amount>1</price.amount><mRID>"
            + b"x" * MIB
            + b"</mRID></Point>"
        )
        yield from _repeat(text, 100 * MIB)
        yield b"</Period></TimeSeries></Publication_MarketDocument>"
    elif kind == "tiny_elements":
        budget = 16 * MIB - 2048
        position = 0
        while budget > 0:
            points = []
            for _ in range(10_000):
                position += 1
                points.append(f"<Point><position>{position}</position><price.amount>1</price.amount></Point>")
            piece = "".join(points).encode()[:budget]
            budget -= len(piece)
            yield piece
    elif kind == "long_text":
        yield b"<Point><position>1</position><price.amount>"
        yield from _repeat(b"1", 15 * MIB)
        yield b"</price.amount></Point></Period></TimeSeries></Publication_MarketDocument>"
    elif kind == "deep":
        yield from _repeat(b"<a>", 16 * MIB)
    elif kind == "endless":
        yield from _repeat(b"<!-- more -->", 4096 * MIB)
    else:
        raise ValueError(f"unknown hostile document {kind!r}")


def hostile_json(kind: str) -> Iterator[bytes]:
    """The body of a hostile Energy-Charts answer: ``huge`` (100 MB of numbers), ``deep`` nesting."""
    if kind == "huge":
        yield b'{"unix_seconds": ['
        yield from _repeat(b"1700000000,", 100 * MIB)
        yield b'1], "price": []}'
    elif kind == "deep":
        yield from _repeat(b"[", MIB // 2)
    else:
        raise ValueError(f"unknown hostile document {kind!r}")


# --- curves ---------------------------------------------------------------------------------


def daily_shape(hour: float) -> float:
    """A made-up day-ahead price (EUR/MWh) at local ``hour`` (0..24)."""
    base = 70.0
    morning = 45.0 * math.exp(-(((hour - 8.0) / 1.5) ** 2))
    evening = 110.0 * math.exp(-(((hour - 19.0) / 1.8) ** 2))
    solar = -105.0 * math.exp(-(((hour - 13.0) / 2.2) ** 2))  # negative around noon
    night = -20.0 * math.exp(-(((hour - 3.5) / 2.0) ** 2))
    return round(base + morning + evening + solar + night, 2)


def profile(step: timedelta = QUARTER) -> list[float]:
    """One price per slot of a 24-hour wall-clock day."""
    slots = int(timedelta(days=1) / step)
    return [daily_shape(i * step.total_seconds() / 3600) for i in range(slots)]


def day_curve(
    area: str, day: date, tz: ZoneInfo | None = None, step: timedelta = QUARTER, bias: float = 0.0
) -> Curve:
    """The made-up prices of local ``day``: 92, 96 or 100 quarter-hours depending on DST."""
    zone = tz or area_timezone(area)
    start, end = day_bounds(day, zone)
    periods = []
    cursor = start
    while cursor < end:
        local = cursor.astimezone(zone)
        hour = local.hour + local.minute / 60
        periods.append(Period(cursor, cursor + step, round(daily_shape(hour) + bias, 2)))
        cursor += step
    return Curve(area, tuple(periods), "lab")


def days_curve(
    area: str, first: date, days: int, tz: ZoneInfo | None = None, step: timedelta = QUARTER
) -> Curve:
    curve = Curve(area)
    for i in range(days):
        part = day_curve(area, first + timedelta(days=i), tz, step, bias=3.0 * i)
        curve = curve.merge(part) if curve else part
    return curve


def with_spike(curve: Curve, start: datetime, periods: int = 4, price: float = 480.0) -> Curve:
    """``curve`` with ``periods`` periods from ``start`` priced at ``price`` (a scarcity spike)."""
    out = []
    spiking = 0
    for p in curve.periods:
        if p.start >= start and spiking < periods:
            out.append(Period(p.start, p.end, price))
            spiking += 1
        else:
            out.append(p)
    return Curve(curve.area, tuple(out), curve.source, curve.fetched_at)


def write_static_yaml(path: Path, curve: Curve) -> Path:
    """A static-provider YAML file with ``curve``'s periods."""
    doc = {
        "area": curve.area,
        "periods": [
            {"start": format_utc(p.start), "end": format_utc(p.end), "price": p.price} for p in curve
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_profile_yaml(path: Path, area: str | None = None, step: timedelta = QUARTER) -> Path:
    """A static-provider YAML file with a repeating daily profile."""
    doc: dict[str, Any] = {"resolution_minutes": int(step.total_seconds() // 60), "profile": profile(step)}
    if area:
        doc["area"] = area
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def demo_curve(area: str, now: datetime, spike_in: timedelta = QUARTER, spike_periods: int = 4) -> Curve:
    """Today and tomorrow, with a spike starting at the period after ``now + spike_in``'s start."""
    tz = area_timezone(area)
    curve = days_curve(area, local_day(now, tz), 2, tz)
    at = curve.period_at(now + spike_in)
    return with_spike(curve, at.start, spike_periods) if at else curve


# --- ENTSO-E documents ----------------------------------------------------------------------


def _stamp(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


@dataclass
class SeriesSpec:
    """One TimeSeries of a price document: one Period per (start, step, points) block."""

    blocks: list[tuple[datetime, datetime, timedelta, list[tuple[int, float]]]]
    curve_type: str = "A03"
    sequence: int | None = None
    domain: str = AREA_EIC["DE-LU"]


def series_from_curve(
    curve: Curve, curve_type: str = "A03", sequence: int | None = None, domain: str | None = None
) -> SeriesSpec:
    """A TimeSeries for ``curve`` (one uniform block per local day); A03 omits repeated prices."""
    tz = area_timezone(curve.area)
    blocks = []
    days = sorted({local_day(p.start, tz) for p in curve})
    for day in days:
        part = curve.day(day, tz)
        if not part:
            continue
        step = part.periods[0].end - part.periods[0].start
        points: list[tuple[int, float]] = []
        previous: float | None = None
        for i, p in enumerate(part.periods, start=1):
            if curve_type == "A03" and previous == p.price:
                continue
            points.append((i, p.price))
            previous = p.price
        assert part.start is not None and part.end is not None
        blocks.append((part.start, part.end, step, points))
    return SeriesSpec(blocks, curve_type, sequence, domain or AREA_EIC.get(curve.area, AREA_EIC["DE-LU"]))


def _duration(step: timedelta) -> str:
    return f"PT{int(step.total_seconds() // 60)}M"


def publication_document(series: Sequence[SeriesSpec], value_field: str = "price.amount") -> bytes:
    """A Publication_MarketDocument (A44) in the ENTSO-E shape."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<Publication_MarketDocument xmlns="{PUBLICATION_NS}">',
        "<mRID>lab-document</mRID><revisionNumber>1</revisionNumber><type>A44</type>",
    ]
    for n, s in enumerate(series, start=1):
        out.append("<TimeSeries>")
        out.append(f"<mRID>{n}</mRID><auction.type>A01</auction.type><businessType>A62</businessType>")
        out.append(f'<in_Domain.mRID codingScheme="A01">{escape(s.domain)}</in_Domain.mRID>')
        out.append(f'<out_Domain.mRID codingScheme="A01">{escape(s.domain)}</out_Domain.mRID>')
        out.append("<contract_MarketAgreement.type>A01</contract_MarketAgreement.type>")
        out.append(
            "<currency_Unit.name>EUR</currency_Unit.name><price_Measure_Unit.name>MWH</price_Measure_Unit.name>"
        )
        if s.sequence is not None:
            out.append(
                "<classificationSequence_AttributeInstanceComponent.position>"
                f"{s.sequence}</classificationSequence_AttributeInstanceComponent.position>"
            )
        out.append(f"<curveType>{s.curve_type}</curveType>")
        for start, end, step, points in s.blocks:
            out.append(
                f"<Period><timeInterval><start>{_stamp(start)}</start><end>{_stamp(end)}</end></timeInterval>"
                f"<resolution>{_duration(step)}</resolution>"
            )
            for position, value in points:
                out.append(
                    f"<Point><position>{position}</position><{value_field}>{value}</{value_field}></Point>"
                )
            out.append("</Period>")
        out.append("</TimeSeries>")
    out.append("</Publication_MarketDocument>")
    return "\n".join(out).encode()


def load_document(points: Sequence[tuple[datetime, timedelta, list[float]]], domain: str) -> bytes:
    """A GL_MarketDocument (A65 total load forecast): blocks of (start, step, MW values)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<GL_MarketDocument xmlns="{LOAD_NS}">',
        "<mRID>lab-load</mRID><type>A65</type><process.processType>A01</process.processType>",
        "<TimeSeries><mRID>1</mRID><businessType>A04</businessType>",
        f'<outBiddingZone_Domain.mRID codingScheme="A01">{escape(domain)}</outBiddingZone_Domain.mRID>',
        "<quantity_Measure_Unit.name>MAW</quantity_Measure_Unit.name><curveType>A01</curveType>",
    ]
    for start, step, values in points:
        end = start + step * len(values)
        out.append(
            f"<Period><timeInterval><start>{_stamp(start)}</start><end>{_stamp(end)}</end></timeInterval>"
            f"<resolution>{_duration(step)}</resolution>"
        )
        for i, mw in enumerate(values, start=1):
            out.append(f"<Point><position>{i}</position><quantity>{mw}</quantity></Point>")
        out.append("</Period>")
    out.append("</TimeSeries></GL_MarketDocument>")
    return "\n".join(out).encode()


# --- generation per production type (A75) and carbon intensity ------------------------------


def _bell(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


#: A made-up generation mix (MW by local hour) loosely shaped like a winter-sunny German day.
GENERATION_SHAPES: dict[str, Callable[[float], float]] = {
    "B01": lambda h: 4500.0,  # biomass
    "B02": lambda h: 9000.0 + 1500.0 * _bell(h, 18.0, 4.0),  # lignite
    "B04": lambda h: 3000.0 + 6000.0 * _bell(h, 19.0, 2.0),  # gas, evening peak
    "B05": lambda h: 2500.0 + 2000.0 * _bell(h, 8.0, 2.5),  # hard coal
    "B10": lambda h: 1800.0 * _bell(h, 20.0, 1.5),  # pumped storage, generating
    "B11": lambda h: 1500.0,  # run-of-river
    "B16": lambda h: 28000.0 * _bell(h, 13.0, 2.8),  # solar
    "B17": lambda h: 700.0,  # waste
    "B18": lambda h: 3000.0 + 500.0 * math.sin(h / 24 * 2 * math.pi),  # wind offshore
    "B19": lambda h: 12000.0 + 5000.0 * math.cos(h / 24 * 2 * math.pi),  # wind onshore
}
#: Pumped storage pumping at night: consumption, which is not generation.
PUMPING_SHAPE: Callable[[float], float] = lambda h: 1400.0 * _bell(h, 3.0, 2.0)  # noqa: E731


def _shaped(
    area: str, start: datetime, end: datetime, step: timedelta, shape: Callable[[float], float]
) -> Curve:
    tz = area_timezone(area)
    periods = []
    cursor = start
    while cursor < end:
        local = cursor.astimezone(tz)
        periods.append(Period(cursor, cursor + step, round(shape(local.hour + local.minute / 60), 1)))
        cursor += step
    return Curve(area, tuple(periods), "lab")


def generation_mix(area: str, start: datetime, end: datetime, step: timedelta = QUARTER) -> dict[str, Curve]:
    """MW per production type over [start, end), from ``GENERATION_SHAPES``."""
    return {code: _shaped(area, start, end, step, shape) for code, shape in GENERATION_SHAPES.items()}


def pumping(area: str, start: datetime, end: datetime, step: timedelta = QUARTER) -> Curve:
    return _shaped(area, start, end, step, PUMPING_SHAPE)


def mix_intensity(mix: dict[str, Curve], factors: dict[str, float], at: datetime) -> float:
    """The intensity at ``at`` computed by hand: sum(MW x factor) / sum(MW) over typed generation."""
    values = {code: curve.price_at(at) for code, curve in mix.items()}
    known = {code: mw for code, mw in values.items() if mw is not None and code in factors}
    return sum(mw * factors[code] for code, mw in known.items()) / sum(known.values())


@dataclass
class GenerationSeries:
    """One A75 TimeSeries: a production type (None: no MktPSRType), a direction and its periods."""

    psr_type: str | None
    curve: Curve
    consumption: bool = False
    #: Positions (1-based, per day block) left out of the document: gaps.
    missing: frozenset[int] = frozenset()


def generation_document(series: Sequence[GenerationSeries], domain: str) -> bytes:
    """A GL_MarketDocument (A75, actual generation per production type), one block per series."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<GL_MarketDocument xmlns="{LOAD_NS}">',
        "<mRID>lab-generation</mRID><type>A75</type><process.processType>A16</process.processType>",
    ]
    for n, s in enumerate(series, start=1):
        if not s.curve:
            continue
        zone = "outBiddingZone_Domain" if s.consumption else "inBiddingZone_Domain"
        out.append(
            f"<TimeSeries><mRID>{n}</mRID><businessType>A01</businessType><objectAggregation>A08</objectAggregation>"
        )
        out.append(f'<{zone}.mRID codingScheme="A01">{escape(domain)}</{zone}.mRID>')
        out.append("<quantity_Measure_Unit.name>MAW</quantity_Measure_Unit.name><curveType>A01</curveType>")
        if s.psr_type is not None:
            out.append(f"<MktPSRType><psrType>{escape(s.psr_type)}</psrType></MktPSRType>")
        first = s.curve.periods[0]
        step = first.end - first.start
        assert s.curve.start is not None and s.curve.end is not None
        out.append(
            f"<Period><timeInterval><start>{_stamp(s.curve.start)}</start><end>{_stamp(s.curve.end)}</end>"
            f"</timeInterval><resolution>{_duration(step)}</resolution>"
        )
        for i, p in enumerate(s.curve.periods, start=1):
            if i not in s.missing:
                out.append(f"<Point><position>{i}</position><quantity>{p.price}</quantity></Point>")
        out.append("</Period></TimeSeries>")
    out.append("</GL_MarketDocument>")
    return "\n".join(out).encode()


def hourly(curve: Curve) -> Curve:
    """``curve`` averaged to whole hours (a production type published hourly)."""
    hours: dict[datetime, list[float]] = {}
    for p in curve:
        hours.setdefault(p.start.replace(minute=0, second=0, microsecond=0), []).append(p.price)
    return Curve(
        curve.area,
        tuple(
            Period(h, h + timedelta(hours=1), round(sum(v) / len(v), 1))
            for h, v in hours.items()
            if len(v) == 4
        ),
        curve.source,
    )


#: Faults of the generation document (A75) only: the others apply to every query.
GENERATION_FAULTS = ("missing_psr", "unknown_psr", "untyped", "gaps", "mixed_resolution")


def faulty_generation(
    mix: dict[str, Curve], fault: str | None, pumped: Curve | None = None
) -> list[GenerationSeries]:
    """The A75 series for ``mix`` with ``fault`` applied.

    - ``missing_psr``: lignite (B02) missing from the last hour, as when one TSO publishes late;
    - ``unknown_psr``: an extra series of a code without an emission factor (B99, 40 GW);
    - ``untyped``: an extra series without MktPSRType (30 GW);
    - ``gaps``: every series misses positions 3 and 4 (A01: gaps, not repeats);
    - ``mixed_resolution``: gas (B04) published hourly, the rest quarter-hourly.
    """
    series = [GenerationSeries(code, curve) for code, curve in sorted(mix.items())]
    if pumped is not None:
        series.append(GenerationSeries("B10", pumped, consumption=True))
    if fault == "missing_psr":
        lignite = mix["B02"]
        assert lignite.end is not None
        kept = lignite.slice(lignite.start or lignite.end, lignite.end - timedelta(hours=1))
        series = [
            GenerationSeries(s.psr_type, kept, s.consumption)
            if s.psr_type == "B02" and not s.consumption
            else s
            for s in series
        ]
    elif fault in ("unknown_psr", "untyped"):
        base = next(iter(mix.values()))
        flood = Curve(
            base.area,
            tuple(Period(p.start, p.end, 40000.0 if fault == "unknown_psr" else 30000.0) for p in base),
            "lab",
        )
        series.append(GenerationSeries("B99" if fault == "unknown_psr" else None, flood))
    elif fault == "gaps":
        series = [GenerationSeries(s.psr_type, s.curve, s.consumption, frozenset({3, 4})) for s in series]
    elif fault == "mixed_resolution":
        series = [
            GenerationSeries(s.psr_type, hourly(s.curve), s.consumption) if s.psr_type == "B04" else s
            for s in series
        ]
    return series


def carbon_profile_yaml(path: Path, base: float = 380.0) -> Path:
    """A static carbon curve (a daily profile of gCO2eq/kWh, lower around noon)."""
    doc = {
        "resolution_minutes": 60,
        "profile": [round(base - 150.0 * _bell(h, 13.0, 3.0), 1) for h in range(24)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def electricity_maps_entries(curve: Curve, area_zone: str) -> list[dict[str, Any]]:
    """Electricity Maps history/forecast entries for ``curve`` (gCO2eq/kWh per hour)."""
    return [
        {
            "zone": area_zone,
            "carbonIntensity": p.price,
            "datetime": p.start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "updatedAt": p.end.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "emissionFactorType": "lifecycle",
            "isEstimated": False,
        }
        for p in curve
    ]


def acknowledgement_document(reason: str = "No matching data found for Data item ENERGY_PRICES") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Acknowledgement_MarketDocument xmlns="{ACK_NS}">'
        "<mRID>lab-ack</mRID><createdDateTime>2025-01-01T00:00:00Z</createdDateTime>"
        f"<Reason><code>999</code><text>{escape(reason)}</text></Reason>"
        "</Acknowledgement_MarketDocument>\n"
    ).encode()


def energy_charts_document(curve: Curve) -> dict[str, Any]:
    """An Energy-Charts /price answer for ``curve``."""
    return {
        "license_info": "lab data, not real prices",
        "unix_seconds": [int(p.start.timestamp()) for p in curve],
        "price": [p.price for p in curve],
        "unit": "EUR / MWh",
        "deprecated": False,
    }


# --- fake servers ---------------------------------------------------------------------------

FAULTS = ("401", "429", "503", "timeout", "empty", "ack", "malformed", "hostile")
#: Faults that attack the client's memory: compression bombs and oversized or endless bodies.
MEMORY_FAULTS = ("gzip_bomb", "huge", "tiny_elements", "long_text", "deep", "endless")


@dataclass
class _Faults:
    queue: list[str] = field(default_factory=list)

    def next(self) -> str | None:
        return self.queue.pop(0) if self.queue else None


class _FakeServer:
    def __init__(self, curves: dict[str, Curve], stall_seconds: float = 60.0) -> None:
        self.curves = dict(curves)
        self.faults = _Faults()
        self.requests: list[dict[str, str]] = []
        self.stall_seconds = stall_seconds
        self._runner: web.AppRunner | None = None
        self.url = ""

    def fail(self, fault: str, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``fault`` (one of ``FAULTS``)."""
        known = FAULTS + MEMORY_FAULTS + GENERATION_FAULTS
        if fault not in known:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(known)}")
        self.faults.queue.extend([fault] * times)

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname() if sockets else (host, port)
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _stream(
        self, request: web.Request, chunks: Iterator[bytes], content_type: str, encoding: str | None = None
    ) -> web.StreamResponse:
        """A chunked answer written as the client reads it; stops when the client goes away."""
        headers = {"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        try:
            for chunk in chunks:
                await response.write(chunk)
        except (ConnectionError, asyncio.CancelledError):
            # The client refused the rest, as it should; nothing more to send.
            return response
        await response.write_eof()
        return response

    async def _memory_fault(
        self, request: web.Request, fault: str | None, json_body: bool
    ) -> web.StreamResponse | None:
        if fault not in MEMORY_FAULTS:
            return None
        content_type = "application/json" if json_body else "application/xml"
        if fault == "gzip_bomb":
            prefix = b'{"unix_seconds": [' if json_body else _XML_HEAD
            bomb = gzip_bomb(1 << 30, 64 << 20, prefix, b" ")
            return web.Response(body=bomb, headers={"Content-Type": content_type, "Content-Encoding": "gzip"})
        kind = fault if not json_body or fault in ("huge", "deep") else "huge"
        chunks = hostile_json(kind) if json_body else hostile_xml(kind)
        return await self._stream(request, chunks, content_type)

    async def _common_fault(self, fault: str | None) -> web.Response | None:
        if fault == "429":
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "120"})
        if fault == "503":
            return web.Response(status=503, text="Service Unavailable")
        if fault == "timeout":
            await asyncio.sleep(self.stall_seconds)
            return web.Response(status=504, text="stalled")
        return None


def _param_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M").replace(tzinfo=UTC)


class FakeEntsoe(_FakeServer):
    """The ENTSO-E REST API's A44, A65 and A75 queries, from ``curves`` (area → Curve).

    ``sequences`` adds an EXAA-like series (classificationSequence 2, prices +7) for DE-LU and
    AT, as the real platform does; ``drop_sequence_1`` leaves out the SDAC series.
    ``generation`` (area → production type → MW curve) answers A75 actual generation, with the
    pumping consumption of ``pumped`` alongside; with ``clock``, only what lies ``lag`` before
    its now is published, as on the real platform.
    """

    def __init__(
        self,
        token: str,
        curves: dict[str, Curve],
        sequences: bool = True,
        drop_sequence_1: bool = False,
        load_mw: float = 55000.0,
        stall_seconds: float = 60.0,
        generation: dict[str, dict[str, Curve]] | None = None,
        pumped: dict[str, Curve] | None = None,
        clock: Callable[[], datetime] | None = None,
        lag: timedelta = timedelta(hours=1),
    ) -> None:
        super().__init__(curves, stall_seconds)
        self.token = token
        self.sequences = sequences
        self.drop_sequence_1 = drop_sequence_1
        self.load_mw = load_mw
        self.generation = dict(generation or {})
        self.pumped = dict(pumped or {})
        self.clock = clock
        self.lag = lag
        self.by_eic = {eic: area for area, eic in AREA_EIC.items()}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append({k: v for k, v in query.items() if k != "securityToken"})
        fault = self.faults.next()
        if fault == "401" or query.get("securityToken") != self.token:
            return web.Response(
                status=401, text="<html><body>Unauthorized</body></html>", content_type="text/html"
            )
        response = await self._common_fault(fault)
        if response is not None:
            return response
        hostile = await self._memory_fault(request, fault, json_body=False)
        if hostile is not None:
            return hostile
        xml = "application/xml"
        if fault == "ack":
            return web.Response(status=200, body=acknowledgement_document(), content_type=xml)
        if fault == "empty":
            return web.Response(status=200, body=publication_document([]), content_type=xml)
        if fault == "malformed":
            return web.Response(
                status=200, body=b"<Publication_MarketDocument><TimeSeries>", content_type=xml
            )
        if fault == "hostile":
            return web.Response(status=200, body=BILLION_LAUGHS, content_type=xml)
        try:
            start, end = _param_time(query["periodStart"]), _param_time(query["periodEnd"])
        except (KeyError, ValueError):
            return web.Response(
                status=400,
                body=acknowledgement_document("periodStart/periodEnd missing or malformed"),
                content_type=xml,
            )
        if query.get("documentType") == "A75":
            return self._generation(query, start, end, fault)
        if query.get("documentType") == "A65":
            area = self.by_eic.get(query.get("outBiddingZone_Domain", ""))
            load_curve = self.curves.get(area or "")
            if load_curve is None:
                return web.Response(status=400, body=acknowledgement_document(), content_type=xml)
            span = load_curve.slice(start, end)
            if not span:
                return web.Response(status=400, body=acknowledgement_document(), content_type=xml)
            hours = int((span.end - span.start) / timedelta(hours=1))  # type: ignore[operator]
            values = [
                round(self.load_mw * (0.8 + 0.2 * math.sin(i / 24 * 2 * math.pi)), 1) for i in range(hours)
            ]
            body = load_document([(span.start, timedelta(hours=1), values)], query["outBiddingZone_Domain"])  # type: ignore[list-item]
            return web.Response(status=200, body=body, content_type=xml)
        if query.get("documentType") != "A44" or query.get("in_Domain") != query.get("out_Domain"):
            return web.Response(status=400, body=acknowledgement_document("invalid query"), content_type=xml)
        area = self.by_eic.get(query.get("in_Domain", ""))
        held = self.curves.get(area or "")
        part = held.slice(start, end) if held else None
        if not part:
            # The platform answers "no matching data" with an acknowledgement and HTTP 200.
            return web.Response(status=200, body=acknowledgement_document(), content_type=xml)
        assert area is not None
        series = []
        two = self.sequences and area in ("DE-LU", "AT")
        if not (two and self.drop_sequence_1):
            series.append(series_from_curve(part, sequence=1 if two else None))
        if two:
            exaa = Curve(area, tuple(Period(p.start, p.end, round(p.price + 7.0, 2)) for p in part))
            series.append(series_from_curve(exaa, sequence=2))
        return web.Response(status=200, body=publication_document(series), content_type=xml)

    def _generation(
        self, query: dict[str, str], start: datetime, end: datetime, fault: str | None
    ) -> web.Response:
        """An A75 answer: the held generation of the area, published up to ``clock() - lag``."""
        xml = "application/xml"
        if query.get("processType") != "A16" or "in_Domain" not in query:
            return web.Response(status=400, body=acknowledgement_document("invalid query"), content_type=xml)
        area = self.by_eic.get(query["in_Domain"], "")
        mix = self.generation.get(area)
        if self.clock is not None:
            end = min(end, self.clock() - self.lag)
        parts = {code: curve.slice(start, end) for code, curve in (mix or {}).items()} if end > start else {}
        parts = {code: curve for code, curve in parts.items() if curve}
        if not parts:
            return web.Response(status=200, body=acknowledgement_document(), content_type=xml)
        pumped = self.pumped.get(area)
        series = faulty_generation(parts, fault, pumped.slice(start, end) if pumped else None)
        return web.Response(
            status=200, body=generation_document(series, query["in_Domain"]), content_type=xml
        )


class FakeEnergyCharts(_FakeServer):
    """Energy-Charts' ``/price?bzn=&start=&end=`` from ``curves`` (area → Curve)."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/price", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(query)
        fault = self.faults.next()
        if fault == "401":
            return web.Response(status=401, text="Unauthorized")
        response = await self._common_fault(fault)
        if response is not None:
            return response
        hostile = await self._memory_fault(request, fault, json_body=True)
        if hostile is not None:
            return hostile
        if fault in ("malformed", "hostile"):
            return web.Response(status=200, text='{"unix_seconds": [1, 2', content_type="application/json")
        curve = self.curves.get(query.get("bzn", ""))
        if curve is None or fault in ("empty", "ack"):
            return web.json_response({"unix_seconds": [], "price": [], "unit": "EUR / MWh"})
        try:
            start = datetime.fromisoformat(query["start"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(query["end"].replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return web.Response(status=400, text="bad start/end")
        part = curve.slice(start, end)
        if not part:
            return web.Response(status=404, text="Not Found")
        return web.json_response(energy_charts_document(part))


class FakeElectricityMaps(_FakeServer):
    """Electricity Maps' ``/v3/carbon-intensity/history`` and ``/forecast`` from ``curves``.

    ``curves`` maps a zone (``DE``) to an hourly intensity curve; history answers the 24 hours
    up to ``clock()``, forecast the 24 hours after it.  The token is the ``auth-token`` header.
    """

    def __init__(
        self,
        token: str,
        curves: dict[str, Curve],
        clock: Callable[[], datetime] | None = None,
        stall_seconds: float = 60.0,
    ) -> None:
        super().__init__(curves, stall_seconds)
        self.token = token
        self.clock = clock or (lambda: datetime.now(UTC))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v3/carbon-intensity/{kind}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append({"path": request.path, **query})
        fault = self.faults.next()
        if fault == "401" or request.headers.get("auth-token") != self.token:
            return web.json_response({"error": "Invalid auth-token"}, status=401)
        response = await self._common_fault(fault)
        if response is not None:
            return response
        hostile = await self._memory_fault(request, fault, json_body=True)
        if hostile is not None:
            return hostile
        kind = request.match_info["kind"]
        if kind not in ("history", "forecast"):
            return web.json_response({"error": "not found"}, status=404)
        if fault == "malformed":
            return web.json_response({"zone": query.get("zone"), kind: [{"carbonIntensity": "high"}]})
        curve = self.curves.get(query.get("zone", ""))
        if curve is None:
            return web.json_response({"error": f"zone {query.get('zone')!r} not found"}, status=404)
        now = self.clock()
        span = (now - timedelta(hours=24), now) if kind == "history" else (now, now + timedelta(hours=24))
        part = Curve(curve.area, tuple(p for p in curve if span[0] <= p.start < span[1]))
        entries = [] if fault in ("empty", "ack") else electricity_maps_entries(part, query["zone"])
        return web.json_response({"zone": query["zone"], kind: entries})


# --- the demo component ---------------------------------------------------------------------

DEMO_AREA = "DE-LU"
DEMO_TOKEN = "lab-token-not-a-secret"


async def market_component(ctx: Any) -> None:
    """A static curve with a spike soon, a fake ENTSO-E as the first provider, and the exporter.

    The fake also publishes actual generation per production type (an hour behind real time)
    for the carbon intensity, with a static carbon profile as its fallback.  Publishes
    ``ctx.shared["market"]`` = {"area", "url" (the price curve endpoint), "carbon_url",
    "market"} for the controller's demo part.
    """
    import os

    from powerplane.exporters.market import KIND, make_server

    now = datetime.now(UTC)
    workdir = Path(ctx.workdir) / "market"
    curve = demo_curve(DEMO_AREA, now)
    static = write_static_yaml(workdir / "curve.yaml", curve)
    tz = area_timezone(DEMO_AREA)
    first, last = (
        day_bounds(local_day(now, tz), tz)[0],
        day_bounds(local_day(now, tz) + timedelta(days=1), tz)[1],
    )
    fake = FakeEntsoe(
        DEMO_TOKEN,
        {DEMO_AREA: curve},
        generation={DEMO_AREA: generation_mix(DEMO_AREA, first - timedelta(hours=6), last)},
        pumped={DEMO_AREA: pumping(DEMO_AREA, first - timedelta(hours=6), last)},
        clock=lambda: datetime.now(UTC),
    )
    entsoe_url = await fake.start(port=ctx.port() if ctx.base_port is not None else 0)
    ctx.stack.push_async_callback(fake.stop)
    ctx.urls.append(("Fake ENTSO-E API", entsoe_url + "/api"))
    token_file = workdir / "entsoe-token"
    token_file.write_text(DEMO_TOKEN)
    os.chmod(token_file, 0o600)
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "areas": [DEMO_AREA],
                "providers": [
                    {"type": "entsoe", "url": entsoe_url + "/api", "token": {"file": str(token_file)}},
                    {"type": "static", "path": str(static)},
                ],
                "store": {"path": str(workdir / "store")},
                "load_forecast": {"provider": "entsoe"},
                "carbon": {
                    "providers": [
                        {"type": "entsoe", "url": entsoe_url + "/api", "token": {"file": str(token_file)}},
                        {"type": "static", "path": str(carbon_profile_yaml(workdir / "carbon.yaml"))},
                    ]
                },
            }
        ),
        "demo market config",
    )
    server, market = make_server(config)
    await market.refresh_all()
    market.ensure_running()
    address = await ctx.serve(server, "Market exporter")
    ctx.urls.append(("Carbon curve", f"http://{address}/api/v1/curve?area={DEMO_AREA}&series=carbon"))
    ctx.scrape_configs.append({"job_name": "powerplane-market", "static_configs": [{"targets": [address]}]})
    ctx.shared["market"] = {
        "area": DEMO_AREA,
        "url": f"http://{address}/api/v1/curve?area={DEMO_AREA}",
        "carbon_url": f"http://{address}/api/v1/curve?area={DEMO_AREA}&series=carbon",
        "market": market,
    }


# --- memory attacks, measured -----------------------------------------------------------------


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def attack(fault: str, provider: str = "entsoe") -> dict[str, Any]:
    """One fetch of a day from a fake server answering ``fault``, and this process's peak RSS.

    The server runs in this process too and streams its bodies, so the peak covers both sides.
    """
    from powerplane.exporters.market.energycharts import EnergyChartsProvider
    from powerplane.exporters.market.entsoe import EntsoeProvider
    from powerplane.exporters.market.provider import ProviderError
    from powerplane.exporters.runtime import Secret

    day = date(2025, 11, 21)
    curves = {"DE-LU": day_curve("DE-LU", day)}
    fake: _FakeServer = (
        FakeEntsoe("attack-token", curves) if provider == "entsoe" else FakeEnergyCharts(curves)
    )
    if fault == "gzip_bomb":  # made before the baseline: building the bomb is not the client's cost
        gzip_bomb(1 << 30, 64 << 20, b'{"unix_seconds": [' if provider != "entsoe" else _XML_HEAD, b" ")
    await fake.start()
    client: EntsoeProvider | EnergyChartsProvider
    if provider == "entsoe":
        client = EntsoeProvider("entsoe", Secret("attack", "attack-token"), fake.url + "/api", 120.0)
    else:
        client = EnergyChartsProvider("energy_charts", fake.url + "/price", 120.0)
    baseline = _peak_rss_mib()
    fake.fail(fault)
    result: dict[str, Any] = {"fault": fault, "provider": provider, "reason": "none", "error": ""}
    try:
        await client.fetch("DE-LU", *day_bounds(day, area_timezone("DE-LU")))
    except ProviderError as exc:
        result.update(reason=exc.reason, error=str(exc))
    finally:
        await client.close()
        await fake.stop()
    result.update(baseline_rss_mib=round(baseline, 1), peak_rss_mib=round(_peak_rss_mib(), 1))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m powerplane.lab.market attack FAULT [--provider entsoe|energy_charts]``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m powerplane.lab.market")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("attack", help="fetch from a fake server answering a memory attack; print peak RSS")
    run.add_argument("fault", choices=MEMORY_FAULTS)
    run.add_argument("--provider", choices=("entsoe", "energy_charts"), default="entsoe")
    args = parser.parse_args(argv)
    result = asyncio.run(attack(args.fault, args.provider))
    print(json.dumps({"error": result["error"]}))
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items() if k != "error"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
