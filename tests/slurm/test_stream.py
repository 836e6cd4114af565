"""The streamed JSON reader: any split of the bytes gives json.loads's answer; bad input fails clearly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.slurm import model, stream
from powerplane.exporters.slurm.stream import Stream, StreamError, chunks_of, read_document

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def collector(into: list[Any]) -> Stream[Any]:
    def take(elements: Sequence[Any], first: int) -> None:
        assert first == len(into)  # batches arrive in order, numbered from 0
        into.extend(elements)

    return Stream(take)


def read(
    data: bytes, chunk: int, streams: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    seen: dict[str, list[Any]] = {k: [] for k in streams}
    members = asyncio.run(read_document(chunks_of(data, chunk), {k: collector(seen[k]) for k in streams}))
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
        (b'{"a": "\xff\xfe"}', "Invalid UTF-8"),
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
        asyncio.run(read_document(chunks_of(huge, 4096), {"jobs": collector([])}, max_bytes=100_000))
    # An element is held whole before it is decoded: past the bound (and a batch) the read stops.
    one_element = b'{"jobs": [{"a": "' + b"z" * (3 << 20) + b'"}]}'
    with pytest.raises(StreamError, match="a value larger than 2097152 bytes"):
        asyncio.run(read_document(chunks_of(one_element), {"jobs": collector([])}, max_value_bytes=2 << 20))
    one_value = b'{"meta": "' + b"y" * 300_000 + b'"}'
    with pytest.raises(StreamError, match="a value larger than 65536 bytes"):
        asyncio.run(read_document(chunks_of(one_value, 4096), {}, max_value_bytes=65536))


class Rec(msgspec.Struct):
    name: str | None = None
    n: int | None = None


#: Strings that look like the structure around them: brackets, separators, indentation.
_tricky = st.sampled_from(["}", "]", "},", "}, {", "\n    },", '"', "\\", "[{", "", "x" * 50]) | st.text(
    max_size=8
)


@settings(max_examples=120, deadline=None)
@given(
    records=st.lists(
        st.fixed_dictionaries(
            {"name": _tricky, "n": st.integers(0, 2**40)},
            optional={"nested": st.lists(st.fixed_dictionaries({"k": _tricky}), max_size=3), "other": _json},
        ),
        max_size=40,
    ),
    indent=st.sampled_from([None, 0, 2, 4]),
    chunk=st.sampled_from([1, 7, 64, 4096]),
    batch=st.sampled_from([16, 256, 1 << 20]),
)
def test_typed_elements_in_any_layout_and_batch_size(
    records: list[dict[str, Any]], indent: int | None, chunk: int, batch: int
) -> None:
    data = json.dumps({"meta": {"x": "]"}, "jobs": records, "after": [1, {"b": "}"}]}, indent=indent).encode()
    got: list[Rec] = []
    bad: list[int] = []
    s = Stream(lambda els, _first: got.extend(els), lambda i, _why: bad.append(i), Rec)
    with mock.patch.object(stream, "BATCH", batch):
        members = asyncio.run(read_document(chunks_of(data, chunk), {"jobs": s}))
    assert members == {"meta": {"x": "]"}, "after": [1, {"b": "}"}]}
    assert not bad and got == [Rec(r["name"], r["n"]) for r in records]


def test_an_element_of_the_wrong_type_is_named_and_the_others_kept() -> None:
    records = [{"name": "a", "n": 1}, {"name": "b", "n": "two"}, 7, {"name": "NOT-UTF8"}, {"name": "d"}]
    data = json.dumps({"jobs": records}).encode().replace(b"NOT-UTF8", b"\xff\xfe")
    got: list[Rec] = []
    bad: dict[int, str] = {}
    s = Stream(lambda els, _first: got.extend(els), bad.__setitem__, Rec)
    asyncio.run(read_document(chunks_of(data, 5), {"jobs": s}))
    assert got == [Rec("a", 1), Rec("d")]
    assert bad[1] == "n: expected a number, got str"
    assert bad[2] == "expected an object, got int"
    assert bad[3] == "Invalid UTF-8 encoded string"
    # A lone surrogate is JSON that msgspec refuses (Slurm never writes one): the answer fails.
    with pytest.raises(StreamError, match="invalid JSON in an array"):
        data = b'{"jobs": [{"name": "\\udc00"}]}'
        asyncio.run(read_document(chunks_of(data), {"jobs": Stream(lambda _e, _f: None)}))


def test_brackets_in_strings_that_fool_every_cheap_cut_fall_back_to_the_exact_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every element has a string that balances the brackets before a comma inside it.
    records = [{"name": str(i) + '", "]}, {"x": ["' + "}]," * 20, "n": i} for i in range(300)]
    monkeypatch.setattr(stream, "BATCH", 512)
    data = json.dumps({"jobs": records}).encode()  # compact: no indentation to cut on
    got: list[Rec] = []
    s = Stream(lambda els, _first: got.extend(els), type=Rec)
    asyncio.run(read_document(chunks_of(data, 100), {"jobs": s}))
    assert [r.n for r in got] == list(range(300))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"jobs": [{"n": 1},]}', "a ',' before ']'"),
        (b'{"jobs": [{"n": 1} {"n": 2}]}', "expected ',' or ']'"),
        (b'{"jobs": [{"n": 1}, {"n": tru}]}', "invalid JSON"),
        (b'{"jobs": [{"n": 1}, {"n": 2}', "ends early"),
        (b'{"jobs": [{"n": 1}]', "ends early"),
        (b'{"jobs": [{"n": 1}]}]', "data after the document"),
        (b"{1: 2}", "object key is not a string"),
    ],
)
def test_bad_arrays_fail_with_a_reason(data: bytes, message: str) -> None:
    for chunk in (1, 3, 1000):
        with pytest.raises(StreamError, match=message):
            s = Stream(lambda _e, _f: None, type=Rec)
            asyncio.run(read_document(chunks_of(data, chunk), {"jobs": s}))


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
    reasons: list[str] = []
    nodes: list[model.Node] = []

    def take(elements: Sequence[model.NodeRecord], _first: int) -> None:
        for element in elements:
            try:
                nodes.append(model.parse_node(element))
            except model.FieldError as exc:
                reasons.append(str(exc))

    s = Stream(take, lambda _i, why: reasons.append(why), model.NodeRecord)
    asyncio.run(read_document(chunks_of(json.dumps({"nodes": [record]}).encode(), 16), {"nodes": s}))
    assert len(nodes) + len(reasons) == 1
    for why in reasons:
        assert why.split(":")[0].split(".")[0].split("[")[0] in record or "missing" in why


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
