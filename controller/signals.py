"""Where the controller's signal comes from: a price curve, a PromQL query or a static value.

Price curves come from the market package: a curve file is read by the market exporter's
static provider (the same YAML ``profile``/``periods`` and CSV ``start,[end,]price`` formats),
and the market exporter's JSON curve endpoint (``/api/v1/curve?area=``) is parsed with
``Curve.from_json``.  A period missing from the curve is a lost signal for that period, never
a zero price.

HTTP sources (the curve endpoint, PromQL) take no credentials in their URL: a URL with userinfo
is refused (it would be logged, echoed by ``check-config`` and stored in the policy object).
Credentials come from an ``auth`` block, ``bearerToken`` or ``basicAuth``, whose secrets are
``{env: NAME}`` or ``{file: PATH}``, read at each request (a rotated file is picked up) and
scrubbed from every log line.  Answers are read up to a size cap, so a misbehaving endpoint
cannot grow the agent's memory.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from powerplane.exporters.market.curve import Curve, Period
from powerplane.exporters.market.files import StaticProvider
from powerplane.exporters.market.provider import NotPublished, ProviderError
from powerplane.exporters.runtime import ConfigError, resolve_secret
from powerplane.exporters.runtime.http import BodyError, read_json

from .policy import DEFAULT_PERIOD, OUTLOOK_SPAN, SpecReader, utc

#: How much of a curve file is read around the instant asked for (a look-ahead plans a local day).
_SPAN = OUTLOOK_SPAN
#: The largest answer read from an HTTP source (a 100-period curve is about 15 KB).
MAX_BODY_BYTES = 4 * 1024 * 1024


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
    _last: Curve | None = field(default=None, repr=False)

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
        self._last = curve
        return curve.price_at(at)

    async def outlook(self, at: datetime) -> tuple[Period, ...]:
        """The periods known around ``at`` (a day either side), as read by ``value``."""
        return self._last.between(utc(at) - _SPAN, utc(at) + _SPAN) if self._last else ()


@dataclass(frozen=True)
class Auth:
    """Credentials for an HTTP source: ``{env|file}`` secret specs, resolved at each request."""

    where: str
    bearer_token: Mapping[str, str] | None = None
    username: str = ""
    password: Mapping[str, str] | None = None

    def headers(self) -> dict[str, str]:
        try:
            if self.bearer_token is not None:
                token = resolve_secret(self.bearer_token, f"{self.where}.bearerToken")
                return {"Authorization": f"Bearer {token.reveal()}"}
            if self.password is not None:
                password = resolve_secret(self.password, f"{self.where}.basicAuth.password")
                pair = f"{self.username}:{password.reveal()}".encode()
                return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        except ConfigError as exc:
            raise SignalError(str(exc)) from None
        return {}


def check_url(url: Any, where: str) -> str:
    """``url`` if it is an http(s) URL with a host and no credentials; the error never echoes it."""
    if not isinstance(url, str) or not url:
        raise SignalError(f"{where}: must be a non-empty string")
    if len(url) > 2048:
        raise SignalError(f"{where}: {len(url)} characters: at most 2048")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise SignalError(f"{where}: not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise SignalError(f"{where}: the scheme must be http or https")
    if "@" in parts.netloc:
        raise SignalError(
            f"{where}: credentials in the URL are refused; give them in auth"
            " (bearerToken or basicAuth) as {env: NAME} or {file: PATH}"
        )
    if not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
        raise SignalError(f"{where}: needs a host and no whitespace")
    return url


def _secret_spec(value: Any, where: str) -> Mapping[str, str]:
    ok = isinstance(value, Mapping) and len(value) == 1 and set(value) <= {"env", "file"}
    if not ok or not all(isinstance(v, str) and v for v in value.values()):
        raise SignalError(f"{where}: must be {{env: NAME}} or {{file: PATH}}")
    return {str(k): str(v) for k, v in value.items()}


def auth_from_spec(spec: Any, where: str) -> Auth | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or len(spec) != 1 or not set(spec) <= {"bearerToken", "basicAuth"}:
        raise SignalError(f"{where}: give exactly one of bearerToken or basicAuth")
    if "bearerToken" in spec:
        return Auth(where, bearer_token=_secret_spec(spec["bearerToken"], f"{where}.bearerToken"))
    basic = spec["basicAuth"]
    user = basic.get("username") if isinstance(basic, Mapping) else None
    if not isinstance(user, str) or not user or ":" in user:
        raise SignalError(f"{where}.basicAuth.username: must be a non-empty string without ':'")
    return Auth(
        where, username=user, password=_secret_spec(basic.get("password"), f"{where}.basicAuth.password")
    )


@dataclass
class MarketEndpointSignal:
    """The market exporter's JSON curve endpoint; the curve is cached until it runs out."""

    url: str
    timeout: float = 10.0
    description: str = "market"
    refresh: timedelta = timedelta(minutes=30)
    auth: Auth | None = None
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

    async def outlook(self, at: datetime) -> tuple[Period, ...]:
        """The periods of the cached curve within a day of ``at``."""
        return self._curve.between(utc(at) - _SPAN, utc(at) + _SPAN) if self._curve else ()

    async def curve(self) -> Curve:
        """The whole curve the endpoint serves now (``powerplane simulate`` reads it)."""
        return await self._fetch()

    async def _fetch(self) -> Curve:
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            headers = self.auth.headers() if self.auth else {}
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.url, headers=headers, allow_redirects=False) as resp,
            ):
                if resp.status != 200:
                    raise SignalError(f"{self.url}: HTTP {resp.status}")
                doc = await read_json(resp, MAX_BODY_BYTES)
        except BodyError as exc:
            raise SignalError(str(exc)[:200]) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
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
    auth: Auth | None = None

    async def value(self, at: datetime) -> float | None:
        endpoint = self.url.rstrip("/") + "/api/v1/query"
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            headers = self.auth.headers() if self.auth else {}
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    endpoint, data={"query": self.query}, headers=headers, allow_redirects=False
                ) as resp,
            ):
                doc = await read_json(resp, MAX_BODY_BYTES)
        except BodyError as exc:
            raise SignalError(str(exc)[:200]) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
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


def signal_from_spec(spec: Any, period: timedelta = DEFAULT_PERIOD) -> Signal:
    """A signal from a policy's ``signal`` block (exactly one source); errors name the field.

    Nothing is fetched and no secret is read here: a policy is checked (``check-config``,
    ``reconcile-once --signal-value``) without the agent's environment.
    """
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise SignalError("signal: one of static, curveFile, market or promql is needed")
    (kind, body), where = next(iter(spec.items())), f"signal.{next(iter(spec))}"
    if not isinstance(body, Mapping):
        raise SignalError(f"{where}: must be an object")
    if kind == "static":
        f = SpecReader()
        value = f.number(body, "value", where)
        if value is None:
            raise SignalError("; ".join(f.errors) or f"{where}: missing field 'value'")
        return StaticSignal(value)
    if kind == "curveFile":
        path, area = body.get("path"), body.get("area", "")
        if not isinstance(path, str) or not path or not isinstance(area, str):
            raise SignalError(f"{where}: needs a path (and area) as strings")
        return CurveSignal(Path(path), period, area)
    if kind == "market":
        url, area = check_url(body.get("url"), f"{where}.url"), body.get("area")
        if area:
            if not isinstance(area, str) or not area.replace("-", "").isalnum() or not area.isascii():
                raise SignalError(f"{where}.area: must be a bidding zone such as DE-LU")
            url += ("&" if "?" in url else "?") + f"area={area}"
        return MarketEndpointSignal(url, auth=auth_from_spec(body.get("auth"), f"{where}.auth"))
    if kind == "promql":
        query = body.get("query")
        if not isinstance(query, str) or not query or len(query) > 8192:
            raise SignalError(f"{where}.query: must be a non-empty string of at most 8192 characters")
        url = check_url(body.get("url"), f"{where}.url")
        return PromQLSignal(url, query, auth=auth_from_spec(body.get("auth"), f"{where}.auth"))
    raise SignalError(f"signal: unknown source {kind!r}; one of static, curveFile, market or promql")
