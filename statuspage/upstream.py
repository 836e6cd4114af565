"""The page's upstreams: Prometheus (instant queries, batched into one request) and Alertmanager (v2).

Every answer is read with a byte cap enforced while reading (the runtime's ``read_body``), parsed strictly,
and refused with an error naming the upstream and the field at fault.  Redirects are not
followed (they would carry the credentials elsewhere); TLS verification is on unless the config
opts out.

Batching: the configured queries are sent as one expression, each wrapped as
``label_replace((Q), "powerplane_statuspage_query", "NAME", "", "")`` and joined with ``or``;
the answer is split by that label.  A batch that Prometheus refuses (one query with a syntax
error, one that returns a scalar) is retried query by query, and the queries that fail alone
are sent on their own from then on, so one broken query costs its own section only.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from powerplane.exporters.runtime.http import BodyError, public_url, read_body

from .config import AlertmanagerConfig, Upstream

QUERY_LABEL = "powerplane_statuspage_query"
#: Individual queries sent at once when a batch is split up.
SPLIT_CONCURRENCY = 4


class UpstreamError(Exception):
    """The upstream could not answer (unreachable, 5xx, timeout, malformed): a concise cause."""


class QueryError(Exception):
    """Prometheus refused one query (bad PromQL, a result the page cannot use)."""


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Alert:
    """The public face of a firing alert: nothing but these fields ever leaves Alertmanager."""

    name: str
    summary: str
    severity: str
    system: str | None
    starts_at: datetime | None


def _short(value: Any, size: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= size else text[: size - 3] + "..."


class _Client:
    """One upstream: a connection pool, its credentials and its request counter."""

    source = "upstream"

    def __init__(self, config: Upstream) -> None:
        self.config = config
        self.url = config.url
        self._session: aiohttp.ClientSession | None = None
        #: Requests sent (the page's own metrics; the tests and the bench read it).
        self.requests = 0

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "powerplane-status-page"}
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.reveal()}"
        elif self.config.username is not None and self.config.password is not None:
            pair = f"{self.config.username}:{self.config.password.reveal()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context() or False, limit=8)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
                headers=self._headers(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """(status, parsed JSON body); ``UpstreamError`` for anything that is not JSON from it."""
        url = f"{self.url}{path}"
        where = f"{self.source} {public_url(url)}"
        self.requests += 1
        try:
            async with self.session().request(method, url, allow_redirects=False, **kwargs) as response:
                body = await read_body(response, self.config.max_response_bytes)
                status = response.status
        except BodyError as exc:
            raise UpstreamError(f"{self.source} {exc}") from None
        except TimeoutError:
            raise UpstreamError(f"{where}: no answer within {self.config.timeout_seconds:g}s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{where}: {type(exc).__name__}: {_short(str(exc), 120)}") from None
        if 300 <= status < 400:
            raise UpstreamError(f"{where}: HTTP {status} (redirects are not followed)")
        if status in (401, 403):
            raise UpstreamError(f"{where}: HTTP {status} (check the credentials)")
        try:
            return status, _loads(body)
        except ValueError:
            raise UpstreamError(f"{where}: HTTP {status}, the body is not JSON") from None


def _loads(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(str(exc)) from None


class PrometheusClient(_Client):
    source = "prometheus"

    def __init__(self, config: Upstream, max_series: int = 10_000) -> None:
        super().__init__(config)
        self.max_series = max_series
        #: Queries that failed on their own: sent alone, outside the batch.
        self.isolated: set[str] = set()

    async def query(self, expr: str, at: float) -> list[Sample]:
        """One instant query.  ``QueryError`` when Prometheus refuses it, ``UpstreamError`` when
        Prometheus cannot be asked."""
        status, doc = await self._request("POST", "/api/v1/query", data={"query": expr, "time": f"{at:.3f}"})
        if not isinstance(doc, dict):
            raise UpstreamError(f"prometheus: the answer is not an object: {_short(doc)}")
        if doc.get("status") != "success":
            error = str(doc.get("error", ""))[:300] or f"HTTP {status}"
            if status in (400, 422):
                raise QueryError(f"{doc.get('errorType', 'bad_data')}: {error}")
            raise UpstreamError(f"prometheus: HTTP {status}: {error}")
        return self._samples(doc.get("data"))

    def _samples(self, data: Any) -> list[Sample]:
        if not isinstance(data, dict):
            raise UpstreamError(f"prometheus: data: expected an object, got {_short(data)}")
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return [Sample({}, _value(result, "data.result"))] if _finite(result) else []
        if kind != "vector":
            raise QueryError(f"the query returns a {_short(kind)}, not an instant vector")
        if not isinstance(result, list):
            raise UpstreamError(f"prometheus: data.result: expected a list, got {_short(result)}")
        if len(result) > self.max_series:
            raise QueryError(f"{len(result)} series, more than max_series ({self.max_series})")
        samples = []
        for i, item in enumerate(result):
            if not isinstance(item, dict):
                raise UpstreamError(f"prometheus: data.result.{i}: expected an object, got {_short(item)}")
            metric = item.get("metric")
            if not isinstance(metric, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metric.items()
            ):
                raise UpstreamError(f"prometheus: data.result.{i}.metric: expected string labels")
            if _finite(item.get("value")):
                samples.append(Sample(metric, _value(item.get("value"), f"data.result.{i}.value")))
        return samples

    async def query_batch(
        self, queries: Mapping[str, str], at: float
    ) -> dict[str, list[Sample] | QueryError]:
        """Every query's samples (or its ``QueryError``), in as few requests as Prometheus allows.

        ``UpstreamError`` when Prometheus cannot be asked at all."""
        batch = {name: expr for name, expr in queries.items() if name not in self.isolated}
        alone = [name for name in queries if name in self.isolated]
        results: dict[str, list[Sample] | QueryError] = {}
        if batch:
            try:
                results.update(await self._batch(batch, at))
            except QueryError:
                alone.extend(batch)
        if alone:
            results.update(await self._each(alone, queries, at))
        return results

    async def _batch(self, queries: Mapping[str, str], at: float) -> dict[str, list[Sample] | QueryError]:
        if len(queries) == 1:
            ((name, expr),) = queries.items()
            return {name: await self.query(expr, at)}
        expr = " or ".join(
            f'label_replace(({q}), "{QUERY_LABEL}", "{name}", "", "")' for name, q in queries.items()
        )
        grouped: dict[str, list[Sample] | QueryError] = {name: [] for name in queries}
        for sample in await self.query(expr, at):
            name = sample.labels.get(QUERY_LABEL, "")
            bucket = grouped.get(name)
            if isinstance(bucket, list):
                bucket.append(
                    Sample({k: v for k, v in sample.labels.items() if k != QUERY_LABEL}, sample.value)
                )
        return grouped

    async def _each(
        self, names: Sequence[str], queries: Mapping[str, str], at: float
    ) -> dict[str, list[Sample] | QueryError]:
        gate = asyncio.Semaphore(SPLIT_CONCURRENCY)

        async def one(name: str) -> list[Sample] | QueryError:
            async with gate:
                try:
                    samples = await self.query(queries[name], at)
                except QueryError as exc:
                    self.isolated.add(name)
                    return exc
                self.isolated.discard(name)
                return samples

        answers = await asyncio.gather(*(one(n) for n in names))
        return dict(zip(names, answers, strict=True))


def _finite(value: Any) -> bool:
    try:
        return isinstance(value, list) and len(value) == 2 and math.isfinite(float(value[1]))
    except (TypeError, ValueError):
        return False


def _value(value: Any, where: str) -> float:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
        raise UpstreamError(f'prometheus: {where}: expected [time, "value"], got {_short(value)}')
    return float(value[1])


SEVERITIES = ("critical", "warning", "maintenance", "info")


class AlertmanagerClient(_Client):
    source = "alertmanager"

    def __init__(self, config: AlertmanagerConfig) -> None:
        super().__init__(config.upstream)
        self.alerting = config

    async def public_alerts(self) -> list[Alert]:
        """Firing, unsilenced alerts carrying the public label, most severe first."""
        cfg = self.alerting
        params = {
            "active": "true",
            "silenced": "false",
            "inhibited": "false",
            "unprocessed": "false",
            "filter": f'{cfg.public_label}="{cfg.public_value}"',
        }
        status, doc = await self._request("GET", "/api/v2/alerts", params=params)
        if status != 200:
            raise UpstreamError(f"alertmanager: HTTP {status}: {_short(doc, 200)}")
        if not isinstance(doc, list):
            raise UpstreamError(f"alertmanager: expected a list of alerts, got {_short(doc)}")
        alerts = []
        for i, item in enumerate(doc):
            alert = self._alert(item, i)
            if alert is not None:
                alerts.append(alert)
        alerts.sort(
            key=lambda a: (SEVERITIES.index(a.severity), a.starts_at.timestamp() if a.starts_at else math.inf)
        )
        return alerts[: cfg.max_alerts]

    def _alert(self, item: Any, i: int) -> Alert | None:
        cfg = self.alerting
        if not isinstance(item, dict):
            raise UpstreamError(f"alertmanager: alerts.{i}: expected an object, got {_short(item)}")
        labels, annotations = item.get("labels"), item.get("annotations") or {}
        if not isinstance(labels, dict) or not isinstance(annotations, dict):
            raise UpstreamError(f"alertmanager: alerts.{i}.labels: expected objects of strings")
        # The filter is Alertmanager's; it is checked again here so a proxy or an old
        # Alertmanager that ignores it cannot publish a private alert.
        if labels.get(cfg.public_label) != cfg.public_value:
            return None
        status = item.get("status")
        if isinstance(status, dict) and status.get("state", "active") != "active":
            return None
        name = _text(labels.get("alertname"), 100) or "alert"
        severity = str(labels.get("severity", "warning")).lower()
        system = labels.get(cfg.system_label)
        return Alert(
            name=name,
            summary=_text(annotations.get(cfg.summary_annotation), 300) or name,
            severity=severity if severity in SEVERITIES else "warning",
            system=system if isinstance(system, str) and system else None,
            starts_at=_time(item.get("startsAt")),
        )


def _text(value: Any, size: int) -> str:
    if not isinstance(value, str):
        return ""
    text = " ".join(value.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
