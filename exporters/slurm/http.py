"""A minimal HTTP/1.1 GET for slurmrestd that reads a body by its Content-Length and stops there.

slurmrestd 22.05 answers a request carrying ``Connection: close`` with its body followed by a
stray ``Connection: Close`` header line.  aiohttp's parser reads past the body and fails the
whole response on those bytes ("Bad status line"), and a kept-alive connection would read them
as the start of the next answer.  Here a request gets its own connection, the body is exactly
``Content-Length`` bytes (or chunked, where a server uses that), streamed in chunks, and the
connection is closed after it, so whatever follows is never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 << 10
CHUNK = 1 << 20


class HttpError(Exception):
    """The server could not be reached or did not speak HTTP/1.1 as expected."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: AsyncGenerator[bytes]


@contextlib.asynccontextmanager
async def get(
    url: str,
    headers: Mapping[str, str],
    *,
    unix_socket: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
) -> AsyncGenerator[Response]:
    """``GET url``: the status, headers and a stream of the body's chunks."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(connect_timeout):
            if unix_socket:
                reader, writer = await asyncio.open_unix_connection(unix_socket, limit=MAX_HEADER_BYTES)
            else:
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ssl_context, limit=MAX_HEADER_BYTES
                )
    except TimeoutError:
        raise HttpError(f"no connection within {connect_timeout:g}s") from None
    except OSError as exc:
        raise HttpError(exc.strerror or type(exc).__name__) from None
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {target or '/'} HTTP/1.1",
            f"Host: {parts.netloc or host}",
            "Accept-Encoding: identity",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status, response_headers = await _head(reader)
        yield Response(status, response_headers, _body(reader, status, response_headers))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        raise HttpError("connection closed before the response headers") from None
    except asyncio.LimitOverrunError:
        raise HttpError(f"response headers larger than {MAX_HEADER_BYTES} bytes") from None
    first, *rest = raw.decode("latin-1").split("\r\n")
    version, _, tail = first.partition(" ")
    code = tail[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpError(f"not an HTTP/1.1 response: {first[:60]!r}")
    headers: dict[str, str] = {}
    for line in rest:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(code), headers


async def _body(
    reader: asyncio.StreamReader, status: int, headers: Mapping[str, str]
) -> AsyncGenerator[bytes]:
    if status in (204, 304):  # never a body (RFC 9110), whatever the headers say
        return
    if "chunked" in headers.get("transfer-encoding", "").lower():
        async for chunk in _chunked(reader):
            yield chunk
        return
    length = headers.get("content-length")
    if length is None:  # the body runs to the end of the connection
        while chunk := await reader.read(CHUNK):
            yield chunk
        return
    if not length.isdigit():
        raise HttpError(f"invalid Content-Length {length[:20]!r}")
    left = int(length)
    while left:
        chunk = await reader.read(min(left, CHUNK))
        if not chunk:
            raise HttpError(f"connection closed with {left} bytes of the body missing")
        left -= len(chunk)
        yield chunk


async def _chunked(reader: asyncio.StreamReader) -> AsyncGenerator[bytes]:
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise HttpError("truncated chunked body") from None
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(f"invalid chunk size {size_text[:20]!r}") from None
        if size == 0:
            return
        try:
            while size:
                data = await reader.readexactly(min(size, CHUNK))
                size -= len(data)
                yield data
            await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            raise HttpError("truncated chunked body") from None
