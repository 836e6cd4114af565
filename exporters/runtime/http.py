"""Bounded HTTP response bodies: the byte cap is enforced while the body is read, never after.

Every HTTP body powerplane reads from a device or a remote API goes through this module, so
that no answer (a gzip bomb, a document of 100 MB, an endless chunked stream) can grow the
process beyond a known bound::

    async with session.get(url) as response:
        body = await read_body(response, limit=1 << 20)           # bytes
        doc = await read_json(response, limit=1 << 20)            # parsed JSON
        await feed_body(response, parser.feed, limit=16 << 20)    # an incremental parser

The limit counts *decompressed* bytes: the chunks are taken from aiohttp's decompressed stream
(``response.content``), which inflates gzip/deflate/br/zstd in bounded steps as the body is
read (aiohttp 3.13.3 and later; earlier versions inflated each received chunk whole).  A body
declared larger than the limit (``Content-Length`` without a content coding) is refused before
a byte is read; any other body is refused as soon as the running total passes the limit, and
the connection is closed instead of being drained.  At most ``chunk_size`` bytes are held at a
time by ``iter_body`` and ``feed_body``; ``read_body`` holds at most ``limit``.

Errors name the URL without its credentials or query (``https://api.example/v1/x?…``): query
strings carry tokens (ENTSO-E's ``securityToken``), userinfo carries passwords.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

import aiohttp
from yarl import URL

#: How many bytes are taken from the stream per step.
CHUNK_SIZE = 64 * 1024


class BodyError(Exception):
    """A response body that was refused: too large, or not what was asked for (e.g. not JSON)."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        #: The URL without userinfo and query.
        self.url = url


class BodyTooLarge(BodyError):
    """The (decompressed) body passed ``limit`` bytes; reading stopped there."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(url, f"response body exceeds the limit of {format_size(limit)} (decompressed)")
        self.limit = limit


def format_size(size: int) -> str:
    """``16 MiB``, ``64 KiB``, ``512 bytes``: limits as people write them."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def public_url(url: str | URL) -> str:
    """``url`` as it may appear in an error or a log line: no userinfo, no query, no fragment."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        if not parsed.is_absolute():
            return parsed.path or "/"
        cleaned = parsed.with_user(None).with_password(None).with_query(None).with_fragment(None)
        # The port is kept (a refused URL must be told apart from its neighbours on the host).
        text = str(cleaned)
    except (ValueError, TypeError):
        return "<unparseable URL>"
    return text + ("?…" if parsed.query_string else "")


def _declared_too_large(response: aiohttp.ClientResponse, limit: int) -> bool:
    coding = response.headers.get("Content-Encoding", "identity").strip().lower()
    length = response.content_length
    # With a content coding the header counts compressed bytes: only the stream can tell.
    return coding in ("", "identity") and length is not None and length > limit


async def iter_body(
    response: aiohttp.ClientResponse, limit: int, chunk_size: int = CHUNK_SIZE
) -> AsyncGenerator[bytes, None]:
    """The decompressed body in chunks of at most ``chunk_size``; ``BodyTooLarge`` past ``limit``."""
    url = public_url(response.url)
    if _declared_too_large(response, limit):
        response.close()
        raise BodyTooLarge(url, limit)
    total = 0
    while True:
        chunk = await response.content.read(chunk_size)
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            # Close rather than drain: the rest of the body is never read.
            response.close()
            raise BodyTooLarge(url, limit)
        yield chunk


async def feed_body(
    response: aiohttp.ClientResponse,
    feed: Callable[[bytes], object],
    limit: int,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Stream the body into an incremental parser's ``feed``; returns the bytes read.

    What ``feed`` raises propagates (the connection is then closed, not drained), so a parser
    that refuses its input (an element cap, a forbidden DTD) stops the download as well.
    """
    total = 0
    chunks = iter_body(response, limit, chunk_size)
    try:
        async for chunk in chunks:
            total += len(chunk)
            feed(chunk)
    except BaseException:
        response.close()
        raise
    finally:
        await chunks.aclose()
    return total


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole decompressed body, at most ``limit`` bytes (``BodyTooLarge`` beyond)."""
    buffer = bytearray()
    await feed_body(response, buffer.extend, limit)
    return bytes(buffer)


async def read_json(response: aiohttp.ClientResponse, limit: int) -> Any:
    """The body parsed as JSON; ``BodyError`` when it is too large or not JSON."""
    body = await read_body(response, limit)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BodyError(public_url(response.url), "response body is not valid JSON") from None
    except RecursionError:
        # Deeply nested arrays exhaust the parser's stack; the cap bounds how much it can see.
        raise BodyError(public_url(response.url), "response body nests too deeply to be JSON") from None
