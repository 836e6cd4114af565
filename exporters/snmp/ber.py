"""SNMP v1/v2c messages in BER, for what the engine's own socket code cannot receive.

gufo-snmp reads a response into a 4096-byte buffer: a GETBULK answer larger than that (24
outlets with 250-character names, one 4,000-byte string) arrives cut and fails to decode, while
the agent sent it whole.  ``engine.GufoSession`` therefore looks at each datagram's size first
and decodes the larger ones here.  The same codec lets the lab's hostile agent answer requests.

Only what a walk needs is implemented: GetRequest, GetNextRequest, GetBulkRequest and
GetResponse with the SMIv2 value types.  ``decode_message`` accepts any byte string and raises
``BerError`` for anything malformed (wrong tags, lengths past the end, trailing bytes); it
builds no structure deeper than a message, so hostile input cannot exhaust the stack.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

Value = int | str | bytes | None

# Universal, application and context tags (RFC 1157, RFC 3416).
INTEGER, OCTET_STRING, NULL, OID, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
IP_ADDRESS, COUNTER32, GAUGE32, TIMETICKS, OPAQUE, COUNTER64 = 0x40, 0x41, 0x42, 0x43, 0x44, 0x46
NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW = 0x80, 0x81, 0x82
GET, GET_NEXT, RESPONSE, GET_BULK = 0xA0, 0xA1, 0xA2, 0xA5
UNSIGNED = (COUNTER32, GAUGE32, TIMETICKS, COUNTER64)
#: error-status values (RFC 3416).
NO_ERROR, TOO_BIG = 0, 1


class BerError(ValueError):
    """Bytes that are not an SNMP message of the kinds this codec reads."""


class EndOfMibView:
    """The value of a variable past the end of the agent's MIB (v2c)."""

    def __repr__(self) -> str:
        return "endOfMibView"


END = EndOfMibView()


@dataclass
class Message:
    version: int  # 0: v1, 1: v2c
    community: bytes
    pdu: int
    request_id: int
    #: error-status, or non-repeaters in a GetBulkRequest.
    error_status: int = 0
    #: error-index, or max-repetitions in a GetBulkRequest.
    error_index: int = 0
    varbinds: list[tuple[str, Value | EndOfMibView]] = field(default_factory=list)


# --- encoding ----------------------------------------------------------------------------------


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _length(len(payload)) + payload


def _integer(tag: int, value: int) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return _tlv(tag, value.to_bytes(size, "big", signed=True))


def _unsigned(tag: int, value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return _tlv(tag, (b"\x00" + raw) if raw[0] & 0x80 else raw)


def _oid(text: str) -> bytes:
    return _tlv(OID, oid_contents(text))


@functools.lru_cache(maxsize=4096)  # the columns of the profiles, encoded for every walk
def oid_contents(text: str) -> bytes:
    """The contents octets of an OID's encoding: a descendant's start with its ancestor's."""
    arcs = [int(a) for a in text.strip(".").split(".")]
    if len(arcs) < 2:
        raise BerError(f"OID {text!r} has fewer than two arcs")
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def _value(value: Value | EndOfMibView, tag: int | None) -> bytes:
    if isinstance(value, EndOfMibView):
        return bytes([END_OF_MIB_VIEW, 0])
    if value is None:
        return bytes([NULL if tag is None else tag, 0])
    if isinstance(value, bytes):
        return _tlv(OCTET_STRING, value)
    if isinstance(value, str):
        return _oid(value)
    return _unsigned(tag, value) if tag in UNSIGNED else _integer(INTEGER, value)


def get_bulk_request(
    version: int, community: bytes, request_id: int, max_repetitions: int, names: list[bytes]
) -> bytes:
    """A GetBulkRequest (no non-repeaters) for OIDs given as ``oid_contents``."""
    binds = b"".join(_tlv(SEQUENCE, _tlv(OID, name) + b"\x05\x00") for name in names)
    pdu = (
        _integer(INTEGER, request_id)
        + _integer(INTEGER, 0)
        + _integer(INTEGER, max_repetitions)
        + _tlv(SEQUENCE, binds)
    )
    return _tlv(SEQUENCE, _integer(INTEGER, version) + _tlv(OCTET_STRING, community) + _tlv(GET_BULK, pdu))


def encode_message(message: Message, tags: dict[str, int] | None = None) -> bytes:
    """The message as bytes; ``tags`` gives a variable's tag where the value alone cannot."""
    binds = b"".join(
        _tlv(SEQUENCE, _oid(name) + _value(value, (tags or {}).get(name))) for name, value in message.varbinds
    )
    pdu = (
        _integer(INTEGER, message.request_id)
        + _integer(INTEGER, message.error_status)
        + _integer(INTEGER, message.error_index)
        + _tlv(SEQUENCE, binds)
    )
    body = _integer(INTEGER, message.version) + _tlv(OCTET_STRING, message.community) + _tlv(message.pdu, pdu)
    return _tlv(SEQUENCE, body)


# --- decoding ----------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end

    def tlv(self) -> tuple[int, int, int]:
        """(tag, start, end) of the next element, checked against this reader's end."""
        if self.pos + 2 > self.end:
            raise BerError("truncated element")
        tag, first = self.data[self.pos], self.data[self.pos + 1]
        pos = self.pos + 2
        size = first
        if first & 0x80:
            count = first & 0x7F
            if count == 0 or count > 4 or pos + count > self.end:
                raise BerError("bad length")
            size = int.from_bytes(self.data[pos : pos + count], "big")
            pos += count
        if pos + size > self.end:
            raise BerError("element runs past its container")
        self.pos = pos + size
        return tag, pos, pos + size

    def expect(self, tag: int) -> tuple[int, int]:
        found, start, end = self.tlv()
        if found != tag:
            raise BerError(f"expected tag 0x{tag:02x}, found 0x{found:02x}")
        return start, end

    def integer(self) -> int:
        start, end = self.expect(INTEGER)
        if start == end:
            raise BerError("empty INTEGER")
        return int.from_bytes(self.data[start:end], "big", signed=True)

    def done(self) -> bool:
        return self.pos >= self.end


def _decode_oid(raw: bytes) -> str:
    if not raw or raw[-1] & 0x80 or raw[0] & 0x80:
        raise BerError("bad OID")
    first = raw[0]
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    arc = 0
    for byte in raw[1:]:
        arc = (arc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(arc)
            arc = 0
    return ".".join(map(str, arcs))


def arcs(raw: bytes) -> tuple[int, ...]:
    """The arcs of OID contents after the first octet (a row index below its column)."""
    if raw.isascii():  # every arc below 128: one octet each
        return tuple(raw)
    if raw[-1] & 0x80:
        raise BerError("bad OID (last arc unfinished)")
    found = []
    arc = 0
    fresh = True
    for byte in raw:
        if fresh and byte == 0x80:
            raise BerError("bad OID (arc with a leading zero octet)")
        arc = (arc << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            found.append(arc)
            arc = 0
    return tuple(found)


def _decode_value(tag: int, raw: bytes) -> Value | EndOfMibView:
    if tag in (OCTET_STRING, OPAQUE):
        return raw
    if tag == INTEGER:
        return int.from_bytes(raw, "big", signed=True) if raw else 0
    if tag in UNSIGNED:
        return int.from_bytes(raw, "big") if raw else 0
    if tag == OID:
        return _decode_oid(raw)
    if tag == IP_ADDRESS:
        if len(raw) != 4:
            raise BerError("bad IpAddress")
        return ".".join(map(str, raw))
    if tag == END_OF_MIB_VIEW:
        return END
    if tag in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE):
        return None
    raise BerError(f"unknown value tag 0x{tag:02x}")


def decode_message(data: bytes) -> Message:
    """An SNMP v1/v2c message; ``BerError`` for anything else."""
    version, community, pdu_tag, request_id, status, index, binds = _decode(data)
    varbinds = [(_decode_oid(name), value) for name, value in binds]
    return Message(version, community, pdu_tag, request_id, status, index, varbinds)


def decode_response(data: bytes) -> tuple[int, int, list[tuple[bytes, Value | EndOfMibView]]]:
    """(request-id, error-status, variables) of a v1/v2c GetResponse, names as ``oid_contents``.

    A walk compares names with its columns' encodings, so none is turned into text here."""
    _version, _community, pdu_tag, request_id, status, _index, binds = _decode(data)
    if pdu_tag != RESPONSE:
        raise BerError(f"expected a GetResponse, found PDU 0x{pdu_tag:02x}")
    return request_id, status, binds


def _decode(data: bytes) -> tuple[int, bytes, int, int, int, int, list[tuple[bytes, Value | EndOfMibView]]]:
    try:
        outer = _Reader(data)
        start, end = outer.expect(SEQUENCE)
        if not outer.done():
            raise BerError("trailing bytes after the message")
        message = _Reader(data, start, end)
        version = message.integer()
        if version not in (0, 1):
            raise BerError(f"SNMP version {version} is not v1 or v2c")
        community_start, community_end = message.expect(OCTET_STRING)
        pdu_tag, pdu_start, pdu_end = message.tlv()
        if pdu_tag not in (GET, GET_NEXT, RESPONSE, GET_BULK) or not message.done():
            raise BerError(f"unexpected PDU 0x{pdu_tag:02x}")
        pdu = _Reader(data, pdu_start, pdu_end)
        request_id, status, index = pdu.integer(), pdu.integer(), pdu.integer()
        list_start, list_end = pdu.expect(SEQUENCE)
        if list_end != pdu_end:
            raise BerError("trailing bytes in the PDU")
        binds = _varbinds(data, list_start, list_end)
    except IndexError:  # a read past the end of the data that no length check caught
        raise BerError("truncated message") from None
    return version, data[community_start:community_end], pdu_tag, request_id, status, index, binds


def _span(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """(start, end) of the contents whose length octets begin at ``pos``, ending by ``limit``."""
    first = data[pos]
    if first < 0x80:
        start = pos + 1
        end = start + first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise BerError("bad length")
        start = pos + 1 + count
        end = start + int.from_bytes(data[pos + 1 : start], "big")
    if end > limit:
        raise BerError("element runs past its container")
    return start, end


def _varbinds(data: bytes, pos: int, end: int) -> list[tuple[bytes, Value | EndOfMibView]]:
    """The variable bindings between ``pos`` and ``end``, names as contents octets.

    The hot loop of every walk: short lengths (under 128, nearly all) are read inline, the
    others through ``_span``, and integers converted in place."""
    out: list[tuple[bytes, Value | EndOfMibView]] = []
    append = out.append
    from_bytes = int.from_bytes
    while pos < end:
        if data[pos] != SEQUENCE:
            raise BerError(f"expected a variable binding, found tag 0x{data[pos]:02x}")
        size = data[pos + 1]
        if size < 0x80:
            pos += 2
            bind_end = pos + size
            if bind_end > end:
                raise BerError("element runs past its container")
        else:
            pos, bind_end = _span(data, pos + 1, end)
        if data[pos] != OID:
            raise BerError(f"expected an OID, found tag 0x{data[pos]:02x}")
        size = data[pos + 1]
        if size < 0x80:
            name_start = pos + 2
            name_end = name_start + size
        else:
            name_start, name_end = _span(data, pos + 1, bind_end)
        if name_end + 2 > bind_end:
            raise BerError("a variable binding without a value")
        tag = data[name_end]
        size = data[name_end + 1]
        if size < 0x80:
            value_start = name_end + 2
            value_end = value_start + size
        else:
            value_start, value_end = _span(data, name_end + 1, bind_end)
        if value_end != bind_end:
            raise BerError("trailing bytes in a variable binding")
        value: Value | EndOfMibView
        if tag == INTEGER:
            value = from_bytes(data[value_start:value_end], "big", signed=True)
        elif tag == OCTET_STRING:
            value = data[value_start:value_end]
        elif tag in UNSIGNED:
            value = from_bytes(data[value_start:value_end], "big")
        else:
            value = _decode_value(tag, data[value_start:value_end])
        append((data[name_start:name_end], value))
        pos = bind_end
    return out


def peek_status(data: bytes | bytearray) -> int | None:
    """The error-status of a v1/v2c response, read from its first bytes; None if it is not one.

    The message's own length may run past what was read: only the fields before the variable
    bindings are looked at."""
    head = bytes(data[:600])
    try:
        if head[0] != SEQUENCE:
            return None
        reader = _Reader(head, _contents(head, 0))
        reader.integer()  # version
        reader.expect(OCTET_STRING)  # community
        if head[reader.pos] != RESPONSE:
            return None
        reader.pos = _contents(head, reader.pos)
        reader.integer()  # request-id
        return reader.integer()
    except (BerError, IndexError):
        return None


def _contents(data: bytes, pos: int) -> int:
    """Where the contents of the element at ``pos`` start."""
    first = data[pos + 1]
    return pos + 2 + (first & 0x7F if first & 0x80 else 0)
