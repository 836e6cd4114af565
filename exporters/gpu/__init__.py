"""NVIDIA GPUs through NVML (nvidia-ml-py's ``pynvml``): power, energy, thermals, clocks, errors.

One collector reads every GPU of the node in one batch and renders one family per metric with a
series per GPU; each GPU is reported as a collector of its own (``gpu0``, ``gpu1``, …), so a GPU
that falls off the bus fails only its own while the others keep reporting.  A field a GPU does not support
(NVML_ERROR_NOT_SUPPORTED) is skipped for that GPU; NVML absent altogether (no driver, no
library) means "no GPUs here", not a failure.  Power, energy, memory temperature, ECC and the
power limits are read in one ``nvmlDeviceGetFieldValues`` batch, with the classic calls as a
fallback on drivers that lack a field.  XIDs are events, not pollable state: one background
thread waits on an NVML event set and counts them, so the counters only ever grow.

Attribution without label explosion: ``powerplane_gpu_pod_info`` (from the kubelet
pod-resources API) and ``powerplane_gpu_job_info`` (from an HPC job mapping directory in
dcgm-exporter's format) are info metrics joined in PromQL, never labels on every series.  With
``--naming dcgm`` the exporter emits dcgm-exporter's default counter names, labels and units.

``nvml`` wraps the NVML session and each GPU's identity, ``xid`` watches XID events,
``collectors`` reads each GPU and renders them all, ``attribution`` maps GPUs to pods and jobs,
``metrics`` declares every series, ``config`` the options and ``exporter`` serves them.

    powerplane_gpu_info{driver_version="550.90.07",gpu="0",model="NVIDIA H100 80GB HBM3",…} 1.0
    powerplane_gpu_power_watts{gpu="0",uuid="GPU-…"} 412.5
    powerplane_gpu_energy_joules_total{gpu="0",uuid="GPU-…"} 1.23456e+06
    powerplane_gpu_energy_start_timestamp_seconds{gpu="0",uuid="GPU-…"} 1.7646e+09
    powerplane_gpu_temperature_celsius{gpu="0",sensor="memory",uuid="GPU-…"} 58.0
    powerplane_gpu_power_limit_watts{gpu="0",kind="enforced",uuid="GPU-…"} 700.0
    powerplane_gpu_clock_event_active{gpu="0",reason="sw_power_cap",uuid="GPU-…"} 0.0
    powerplane_gpu_xid_errors_total{gpu="0",uuid="GPU-…",xid="79"} 1.0
    powerplane_gpu_pod_info{container="train",gpu="0",gpu_instance="",namespace="ml",pod="llm-0",…} 1.0
"""

from powerplane.components import Component

COMPONENT = Component(
    name="gpu",
    order=20,
    exporter="powerplane.exporters.gpu.exporter:command",
    metrics=("powerplane.exporters.gpu.metrics:METRICS",),
    demo="powerplane.lab.gpu:gpu_component",
)
