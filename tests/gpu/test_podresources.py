"""The kubelet pod-resources protobuf codec, on good and hostile input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.gpu.podresources import DeviceAssignment, decode_list_response, encode_list_response


def test_pod_resources_round_trip() -> None:
    rows = [
        DeviceAssignment("ns", "pod", "c", "nvidia.com/gpu", "GPU-1"),
        DeviceAssignment("ns", "pod", "c", "nvidia.com/gpu", "GPU-2"),
        DeviceAssignment("ns", "pod", "d", "nvidia.com/gpu", "GPU-3"),
        DeviceAssignment("ns2", "p", "ü", "nvidia.com/mig-1g.10gb", "MIG-4"),
    ]
    assert decode_list_response(encode_list_response(rows)) == rows
    # unknown fields (cpu_ids as packed varints, a fixed64) are skipped
    extra = b"\x20\x01\x29" + b"\0" * 8
    assert decode_list_response(encode_list_response(rows) + extra) == rows


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_pod_resources_decoder_survives_garbage(data: bytes) -> None:
    try:
        decode_list_response(data)
    except ValueError:
        pass
