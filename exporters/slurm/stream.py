"""Reading a large JSON document without holding it: its top-level arrays are streamed.

A job list of a large cluster is hundreds of megabytes of JSON (slurmrestd 22.05 indents it;
100,000 jobs are about 375 MB), several times that as Python objects.  ``read_document``
decodes the document's top-level object from a stream of byte chunks and hands each element of
the arrays named in ``streams`` to a callback as soon as it is complete, so only one element
and a read buffer are in memory at a time.  Elements are decoded by the standard library's C
scanner (``JSONDecoder.raw_decode``), the same code ``json.loads`` runs.

Bounds: the whole document at most ``max_bytes``, one value (an element or a non-streamed
member) at most ``max_value_bytes``; past either the read stops with ``StreamError``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

_WS = " \t\n\r"
_DECODER = json.JSONDecoder()
_CHUNK = 1 << 20


class StreamError(ValueError):
    """The document is not JSON of the expected shape, or is larger than allowed."""


class _Reader:
    def __init__(self, chunks: AsyncIterator[bytes], max_bytes: int, max_value_bytes: int) -> None:
        self.chunks = chunks
        self.max_bytes = max_bytes
        self.max_value_bytes = max_value_bytes
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.read = 0

    async def more(self) -> None:
        if self.eof:
            raise StreamError("document ends early")
        if self.pos:
            self.buf = self.buf[self.pos :]
            self.pos = 0
        try:
            chunk = await anext(self.chunks)
        except StopAsyncIteration:
            self.eof = True
            self.buf += self.utf8.decode(b"", final=True)
            return
        self.read += len(chunk)
        if self.read > self.max_bytes:
            raise StreamError(f"document larger than {self.max_bytes} bytes")
        try:
            self.buf += self.utf8.decode(chunk)
        except UnicodeDecodeError as exc:
            raise StreamError(f"not UTF-8 at byte {self.read - len(chunk) + exc.start}") from None

    async def peek(self) -> str:
        """The next non-blank character ('' at the end of the document)."""
        while True:
            buf, pos, n = self.buf, self.pos, len(self.buf)
            while pos < n and buf[pos] in _WS:
                pos += 1
            self.pos = pos
            if pos < n:
                return buf[pos]
            if self.eof:
                return ""
            await self.more()

    async def expect(self, char: str) -> None:
        found = await self.peek()
        if found != char:
            raise StreamError(
                f"expected {char!r} at byte {self.read - len(self.buf) + self.pos}, found {found!r}"
            )
        self.pos += 1

    async def value(self) -> Any:
        if await self.peek() == "":
            raise StreamError("document ends early")
        start_read = self.read
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise StreamError(f"invalid JSON: {exc.msg}") from None
                self._check_size(start_read)
                await self._grow()
                continue
            # A number (or anything) ending exactly at the buffer's end may continue in the next chunk.
            if end == len(self.buf) and not self.eof:
                self._check_size(start_read)
                await self._grow()
                continue
            if end - self.pos > self.max_value_bytes:
                raise StreamError(f"a value larger than {self.max_value_bytes} bytes")
            self.pos = end
            return value

    def _check_size(self, start_read: int) -> None:
        if len(self.buf) - self.pos > self.max_value_bytes:
            raise StreamError(f"a value larger than {self.max_value_bytes} bytes")

    async def _grow(self) -> None:
        # Read until the pending text has doubled, so retrying a long value stays linear.
        target = min(max(2 * (len(self.buf) - self.pos), _CHUNK), self.max_value_bytes + 1)
        await self.more()
        while not self.eof and len(self.buf) - self.pos < target:
            await self.more()


async def read_document(
    chunks: AsyncIterator[bytes],
    streams: Mapping[str, Callable[[Any], None]],
    max_bytes: int = 1 << 30,
    max_value_bytes: int = 16 << 20,
) -> dict[str, Any]:
    """Decode a top-level JSON object; members named in ``streams`` go element by element to their
    callback (and are absent from the result), the others are returned."""
    reader = _Reader(chunks, max_bytes, max_value_bytes)
    members: dict[str, Any] = {}
    await reader.expect("{")
    if await reader.peek() == "}":
        reader.pos += 1
        return members
    while True:
        key = await reader.value()
        if not isinstance(key, str):
            raise StreamError("object key is not a string")
        await reader.expect(":")
        callback = streams.get(key)
        if callback is not None and await reader.peek() == "[":
            reader.pos += 1
            await _elements(reader, callback)
        else:
            members[key] = await reader.value()
        sep = await reader.peek()
        reader.pos += 1
        if sep == "":
            raise StreamError("document ends early")
        if sep == "}":
            break
        if sep != ",":
            raise StreamError(f"expected ',' or '}}' after member {key!r}, found {sep!r}")
    if await reader.peek() != "":
        raise StreamError("data after the document")
    return members


async def _elements(reader: _Reader, callback: Callable[[Any], None]) -> None:
    if await reader.peek() == "]":
        reader.pos += 1
        return
    while True:
        callback(await reader.value())
        sep = await reader.peek()
        reader.pos += 1
        if sep == "":
            raise StreamError("document ends early")
        if sep == "]":
            return
        if sep != ",":
            raise StreamError(f"expected ',' or ']' in an array, found {sep!r}")


async def chunks_of(data: bytes, size: int = _CHUNK) -> AsyncGenerator[bytes]:
    """``data`` as a stream of chunks (for text outputs and tests)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]
