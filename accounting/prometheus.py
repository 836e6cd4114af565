"""A client for Prometheus-compatible HTTP APIs (Prometheus, VictoriaMetrics, Thanos, Mimir).

Range queries are split into chunks of at most ``MAX_POINTS`` (11,000) points per series, the
limit Prometheus enforces, and streamed chunk by chunk so that a caller can fold a month of data
without holding it::

    settings = ClientSettings(url="http://127.0.0.1:9090")
    async with PrometheusClient(settings) as prom:
        for sample in await prom.query("up"):
            print(sample.labels, sample.value)
        async for chunk in prom.range_chunks("sum(rate(x[5m]))", start, end, step=60):
            for series in chunk.series:
                print(series.labels, series.times, series.values)   # numpy arrays

Every body goes through ``exporters/runtime/http.py`` with a byte cap; a chunk whose answer
passes the cap is asked again in halves.  Connection errors, timeouts, 429 and 5xx answers are
retried with backoff; a query Prometheus refuses (400, 422: bad PromQL, too many points) fails at
once with ``QueryError`` naming the query and Prometheus' own message.  Credentials (basic auth,
a bearer token) come from ``{env: NAME}`` or ``{file: PATH}``; TLS is verified unless a
settings file says ``insecure_skip_verify: true``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
import logging
import math
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import aiohttp
import msgspec
import numpy as np
import numpy.typing as npt

from powerplane.exporters.runtime.config import (
    SECRET_SCHEMA,
    ConfigError,
    ConfigKind,
    Secret,
    from_document,
    resolve_secret,
    setting,
    settings_schema,
)
from powerplane.exporters.runtime.http import BodyError, BodyTooLarge, public_url, read_body

logger = logging.getLogger("powerplane.accounting.prometheus")

#: Points per series Prometheus answers at most in one range query (its ``query_range`` limit).
MAX_POINTS = 11_000
#: Steps a range may use, shortest first: each divides the 15-minute market period.
NICE_STEPS = (15.0, 30.0, 60.0, 120.0, 300.0, 900.0)
#: HTTP statuses that mean "try again" rather than "this query is wrong".
RETRY_STATUSES = frozenset({429, 502, 503, 504})

FloatArray = npt.NDArray[np.float64]


class QueryError(Exception):
    """A query that failed for good: refused by Prometheus, malformed answer, or retries used up."""

    def __init__(self, query: str, message: str) -> None:
        shown = query if len(query) <= 200 else query[:197] + "..."
        super().__init__(f"query {shown!r}: {message}")
        self.query = query


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BasicAuthSettings:
    username: str = setting(schema={"minLength": 1}, doc="User name for HTTP basic auth.")
    password: Secret = setting(
        schema=SECRET_SCHEMA, doc="a secret: the password, `{env: NAME}` or `{file: PATH}`."
    )


@dataclass(frozen=True)
class TlsSettings:
    ca_file: str = setting("", doc="PEM file of the CAs to trust (empty: the system's).")
    insecure_skip_verify: bool = setting(False, doc="Skip certificate checks (explicit, never the default).")


@dataclass(frozen=True)
class ClientSettings:
    """How to reach a Prometheus-compatible API (the file given to ``--prometheus-config``)."""

    url: str = setting(
        "", doc="Base URL of the API (`/api/v1/...` is appended); `--prometheus` overrides it."
    )
    basic_auth: BasicAuthSettings | None = setting(None, of=BasicAuthSettings, doc="HTTP basic auth.")
    bearer_token: Secret | None = setting(
        None, schema=SECRET_SCHEMA, doc="a secret: the bearer token, `{env: NAME}` or `{file: PATH}`."
    )
    headers: Mapping[str, str] = setting(
        {}, schema={"type": "object", "additionalProperties": {"type": "string"}}, doc="Extra headers."
    )
    tls: TlsSettings = setting(TlsSettings(), of=TlsSettings, doc="TLS verification.")
    timeout: float = setting(120.0, schema={"minimum": 1}, doc="Seconds one request may take.")
    retries: int = setting(3, schema={"minimum": 0, "maximum": 10}, doc="Retries of a failed request.")
    max_body_bytes: int = setting(
        16 << 20, schema={"minimum": 65536}, doc="Largest answer read (a chunk beyond is asked in halves)."
    )


def _build(doc: Mapping[str, Any]) -> ClientSettings:
    doc = dict(doc)
    errors: list[str] = []
    if "basic_auth" in doc and "bearer_token" in doc:
        errors.append("basic_auth and bearer_token: give one of them, not both")
    if errors:
        raise ConfigError(errors)
    if "bearer_token" in doc:
        doc["bearer_token"] = resolve_secret(doc["bearer_token"], "bearer_token")
    if "basic_auth" in doc:
        auth = dict(doc["basic_auth"])
        auth["password"] = resolve_secret(auth["password"], "basic_auth.password")
        doc["basic_auth"] = auth
    return from_document(ClientSettings, doc)


KIND: ConfigKind[ClientSettings] = ConfigKind("prometheus-client", settings_schema(ClientSettings), _build)


def _headers(settings: ClientSettings) -> dict[str, str]:
    headers = dict(settings.headers)
    if settings.bearer_token is not None:
        headers["Authorization"] = f"Bearer {settings.bearer_token.reveal()}"
    if settings.basic_auth is not None:
        pair = f"{settings.basic_auth.username}:{settings.basic_auth.password.reveal()}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    return headers


@functools.lru_cache(maxsize=8)
def _ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """One context per TLS setting: loading the system's CAs costs tens of ms, once per client otherwise."""
    ctx = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector."""

    labels: Mapping[str, str]
    time: float
    value: float


@dataclass(frozen=True)
class Series:
    """One series of a range answer: its labels and the points (numpy arrays of equal length)."""

    labels: Mapping[str, str]
    times: FloatArray
    values: FloatArray


@dataclass(frozen=True)
class QueryRecord:
    """One request as asked and answered, for a query log (``powerplane report --query-log``)."""

    path: str
    query: str
    start: float | None
    end: float | None
    step: float | None
    #: Wall seconds of the answered try, transfer included.
    seconds: float
    bytes: int
    #: Samples the server read and the seconds it spent evaluating (Prometheus' ``stats``);
    #: None where the server does not say (VictoriaMetrics, Thanos, refused queries).
    samples: int | None = None
    server_seconds: float | None = None


def json_lines(stream: IO[str]) -> Callable[[QueryRecord], None]:
    """A query log writing each record to ``stream`` as one JSON line (``--query-log``).

    Safe to call from several threads (``powerplane job`` asks from two at once): a text stream is
    not, and two writes at the same moment interleaved or mangled its lines."""
    lock = threading.Lock()

    def write(record: QueryRecord) -> None:
        line = json.dumps(dataclasses.asdict(record)) + "\n"
        with lock:
            stream.write(line)

    return write


@dataclass(frozen=True)
class RangeChunk:
    """The answer for one time chunk [start, end] of a range query."""

    start: float
    end: float
    series: tuple[Series, ...]


# --- steps and chunks ----------------------------------------------------------------------------


def choose_step(
    start: float, end: float, target_points: int = 3000, candidates: Sequence[float] = NICE_STEPS
) -> float:
    """The shortest of ``candidates`` giving at most ``target_points`` points over [start, end]."""
    span = max(end - start, 0.0)
    for step in candidates:
        if span / step <= target_points:
            return step
    return candidates[-1]


def chunk_bounds(
    start: float, end: float, step: float, points: int = MAX_POINTS
) -> list[tuple[float, float]]:
    """[start, end] cut into chunks of at most ``points`` evaluation times, none shared by two chunks.

    Evaluation times are ``start + k * step``; a chunk ``(a, b)`` holds the times from ``a`` to
    ``b`` inclusive, and the next chunk starts one step after ``b``.
    """
    if step <= 0 or not math.isfinite(step):
        raise ValueError(f"step must be a positive number of seconds, not {step!r}")
    if end < start:
        raise ValueError("the range ends before it starts")
    points = max(1, min(points, MAX_POINTS))
    total = math.floor((end - start) / step + 1e-9) + 1
    bounds = []
    for first in range(0, total, points):
        last = min(first + points, total) - 1
        bounds.append((start + first * step, start + last * step))
    return bounds


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal; silent when ``stream`` is not a TTY."""

    def __init__(
        self, total: int = 0, stream: IO[str] | None = None, label: str = "querying", enabled: bool = True
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = total
        self.done = 0
        self.label = label

    def add(self, units: int) -> None:
        self.total += units
        self._draw()

    def advance(self, units: int = 1) -> None:
        self.done += units
        self._draw()

    def _draw(self) -> None:
        if not self.enabled or self.total <= 0:
            return
        width = 30
        filled = int(width * min(self.done, self.total) / self.total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{' ' * (width - filled)}] {self.done}/{self.total}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.total > 0:
            self.stream.write("\n")
            self.stream.flush()


# --- the client ----------------------------------------------------------------------------------


@dataclass
class _Backoff:
    retries: int
    base: float = 0.5
    attempt: int = field(default=0)

    async def wait(self) -> bool:
        """Sleep before the next try; False when the retries are used up."""
        if self.attempt >= self.retries:
            return False
        await asyncio.sleep(self.base * (2**self.attempt))
        self.attempt += 1
        return True


class PrometheusClient:
    """The HTTP API of one Prometheus-compatible server (use as ``async with``)."""

    def __init__(
        self,
        settings: ClientSettings,
        progress: Progress | None = None,
        session: aiohttp.ClientSession | None = None,
        backoff_base: float = 0.5,
    ) -> None:
        if not settings.url:
            raise ConfigError(["url: no Prometheus URL given (--prometheus or url in the settings file)"])
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self.progress = progress or Progress(enabled=False)
        self.backoff_base = backoff_base
        self._session = session
        self._own_session = session is None
        #: Points per chunk; halved when an answer passes the body cap.
        self.chunk_points = MAX_POINTS
        #: Called with every answered request when set (queries then ask for the server's stats).
        self.query_log: Callable[[QueryRecord], None] | None = None

    async def __aenter__(self) -> PrometheusClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=_headers(self.settings),
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                connector=aiohttp.TCPConnector(ssl=_ssl_context(self.settings.tls), limit=4),
            )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(
        self,
        path: str,
        query: str,
        form: Mapping[str, str],
        method: str = "POST",
        parse: Callable[[str, int, bytes, str], Any] | None = None,
    ) -> Any:
        """POST a form to ``/api/v1/<path>`` (or GET it); the ``data`` of a successful answer."""
        assert self._session is not None, "use PrometheusClient as 'async with'"
        url = f"{self.base}/api/v1/{path}"
        backoff = _Backoff(self.settings.retries, self.backoff_base)
        if self.query_log is not None and path in ("query", "query_range"):
            form = {**form, "stats": "1"}
        data, params = (dict(form), None) if method == "POST" else (None, dict(form))
        while True:
            began = time.monotonic()
            try:
                async with self._session.request(method, url, data=data, params=params) as response:
                    body = await read_body(response, self.settings.max_body_bytes)
                    status = response.status
            except BodyTooLarge:
                raise
            except (aiohttp.ClientError, TimeoutError, BodyError) as exc:
                cause = f"{public_url(url)}: {_describe(exc)}"
                if await backoff.wait():
                    logger.info("retrying after %s", cause)
                    continue
                raise QueryError(query, f"{cause} (after {backoff.attempt + 1} tries)") from None
            if status in RETRY_STATUSES or status >= 500:
                if await backoff.wait():
                    logger.info("retrying after HTTP %d from %s", status, public_url(url))
                    continue
                raise QueryError(query, f"HTTP {status} from {public_url(url)}: {_error_text(body)}")
            if self.query_log is not None:
                self.query_log(_record(path, query, form, time.monotonic() - began, body))
            return (parse or _data)(query, status, body, public_url(url))

    async def _whole(self, path: str, query: str, form: Mapping[str, str], method: str = "POST") -> Any:
        """An answer that cannot be asked in parts: past the body cap it fails, naming the query."""
        try:
            return await self._post(path, query, form, method)
        except BodyTooLarge:
            limit = self.settings.max_body_bytes
            raise QueryError(query, f"the answer exceeds {limit} bytes (raise max_body_bytes)") from None

    async def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query: the vector (a scalar answer becomes one sample without labels)."""
        form = {"query": expr}
        if at is not None:
            form["time"] = _ts(at)
        data = await self._whole("query", expr, form)
        if not isinstance(data, dict):
            raise QueryError(expr, "the answer has no 'data' object")
        kind = data.get("resultType")
        result = data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return [Sample({}, *_point(expr, result))]
        if kind != "vector" or not isinstance(result, list):
            raise QueryError(expr, f"expected a vector, got resultType {kind!r}")
        samples = []
        for item in result:
            labels = _labels(expr, item)
            samples.append(Sample(labels, *_point(expr, item.get("value"))))
        return samples

    async def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        """The label sets of the series matching ``match`` with samples in [start, end] (no points)."""
        data = await self._whole("series", match, {"match[]": match, "start": _ts(start), "end": _ts(end)})
        if not isinstance(data, list):
            raise QueryError(match, "expected a list of label sets")
        return [_labels(match, {"metric": item}) for item in data]

    async def label_values(self, label: str, start: float, end: float) -> list[str]:
        """The values of ``label`` on the series with samples in [start, end] (``__name__``: metric names)."""
        # The label-values endpoint answers GET only; it reads the index, never the samples.
        query = f"label {label} values"
        form = {"start": _ts(start), "end": _ts(end)}
        data = await self._whole(f"label/{label}/values", query, form, "GET")
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise QueryError(query, "expected a list of strings")
        return list(data)

    async def query_matrix(self, expr: str, at: float) -> list[Series]:
        """An instant query of a range selector (``selector[range]``): its raw samples per series."""
        data = await self._whole("query", expr, {"query": expr, "time": _ts(at)})
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            kind = data.get("resultType") if isinstance(data, dict) else None
            raise QueryError(expr, f"expected a matrix, got resultType {kind!r}")
        result = data.get("result")
        if not isinstance(result, list):
            raise QueryError(expr, "the answer's 'result' is not a list")
        return [_series(expr, item) for item in result]

    async def rule_groups(self, kind: str = "record") -> list[dict[str, Any]]:
        """The rule groups of the rules API (``kind``: record or alert)."""
        data = await self._whole("rules", f"rules of type {kind}", {"type": kind}, "GET")
        groups = data.get("groups") if isinstance(data, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise QueryError(f"rules of type {kind}", "the answer has no list of 'groups'")
        return groups

    async def range_chunks(
        self, expr: str, start: float, end: float, step: float
    ) -> AsyncIterator[RangeChunk]:
        """The range query [start, end] at ``step``, one chunk at a time (chunks never overlap)."""
        pending = chunk_bounds(start, end, step, self.chunk_points)
        self.progress.add(len(pending))
        while pending:
            a, b = pending.pop(0)
            try:
                series = await self._range(expr, a, b, step)
            except BodyTooLarge:
                points = round((b - a) / step) + 1
                if points <= 1:
                    raise QueryError(
                        expr, f"one step's answer exceeds {self.settings.max_body_bytes} bytes"
                    ) from None
                self.chunk_points = max(1, points // 2)
                halves = chunk_bounds(a, b, step, self.chunk_points)
                pending[:0] = halves
                self.progress.add(len(halves) - 1)
                continue
            self.progress.advance()
            yield RangeChunk(a, b, series)

    async def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """The whole range query, chunks joined per series (for small answers)."""
        parts: dict[tuple[tuple[str, str], ...], list[Series]] = {}
        async for chunk in self.range_chunks(expr, start, end, step):
            for series in chunk.series:
                parts.setdefault(tuple(sorted(series.labels.items())), []).append(series)
        return [
            Series(dict(key), np.concatenate([s.times for s in ss]), np.concatenate([s.values for s in ss]))
            for key, ss in parts.items()
        ]

    async def _range(self, expr: str, start: float, end: float, step: float) -> tuple[Series, ...]:
        form = {"query": expr, "start": _ts(start), "end": _ts(end), "step": _ts(step)}
        series: tuple[Series, ...] = await self._post("query_range", expr, form, parse=_matrix)
        return series


# --- parsing answers -----------------------------------------------------------------------------


class _Timings(msgspec.Struct, frozen=True):
    execTotalTime: float | None = None  # the API's field name


class _Samples(msgspec.Struct, frozen=True):
    totalQueryableSamples: int | None = None  # the API's field name


class _Stats(msgspec.Struct, frozen=True):
    timings: _Timings = _Timings()
    samples: _Samples = _Samples()


class _StatsData(msgspec.Struct, frozen=True):
    stats: _Stats = _Stats()


class _StatsAnswer(msgspec.Struct, frozen=True):
    data: _StatsData = _StatsData()


_STATS = msgspec.json.Decoder(_StatsAnswer, strict=False)


def _record(path: str, query: str, form: Mapping[str, str], seconds: float, body: bytes) -> QueryRecord:
    def number(key: str) -> float | None:
        return float(form[key]) if key in form else None

    try:
        stats = _STATS.decode(body).data.stats
    except (msgspec.DecodeError, ValueError):  # not JSON, or no stats where they would be
        stats = _Stats()
    start = number("start") if "start" in form else number("time")
    return QueryRecord(
        path,
        query,
        start,
        number("end"),
        number("step"),
        seconds,
        len(body),
        stats.samples.totalQueryableSamples,
        stats.timings.execTotalTime,
    )


def _ts(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text[:200]


def _error_text(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        kind = doc.get("errorType")
        return f"{kind}: {doc['error'][:300]}" if isinstance(kind, str) else doc["error"][:300]
    return str(doc)[:200]


def _data(query: str, status: int, body: bytes, url: str) -> Any:
    if status != 200:
        raise QueryError(query, f"Prometheus refused it (HTTP {status}): {_error_text(body)}")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise QueryError(query, f"{url} answered something that is not JSON") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        error = doc.get("error") if isinstance(doc, dict) else None
        raise QueryError(
            query,
            f"Prometheus answered status {doc.get('status') if isinstance(doc, dict) else '?'!r}: {error}",
        )
    for warning in doc.get("warnings") or ():
        logger.warning("Prometheus warns about %s: %s", query[:120], str(warning)[:200])
    data = doc.get("data")
    if not isinstance(data, dict | list):
        raise QueryError(query, "the answer has no 'data' object")
    return data


class _MatrixItem(msgspec.Struct):
    metric: dict[str, str]
    #: Values are strings in the API ("123.4", "NaN"): decoded as floats by the lax decoder.
    values: list[tuple[float, float]]


class _MatrixData(msgspec.Struct):
    resultType: Literal["matrix"]  # the API's field name
    result: list[_MatrixItem]


class _MatrixAnswer(msgspec.Struct):
    status: Literal["success"]
    data: _MatrixData
    warnings: list[str] = []


#: Range answers decoded straight into the fields read (a month of a large cluster is millions of
#: points: about three times less CPU than json.loads and a walk over the lists).  Not strict, so
#: that the value strings become floats in the decoder (half the CPU of converting them after);
#: what it refuses ("+Inf") is read again by the general path.
_MATRIX = msgspec.json.Decoder(_MatrixAnswer, strict=False)


def _matrix(query: str, status: int, body: bytes, url: str) -> tuple[Series, ...]:
    """A range answer's series; what the typed decoder refuses is read again to say what is wrong."""
    if status == 200:
        try:
            answer = _MATRIX.decode(body)
            series = tuple(_points(item) for item in answer.data.result)
        except (msgspec.DecodeError, ValueError):
            pass
        else:
            for warning in answer.warnings:
                logger.warning("Prometheus warns about %s: %s", query[:120], warning[:200])
            return series
    data = _data(query, status, body, url)
    if not isinstance(data, dict):
        raise QueryError(query, "the answer has no 'data' object")
    if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise QueryError(query, f"expected a matrix, got resultType {data.get('resultType')!r}")
    return tuple(_series(query, item) for item in data["result"])


def _points(item: _MatrixItem) -> Series:
    points = np.array(item.values, dtype=np.float64).reshape(-1, 2)
    return Series(item.metric, points[:, 0].copy(), points[:, 1].copy())


def _labels(query: str, item: Any) -> dict[str, str]:
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        raise QueryError(query, "result item without a 'metric' object")
    labels = item["metric"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise QueryError(query, "result item 'metric': labels must be strings")
    return dict(labels)


def _point(query: str, point: Any) -> tuple[float, float]:
    if not isinstance(point, list | tuple) or len(point) != 2:
        raise QueryError(query, f"'value': expected [time, \"value\"], got {str(point)[:60]}")
    try:
        return float(point[0]), float(point[1])
    except (TypeError, ValueError):
        raise QueryError(query, f"'value': not a number: {str(point)[:60]}") from None


def _series(query: str, item: Any) -> Series:
    labels = _labels(query, item)
    values = item.get("values")
    if not isinstance(values, list):
        raise QueryError(query, f"series {_name(labels)}: 'values' is not a list")
    try:
        times = np.fromiter((p[0] for p in values), dtype=np.float64, count=len(values))
        numbers = np.fromiter((float(p[1]) for p in values), dtype=np.float64, count=len(values))
    except (TypeError, ValueError, IndexError, KeyError):
        raise QueryError(
            query, f"series {_name(labels)}: 'values' holds a point that is not [time, \"value\"]"
        ) from None
    return Series(labels, times, numbers)


def _name(labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}"


def settings_for(url: str | None, path: str | None) -> ClientSettings:
    """The client settings from ``--prometheus-config`` (if any), ``url`` overriding its ``url``."""
    settings = KIND.load(path) if path else ClientSettings()
    if url:
        settings = _replace_url(settings, url)
    return settings


def _replace_url(settings: ClientSettings, url: str) -> ClientSettings:
    return dataclasses.replace(settings, url=url)


__all__: Sequence[str] = (
    "KIND",
    "MAX_POINTS",
    "ClientSettings",
    "Progress",
    "PrometheusClient",
    "QueryError",
    "QueryRecord",
    "RangeChunk",
    "Sample",
    "Series",
    "choose_step",
    "chunk_bounds",
    "json_lines",
    "settings_for",
)
