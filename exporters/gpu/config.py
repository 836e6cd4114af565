"""The GPU exporter's options: each default written once, for ``make_server``, the flags and the docs."""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime.config import setting
from .podresources import DEFAULT_SOCKET

NAMINGS = ("powerplane", "dcgm")


@dataclass(frozen=True)
class GpuOptions:
    namings: tuple[str, ...] = setting(
        ("powerplane",),
        schema={"type": "array", "items": {"enum": list(NAMINGS)}, "minItems": 1, "uniqueItems": True},
        doc="Metric names to emit; repeat for both (dcgm: dcgm-exporter's default counters).",
    )
    pod_resources_socket: str = setting(
        DEFAULT_SOCKET, doc="Kubelet pod-resources socket ('' to disable); absent socket: no pod info."
    )
    pod_resources: tuple[str, ...] = setting(
        ("nvidia.com/",),
        schema={"type": "array", "items": {"type": "string"}},
        doc="Prefixes of the extended resources whose devices are GPUs.",
    )
    job_mapping_dir: str = setting(
        "/var/lib/dcgm-exporter/job-mapping",
        doc="Directory of files named by GPU index listing the HPC job IDs on that GPU ('' to disable); "
        "absent directory: no job info.",
    )
    xid_events: bool = setting(True, doc="Watch NVML events for XID errors.")

    def __post_init__(self) -> None:
        unknown = set(self.namings) - set(NAMINGS)
        if unknown or not self.namings:
            raise ValueError(f"naming must be among {', '.join(NAMINGS)}, not {sorted(unknown) or 'nothing'}")
