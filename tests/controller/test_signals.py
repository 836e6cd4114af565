"""Signals over HTTP: the market exporter's curve endpoint and PromQL, with faults."""

from __future__ import annotations

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
        (200, "<html>", "JSONDecodeError"),
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
