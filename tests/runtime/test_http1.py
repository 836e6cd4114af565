"""The lean HTTP/1.1 client: keep-alive reuse, framing, bounds, hostile answers, TLS, retries.

The server is a scripted asyncio stream server on 127.0.0.1 answering each request with the
bytes a test gives, so that the malformed and hostile answers no real server would send can be
sent.  The tests run on asyncio's loop; one runs the essentials on uvloop, whose transports
(what the exporters run on) are not asyncio's classes.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from yarl import URL

from powerplane.exporters.runtime import state
from powerplane.exporters.runtime.http import BodyTooLarge
from powerplane.exporters.runtime.http1 import (
    ConnectError,
    Disconnected,
    HttpClient,
    HttpError,
    ProtocolError,
    TlsError,
)

Answer = Callable[[bytes], bytes | None]


class Scripted:
    """A server answering each request (its head and body) with ``answer(request)``'s bytes.

    ``None`` closes the connection without an answer.  Connections and requests are counted."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        #: Close the connection after each answer.
        self.close_after = False

    async def start(self, context: ssl.SSLContext | None = None) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/x", scheme: str = "http") -> URL:
        return URL(f"{scheme}://127.0.0.1:{self.port}{path}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                out = self.answer(request)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close_idle(self) -> None:
        """Close every connection from the server's side (as a server's keep-alive timeout does)."""
        for writer in self.writers:
            writer.close()
        await asyncio.sleep(0.05)

    async def stop(self) -> None:
        assert self.server is not None
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


def ok(body: bytes = b'{"a": 1}', extra: bytes = b"") -> Answer:
    return lambda _req: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Answer], Any]]:
    servers: list[Scripted] = []

    async def start(answer: Answer) -> Scripted:
        servers.append(await Scripted(answer).start())
        return servers[-1]

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient({"Accept": "application/json"})
    yield http
    await http.close()


async def get(client: HttpClient, url: URL, limit: int = 1 << 20, **kwargs: Any) -> Any:
    return await client.request(kwargs.pop("method", "GET"), url, limit=limit, seconds=5.0, **kwargs)


# --- keep-alive -------------------------------------------------------------------------------


async def test_one_connection_serves_consecutive_requests(scripted: Any, client: HttpClient) -> None:
    server = await scripted(ok())
    for _ in range(5):
        answer = await get(client, server.url())
        assert (answer.status, answer.body) == (200, b'{"a": 1}')
    assert server.connections == 1 and client.opened == 1 and client.reused == 4
    first = server.requests[0].decode()
    assert first.startswith("GET /x HTTP/1.1\r\n") and f"Host: 127.0.0.1:{server.port}\r\n" in first
    assert "Accept: application/json\r\n" in first


async def test_concurrent_requests_open_one_connection_each(scripted: Any, client: HttpClient) -> None:
    server = await scripted(ok())
    await asyncio.gather(*(get(client, server.url()) for _ in range(3)))
    await asyncio.gather(*(get(client, server.url()) for _ in range(3)))
    assert server.connections == 3 and client.idle() == 3


async def test_connection_close_and_http10_are_not_reused(scripted: Any, client: HttpClient) -> None:
    closing = await scripted(ok(extra=b"Connection: close\r\n"))
    old = await scripted(lambda _r: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    for server in (closing, old):
        for _ in range(2):
            assert (await get(client, server.url())).body in (b'{"a": 1}', b"{}")
        assert server.connections == 2
    assert client.idle() == 0


async def test_a_connection_the_server_closed_is_retried_once_for_get(
    scripted: Any, client: HttpClient
) -> None:
    server = await scripted(ok())
    await get(client, server.url())
    await server.close_idle()
    assert (await get(client, server.url())).status == 200
    assert server.connections == 2


async def test_a_post_is_not_retried_on_a_closed_connection(scripted: Any, client: HttpClient) -> None:
    answers = iter([ok()(b""), None])
    server = await scripted(lambda _r: next(answers))
    await get(client, server.url())
    with pytest.raises(Disconnected):
        await get(client, server.url(), method="POST", body=b"{}")
    assert server.connections == 1  # the request may have been acted on: never sent twice


async def test_idle_connections_are_bounded(scripted: Any) -> None:
    servers = [await scripted(ok()) for _ in range(3)]
    http = HttpClient(max_idle=2, max_idle_per_origin=1)
    try:
        for server in servers:
            await asyncio.gather(get(http, server.url()), get(http, server.url()))
        assert http.idle() == 2  # one per origin, the least recently used origin closed
        await get(http, servers[0].url())
        assert servers[0].connections == 3  # its kept connection had been closed
    finally:
        await http.close()


async def test_idle_connections_expire(scripted: Any) -> None:
    server = await scripted(ok())
    http = HttpClient(keepalive=0.0)
    try:
        await get(http, server.url())
        await get(http, server.url())
        assert server.connections == 2 and http.reused == 0
    finally:
        await http.close()


# --- framing -----------------------------------------------------------------------------------


async def test_chunked_and_unframed_bodies(scripted: Any, client: HttpClient) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b'4;ext=1\r\n{"a"\r\n4\r\n: 1}\r\n0\r\nX-T: 1\r\n\r\n'
    server = await scripted(lambda _r: chunked)
    assert (await get(client, server.url())).body == b'{"a": 1}'
    assert (await get(client, server.url())).body == b'{"a": 1}'
    assert server.connections == 1
    # No length and no chunks: the body ends when the server closes; never reused.
    unframed = await scripted(lambda _r: b"HTTP/1.1 200 OK\r\n\r\n[1, 2]")
    unframed.close_after = True
    assert (await get(client, unframed.url())).body == b"[1, 2]"
    assert (await get(client, unframed.url())).body == b"[1, 2]"
    assert unframed.connections == 2


async def test_interim_answers_are_skipped_and_204_has_no_body(scripted: Any, client: HttpClient) -> None:
    server = await scripted(
        lambda _r: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"
    )
    answer = await get(client, server.url())
    assert answer.status == 204 and answer.body == b"" and answer.headers.get("x-a") == "b"
    assert (await get(client, server.url())).status == 204 and server.connections == 1


async def test_redirects_are_returned_not_followed(scripted: Any, client: HttpClient) -> None:
    server = await scripted(
        lambda _r: b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n"
    )
    answer = await get(client, server.url())
    assert answer.status == 302 and answer.headers.get("LOCATION") == "http://elsewhere/"
    assert len(server.requests) == 1


async def test_gzip_and_deflate_are_inflated(scripted: Any, client: HttpClient) -> None:
    body = b'{"x": "' + b"y" * 1000 + b'"}'
    for coding, data in ((b"gzip", gzip.compress(body)), (b"deflate", zlib.compress(body))):
        server = await scripted(ok(data, b"Content-Encoding: " + coding + b"\r\n"))
        assert (await get(client, server.url())).body == body


# --- bounds -------------------------------------------------------------------------------------


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    scripted: Any, client: HttpClient
) -> None:
    server = await scripted(lambda _r: b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\nxx")
    with pytest.raises(BodyTooLarge) as error:
        await get(client, server.url("/x?token=secret"), limit=1024)
    assert "secret" not in str(error.value) and "1 KiB" in str(error.value)
    assert client.idle() == 0


@pytest.mark.parametrize("framing", ["chunked", "close"])
async def test_endless_bodies_stop_at_the_limit(scripted: Any, client: HttpClient, framing: str) -> None:
    if framing == "chunked":
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n"
        answer *= 1  # one chunk per write; the limit is below two of them
        payload = answer + (b"400\r\n" + b"x" * 1024 + b"\r\n") * 64
    else:
        payload = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 65536
    server = await scripted(lambda _r: payload)
    with pytest.raises(BodyTooLarge):
        await get(client, server.url(), limit=4096)
    assert client.idle() == 0


async def test_a_gzip_bomb_inflates_no_further_than_the_limit(scripted: Any, client: HttpClient) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB in about 64 KiB
    server = await scripted(ok(bomb, b"Content-Encoding: gzip\r\n"))
    with pytest.raises(BodyTooLarge):
        await get(client, server.url(), limit=1 << 20)


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status code"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "header field"),
        (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", "header field"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "both"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}", "Content-Encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}", "corrupt"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 * 1024) + b"\r\n\r\n", "exceeds"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", "header fields"),
    ],
)
async def test_malformed_answers_are_named(
    scripted: Any, client: HttpClient, answer: bytes, says: str
) -> None:
    server = await scripted(lambda _r: answer)
    with pytest.raises(ProtocolError, match=says):
        await get(client, server.url())
    assert client.idle() == 0


async def test_bytes_after_the_body_end_the_connection(scripted: Any, client: HttpClient) -> None:
    server = await scripted(lambda _r: ok()(b"") + b"HTTP/1.1 200 OK\r\n")
    assert (await get(client, server.url())).status == 200
    assert client.idle() == 0


async def test_a_server_that_hangs_up_is_named(scripted: Any, client: HttpClient) -> None:
    server = await scripted(lambda _r: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    server.answer = lambda _r: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    task = asyncio.ensure_future(get(client, server.url()))
    await asyncio.sleep(0.1)
    await server.close_idle()
    with pytest.raises(Disconnected, match="in the middle"):
        await task


async def test_header_values_with_line_breaks_are_never_sent(scripted: Any, client: HttpClient) -> None:
    server = await scripted(ok())
    with pytest.raises(HttpError, match="CR, LF or NUL"):
        await get(client, server.url(), headers={"X-Auth-Token": "t\r\nX-Evil: 1"})
    assert server.requests == []


async def test_a_timeout_closes_the_connection(scripted: Any, client: HttpClient) -> None:
    server = await scripted(lambda _r: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(TimeoutError):
        await client.request("GET", server.url(), limit=1024, seconds=0.2)
    assert client.idle() == 0


async def test_a_refused_connection_is_named(client: HttpClient) -> None:
    with pytest.raises(ConnectError, match="cannot connect"):
        await get(client, URL("http://127.0.0.1:1/x"))


async def test_scheme_and_tls_context_must_agree(client: HttpClient) -> None:
    with pytest.raises(HttpError, match="https"):
        await get(client, URL("https://127.0.0.1:1/x"))
    with pytest.raises(HttpError, match="https"):
        await get(client, URL("http://127.0.0.1:1/x"), ssl=ssl.create_default_context())


# --- TLS ------------------------------------------------------------------------------------------


async def test_tls_is_verified_by_the_context(tmp_path: Path, client: HttpClient) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    server = await Scripted(ok()).start(server_context)
    try:
        url = server.url(scheme="https")
        with pytest.raises(TlsError, match="certificate verify failed"):
            await get(client, url, ssl=ssl.create_default_context())
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        assert (await get(client, url, ssl=trusting)).status == 200
        assert (await get(client, url, ssl=trusting)).status == 200
        assert server.connections == 1  # (the failed handshake never got this far) one kept connection
        # A connection verified under one context is never lent to a request under another.
        with pytest.raises(TlsError):
            await get(client, url, ssl=ssl.create_default_context())
    finally:
        await server.stop()


# --- uvloop -----------------------------------------------------------------------------------------


def test_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        server = await Scripted(lambda _r: chunked).start()
        http = HttpClient()
        try:
            for _ in range(3):
                assert (await get(http, server.url())).body == b"{}"
            assert server.connections == 1 and http.reused == 2
            await server.close_idle()
            assert (await get(http, server.url())).body == b"{}"  # retried on a new connection
            server.answer = lambda _r: b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n"
            with pytest.raises(BodyTooLarge):
                await get(http, server.url(), limit=1024)
        finally:
            await http.close()
            await server.stop()

    uvloop.run(scenario())


def test_connecting_to_many_addresses_keeps_nothing_per_address_under_uvloop() -> None:
    # A scan of an allowed range connects to thousands of addresses once each: nothing of them
    # may stay in the process (uvloop's create_connection caches the last 2,048 it was given).
    uvloop = pytest.importorskip("uvloop")

    async def scan() -> int:
        client = HttpClient()

        async def connect(i: int) -> None:
            url = URL(f"http://127.3.{i // 250}.{i % 250 + 1}:1/")
            with pytest.raises(ConnectError):
                await client.request("GET", url, limit=1024, seconds=5.0)

        await connect(99999)
        state.release_memory()  # yarl's caches of the URLs parsed here, and the garbage
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, 3000, 200):
            await asyncio.gather(*(connect(i) for i in range(start, start + 200)))
        state.release_memory()
        return tracemalloc.get_traced_memory()[0] - before

    tracemalloc.start()
    try:
        held = uvloop.run(scan())
    finally:
        tracemalloc.stop()
    # The last batch's tasks and results, as many for 200 addresses as for 3,000; 0.8 MB more
    # when uvloop connected to the addresses itself (its cache of the last 2,048).
    assert held < 400_000
