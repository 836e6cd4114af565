"""The GPU exporter's metrics: the powerplane names, and the dcgm profile's (``dcgm.METRICS``)."""

from __future__ import annotations

from ..runtime.metrics import MetricSpec
from . import dcgm

#: Clock-event reason bits (nvmlClocksEventReason*) → label value.
CLOCK_EVENT_REASONS = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

_GPU = ("gpu", "uuid")
INFO = MetricSpec(
    "powerplane_gpu_info",
    "info",
    "One series per GPU: its model, PCI address, the driver version and the device minor number "
    "(/dev/nvidiaN, which Slurm's GPU index IDX refers to; empty where NVML does not report it).",
    ("gpu", "uuid", "model", "pci_bus_id", "driver_version", "minor_number"),
)
POWER = MetricSpec("powerplane_gpu_power_watts", "gauge", "Instantaneous board power draw.", _GPU)
ENERGY = MetricSpec(
    "powerplane_gpu_energy_joules_total",
    "counter",
    "Energy consumed by the GPU (NVML counts mJ since the driver loaded; a reload is not a drop).",
    _GPU,
)
ENERGY_START = MetricSpec(
    "powerplane_gpu_energy_start_timestamp_seconds",
    "gauge",
    "When the exporter first read the GPU's energy counter: powerplane_gpu_energy_joules_total never drops "
    "after it (a reset can only come with a later start, when the exporter restarts).",
    _GPU,
)
TEMPERATURE = MetricSpec(
    "powerplane_gpu_temperature_celsius",
    "gauge",
    "Temperature by sensor: gpu (the die) or memory (HBM; absent on GDDR boards).",
    (*_GPU, "sensor"),
    values={"sensor": ("gpu", "memory")},
)
MEMORY_USED = MetricSpec("powerplane_gpu_memory_used_bytes", "gauge", "Frame buffer memory in use.", _GPU)
MEMORY_TOTAL = MetricSpec("powerplane_gpu_memory_total_bytes", "gauge", "Frame buffer memory size.", _GPU)
UTILIZATION = MetricSpec(
    "powerplane_gpu_utilization_ratio",
    "gauge",
    "Share of the last sample period in which a kernel was running on the GPU.",
    _GPU,
)
MEMORY_UTILIZATION = MetricSpec(
    "powerplane_gpu_memory_utilization_ratio",
    "gauge",
    "Share of the last sample period in which device memory was being read or written.",
    _GPU,
)
SM_CLOCK = MetricSpec("powerplane_gpu_sm_clock_hertz", "gauge", "Current SM clock.", _GPU)
MEMORY_CLOCK = MetricSpec("powerplane_gpu_memory_clock_hertz", "gauge", "Current memory clock.", _GPU)
POWER_LIMIT = MetricSpec(
    "powerplane_gpu_power_limit_watts",
    "gauge",
    "Power limits by kind: current (set by the administrator), enforced (the effective one), "
    "default, min and max (the range a new limit must fall in).",
    (*_GPU, "kind"),
    values={"kind": ("current", "enforced", "default", "min", "max")},
)
CLOCK_EVENT = MetricSpec(
    "powerplane_gpu_clock_event_active",
    "gauge",
    "Whether a reason for holding clocks down (formerly throttle reason) is active (1) or not (0).",
    (*_GPU, "reason"),
    values={"reason": tuple(reason for _bit, reason in CLOCK_EVENT_REASONS)},
)
XID = MetricSpec(
    "powerplane_gpu_xid_errors_total",
    "counter",
    "XID errors the driver reported since the exporter started, by XID code.",
    (*_GPU, "xid"),
)
ECC = MetricSpec(
    "powerplane_gpu_ecc_errors_total",
    "counter",
    "ECC errors over the GPU's lifetime (aggregate counters) by type: corrected or uncorrected.",
    (*_GPU, "type"),
    values={"type": ("corrected", "uncorrected")},
)
PCIE_REPLAYS = MetricSpec(
    "powerplane_gpu_pcie_replays_total", "counter", "PCIe replays (link-level retries).", _GPU
)
MIG_MODE = MetricSpec(
    "powerplane_gpu_mig_enabled", "gauge", "Whether MIG mode is enabled (1) or not (0).", _GPU
)
_MIG = ("gpu", "uuid", "gpu_instance", "compute_instance")
MIG_INFO = MetricSpec(
    "powerplane_gpu_mig_info",
    "info",
    "One series per MIG device: its UUID and name (the profile).",
    (*_MIG, "mig_uuid", "name"),
)
MIG_MEMORY_USED = MetricSpec(
    "powerplane_gpu_mig_memory_used_bytes", "gauge", "Memory in use on the MIG device.", _MIG
)
MIG_MEMORY_TOTAL = MetricSpec(
    "powerplane_gpu_mig_memory_total_bytes", "gauge", "Memory size of the MIG device.", _MIG
)
POD_INFO = MetricSpec(
    "powerplane_gpu_pod_info",
    "info",
    "A container holding the GPU (or one of its MIG instances: gpu_instance), from the kubelet "
    "pod-resources API; join it to GPU series on gpu and uuid.",
    ("gpu", "uuid", "gpu_instance", "namespace", "pod", "container"),
    source="kubelet pod-resources",
)
JOB_INFO = MetricSpec(
    "powerplane_gpu_job_info",
    "info",
    "An HPC job running on the GPU (or on one of its MIG instances: gpu_instance, from a file named "
    "<gpu>.<gpu instance>), from the job mapping directory; join it on gpu and uuid.",
    ("gpu", "uuid", "gpu_instance", "hpc_job"),
    source="HPC job mapping files",
)
METRICS = (
    INFO,
    POWER,
    ENERGY,
    ENERGY_START,
    TEMPERATURE,
    MEMORY_USED,
    MEMORY_TOTAL,
    UTILIZATION,
    MEMORY_UTILIZATION,
    SM_CLOCK,
    MEMORY_CLOCK,
    POWER_LIMIT,
    CLOCK_EVENT,
    XID,
    ECC,
    PCIE_REPLAYS,
    MIG_MODE,
    MIG_INFO,
    MIG_MEMORY_USED,
    MIG_MEMORY_TOTAL,
    POD_INFO,
    JOB_INFO,
    *dcgm.METRICS,
)
