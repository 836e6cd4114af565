"""Signals over HTTP: the market exporter's curve endpoint and PromQL, with faults."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from powerplane.controller.signals import (
    MarketEndpointSignal,
    PromQLSignal,
    SignalError,
    StaticSignal,
    signal_from_spec,
)

NOW = datetime(2026, 5, 4, 10, 5, tzinfo=UTC)
CURVE = {
    "area": "DE-LU",
    "unit": "EUR/MWh",
    "periods": [
        {"start": "2026-05-04T10:00:00Z", "end": "2026-05-04T10:15:00Z", "seconds": 900, "price": 91.5},
        {"start": "2026-05-04T10:15:00Z", "end": "2026-05-04T10:30:00Z", "seconds": 900, "price": 310.0},
    ],
}

Handler = Callable[[web.Request], Any]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Any]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_market_endpoint_curve_cached_and_area(serve: Any) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.json_response(CURVE)

    base = await serve(handler)
    signal = signal_from_spec({"market": {"url": base + "/api/v1/curve", "area": "DE-LU"}})
    assert await signal.value(NOW) == 91.5
    assert await signal.value(NOW + timedelta(minutes=12)) == 310.0
    assert seen == ["/api/v1/curve?area=DE-LU"]  # the curve is cached
    # Past the curve's end it fetches again, and a missing period is no signal.
    assert await signal.value(NOW + timedelta(hours=1)) is None
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (503, "down", "HTTP 503"),
        (200, "<html>", "not valid JSON"),
        (200, '{"periods": []}', "'area'"),
        (200, '{"area": "X", "periods": [{"start": "x", "end": "y", "price": 1}]}', "isoformat"),
        (200, '{"area": "X", "periods": [{"start": "2026-05-04T10:00:00Z", "price": 1}]}', "'end'"),
        (200, "[1]", "not an object"),
    ],
)
async def test_market_endpoint_faults(serve: Any, status: int, body: str, message: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body)

    signal = MarketEndpointSignal(await serve(handler) + "/api/v1/curve")
    with pytest.raises(SignalError, match=message.replace("[", r"\[").replace("]", r"\]")):
        await signal.value(NOW)


async def test_market_endpoint_keeps_the_last_curve_when_a_refresh_fails(serve: Any) -> None:
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        calls["n"] += 1
        return web.json_response(CURVE) if calls["n"] == 1 else web.Response(status=500)

    signal = MarketEndpointSignal(await serve(handler) + "/c", refresh=timedelta(0))
    assert await signal.value(NOW) == 91.5
    assert await signal.value(NOW + timedelta(minutes=12)) == 310.0
    assert calls["n"] == 2


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "42.5"]}]},
            },
            42.5,
        ),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, None),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}}, 7.0),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "NaN"]}]}}, None),
        ({"status": "error", "error": "parse error"}, "query failed"),
        (
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"value": [1, "1"]}, {"value": [1, "2"]}]},
            },
            "2 series",
        ),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "unexpected result type"),
        (
            {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "abc"]}]}},
            "not a number",
        ),
        ([1, 2], "query failed"),
    ],
)
async def test_promql_signal(serve: Any, doc: Any, expected: float | str | None) -> None:
    queries: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        queries.append((await request.post())["query"])  # type: ignore[arg-type]
        return web.json_response(doc)

    signal = PromQLSignal(await serve(handler), "sum(x)")
    if isinstance(expected, str):
        with pytest.raises(SignalError, match=expected):
            await signal.value(NOW)
    else:
        assert await signal.value(NOW) == expected
    assert queries == ["sum(x)"]


async def test_unreachable_sources() -> None:
    with pytest.raises(SignalError, match=r"127\.0\.0\.1:9"):
        await PromQLSignal("http://127.0.0.1:9", "up", timeout=2).value(NOW)
    with pytest.raises(SignalError, match=r"127\.0\.0\.1:9"):
        await MarketEndpointSignal("http://127.0.0.1:9/c", timeout=2).value(NOW)


def test_signal_spec() -> None:
    assert isinstance(signal_from_spec({"static": {"value": 3}}), StaticSignal)
    with pytest.raises(SignalError, match="one of"):
        signal_from_spec({})


@pytest.mark.parametrize(
    "spec",
    [
        {"promql": {"url": "http://user:hunter2pass@127.0.0.1:9090", "query": "up"}},
        {"promql": {"url": "http://hunter2pass@127.0.0.1:9090", "query": "up"}},
        {"market": {"url": "https://user:hunter2pass@market:9875/api/v1/curve"}},
    ],
)
def test_credentials_in_a_url_are_refused_without_echoing_them(spec: dict[str, Any]) -> None:
    with pytest.raises(SignalError, match=r"url: credentials in the URL are refused") as caught:
        signal_from_spec(spec)
    assert "hunter2pass" not in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"promql": {"url": "ftp://p:9090", "query": "up"}}, "http or https"),
        ({"promql": {"url": "http://p:99999", "query": "up"}}, "not a valid URL"),
        ({"promql": {"url": "http://p:9090", "query": ""}}, "query"),
        (
            {"promql": {"url": "http://p:9090", "query": "up", "auth": {"bearerToken": "inline"}}},
            "bearerToken",
        ),
        (
            {
                "promql": {
                    "url": "http://p:9090",
                    "query": "up",
                    "auth": {"basicAuth": {"password": {"env": "X"}}},
                }
            },
            "username",
        ),
        ({"market": {"url": "http://m:9875/c", "area": "DE&x=1"}}, "area"),
        ({"static": {"value": float("nan")}}, "finite"),
        ({"static": {"value": "1"}}, "number"),
        ({"static": {}}, "value"),
        ({"bogus": {}}, "unknown source"),
        ({"static": {"value": 1}, "promql": {}}, "one of"),
        ([], "one of"),
    ],
)
def test_signal_spec_errors_name_the_field(spec: Any, message: str) -> None:
    with pytest.raises(SignalError, match=message):
        signal_from_spec(spec)


async def test_promql_credentials_come_from_env_and_file(
    serve: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}})

    base = await serve(handler)
    monkeypatch.setenv("PROM_TOKEN", "tok-123456")
    bearer = signal_from_spec(
        {"promql": {"url": base, "query": "x", "auth": {"bearerToken": {"env": "PROM_TOKEN"}}}}
    )
    (tmp_path / "pw").write_text("s3cret-pw\n")
    basic = signal_from_spec(
        {
            "promql": {
                "url": base,
                "query": "x",
                "auth": {"basicAuth": {"username": "agent", "password": {"file": str(tmp_path / "pw")}}},
            }
        }
    )
    assert await bearer.value(NOW) == 3.0 and await basic.value(NOW) == 3.0
    assert seen == ["Bearer tok-123456", "Basic YWdlbnQ6czNjcmV0LXB3"]  # agent:s3cret-pw
    # An unset variable is a lost signal for this period, named by its field, not a crash.
    monkeypatch.delenv("PROM_TOKEN")
    with pytest.raises(
        SignalError, match=r"signal\.promql\.auth\.bearerToken: environment variable PROM_TOKEN"
    ):
        await bearer.value(NOW)


async def test_redirects_are_not_followed_with_credentials(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response(CURVE)

    other = await serve(elsewhere)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(other + "/api/v1/curve")

    monkeypatch.setenv("MARKET_TOKEN", "tok-abcdef")
    signal = signal_from_spec(
        {"market": {"url": await serve(redirect) + "/c", "auth": {"bearerToken": {"env": "MARKET_TOKEN"}}}}
    )
    with pytest.raises(SignalError, match="HTTP 302"):
        await signal.value(NOW)
    assert seen == []


async def test_oversized_answers_are_refused(serve: Any) -> None:
    from powerplane.controller.signals import MAX_BODY_BYTES

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b" " * 65536
        with contextlib.suppress(ConnectionError):  # the client stops reading at the cap
            for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
                await response.write(chunk)
        return response

    base = await serve(handler)
    with pytest.raises(SignalError, match="exceeds the limit of 4 MiB"):
        await PromQLSignal(base, "x").value(NOW)
    with pytest.raises(SignalError, match="exceeds the limit of 4 MiB"):
        await MarketEndpointSignal(base + "/c").value(NOW)
