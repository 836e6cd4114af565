"""The BER codec of v2c walks: round trips, GETBULK requests, and hostile bytes refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.snmp.ber import (
    END,
    GET_BULK,
    RESPONSE,
    TOO_BIG,
    BerError,
    Message,
    arcs,
    decode_message,
    decode_response,
    encode_message,
    get_bulk_request,
    oid_contents,
    peek_status,
)

oids = st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=12).map(
    lambda arcs: "1.3." + ".".join(map(str, arcs))
)
values = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.integers(-(2**31), 2**31 - 1),
    oids,
    st.just(END),
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(0, 18),
    st.binary(min_size=1, max_size=40),
    st.lists(st.tuples(oids, values), max_size=30),
)
def test_messages_round_trip(request_id: int, status: int, community: bytes, binds: list) -> None:
    message = Message(1, community, RESPONSE, request_id, status, 0, binds)
    decoded = decode_message(encode_message(message))
    assert decoded == message
    assert peek_status(encode_message(message)) == status


def test_a_get_bulk_and_a_long_answer() -> None:
    request = Message(1, b"public", GET_BULK, 7, 0, 25, [("1.3.6.1.4.1.318.1.1.26.9.4.3.1.3", None)])
    assert decode_message(encode_message(request)).error_index == 25
    answer = Message(
        1, b"public", RESPONSE, 7, varbinds=[(f"1.3.6.1.2.1.1.{i}", b"x" * 4000) for i in range(1, 4)]
    )
    data = encode_message(answer)
    assert len(data) > 12000 and decode_message(data).varbinds[2][1] == b"x" * 4000
    assert peek_status(data[:100]) == 0  # the status is read from the first bytes only
    assert peek_status(encode_message(Message(1, b"public", RESPONSE, 7, TOO_BIG))) == TOO_BIG


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30",
        b"\x30\x05\x02\x01\x01",  # truncated
        b"\x30\x84\xff\xff\xff\xff",  # a length past the end
        b"\x30\x03\x02\x01\x03",  # version 4 is not v1/v2c
        b"\x04\x00",  # not a SEQUENCE
        encode_message(Message(1, b"c", RESPONSE, 1, varbinds=[("1.3.6", 5)])) + b"\x00",  # trailing bytes
    ],
)
def test_malformed_messages_are_refused(data: bytes) -> None:
    with pytest.raises(BerError):
        decode_message(data)
    assert peek_status(data) in (None, 0)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_bytes_never_raise_anything_else(data: bytes) -> None:
    for decode in (decode_message, decode_response):
        try:
            decode(data)
        except BerError:
            pass
    peek_status(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(oids, values), min_size=1, max_size=5), st.data())
def test_cut_messages_are_refused(binds: list, data: st.DataObject) -> None:
    encoded = encode_message(Message(1, b"public", RESPONSE, 1, varbinds=binds))
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(BerError):
        decode_message(encoded[:cut])
    with pytest.raises(BerError):
        decode_response(encoded[:cut])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.tuples(oids, values), max_size=30))
def test_a_response_decodes_with_names_as_contents(request_id: int, binds: list) -> None:
    data = encode_message(Message(1, b"public", RESPONSE, request_id, varbinds=binds))
    found_id, status, found = decode_response(data)
    assert (found_id, status) == (request_id, 0)
    assert found == [(oid_contents(name), value) for name, value in binds]
    for name, _value in binds:
        # Below "1.3" every arc is one of the contents' arcs: a column's row index is read this way.
        assert arcs(oid_contents(name)[1:]) == tuple(int(a) for a in name.split(".")[2:])


def test_a_get_bulk_request_names_every_column() -> None:
    columns = ["1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.10", "1.3.6.1.2.1.2.2.1.200000"]
    data = get_bulk_request(1, b"public", 42, 8, [oid_contents(c) for c in columns])
    request = decode_message(data)
    assert (request.pdu, request.request_id, request.error_status, request.error_index) == (
        GET_BULK,
        42,
        0,
        8,
    )
    assert request.varbinds == [(c, None) for c in columns]
    with pytest.raises(BerError, match="GetResponse"):
        decode_response(data)  # a request is not an answer


@pytest.mark.parametrize(
    "raw",
    [
        b"\x81",  # the last arc never ends
        b"\x05\x80\x01",  # an arc padded with a leading zero octet
        b"\x05\xff",
    ],
)
def test_bad_row_indexes_are_refused(raw: bytes) -> None:
    with pytest.raises(BerError):
        arcs(raw)
