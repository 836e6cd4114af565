"""Malformed, hostile, huge or slow upstream answers: clear errors, bounded memory, the page serves."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.runtime.config import Secret
from powerplane.statuspage.config import KIND, AlertmanagerConfig, Upstream
from powerplane.statuspage.page import StatusPage
from powerplane.statuspage.server import StatusServer
from powerplane.statuspage.upstream import (
    AlertmanagerClient,
    PrometheusClient,
    QueryError,
    UpstreamError,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Fake:
    """An HTTP server on 127.0.0.1 whose answer a test sets, recording what it was asked."""

    def __init__(self) -> None:
        self.handler: Handler = self.ok
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def ok(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post()) if request.method == "POST" else {}
        self.requests.append(
            (request.path, {**request.query, **{k: str(v) for k, v in form.items()}}, dict(request.headers))
        )
        return await self.handler(request)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self.url


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    server = Fake()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


def answer(doc: Any, status: int = 200) -> Handler:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.json_response(doc, status=status)

    return handler


def vector(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
    result = [{"metric": m, "value": [1.0, v]} for m, v in series]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def client(fake: Fake, **kwargs: Any) -> PrometheusClient:
    limits = {k: kwargs.pop(k) for k in ("max_series",) if k in kwargs}
    return PrometheusClient(Upstream(fake.url, **{"timeout_seconds": 2.0, **kwargs}), **limits)


async def test_a_batch_is_one_request_split_by_query(fake: Fake) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        query = (await request.post())["query"]
        assert isinstance(query, str) and query.count("label_replace") == 2
        return web.json_response(
            vector(
                ({"cluster": "a", "powerplane_statuspage_query": "one"}, "1"),
                ({"cluster": "a", "powerplane_statuspage_query": "two"}, "2"),
                ({"cluster": "b", "powerplane_statuspage_query": "two"}, "NaN"),
                ({"powerplane_statuspage_query": "stray"}, "3"),
            )
        )

    fake.handler = handler
    prom = client(fake)
    results = await prom.query_batch({"one": "up", "two": "sum(up)"}, 1.0)
    assert {k: [(dict(s.labels), s.value) for s in v] for k, v in results.items()} == {  # type: ignore[union-attr]
        "one": [({"cluster": "a"}, 1.0)],
        "two": [({"cluster": "a"}, 2.0)],
    }
    assert prom.requests == 1
    await prom.close()


async def test_a_refused_batch_is_split_and_the_bad_query_isolated(fake: Fake) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        query = str((await request.post())["query"])
        if "broken(" in query:
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "parse error"}, status=400
            )
        name = "good" if "label_replace" not in query else "x"
        return web.json_response(vector(({"q": name}, "1")))

    fake.handler = handler
    prom = client(fake)
    results = await prom.query_batch({"good": "up", "bad": "broken("}, 1.0)
    assert isinstance(results["bad"], QueryError) and "parse error" in str(results["bad"])
    assert results["good"] and prom.isolated == {"bad"} and prom.requests == 3
    # Next time the good one goes alone in the "batch", the bad one on its own: two requests.
    await prom.query_batch({"good": "up", "bad": "broken("}, 1.0)
    assert prom.requests == 5
    await prom.close()


@pytest.mark.parametrize(
    ("doc", "error", "message"),
    [
        ([1, 2], UpstreamError, "not an object"),
        ({"status": "success", "data": []}, UpstreamError, "data: expected an object"),
        (
            {"status": "success", "data": {"resultType": "vector", "result": {}}},
            UpstreamError,
            "data.result: expected a list",
        ),
        (
            {"status": "success", "data": {"resultType": "vector", "result": [5]}},
            UpstreamError,
            "data.result.0: expected",
        ),
        (
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {"a": 1}, "value": [1, "1"]}]},
            },
            UpstreamError,
            "data.result.0.metric: expected string labels",
        ),
        (
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, 1.5]}]},
            },
            UpstreamError,
            "data.result.0.value",
        ),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            QueryError,
            "not an instant vector",
        ),
        ({"status": "error", "errorType": "execution", "error": "boom"}, UpstreamError, "HTTP 200: boom"),
    ],
)
async def test_malformed_answers_name_the_field(
    fake: Fake, doc: Any, error: type[Exception], message: str
) -> None:
    fake.handler = answer(doc)
    prom = client(fake)
    with pytest.raises(error, match=message):
        await prom.query("up", 1.0)
    await prom.close()


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (lambda r: web.Response(text="<html>proxy error</html>"), "the body is not JSON"),
        (
            lambda r: web.Response(status=503, text='{"status": "error", "error": "overloaded"}'),
            "HTTP 503: overloaded",
        ),
        (
            lambda r: web.Response(status=302, headers={"Location": "http://elsewhere.example/"}),
            "redirects are not followed",
        ),
        (lambda r: web.Response(status=401, text="no"), "check the credentials"),
        (lambda r: web.Response(body=b"[" * 200_000), "not JSON"),
    ],
)
async def test_http_failures_are_one_clear_line(fake: Fake, handler: Any, message: str) -> None:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        return handler(request)

    fake.handler = wrapped
    prom = client(fake)
    with pytest.raises(UpstreamError, match=message):
        await prom.query("up", 1.0)
    await prom.close()


async def test_bodies_are_bounded_while_read(fake: Fake) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(1000):  # 64 MiB if read to the end
            await response.write(b" " * 65536)
        return response

    async def bomb(_request: web.Request) -> web.StreamResponse:
        body = gzip.compress(b" " * (64 << 20))
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def declared(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=b" " * (2 << 20), content_type="application/json")

    for handler in (endless, bomb, declared):
        fake.handler = handler
        prom = client(fake, max_response_bytes=1 << 20)
        with pytest.raises(UpstreamError, match="exceeds the limit of 1 MiB"):
            await prom.query("up", 1.0)
        await prom.close()


async def test_too_many_series_is_that_query_s_error(fake: Fake) -> None:
    fake.handler = answer(vector(*[({"i": str(i)}, "1") for i in range(11)]))
    prom = client(fake, max_series=10)
    with pytest.raises(QueryError, match="11 series, more than max_series"):
        await prom.query("up", 1.0)
    await prom.close()


async def test_a_hanging_upstream_times_out(fake: Fake) -> None:
    async def hang(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)  # four times the client's timeout
        return web.Response()

    fake.handler = hang
    prom = PrometheusClient(Upstream(fake.url, timeout_seconds=0.5))
    with pytest.raises(UpstreamError, match=r"no answer within 0\.5s"):
        await prom.query("up", 1.0)
    await prom.close()


async def test_credentials_are_sent_and_never_shown(fake: Fake) -> None:
    fake.handler = answer({"status": "error", "error": "denied"}, status=403)
    prom = PrometheusClient(Upstream(fake.url, username="status", password=Secret("env:X", "hunter2-s3cret")))
    with pytest.raises(UpstreamError) as info:
        await prom.query("up", 1.0)
    assert "hunter2" not in str(info.value) and "check the credentials" in str(info.value)
    assert fake.requests[-1][2]["Authorization"].startswith("Basic ")
    await prom.close()
    token = PrometheusClient(Upstream(fake.url, bearer_token=Secret("env:T", "t0k3n")))
    fake.handler = fake.ok
    await token.query("up", 1.0)
    assert fake.requests[-1][2]["Authorization"] == "Bearer t0k3n"
    await token.close()


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=5) | st.integers(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_is_parsed_or_refused_cleanly(data: Any) -> None:
    prom = PrometheusClient(Upstream("http://127.0.0.1:9"))
    for shaped in (
        data,
        {"resultType": "vector", "result": data},
        {"resultType": "vector", "result": [data]},
    ):
        try:
            samples = prom._samples(shaped)
        except (UpstreamError, QueryError):
            continue
        assert all(isinstance(s.value, float) for s in samples)


# --- Alertmanager --------------------------------------------------------------------------


def am_client(fake: Fake) -> AlertmanagerClient:
    return AlertmanagerClient(AlertmanagerConfig(Upstream(fake.url, timeout_seconds=2.0)))


async def test_only_public_active_alerts_and_only_their_public_fields(fake: Fake) -> None:
    alert = {
        "labels": {
            "alertname": "Slow",
            "public": "true",
            "cluster": "a",
            "severity": "critical",
            "user": "alice",
        },
        "annotations": {"summary": "  Scratch\nis slow  ", "description": "alice's job"},
        "startsAt": "2026-12-01T16:40:01.123456789Z",
        "status": {"state": "active"},
    }
    fake.handler = answer(
        [
            alert,
            {
                **alert,
                "labels": {**alert["labels"], "public": "false"},
            },  # an Alertmanager ignoring the filter
            {**alert, "status": {"state": "suppressed"}},
            {"labels": {"alertname": "NoSummary", "public": "true", "severity": "fatal"}},
        ]
    )
    client = am_client(fake)
    alerts = await client.public_alerts()
    assert [(a.name, a.summary, a.severity, a.system) for a in alerts] == [
        ("Slow", "Scratch is slow", "critical", "a"),
        ("NoSummary", "NoSummary", "warning", None),
    ]
    assert alerts[0].starts_at is not None and alerts[0].starts_at.year == 2026
    path, params, _headers = fake.requests[-1]
    assert path == "/api/v2/alerts" and params["filter"] == 'public="true"' and params["silenced"] == "false"
    await client.close()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"alerts": []}, "expected a list of alerts"),
        ([5], "alerts.0: expected an object"),
        ([{"labels": ["public"]}], "alerts.0.labels"),
    ],
)
async def test_malformed_alert_lists_are_refused(fake: Fake, doc: Any, message: str) -> None:
    fake.handler = answer(doc)
    client = am_client(fake)
    with pytest.raises(UpstreamError, match=message):
        await client.public_alerts()
    await client.close()


async def test_the_page_keeps_serving_whatever_the_upstreams_send(fake: Fake) -> None:
    fake.handler = answer({"status": "success", "data": {"resultType": "vector", "result": "garbage"}})
    config = KIND.load_text(
        json.dumps(
            {
                "prometheus": {"url": fake.url, "timeout_seconds": 1},
                "alertmanager": {"url": fake.url, "timeout_seconds": 1},
                "systems": [{"name": "alpha", "login_nodes": ["l1"]}],
            }
        )
    )
    server = StatusServer(StatusPage(config))
    host, port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/system/alpha", "/api/v1/status/alpha", "/metrics"):
                async with session.get(f"http://{host}:{port}{path}") as response:
                    assert response.status == 200, path
            async with session.get(f"http://{host}:{port}/api/v1/status/alpha") as response:
                doc = await response.json()
        assert doc["status"] == "no_data"
        assert doc["sections"]["availability"] == {
            "updated": None,
            "age_seconds": None,
            "freshness": "no_data",
            "error": True,
        }
    finally:
        await server.stop()


async def test_the_web_config_guards_the_page(fake: Fake) -> None:
    import base64

    import bcrypt

    from powerplane.exporters.runtime.webconfig import KIND as WEB

    hashed = bcrypt.hashpw(b"viewer-pass", bcrypt.gensalt(rounds=4)).decode()
    web_config = WEB.load_text(json.dumps({"basic_auth_users": {"viewer": hashed}}))
    config = KIND.load_text(json.dumps({"prometheus": {"url": fake.url}, "systems": [{"name": "alpha"}]}))
    server = StatusServer(StatusPage(config), web_config=web_config)
    host, port = await server.start("127.0.0.1", 0)
    good = "Basic " + base64.b64encode(b"viewer:viewer-pass").decode()
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/api/v1/status", "/static/style.css"):
                async with session.get(f"http://{host}:{port}{path}") as response:
                    assert response.status == 401, path
                    assert "Content-Security-Policy" in response.headers
                async with session.get(
                    f"http://{host}:{port}{path}", headers={"Authorization": good}
                ) as response:
                    assert response.status == 200, path
    finally:
        await server.stop()
