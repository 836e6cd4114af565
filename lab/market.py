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
import math
from collections.abc import Sequence
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
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
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
    """The ENTSO-E REST API's A44 and A65 queries, from ``curves`` (area → Curve).

    ``sequences`` adds an EXAA-like series (classificationSequence 2, prices +7) for DE-LU and
    AT, as the real platform does; ``drop_sequence_1`` leaves out the SDAC series.
    """

    def __init__(
        self,
        token: str,
        curves: dict[str, Curve],
        sequences: bool = True,
        drop_sequence_1: bool = False,
        load_mw: float = 55000.0,
        stall_seconds: float = 60.0,
    ) -> None:
        super().__init__(curves, stall_seconds)
        self.token = token
        self.sequences = sequences
        self.drop_sequence_1 = drop_sequence_1
        self.load_mw = load_mw
        self.by_eic = {eic: area for area, eic in AREA_EIC.items()}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
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


class FakeEnergyCharts(_FakeServer):
    """Energy-Charts' ``/price?bzn=&start=&end=`` from ``curves`` (area → Curve)."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/price", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append(query)
        fault = self.faults.next()
        if fault == "401":
            return web.Response(status=401, text="Unauthorized")
        response = await self._common_fault(fault)
        if response is not None:
            return response
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


# --- the demo component ---------------------------------------------------------------------

DEMO_AREA = "DE-LU"
DEMO_TOKEN = "lab-token-not-a-secret"


async def market_component(ctx: Any) -> None:
    """A static curve with a spike soon, a fake ENTSO-E as the first provider, and the exporter.

    Publishes ``ctx.shared["market"]`` = {"area", "url" (the curve endpoint), "market"} for the
    controller's demo part.
    """
    import os

    from powerplane.exporters.market import KIND, make_server

    now = datetime.now(UTC)
    workdir = Path(ctx.workdir) / "market"
    curve = demo_curve(DEMO_AREA, now)
    static = write_static_yaml(workdir / "curve.yaml", curve)
    fake = FakeEntsoe(DEMO_TOKEN, {DEMO_AREA: curve})
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
            }
        ),
        "demo market config",
    )
    server, market = make_server(config)
    await market.refresh_all()
    market.ensure_running()
    address = await ctx.serve(server, "Market exporter")
    ctx.scrape_configs.append({"job_name": "powerplane-market", "static_configs": [{"targets": [address]}]})
    ctx.shared["market"] = {
        "area": DEMO_AREA,
        "url": f"http://{address}/api/v1/curve?area={DEMO_AREA}",
        "market": market,
    }
