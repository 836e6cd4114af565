"""The provider interface every price source implements, and its errors.

A provider answers one question: the prices of ``area`` for [start, end) as a ``Curve``.  It
may return fewer periods than asked for (tomorrow not yet published); it raises
``NotPublished`` when it has nothing for the span, and ``ProviderError`` with a short
``reason`` (a fixed vocabulary, used as a metric label) for everything else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import aiohttp

from ..runtime.http import BodyError, BodyTooLarge
from .curve import Curve

T = TypeVar("T")

#: Reasons a fetch fails: the ``reason`` label of ``powerplane_market_fetch_errors_total``.
REASONS = (
    "auth",
    "rate_limited",
    "unavailable",
    "http",
    "timeout",
    "connection",
    "malformed",
    "too_large",
    "stale",
    "no_data",
    "sequence_missing",
    "other",
)


class ProviderError(Exception):
    """A failed fetch: ``reason`` is one of ``REASONS``; the message names the request at fault."""

    def __init__(self, message: str, reason: str = "other", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason in REASONS else "other"
        #: Seconds the server asked us to wait (HTTP 429/503 Retry-After), if it said.
        self.retry_after = retry_after


class NotPublished(ProviderError):
    """The provider has no prices for the span (yet): an empty or acknowledgement answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "no_data")


@dataclass(frozen=True)
class LoadForecast:
    """A total load forecast (MW per period), the optional scarcity signal."""

    area: str
    # (start, end, megawatts)
    points: tuple[tuple[datetime, datetime, float], ...]

    def at(self, instant: datetime) -> float | None:
        for start, end, mw in self.points:
            if start <= instant < end:
                return mw
        return None

    def peak(self, start: datetime, end: datetime) -> float | None:
        values = [mw for s, e, mw in self.points if s < end and e > start]
        return max(values) if values else None


class Provider(ABC):
    """A source of day-ahead prices."""

    #: The provider's type (entsoe, energy_charts, static, csv_store).
    kind: str = "provider"

    def __init__(self, name: str) -> None:
        #: Instance name, unique in a config; the ``provider`` metric label.
        self.name = name

    @abstractmethod
    async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
        """Prices of ``area`` for [start, end) (UTC); may be partial; raise on failure."""

    def supports(self, area: str) -> bool:
        """Whether this provider knows ``area`` at all (unknown areas are skipped, not failed)."""
        return True

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing to release
        """Release connections."""


class HttpProvider(Provider):
    """A provider that talks HTTP through one reused ``aiohttp`` session."""

    def __init__(self, name: str, url: str, timeout: float, user_agent: str = "powerplane-market") -> None:
        super().__init__(name)
        self.url = url
        self.timeout = timeout
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": self.user_agent},
            )
        return self._session

    async def get(
        self,
        params: Mapping[str, str],
        what: str,
        read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        path: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """GET ``self.url + path`` and hand the response to ``read`` (which reads the body bounded).

        Transport failures, timeouts (the whole exchange, body included, is bounded by the
        provider's timeout) and refused bodies become ``ProviderError``.
        """
        try:
            async with self.session().get(self.url + path, params=params, headers=headers) as response:
                return await read(response)
        except BodyTooLarge as exc:
            raise ProviderError(f"{what}: {exc}", "too_large") from None
        except BodyError as exc:
            raise ProviderError(f"{what}: {exc}", "malformed") from None
        except TimeoutError:
            raise ProviderError(
                f"{self.name}: {what}: timed out after {self.timeout:g}s", "timeout"
            ) from None
        except aiohttp.ClientError as exc:
            # aiohttp's messages can carry the full URL (and a token in it): keep only the class.
            raise ProviderError(f"{self.name}: {what}: {type(exc).__name__}", "connection") from None

    def status_error(
        self, status: int, headers: Mapping[str, str], what: str, detail: str = ""
    ) -> ProviderError:
        retry_after = _retry_after(headers.get("Retry-After"))
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            return ProviderError(f"{self.name}: {what}: HTTP {status} (token rejected){suffix}", "auth")
        if status == 429:
            return ProviderError(f"{self.name}: {what}: HTTP 429 (rate limited)", "rate_limited", retry_after)
        if status in (502, 503, 504):
            return ProviderError(f"{self.name}: {what}: HTTP {status}", "unavailable", retry_after)
        return ProviderError(f"{self.name}: {what}: HTTP {status}{suffix}", "http", retry_after)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from these APIs; the normal backoff applies
    return seconds if 0 <= seconds <= 86400 else None
