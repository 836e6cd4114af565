"""Where the controller's signal comes from: a price curve, a PromQL query or a static value.

The price curve is read from a file (the market exporter's JSON curve document, a YAML list or
a CSV of ``start,price`` rows) or fetched from the market exporter's JSON curve endpoint.  The
document shape is the market exporter's: ``{"area": ..., "periods": [{"start", "end",
"price"}, ...]}`` with UTC ISO-8601 instants.  A period missing from the curve is a lost
signal for that period, never a zero price.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml

from .policy import DEFAULT_PERIOD, utc


class SignalError(Exception):
    """The signal could not be read; the message names the source and the field."""


def parse_instant(text: Any, where: str) -> datetime:
    if isinstance(text, datetime):
        return utc(text) if text.tzinfo else text.replace(tzinfo=UTC)
    if not isinstance(text, str):
        raise SignalError(f"{where}: not a timestamp: {text!r:.40}")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SignalError(f"{where}: not an ISO-8601 timestamp: {text!r:.40}") from None
    if value.tzinfo is None:
        raise SignalError(f"{where}: timestamp without a UTC offset: {text!r:.40}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class PriceCurve:
    """Periods (start, end, price) in UTC, sorted and non-overlapping."""

    area: str
    periods: tuple[tuple[datetime, datetime, float], ...]

    def __post_init__(self) -> None:
        for (_s1, e1, _p1), (s2, _e2, _p2) in itertools.pairwise(self.periods):
            if s2 < e1:
                raise SignalError(f"curve {self.area}: periods overlap at {s2.isoformat()}")

    def price_at(self, instant: datetime) -> float | None:
        starts = [p[0] for p in self.periods]
        i = bisect.bisect_right(starts, utc(instant)) - 1
        if i < 0:
            return None
        start, end, price = self.periods[i]
        return price if start <= utc(instant) < end else None

    def end(self) -> datetime | None:
        return self.periods[-1][1] if self.periods else None

    @classmethod
    def from_document(cls, doc: Any, source: str, period: timedelta = DEFAULT_PERIOD) -> PriceCurve:
        """From the market JSON document, or a bare list of ``{start, price[, end]}`` rows."""
        if isinstance(doc, Mapping):
            area = str(doc.get("area", ""))
            rows = doc.get("periods")
        else:
            area, rows = "", doc
        if not isinstance(rows, list):
            raise SignalError(f"{source}: 'periods' must be a list")
        periods = []
        for i, row in enumerate(rows):
            where = f"{source}: periods[{i}]"
            if not isinstance(row, Mapping):
                raise SignalError(f"{where}: not an object")
            start = parse_instant(row.get("start"), f"{where}.start")
            end = parse_instant(row["end"], f"{where}.end") if row.get("end") else start + period
            price = row.get("price")
            if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price):
                raise SignalError(f"{where}.price: not a finite number: {price!r:.40}")
            if end <= start:
                raise SignalError(f"{where}: end is not after start")
            periods.append((start, end, float(price)))
        periods.sort(key=lambda p: p[0])
        return cls(area, tuple(periods))

    @classmethod
    def from_csv(cls, text: str, source: str, period: timedelta = DEFAULT_PERIOD) -> PriceCurve:
        rows = []
        for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not row or row[0].strip().startswith("#") or row[0].strip().lower() == "start":
                continue
            if len(row) < 2:
                raise SignalError(f"{source}: line {n}: expected start,price")
            try:
                price = float(row[1])
            except ValueError:
                raise SignalError(f"{source}: line {n}: price {row[1]!r:.40} is not a number") from None
            rows.append({"start": row[0].strip(), "price": price})
        return cls.from_document(rows, source, period)

    @classmethod
    def load(cls, path: str | Path, period: timedelta = DEFAULT_PERIOD) -> PriceCurve:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SignalError(f"{path}: cannot read: {exc.strerror}") from None
        if path.suffix == ".csv":
            return cls.from_csv(text, str(path), period)
        try:
            doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise SignalError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
        return cls.from_document(doc, str(path), period)


class Signal(Protocol):
    """A source of the value a policy acts on at an instant (``None``: no value)."""

    description: str

    async def value(self, at: datetime) -> float | None: ...


@dataclass
class StaticSignal:
    fixed: float
    description: str = "static"

    async def value(self, at: datetime) -> float | None:
        return self.fixed


@dataclass
class CurveSignal:
    """A price curve read from a file, re-read when the file changes."""

    path: Path
    period: timedelta = DEFAULT_PERIOD
    description: str = "curve"
    _mtime: float = -1.0
    _curve: PriceCurve | None = None

    async def value(self, at: datetime) -> float | None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            raise SignalError(f"{self.path}: {exc.strerror}") from None
        if self._curve is None or mtime != self._mtime:
            self._curve = PriceCurve.load(self.path, self.period)
            self._mtime = mtime
        return self._curve.price_at(at)


@dataclass
class MarketEndpointSignal:
    """The market exporter's JSON curve endpoint; the curve is cached until it runs out."""

    url: str
    timeout: float = 10.0
    period: timedelta = DEFAULT_PERIOD
    description: str = "market"
    _curve: PriceCurve | None = None
    _fetched: datetime | None = None
    refresh: timedelta = timedelta(minutes=30)

    async def value(self, at: datetime) -> float | None:
        stale = self._fetched is None or utc(at) - self._fetched >= self.refresh
        if self._curve is None or stale or self._curve.price_at(at) is None:
            try:
                self._curve = await self._fetch()
                self._fetched = utc(at)
            except SignalError:
                if self._curve is None:
                    raise
        return self._curve.price_at(at)

    async def _fetch(self) -> PriceCurve:
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self.url) as resp:
                if resp.status != 200:
                    raise SignalError(f"{self.url}: HTTP {resp.status}")
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError, ValueError) as exc:
            if isinstance(exc, SignalError):
                raise
            raise SignalError(f"{self.url}: {type(exc).__name__}: {exc}"[:200]) from None
        return PriceCurve.from_document(doc, self.url, self.period)


@dataclass
class PromQLSignal:
    """The single value of an instant PromQL query (e.g. rack power headroom)."""

    url: str
    query: str
    timeout: float = 10.0
    description: str = "promql"

    async def value(self, at: datetime) -> float | None:
        endpoint = self.url.rstrip("/") + "/api/v1/query"
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(endpoint, data={"query": self.query}) as resp,
            ):
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError, ValueError) as exc:
            raise SignalError(f"{endpoint}: {type(exc).__name__}: {exc}"[:200]) from None
        if not isinstance(doc, Mapping) or doc.get("status") != "success":
            error = doc.get("error") if isinstance(doc, Mapping) else None
            raise SignalError(f"{endpoint}: query failed: {str(error)[:160]}")
        data = doc.get("data") or {}
        result = data.get("result")
        if data.get("resultType") == "scalar" and isinstance(result, list):
            samples: Sequence[Any] = [result]
        elif data.get("resultType") == "vector" and isinstance(result, list):
            if len(result) > 1:
                raise SignalError(f"{endpoint}: query returned {len(result)} series; aggregate it to one")
            samples = [r.get("value") for r in result if isinstance(r, Mapping)]
        else:
            raise SignalError(f"{endpoint}: unexpected result type {data.get('resultType')!r}")
        if not samples:
            return None
        try:
            value = float(samples[0][1])
        except (TypeError, ValueError, IndexError):
            raise SignalError(f"{endpoint}: sample is not a number") from None
        return value if math.isfinite(value) else None


def signal_from_spec(spec: Mapping[str, Any], period: timedelta = DEFAULT_PERIOD) -> Signal:
    """A signal from a policy's ``signal`` block (exactly one of static/curveFile/market/promql)."""
    if "static" in spec:
        return StaticSignal(float(spec["static"]["value"]))
    if "curveFile" in spec:
        return CurveSignal(Path(spec["curveFile"]["path"]), period)
    if "market" in spec:
        market = spec["market"]
        url = market["url"]
        if market.get("area"):
            url += ("&" if "?" in url else "?") + f"area={market['area']}"
        return MarketEndpointSignal(url, period=period)
    if "promql" in spec:
        return PromQLSignal(spec["promql"]["url"], spec["promql"]["query"])
    raise SignalError("signal: one of static, curveFile, market or promql is needed")
