"""The ``dcgm`` naming profile: dcgm-exporter's default counters, names, labels and units.

Dashboards and alerts written for NVIDIA's dcgm-exporter keep working when this exporter runs
with ``--naming dcgm``: the names are the DCGM field names, the units are DCGM's (MHz, MiB, %,
mJ), and every series carries dcgm-exporter's labels ``gpu``, ``UUID``, ``pci_bus_id``,
``device``, ``modelName``, ``Hostname`` and ``DCGM_FI_DRIVER_VERSION``, plus ``namespace``, ``pod``,
``container`` and ``hpc_job`` when the GPU is attributed to one container or job.  Fields that
need the DCGM host engine's profiling module (``DCGM_FI_PROF_*``) and the encoder/decoder
utilisation are not emitted.

    DCGM_FI_DEV_POWER_USAGE{DCGM_FI_DRIVER_VERSION="550.90.07",Hostname="node-01",UUID="GPU-…",
                            device="nvidia0",gpu="0",modelName="NVIDIA H100 80GB HBM3",…} 412.5
    DCGM_FI_DEV_FB_USED{…} 24467
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from ..runtime.metrics import MetricSpec

if TYPE_CHECKING:
    from .nvml import GpuReading

LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION")
MIB = 1 << 20


def _spec(name: str, help: str) -> MetricSpec:
    # dcgm-exporter declares the energy and replay fields as counters without a _total suffix,
    # which the metric catalogue reserves for powerplane counters: they are exposed as gauges
    # (rate() and increase() work the same on them).
    return MetricSpec(name, "gauge", help + " (dcgm naming profile)", LABELS)


SM_CLOCK = _spec("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).")
MEM_CLOCK = _spec("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).")
MEMORY_TEMP = _spec("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).")
GPU_TEMP = _spec("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).")
POWER_USAGE = _spec("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).")
TOTAL_ENERGY = _spec("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).")
PCIE_REPLAY = _spec("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries.")
GPU_UTIL = _spec("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).")
MEM_COPY_UTIL = _spec("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).")
XID_ERRORS = _spec("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.")
FB_FREE = _spec("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).")
FB_USED = _spec("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).")
METRICS = (
    SM_CLOCK,
    MEM_CLOCK,
    MEMORY_TEMP,
    GPU_TEMP,
    POWER_USAGE,
    TOTAL_ENERGY,
    PCIE_REPLAY,
    GPU_UTIL,
    MEM_COPY_UTIL,
    XID_ERRORS,
    FB_FREE,
    FB_USED,
)


def render(r: GpuReading, hostname: str, extra: Mapping[str, str]) -> Iterable[Metric]:
    ident = r.identity
    device = f"nvidia{ident.minor if ident.minor is not None else ident.index}"
    names = [*LABELS, *extra]
    values = [
        str(ident.index),
        ident.uuid,
        ident.pci_bus_id,
        device,
        ident.model,
        hostname,
        ident.driver_version,
        *extra.values(),
    ]
    free = None
    if r.memory_total is not None and r.memory_used is not None:
        free = (r.memory_total - r.memory_used) // MIB
    for spec, value in (
        (SM_CLOCK, None if r.sm_clock_hz is None else round(r.sm_clock_hz / 1e6)),
        (MEM_CLOCK, None if r.memory_clock_hz is None else round(r.memory_clock_hz / 1e6)),
        (MEMORY_TEMP, r.memory_temp),
        (GPU_TEMP, r.gpu_temp),
        (POWER_USAGE, r.power_watts),
        # DCGM reports the raw driver counter; the monotonic joules are the better series.
        (TOTAL_ENERGY, None if r.energy_joules is None else round(r.energy_joules * 1000)),
        (PCIE_REPLAY, r.pcie_replays),
        (GPU_UTIL, None if r.utilization is None else round(r.utilization * 100)),
        (MEM_COPY_UTIL, None if r.memory_utilization is None else round(r.memory_utilization * 100)),
        (XID_ERRORS, r.last_xid),
        (FB_FREE, free),
        (FB_USED, None if r.memory_used is None else r.memory_used // MIB),
    ):
        if value is not None:
            family = spec.family(names)
            family.add_metric(values, float(value))
            yield family
