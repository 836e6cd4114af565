"""Where the controller's signal comes from: a price curve, a PromQL query or a static value.

Price curves come from the market package: a curve file is read by the market exporter's
static provider (the same YAML ``profile``/``periods`` and CSV ``start,[end,]price`` formats),
and the market exporter's JSON curve endpoint (``/api/v1/curve?area=``) is parsed with
``Curve.from_json``.  A period missing from the curve is a lost signal for that period, never
a zero price.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from powerplane.exporters.market.curve import Curve
from powerplane.exporters.market.files import StaticProvider
from powerplane.exporters.market.provider import NotPublished, ProviderError

from .policy import DEFAULT_PERIOD, utc

#: How much of a curve file is read around the instant asked for.
_SPAN = timedelta(days=1)


class SignalError(Exception):
    """The signal could not be read; the message names the source and the field."""


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
    """A price curve file, read by the market's static provider (re-read when it changes)."""

    path: Path
    period: timedelta = DEFAULT_PERIOD
    area: str = ""
    description: str = "curve"
    _provider: StaticProvider | None = field(default=None, repr=False)

    async def value(self, at: datetime) -> float | None:
        if self._provider is None:
            self._provider = StaticProvider("curve-file", Path(self.path), self.period)
        at = utc(at)
        try:
            curve = await self._provider.fetch(self.area or "curve", at - _SPAN, at + _SPAN)
        except NotPublished:
            return None
        except ProviderError as exc:
            raise SignalError(str(exc)) from None
        return curve.price_at(at)


@dataclass
class MarketEndpointSignal:
    """The market exporter's JSON curve endpoint; the curve is cached until it runs out."""

    url: str
    timeout: float = 10.0
    description: str = "market"
    refresh: timedelta = timedelta(minutes=30)
    _curve: Curve | None = field(default=None, repr=False)
    _fetched: datetime | None = None

    async def value(self, at: datetime) -> float | None:
        at = utc(at)
        stale = self._fetched is None or at - self._fetched >= self.refresh
        if self._curve is None or stale or self._curve.price_at(at) is None:
            try:
                self._curve = await self._fetch()
                self._fetched = at
            except SignalError:
                if self._curve is None:
                    raise
        return self._curve.price_at(at)

    async def _fetch(self) -> Curve:
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
        if not isinstance(doc, Mapping):
            raise SignalError(f"{self.url}: the curve document is not an object")
        try:
            return Curve.from_json(doc)
        except (ValueError, TypeError) as exc:
            raise SignalError(f"{self.url}: {exc}"[:200]) from None


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
        return CurveSignal(Path(spec["curveFile"]["path"]), period, str(spec["curveFile"].get("area", "")))
    if "market" in spec:
        market = spec["market"]
        url = market["url"]
        if market.get("area"):
            url += ("&" if "?" in url else "?") + f"area={market['area']}"
        return MarketEndpointSignal(url)
    if "promql" in spec:
        return PromQLSignal(spec["promql"]["url"], spec["promql"]["query"])
    raise SignalError("signal: one of static, curveFile, market or promql is needed")
