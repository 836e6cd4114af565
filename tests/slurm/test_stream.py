"""The streamed JSON reader: any split of the bytes gives json.loads's answer; bad input fails clearly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.slurm import model
from powerplane.exporters.slurm.stream import StreamError, chunks_of, read_document

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def read(
    data: bytes, chunk: int, streams: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    seen: dict[str, list[Any]] = {k: [] for k in streams}
    members = asyncio.run(read_document(chunks_of(data, chunk), {k: seen[k].append for k in streams}))
    return members, seen


@settings(max_examples=150, deadline=None)
@given(
    doc=st.dictionaries(st.text(max_size=6), _json, max_size=5),
    items=st.lists(_json, max_size=6),
    chunk=st.integers(1, 64),
    indent=st.sampled_from([None, 2]),
)
def test_any_split_reads_like_json_loads(
    doc: dict[str, Any], items: list[Any], chunk: int, indent: int | None
) -> None:
    doc = {**doc, "jobs": items}
    data = json.dumps(doc, indent=indent).encode()
    members, seen = read(data, chunk, ("jobs",))
    expected = json.loads(data)
    assert seen["jobs"] == expected.pop("jobs")
    assert members == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"jobs": [1, 2', "ends early"),
        (b'{"jobs": [1 2]}', "expected ',' or ']'"),
        (b"[1, 2]", "expected '{'"),
        (b'{"a": 1} {"b": 2}', "data after the document"),
        (b'{"a": tru}', "invalid JSON"),
        (b'{"a": "\xff\xfe"}', "not UTF-8"),
        (b"", "expected '{'"),
        (b'{"a": 1', "ends early"),
    ],
)
def test_bad_documents_fail_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(StreamError, match=message):
        read(data, 3, ("jobs",))


def test_size_limits_bound_what_is_read() -> None:
    huge = b'{"jobs": [' + b",".join([b'"' + b"x" * 1000 + b'"'] * 2000) + b"]}"
    with pytest.raises(StreamError, match="larger than 100000 bytes"):
        asyncio.run(read_document(chunks_of(huge, 4096), {"jobs": lambda _x: None}, max_bytes=100_000))
    one_value = b'{"meta": "' + b"y" * 300_000 + b'"}'
    with pytest.raises(StreamError, match="a value larger than 65536 bytes"):
        asyncio.run(read_document(chunks_of(one_value, 4096), {}, max_value_bytes=65536))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_gres_and_ranges_never_raise_anything_but_field_errors(text: str) -> None:
    for parse in (model.parse_gres, model.parse_ranges):
        try:
            parse(text)
        except model.FieldError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(model.NODE_FIELDS), _json))
def test_node_records_of_any_shape_parse_or_name_the_field(record: dict[str, Any]) -> None:
    try:
        model.parse_node(record)
    except model.FieldError as exc:
        assert str(exc).split(":")[0] in record or "missing" in str(exc)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ({"IDLE"}, "idle"),
        ({"MIXED", "DRAIN"}, "draining"),
        ({"IDLE", "DRAIN"}, "drained"),
        ({"DOWN", "DRAIN"}, "down"),
        ({"ALLOCATED", "COMPLETING"}, "completing"),
        ({"IDLE", "MAINTENANCE", "RESERVED"}, "maintenance"),
        ({"IDLE", "RESERVED"}, "reserved"),
        ({"IDLE", "POWERED_DOWN"}, "powered_down"),
        ({"IDLE", "NOT_RESPONDING"}, "not_responding"),
        ({"ALLOCATED", "FAIL"}, "failing"),
        ({"IDLE", "PLANNED"}, "planned"),
        ({"FUTURE"}, "future"),
        (set(), "unknown"),
    ],
)
def test_node_state_precedence(states: set[str], expected: str) -> None:
    assert model.node_state(frozenset(states)) == expected
    assert expected in model.NODE_STATES


def test_gres_forms() -> None:
    assert model.parse_gres("gpu:h100:2(IDX:0-1),gpu:h200:4(IDX:2-5)") == [
        model.Gres("gpu", "h100", 2, (0, 1)),
        model.Gres("gpu", "h200", 4, (2, 3, 4, 5)),
    ]
    assert model.parse_gres("gpu:h100:4(S:0-1),nic:2") == [
        model.Gres("gpu", "h100", 4),
        model.Gres("nic", "", 2),
    ]
    assert model.parse_gres("gpu:0") == [model.Gres("gpu", "", 0)]
    assert model.parse_gres("gpu:h100:0(IDX:N/A)") == [model.Gres("gpu", "h100", 0)]
    assert model.parse_gres("N/A") == [] and model.parse_gres("") == []
    with pytest.raises(model.FieldError, match="out of bounds"):
        model.parse_ranges("0-100000")
