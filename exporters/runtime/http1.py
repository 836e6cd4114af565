"""A lean HTTP/1.1 client for devices polled many times a minute: keep-alive connections per origin.

The Redfish exporter makes some eight requests per probe to thousands of BMCs a minute.  With
aiohttp's client each request cost about 0.4 ms of CPU in request and response objects, the
connector and its stream readers: more than half of a probe (docs/scale.md).  This client writes
one buffer per request and parses the answer in its protocol's ``data_received`` callback, which
resolves one future with the status, the headers and the bounded body::

    client = HttpClient(headers={"Accept": "application/json"})
    answer = await client.request("GET", URL("https://bmc-01/redfish/v1"), limit=1 << 20,
                                  seconds=5.0, ssl=ssl.create_default_context())
    answer.status, answer.headers.get("Content-Type"), answer.body
    await client.close()

What a general client does and this one keeps:

- TLS with the caller's ``SSLContext`` (verification is whatever the context says: on, unless
  the caller built it otherwise) and the URL's host as ``server_hostname``; connections are
  pooled per (scheme, host, port, context), so a connection made under one context is never
  used under another;
- bodies bounded while they arrive: a ``Content-Length`` over the limit is refused before a
  byte of the body is read, chunked and unframed bodies as soon as the count passes it (the
  connection is then closed, never drained); ``gzip`` and ``deflate`` are inflated in bounded
  steps, at most ``limit`` bytes out (``runtime.http.BodyTooLarge`` either way);
- no redirect is followed: a 3xx is returned like any status;
- strict parsing: a malformed status line, header, chunk size or framing (both
  ``Transfer-Encoding`` and ``Content-Length``, two different lengths, folded or oversized
  headers, bytes after the body) is a ``ProtocolError``, and such a connection is not reused;
  header values with CR, LF or NUL are never sent;
- a reused connection that the server closed while it was idle is retried once on a new one,
  for idempotent methods only and only when nothing of an answer had arrived;
- idle connections are closed after ``keepalive`` seconds, at most ``max_idle_per_origin`` are
  kept per origin and ``max_idle`` in all (the oldest are closed first).

Not supported, by design: pipelining, HTTP/2, proxies, cookies, ``Expect: 100-continue``
(interim 1xx answers are skipped), request bodies other than bytes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, cast

from yarl import URL

from .http import BodyTooLarge, public_url

#: The status line and headers of one answer at most.
MAX_HEAD = 64 * 1024
#: Header fields per answer at most.
MAX_FIELDS = 128
#: A chunk-size line at most (hex digits and extensions).
MAX_CHUNK_LINE = 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "PUT"})
_FORBIDDEN = ("\r", "\n", "\0")
_HEX = b"0123456789abcdefABCDEF"
#: The characters of a header name (``bytes.translate`` deletes them; anything left is invalid).
_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class HttpError(Exception):
    """A request that got no usable answer; the message names the cause, not the URL's secrets."""


class ConnectError(HttpError):
    """The connection could not be made."""


class TlsError(ConnectError):
    """The TLS handshake failed (e.g. ``certificate verify failed``)."""


class Disconnected(HttpError):
    """The server closed the connection before the answer was complete."""

    def __init__(self, message: str, nothing_received: bool) -> None:
        super().__init__(message)
        self.nothing_received = nothing_received


class ProtocolError(HttpError):
    """The answer is not well-formed HTTP/1.1."""


class Headers:
    """Response header fields, looked up without regard to case (the last of repeated ones)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __repr__(self) -> str:
        return f"Headers({sorted(self._fields)})"


class Response:
    """A complete answer: status, headers and the (decoded, bounded) body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


# Body framing, decided from the status and headers.
_NONE, _LENGTH, _CHUNKED, _CLOSE = range(4)


class _Connection(asyncio.Protocol):
    """One connection; parses the answer to the request under way as its bytes arrive."""

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._answer: asyncio.Future[Response] | None = None
        self._buffer = bytearray()
        self._limit = 0
        self._head_only = False
        self._url: URL | None = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._fields: dict[str, str] = {}
        self._framing = -1  # the head has not arrived
        self._remaining = 0
        self._body = bytearray()
        self._scanned = 0
        self._chunk_left = -1  # -1: a chunk-size line is due; -2: the trailers are
        self._keep = True

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            # Bytes nobody asked for: the connection's state is unknown, so it ends here.
            self.abort()
            return
        self._buffer += data
        try:
            self._parse()
        except (HttpError, BodyTooLarge) as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended(exc)

    # --- one exchange ---------------------------------------------------------------------

    def send(self, data: bytes, limit: int, head_only: bool, url: URL) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._limit, self._head_only, self._url = limit, head_only, url
        self.reusable = False
        self._reset()
        self._buffer.clear()
        self.transport.write(data)
        return self._answer

    def time_out(self) -> None:
        """The deadline passed: the answer fails and the connection, in an unknown state, ends."""
        self._fail(TimeoutError())

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(public_url(self._url or "/"), self._limit)

    def abort(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self.abort()

    def _ended(self, exc: Exception | None) -> None:
        answer = self._answer
        self.closed = True
        if answer is None or answer.done():
            return
        if self._framing == _CLOSE:
            self._keep = False
            try:
                self._complete(bytes(self._body))
            except (HttpError, BodyTooLarge) as error:
                self._fail(error)
            return
        nothing = self._framing == -1 and not self._buffer
        cause = f": {exc}" if exc is not None else ""
        where = "before answering" if nothing else "in the middle of the answer"
        answer.set_exception(Disconnected(f"the server closed the connection {where}{cause}", nothing))

    def _parse(self) -> None:
        while True:
            if self._framing == -1 and not self._head():
                return
            if self._framing == _NONE:
                self._complete(b"")
            elif self._framing == _LENGTH:
                if len(self._buffer) < self._remaining:
                    return
                body = bytes(self._buffer[: self._remaining])
                del self._buffer[: self._remaining]
                self._complete(body)
            elif self._framing == _CHUNKED:
                if not self._chunks():
                    return
            else:  # until the server closes: counted as it arrives
                self._body += self._buffer
                self._buffer.clear()
                if len(self._body) > self._limit:
                    raise self._too_large()
                return
            if self._answer is None or self._answer.done() or self._framing != -1:
                return

    def _head(self) -> bool:
        """Parse the status line and headers once they are all here; skips 1xx answers."""
        end = self._buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(self._buffer)
            if self._scanned > MAX_HEAD:
                raise ProtocolError(f"the response head exceeds {MAX_HEAD} bytes")
            return False
        if end > MAX_HEAD:
            raise ProtocolError(f"the response head exceeds {MAX_HEAD} bytes")
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        self._scanned = 0
        lines = head.split(b"\r\n")
        version, status = _status_line(lines[0])
        if len(lines) - 1 > MAX_FIELDS:
            raise ProtocolError(f"more than {MAX_FIELDS} header fields")
        fields: dict[str, str] = {}
        lengths: set[str] = set()
        for line in lines[1:]:
            name, value = _field(line)
            if name == "content-length":
                lengths.add(value)
            fields[name] = value
        if 100 <= status < 200:
            return self._head() if self._buffer else False  # an interim answer: the real one follows
        self._status, self._fields = status, fields
        connection = fields.get("connection", "").lower()
        self._keep = ("close" not in connection) if version == b"HTTP/1.1" else ("keep-alive" in connection)
        self._framing = self._framing_of(status, fields, lengths)
        return True

    def _framing_of(self, status: int, fields: dict[str, str], lengths: set[str]) -> int:
        coding = fields.get("transfer-encoding")
        if self._head_only or status in (204, 304):
            return _NONE
        if coding is not None:
            if lengths:
                raise ProtocolError("both Transfer-Encoding and Content-Length")
            if coding.lower().replace(" ", "") != "chunked":
                raise ProtocolError(f"unsupported Transfer-Encoding {_printable(coding)!r}")
            return _CHUNKED
        if lengths:
            if len(lengths) > 1 or not next(iter(lengths)).isdigit() or len(next(iter(lengths))) > 18:
                raise ProtocolError("invalid or conflicting Content-Length")
            self._remaining = int(next(iter(lengths)))
            if self._remaining > self._limit:
                raise self._too_large()
            return _LENGTH if self._remaining else _NONE
        self._keep = False
        return _CLOSE

    def _chunks(self) -> bool:
        """Consume chunks from the buffer; True once the last chunk and trailers are read."""
        buffer = self._buffer
        while True:
            if self._chunk_left >= 0:
                if len(buffer) < self._chunk_left + 2:
                    return False
                if buffer[self._chunk_left : self._chunk_left + 2] != b"\r\n":
                    raise ProtocolError("a chunk does not end in CRLF")
                self._body += buffer[: self._chunk_left]
                del buffer[: self._chunk_left + 2]
                self._chunk_left = -1
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > (MAX_HEAD if self._chunk_left == -2 else MAX_CHUNK_LINE):
                    raise ProtocolError("a chunk-size line or trailer is too long")
                return False
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if self._chunk_left == -2:  # trailers, up to an empty line; their content is ignored
                if not line:
                    self._complete(bytes(self._body))
                    return True
                _field(line)
                continue
            size_text = line.split(b";", 1)[0].strip()
            if (
                not size_text
                or len(size_text) > 16
                or not all(c in b"0123456789abcdefABCDEF" for c in size_text)
            ):
                raise ProtocolError("an invalid chunk size")
            size = int(size_text, 16)
            if len(self._body) + size > self._limit:
                raise self._too_large()
            self._chunk_left = size if size else -2

    def _complete(self, raw: bytes) -> None:
        coding = self._fields.get("content-encoding")
        body = raw if coding is None else _decode(raw, coding, self._limit, self._too_large)
        answer = self._answer
        self.reusable = self._keep and not self._buffer and not self.closed
        if self._buffer:
            self._keep = False  # bytes after the answer: the connection's framing is lost
        self._framing = -1
        if answer is not None and not answer.done():
            answer.set_result(Response(self._status, Headers(self._fields), body))


def _status_line(line: bytes) -> tuple[bytes, int]:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ProtocolError(f"not an HTTP/1.x status line: {_printable(line[:80])!r}")
    if len(parts[1]) != 3 or not parts[1].isdigit():
        raise ProtocolError(f"an invalid status code: {_printable(parts[1][:10])!r}")
    return parts[0], int(parts[1])


def _field(line: bytes) -> tuple[str, str]:
    name, sep, value = line.partition(b":")
    if not sep or not name or name.translate(None, _TOKEN):
        raise ProtocolError(f"a malformed header field: {_printable(line[:80])!r}")
    value = value.strip(b" \t")
    if b"\r" in value or b"\n" in value or b"\0" in value:
        raise ProtocolError(f"a control character in header {_printable(name)!r}")
    return name.decode("ascii").lower(), value.decode("latin-1")


def _decode(raw: bytes, coding: str, limit: int, too_large: Callable[[], BodyTooLarge]) -> bytes:
    """The body with its content coding undone, at most ``limit`` bytes of output."""
    if coding.strip().lower() in ("", "identity"):
        return raw
    name = coding.strip().lower()
    wbits = {"gzip": 31, "x-gzip": 31, "deflate": 15}.get(name)
    if wbits is None:
        raise ProtocolError(f"unsupported Content-Encoding {_printable(coding[:40])!r}")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(raw, limit + 1)
        if name == "deflate" and not out and raw and not inflater.eof:
            inflater = zlib.decompressobj(-15)  # raw deflate, as some servers send it
            out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"a corrupt {name} body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise too_large()
    return out


async def _endpoint(loop: asyncio.AbstractEventLoop, host: str, port: int) -> dict[str, Any]:
    """What ``create_connection`` connects to: a socket connected here for an IP address, the
    host and port (which the loop resolves) for a name.

    uvloop keeps the last 2,048 IP addresses it connected to in a cache of its own that nothing
    clears: made during a scan of many targets, its entries outlive the targets' state, and each
    keeps a small-object arena of the scan from being returned to the system.  Its
    ``sock_connect`` does not fill that cache."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return {"host": host, "port": port}
    sock = socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return {"sock": sock}


def _printable(text: bytes | str) -> str:
    decoded = text.decode("latin-1") if isinstance(text, bytes) else text
    return "".join(c if c.isprintable() else "?" for c in decoded)


def _header_lines(headers: Mapping[str, str]) -> str:
    lines = []
    for name, value in headers.items():
        if any(c in value or c in name for c in _FORBIDDEN) or ":" in name:
            raise HttpError(f"header {_printable(name)!r}: CR, LF or NUL in a header value is never sent")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


class HttpClient:
    """Keep-alive connection pools per origin; ``request`` returns complete, bounded answers."""

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        *,
        keepalive: float = 60.0,
        max_idle: int = 1024,
        max_idle_per_origin: int = 8,
    ) -> None:
        self.keepalive = keepalive
        self.max_idle = max_idle
        self.max_idle_per_origin = max_idle_per_origin
        self._common = _header_lines(headers or {})
        #: Idle connections, the least recently used origin first.
        self._idle: OrderedDict[Hashable, list[_Connection]] = OrderedDict()
        self._idle_count = 0
        #: Connections opened and requests that reused one (for tests and the exporter's metrics).
        self.opened = 0
        self.reused = 0

    def idle(self) -> int:
        return self._idle_count

    async def request(
        self,
        method: str,
        url: URL,
        *,
        limit: int,
        seconds: float,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        ssl: ssl.SSLContext | None = None,
    ) -> Response:
        """One request on a pooled connection; ``TimeoutError``, ``HttpError`` or ``BodyTooLarge``."""
        host = url.raw_host
        if not host or url.scheme not in ("http", "https") or (url.scheme == "https") != (ssl is not None):
            raise HttpError("only http:// (no TLS context) and https:// (with one) URLs are requested")
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, host, port, ssl)
        extra = _header_lines(headers) if headers else ""
        if body is not None:
            extra += f"Content-Length: {len(body)}\r\n"
        start = f"{method} {url.raw_path_qs} HTTP/1.1\r\nHost: {url.host_port_subcomponent}\r\n"
        head = f"{start}{self._common}{extra}\r\n"
        data = head.encode("latin-1") + (body or b"")
        deadline = asyncio.get_running_loop().time() + seconds
        connection = self._take(key)
        if connection is None:
            connection = await self._connect(key, host, port, ssl, deadline)
        try:
            return await self._exchange(connection, data, method, limit, url, deadline)
        except Disconnected as exc:
            if not (connection.idle_since and exc.nothing_received and method in IDEMPOTENT):
                raise
        # A kept connection the server had closed meanwhile: once more on a new one.
        connection = await self._connect(key, host, port, ssl, deadline)
        return await self._exchange(connection, data, method, limit, url, deadline)

    async def _exchange(
        self, connection: _Connection, data: bytes, method: str, limit: int, url: URL, deadline: float
    ) -> Response:
        answer = connection.send(data, limit, method == "HEAD", url)
        # A timer on the answer rather than asyncio.timeout: a third of the cost per request.
        timer = asyncio.get_running_loop().call_at(deadline, connection.time_out)
        try:
            response = await answer
        except BaseException:
            connection.abort()  # cancelled or failed mid-answer: its state is unknown
            raise
        finally:
            timer.cancel()
        if connection.reusable:
            self._put(connection)
        else:
            connection.abort()
        return response

    async def _connect(
        self, key: Hashable, host: str, port: int, context: ssl.SSLContext | None, deadline: float
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                _transport, connection = await loop.create_connection(
                    lambda: _Connection(key),
                    ssl=context,
                    server_hostname=host if context else None,
                    **await _endpoint(loop, host, port),
                )
        except ssl.SSLError as exc:
            raise TlsError(str(exc)) from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        self.opened += 1
        return connection

    def _take(self, key: Hashable) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if not idle:
                del self._idle[key]
            if not connection.closed and now - connection.idle_since < self.keepalive:
                self.reused += 1
                return connection
            connection.abort()
            idle = self._idle.get(key)
        return None

    def _put(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        idle = self._idle.setdefault(connection.key, [])
        self._idle.move_to_end(connection.key)
        if len(idle) >= self.max_idle_per_origin:
            connection.abort()
            return
        idle.append(connection)
        self._idle_count += 1
        while self._idle_count > self.max_idle:
            _key, oldest = next(iter(self._idle.items()))
            oldest.pop(0).abort()
            self._idle_count -= 1
            if not oldest:
                del self._idle[_key]
        self._expire(connection.idle_since)

    def _expire(self, now: float) -> None:
        """Close the least recently used origins' connections once they outlived ``keepalive``."""
        while self._idle:
            key, idle = next(iter(self._idle.items()))
            if now - idle[-1].idle_since < self.keepalive:
                return
            for connection in idle:
                connection.abort()
            self._idle_count -= len(idle)
            del self._idle[key]

    async def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()
        self._idle_count = 0
