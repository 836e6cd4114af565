"""``field_values`` decodes nvmlDeviceGetFieldValues' array from its bytes: the same values as
reading pynvml's structures member by member, for every value type and every return code."""

from __future__ import annotations

import math

import pynvml
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.gpu.nvml import field_values

MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
RANGES = {
    "dVal": st.floats(allow_nan=False),
    "uiVal": st.integers(0, 2**32 - 1),
    "ulVal": st.integers(0, 2**64 - 1),
    "ullVal": st.integers(0, 2**64 - 1),
    "sllVal": st.integers(-(2**63), 2**63 - 1),
    "siVal": st.integers(-(2**31), 2**31 - 1),
    "usVal": st.integers(0, 2**16 - 1),
}


def _by_member(v: pynvml.c_nvmlFieldValue_t) -> float:
    """What the structure says, read the slow way."""
    kind = int(v.valueType)
    return float(getattr(v.value, MEMBERS[kind] if 0 <= kind < 6 else "usVal"))


entry = st.integers(0, 6).flatmap(
    lambda kind: st.tuples(
        st.integers(0, 2**32 - 1), st.just(kind), st.sampled_from([0, 0, 3, 999]), RANGES[MEMBERS[kind]]
    )
)


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(entry, max_size=12, unique_by=lambda e: e[0]))
def test_bulk_decoding_matches_the_structures(entries: list[tuple[int, int, int, float]]) -> None:
    values = (pynvml.c_nvmlFieldValue_t * len(entries))()
    for slot, (field_id, kind, ret, value) in zip(values, entries, strict=True):
        slot.fieldId, slot.valueType, slot.nvmlReturn, slot.timestamp = field_id, kind, ret, 123
        setattr(slot.value, MEMBERS[kind], value)
    expected = {int(v.fieldId): _by_member(v) for v in values if v.nvmlReturn == 0}
    decoded = field_values(values)
    assert decoded.keys() == expected.keys()
    for key, value in expected.items():
        assert decoded[key] == value or (math.isnan(value) and math.isnan(decoded[key]))


def test_an_unknown_value_type_reads_the_smallest_member() -> None:
    values = (pynvml.c_nvmlFieldValue_t * 1)()
    values[0].fieldId, values[0].valueType, values[0].nvmlReturn = 186, 42, 0
    values[0].value.ullVal = (7 << 32) | 0x1234_5678
    assert field_values(values) == {186: float(0x5678)}


def test_an_empty_answer_is_empty() -> None:
    assert field_values((pynvml.c_nvmlFieldValue_t * 0)()) == {}
