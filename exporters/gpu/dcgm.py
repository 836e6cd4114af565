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

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from ..runtime.exposition import Family
from ..runtime.metrics import MetricSpec

if TYPE_CHECKING:
    from .nvml import GpuReading, Identity

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


def render(
    readings: Sequence[GpuReading], hostname: str, extra: Callable[[Identity], Mapping[str, str]]
) -> Iterable[Metric]:
    """The profile's families of the GPUs that answered; ``extra`` gives a GPU's pod and job labels.

    A GPU held by one container or job carries labels the others lack, so one family holds a run
    of GPUs with the same label names (all of them, as a rule); the scrape merges the runs.
    """
    gpus = []
    for r in readings:
        ident = r.identity
        labels = extra(ident)
        device = f"nvidia{ident.minor if ident.minor is not None else ident.index}"
        names = (*LABELS, *labels)
        values = (
            str(ident.index),
            ident.uuid,
            ident.pci_bus_id,
            device,
            ident.model,
            hostname,
            ident.driver_version,
            *labels.values(),
        )
        gpus.append((names, values, _values(r)))
    for i, spec in enumerate(METRICS):
        family: Family | None = None
        for names, values, fields in gpus:
            value = fields[i]
            if value is None:
                continue
            if family is None or family.labelnames != names:
                if family is not None:
                    yield family
                family = spec.family(names)
            family.rows.append((values, float(value)))
        if family is not None:
            yield family


def _values(r: GpuReading) -> tuple[float | None, ...]:
    """One GPU's values in the order of ``METRICS``, in DCGM's units."""
    free = None
    if r.memory_total is not None and r.memory_used is not None:
        free = (r.memory_total - r.memory_used) // MIB
    return (
        None if r.sm_clock_hz is None else round(r.sm_clock_hz / 1e6),
        None if r.memory_clock_hz is None else round(r.memory_clock_hz / 1e6),
        r.memory_temp,
        r.gpu_temp,
        r.power_watts,
        # DCGM reports the raw driver counter; the monotonic joules are the better series.
        None if r.energy_joules is None else round(r.energy_joules * 1000),
        r.pcie_replays,
        None if r.utilization is None else round(r.utilization * 100),
        None if r.memory_utilization is None else round(r.memory_utilization * 100),
        r.last_xid,
        free,
        None if r.memory_used is None else r.memory_used // MIB,
    )
