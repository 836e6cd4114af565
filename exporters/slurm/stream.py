"""Reading a large JSON document without holding it: its top-level arrays are decoded in batches.

A job list of a large cluster is hundreds of megabytes of JSON (slurmrestd 22.05 indents it;
100,000 jobs are about 350 MB), several times that as Python objects.  ``read_document`` reads
the document's top-level object from a stream of byte chunks.  The elements of the arrays named
in ``streams`` are cut into batches of about ``BATCH`` bytes and each batch is decoded by
msgspec straight into the stream's element type: a ``msgspec.Struct`` naming only the fields
the exporter reads, so the decoder skips the others in C instead of building them as Python
objects.  Only a batch and what the callback keeps are in memory at a time.

Where a batch ends: in indented JSON (slurmrestd's and the commands'), at the last element's
closing brace, found by its indentation (learnt from the first element: a newline and the same
blanks, which no string can hold, since strings have no raw newlines); otherwise at a ``,`` (or
the closing ``]``) after which as many brackets were opened as closed since the batch began.
Either can be fooled (a bracket inside a string, an odd indentation), so a cut is proven by
decoding: a prefix of a JSON array that decodes is a list of whole elements (no proper prefix
of an element is itself a JSON value, but for a number, and a number is only ever cut before a
``,``).  When a few candidates fail, an exact (slower) scan of the tokens finds the cut.

Bounds: the whole document at most ``max_bytes``; a value not yet whole (an element or a
non-streamed member) at most ``max_value_bytes`` beyond a batch; past either the read stops with
``StreamError``.  So what is held is at most a batch and ``max_value_bytes``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")

_WS = b" \t\n\r"
_CHUNK = 1 << 20
#: Bytes of array elements decoded in one call.
BATCH = 1 << 20
#: Candidate cuts tried per batch before the exact scan takes over.
MAX_TRIES = 4
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]')
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)')
_SCALAR = re.compile(rb"[^\s,\]}]+")
_PATH = re.compile(r" - at `\$(?:\[\d+\])?\.?([^`]*)`$")
_ANY = msgspec.json.Decoder()
_RAW = msgspec.json.Decoder(list[msgspec.Raw])


class StreamError(ValueError):
    """The document is not JSON of the expected shape, or is larger than allowed."""


@dataclass
class Stream(Generic[T]):
    """Where the elements of one streamed array go.

    ``take`` receives each batch of decoded elements and the index of its first in the array;
    ``bad`` an element that is JSON but not of the element type, by its index and the reason
    (``cpus: expected a number, got str``).
    """

    take: Callable[[Sequence[T], int], None]
    bad: Callable[[int, str], None] = field(default=lambda _index, _why: None)
    type: Any = Any
    decoder: msgspec.json.Decoder[list[T]] = field(init=False, repr=False)
    one: msgspec.json.Decoder[T] = field(init=False, repr=False)
    index: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.decoder = msgspec.json.Decoder(list[self.type])  # type: ignore[name-defined]
        self.one = msgspec.json.Decoder(self.type)

    def decode(self, batch: bytes) -> bool:
        """Hand the elements of ``batch`` (``[`` elements ``]``) on; False if it is no JSON array."""
        try:
            elements = self.decoder.decode(batch)
        except (msgspec.ValidationError, msgspec.DecodeError):
            # Not the type (or a string not UTF-8), or not JSON at all (a wrong cut).
            return self._one_by_one(batch)
        self.take(elements, self.index)
        self.index += len(elements)
        return True

    def _one_by_one(self, batch: bytes) -> bool:
        # Some element has a field of the wrong type: decode them one at a time to name it and
        # keep the others.
        try:
            raws = _RAW.decode(batch)
        except msgspec.DecodeError:
            return False
        for i, raw in enumerate(raws):
            try:
                element = self.one.decode(raw)
            except msgspec.ValidationError as exc:
                self.bad(self.index + i, describe(exc))
            except msgspec.DecodeError as exc:  # valid JSON, but, say, a string that is not UTF-8
                self.bad(self.index + i, str(exc))
            else:
                self.take([element], self.index + i)
        self.index += len(raws)
        return True


def describe(exc: msgspec.ValidationError) -> str:
    """msgspec's ``Expected `int | null`, got `str` - at `$[3].cpus``` as
    ``cpus: expected a number, got str``."""
    text = str(exc)
    match = _PATH.search(text)
    where = match.group(1) if match else ""
    message = text[: match.start()] if match else text
    expected = re.match(r"Expected `([^`]*)`, got `([^`]*)`", message)
    if expected:
        message = f"expected {_kind(expected.group(1))}, got {expected.group(2)}"
    return f"{where}: {message}" if where else message


_WORDS = {"str": "a string", "array": "a list", "object": "an object", "bool": "a boolean"}


def _kind(union: str) -> str:
    """msgspec's ``int | float | object | null`` in the words of the records' fields."""
    kinds = [k for k in union.split(" | ") if k != "null"]
    if {"int", "float"} & set(kinds):
        return "a number"  # an object beside it is the {set, infinite, number} form
    if set(kinds) == {"str", "array"}:
        return "a string or a list of strings"
    return " or ".join(_WORDS.get(k, k) for k in kinds) or "null"


class _Reader:
    def __init__(self, chunks: AsyncIterator[bytes], max_bytes: int, max_value_bytes: int) -> None:
        self.chunks = chunks
        self.max_bytes = max_bytes
        self.max_value_bytes = max_value_bytes
        self.data = b""
        self.pos = 0
        self.eof = False
        self.read = 0

    def offset(self) -> int:
        """The document's byte offset of ``pos``."""
        return self.read - len(self.data) + self.pos

    async def more(self, at_least: int = 1) -> None:
        """Read until ``at_least`` more bytes are buffered or the document ends."""
        if self.eof:
            raise StreamError("document ends early")
        parts = [self.data[self.pos :]]
        have = len(parts[0])
        want = have + at_least
        while have < want:
            try:
                chunk = await anext(self.chunks)
            except StopAsyncIteration:
                self.eof = True
                break
            self.read += len(chunk)
            if self.read > self.max_bytes:
                raise StreamError(f"document larger than {self.max_bytes} bytes")
            parts.append(chunk)
            have += len(chunk)
        self.data = b"".join(parts)
        self.pos = 0

    async def peek(self) -> int:
        """The next non-blank byte (-1 at the end of the document)."""
        while True:
            data, pos, n = self.data, self.pos, len(self.data)
            while pos < n and data[pos] in _WS:
                pos += 1
            self.pos = pos
            if pos < n:
                return data[pos]
            if self.eof:
                return -1
            await self.more()

    async def expect(self, char: bytes) -> None:
        found = await self.peek()
        if found != char[0]:
            shown = repr(chr(found)) if found >= 0 else "the end"
            raise StreamError(f"expected {char.decode()!r} at byte {self.offset()}, found {shown}")
        self.pos += 1

    async def value(self) -> Any:
        """One whole JSON value, decoded."""
        if await self.peek() < 0:
            raise StreamError("document ends early")
        while True:
            end = _value_end(self.data, self.pos, self.eof)
            if end is not None:
                break
            if self.eof:
                raise StreamError("document ends early")
            self._check_size(len(self.data) - self.pos)
            await self.more(max(len(self.data) - self.pos, _CHUNK))
        self._check_size(end - self.pos)
        try:
            value = _ANY.decode(self.data[self.pos : end])
        except msgspec.DecodeError as exc:
            raise StreamError(f"invalid JSON at byte {self.offset()}: {exc}") from None
        self.pos = end
        return value

    def _check_size(self, size: int) -> None:
        if size > self.max_value_bytes:
            raise StreamError(f"a value larger than {self.max_value_bytes} bytes")


def _value_end(data: bytes, pos: int, eof: bool) -> int | None:
    """Where the JSON value at ``pos`` ends, or None if ``data`` holds only its beginning."""
    first = data[pos]
    if first == 0x22:  # '"'
        match = _STRING.match(data, pos)
        assert match is not None
        return match.end() if _closed(data, match) else None
    if first in (0x5B, 0x7B):  # '[', '{'
        depth = 0
        for match in _STRUCTURE.finditer(data, pos):
            char = data[match.start()]
            if char == 0x22:
                if not _closed(data, match):
                    return None
            elif char in (0x5B, 0x7B):
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return match.end()
        return None
    match = _SCALAR.match(data, pos)
    end = match.end() if match else pos + 1
    # A number ending exactly at the buffer's end may go on in the next chunk.
    return end if end < len(data) or eof else None


def _closed(data: bytes, match: re.Match[bytes]) -> bool:
    end = match.end()
    return end - match.start() >= 2 and data[end - 1] == 0x22 and end <= len(data)


async def read_document(
    chunks: AsyncIterator[bytes],
    streams: Mapping[str, Stream[Any]],
    max_bytes: int = 1 << 30,
    max_value_bytes: int = 16 << 20,
) -> dict[str, Any]:
    """Decode a top-level JSON object; members named in ``streams`` go batch by batch to their
    stream (and are absent from the result), the others are returned."""
    reader = _Reader(chunks, max_bytes, max_value_bytes)
    members: dict[str, Any] = {}
    await reader.expect(b"{")
    if await reader.peek() == 0x7D:
        reader.pos += 1
        return _end(members, await reader.peek())
    while True:
        if await reader.peek() != 0x22:
            raise StreamError(f"object key is not a string at byte {reader.offset()}")
        key = await reader.value()
        await reader.expect(b":")
        stream = streams.get(key)
        if stream is not None and await reader.peek() == 0x5B:
            reader.pos += 1
            await _elements(reader, stream, _closer(reader.data, reader.pos))
        else:
            members[key] = await reader.value()
        sep = await reader.peek()
        reader.pos += 1
        if sep < 0:
            raise StreamError("document ends early")
        if sep == 0x7D:
            break
        if sep != 0x2C:
            raise StreamError(f"expected ',' or '}}' after member {key!r}, found {chr(sep)!r}")
    return _end(members, await reader.peek())


def _end(members: dict[str, Any], after: int) -> dict[str, Any]:
    if after >= 0:
        raise StreamError("data after the document")
    return members


def _closer(data: bytes, pos: int) -> bytes:
    """How the elements of the array starting at ``pos`` end, if it is indented (``\\n    }``)."""
    head = data[pos : pos + 256]
    blank = len(head) - len(head.lstrip(_WS))
    if blank == len(head) or head[blank] != 0x7B or b"\n" not in head[:blank]:
        return b""
    return b"\n" + head[head.rindex(b"\n", 0, blank) + 1 : blank] + b"}"


async def _elements(reader: _Reader, stream: Stream[Any], closer: bytes) -> None:
    """The elements of an array whose ``[`` was read, batch by batch, then its ``]``."""
    if await reader.peek() == 0x5D:
        reader.pos += 1
        return
    while True:
        head = await reader.peek()
        if head < 0:
            raise StreamError("document ends early")
        if head == 0x5D:
            raise StreamError(f"a ',' before ']' at byte {reader.offset()}")
        if len(reader.data) - reader.pos < BATCH and not reader.eof:
            await reader.more(BATCH)
            continue
        cut = _indented_cut(reader.data, reader.pos, stream, closer) if closer else None
        if cut is None:
            cut = _cut(reader.data, reader.pos, stream)
        if cut is None:
            if reader.eof:
                raise StreamError("document ends early")
            pending = len(reader.data) - reader.pos
            reader._check_size(pending)
            # Double what is held, but not past the bound, so that an element over it is refused.
            await reader.more(max(1, min(max(pending, BATCH), reader.max_value_bytes + 1 - pending)))
            continue
        reader.pos = cut + 1
        if reader.data[cut] == 0x5D:
            return


def _indented_cut(data: bytes, start: int, stream: Stream[Any], closer: bytes) -> int | None:
    """The cut after the last element whose indented closing brace is in ``data`` (None: none is)."""
    end = len(data)
    for _ in range(2):  # the last brace may be too near the end to see what follows it
        brace = data.rfind(closer, start, end)
        if brace < 0:
            return None
        sep = brace + len(closer)
        while sep < len(data) and data[sep] in _WS:
            sep += 1
        if sep < len(data) and data[sep] in (0x2C, 0x5D):
            return sep if stream.decode(_batch(data, start, sep)) else None
        end = brace
    return None


def _cut(data: bytes, start: int, stream: Stream[Any]) -> int | None:
    """Decode the whole elements from ``start`` (not blank) and return the index of the ``,`` or
    ``]`` after them; None when ``data`` ends within the first element."""
    end = len(data)
    balance = _opened(data, start, end)  # of data[start:pos] as pos walks back
    comma, close = data.rfind(b",", start, end), data.rfind(b"]", start, end)
    pos, tries = end, 0
    while tries < MAX_TRIES:
        sep = max(comma, close)
        if sep <= start:
            break  # one element not yet whole, or brackets in strings that never balance
        balance -= _opened(data, sep, pos)
        pos = sep
        if sep == comma:
            comma = data.rfind(b",", start, sep)
        else:
            close = data.rfind(b"]", start, sep)
        if balance == 0:  # as many brackets opened as closed: whole elements, unless a string lied
            tries += 1
            if stream.decode(_batch(data, start, sep)):
                return sep
    return _exact_cut(data, start, stream)


def _batch(data: bytes, start: int, end: int) -> bytes:
    """``data[start:end]`` as a JSON array (one copy)."""
    return b"".join((b"[", memoryview(data)[start:end], b"]"))


def _opened(data: bytes, start: int, end: int) -> int:
    return (
        data.count(b"{", start, end)
        + data.count(b"[", start, end)
        - data.count(b"}", start, end)
        - data.count(b"]", start, end)
    )


def _exact_cut(data: bytes, start: int, stream: Stream[Any]) -> int | None:
    """The exact scan: element by element with the tokenizer, then one decode."""
    pos, last = start, None
    n = len(data)
    while True:
        while pos < n and data[pos] in _WS:
            pos += 1
        if pos >= n:
            break
        end = _value_end(data, pos, False)
        if end is None:
            break
        while end < n and data[end] in _WS:
            end += 1
        if end >= n:
            break
        if data[end] not in (0x2C, 0x5D):
            raise StreamError(f"expected ',' or ']' in an array, found {chr(data[end])!r}")
        last = end
        if data[end] == 0x5D:
            break
        pos = end + 1
    if last is None:
        return None
    if not stream.decode(_batch(data, start, last)):
        raise StreamError("invalid JSON in an array")
    return last


async def chunks_of(data: bytes, size: int = _CHUNK) -> AsyncGenerator[bytes]:
    """``data`` as a stream of chunks (for text outputs and tests)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]
