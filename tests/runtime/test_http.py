"""Bounded HTTP bodies: the cap holds while reading, for every content coding and framing."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from powerplane.exporters.runtime.http import (
    BodyError,
    BodyTooLarge,
    feed_body,
    format_size,
    iter_body,
    public_url,
    read_body,
    read_json,
)
from powerplane.lab.market import deflate_bomb, gzip_bomb

LIMIT = 1 << 20  # 1 MiB
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """An aiohttp server on 127.0.0.1 whose routes the test sets; counts bytes it managed to send."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.sent: dict[str, int] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        return await self.routes[request.match_info["name"]](request)

    def stream(self, name: str, chunks: Callable[[], AsyncIterator[bytes]], **headers: str) -> None:
        """A chunked response written from ``chunks`` (it stops when the client goes away)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            self.sent[name] = 0
            try:
                async for chunk in chunks():
                    await response.write(chunk)
                    self.sent[name] += len(chunk)
            except (ConnectionResetError, ConnectionError):
                pass
            return response

        self.routes[name] = handler

    def body(self, name: str, body: bytes, **headers: str) -> None:
        async def handler(_request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, headers=headers)

        self.routes[name] = handler


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    await s.start()
    yield s
    await s.stop()


Reader = Callable[[aiohttp.ClientResponse], Awaitable[object]]


async def get(server: Server, name: str, read: Reader) -> object:
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/{name}") as response:
        return await read(response)


async def test_small_bodies_are_read_whole(server: Server) -> None:
    server.body("ok", b'{"a": [1, 2, 3]}', **{"Content-Type": "application/json"})
    assert await get(server, "ok", lambda r: read_body(r, LIMIT)) == b'{"a": [1, 2, 3]}'
    assert await get(server, "ok", lambda r: read_json(r, LIMIT)) == {"a": [1, 2, 3]}
    # Exactly at the limit is allowed; one byte more is not.
    server.body("exact", b"x" * LIMIT)
    assert len(await get(server, "exact", lambda r: read_body(r, LIMIT))) == LIMIT  # type: ignore[arg-type]
    with pytest.raises(BodyTooLarge):
        await get(server, "exact", lambda r: read_body(r, LIMIT - 1))


async def test_declared_length_over_the_limit_is_refused_before_reading(server: Server) -> None:
    server.body("big", b"x" * (4 * LIMIT))
    with pytest.raises(BodyTooLarge) as info:
        await get(server, "big", lambda r: read_body(r, LIMIT))
    assert info.value.limit == LIMIT
    assert str(info.value) == f"{server.url}/big: response body exceeds the limit of 1 MiB (decompressed)"


async def test_an_endless_chunked_stream_stops_at_the_limit(server: Server) -> None:
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(10_000):  # 640 MiB if nobody stopped it
            yield b"y" * 65536

    server.stream("endless", endless)
    with pytest.raises(BodyTooLarge):
        await get(server, "endless", lambda r: read_body(r, LIMIT))
    # The client closed the connection instead of draining it: the server stopped soon after.
    for _ in range(100):
        await asyncio.sleep(0.02)
    assert server.sent["endless"] < 64 * LIMIT


@pytest.mark.parametrize(
    ("coding", "body"),
    [("gzip", lambda: gzip_bomb(256 << 20)), ("deflate", lambda: deflate_bomb(64 << 20))],
)
async def test_compression_bombs_are_stopped_while_inflating(
    server: Server, coding: str, body: Callable[[], bytes]
) -> None:
    payload = body()
    assert len(payload) < 300_000
    server.body("bomb", payload, **{"Content-Encoding": coding})
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            await get(server, "bomb", lambda r: read_body(r, LIMIT))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounded by the limit and a few chunks, not by the 64-256 MiB the bomb inflates to.
    assert peak < 12 * LIMIT, f"peak traced allocation {peak} bytes"


async def test_a_compressed_body_under_the_limit_is_inflated(server: Server) -> None:
    server.body("small", gzip_bomb(LIMIT // 2, LIMIT // 4), **{"Content-Encoding": "gzip"})
    assert await get(server, "small", lambda r: read_body(r, LIMIT)) == bytes(LIMIT // 2)


async def test_feed_body_streams_into_a_parser_in_bounded_chunks(server: Server) -> None:
    server.body("data", b"z" * (3 * 65536 + 5))
    sizes: list[int] = []
    total = await get(server, "data", lambda r: feed_body(r, lambda chunk: sizes.append(len(chunk)), LIMIT))
    assert total == sum(sizes) == 3 * 65536 + 5
    assert max(sizes) <= 65536


async def test_a_parser_that_refuses_stops_the_download(server: Server) -> None:
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(10_000):
            yield b"<a/>" * 16384

    server.stream("xml", endless)
    seen = 0

    def refuse(chunk: bytes) -> None:
        nonlocal seen
        seen += len(chunk)
        if seen > 200_000:
            raise ValueError("too many elements")

    with pytest.raises(ValueError, match="too many elements"):
        await get(server, "xml", lambda r: feed_body(r, refuse, 1 << 30))
    assert seen < 400_000


async def test_iter_body_chunk_size(server: Server) -> None:
    server.body("data", b"q" * 10_000)

    async def chunks(response: aiohttp.ClientResponse) -> list[int]:
        return [len(c) async for c in iter_body(response, LIMIT, chunk_size=1000)]

    sizes = await get(server, "data", chunks)
    assert sum(sizes) == 10_000 and max(sizes) <= 1000  # type: ignore[call-overload, arg-type]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 200_000 + b"]" * 200_000, "nests too deeply"),
        (b"", "not valid JSON"),
    ],
)
async def test_read_json_refuses_what_is_not_json(server: Server, body: bytes, needle: str) -> None:
    server.body("bad", body)
    with pytest.raises(BodyError) as info:
        await get(server, "bad", lambda r: read_json(r, LIMIT))
    assert needle in str(info.value) and str(info.value).startswith(f"{server.url}/bad: ")


async def test_errors_never_name_credentials_or_the_query(server: Server) -> None:
    server.body("big", b"x" * (2 * LIMIT))
    host = server.url.removeprefix("http://")
    url = f"http://user:hunter2-password@{host}/big?securityToken=s3cr3t-token&x=1"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        with pytest.raises(BodyTooLarge) as info:
            await read_body(response, LIMIT)
    text = str(info.value)
    assert "hunter2" not in text and "s3cr3t" not in text and "user" not in text
    assert text.startswith(f"http://{host}/big?…: ")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@api.example:8443/v1/x?token=abc#frag", "https://api.example:8443/v1/x?…"),
        ("https://api.example/price", "https://api.example/price"),
        ("/relative/path?q=1", "/relative/path"),
        ("http://[::1", "<unparseable URL>"),
    ],
)
def test_public_url(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_format_size() -> None:
    assert [format_size(n) for n in (16 << 20, 64 << 10, 1 << 30, 1000)] == [
        "16 MiB",
        "64 KiB",
        "1 GiB",
        "1000 bytes",
    ]
