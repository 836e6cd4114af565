"""NVIDIA GPUs through NVML (nvidia-ml-py's ``pynvml``): power, energy, thermals, clocks, errors.

One collector per GPU (``gpu0``, ``gpu1``, …), so a GPU that falls off the bus fails only its
own collector while the others keep reporting.  A field a GPU does not support
(NVML_ERROR_NOT_SUPPORTED) is skipped for that GPU; NVML absent altogether (no driver, no
library) means "no GPUs here", not a failure.  Power, energy, memory temperature, ECC and the
power limits are read in one ``nvmlDeviceGetFieldValues`` batch, with the classic calls as a
fallback on drivers that lack a field.  XIDs are events, not pollable state: one background
thread waits on an NVML event set and counts them, so the counters only ever grow.

Attribution without label explosion: ``powerplane_gpu_pod_info`` (from the kubelet
pod-resources API) and ``powerplane_gpu_job_info`` (from an HPC job mapping directory in
dcgm-exporter's format) are info metrics joined in PromQL, never labels on every series.  With
``--naming dcgm`` the exporter emits dcgm-exporter's default counter names, labels and units.

    powerplane_gpu_info{driver_version="550.90.07",gpu="0",model="NVIDIA H100 80GB HBM3",…} 1.0
    powerplane_gpu_power_watts{gpu="0",uuid="GPU-…"} 412.5
    powerplane_gpu_energy_joules_total{gpu="0",uuid="GPU-…"} 1.23456e+06
    powerplane_gpu_temperature_celsius{gpu="0",sensor="memory",uuid="GPU-…"} 58.0
    powerplane_gpu_power_limit_watts{gpu="0",kind="enforced",uuid="GPU-…"} 700.0
    powerplane_gpu_clock_event_active{gpu="0",reason="sw_power_cap",uuid="GPU-…"} 0.0
    powerplane_gpu_xid_errors_total{gpu="0",uuid="GPU-…",xid="79"} 1.0
    powerplane_gpu_pod_info{container="train",gpu="0",gpu_instance="",namespace="ml",pod="llm-0",…} 1.0
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from prometheus_client.core import Metric

from powerplane.components import Component

from ..runtime import (
    Collector,
    CollectorError,
    Deadline,
    ExporterServer,
    NoData,
    Partial,
    ResettableCounter,
    run,
)
from ..runtime.cli import WebOptions, web_options
from ..runtime.logs import log
from ..runtime.metrics import MetricSpec
from . import dcgm
from .podresources import DEFAULT_SOCKET, DeviceAssignment, list_assignments

logger = logging.getLogger("powerplane.gpu")
T = TypeVar("T")

DEFAULT_PORT = 9872
NAMINGS = ("powerplane", "dcgm")
#: Where the Helm chart mounts the HPC job mapping directory (dcgm-exporter's layout).
DEFAULT_JOB_DIR = "/var/lib/dcgm-exporter/job-mapping"
#: Static facts (name, UUID, PCI address) are read again after this long, in case of a hot swap.
IDENTITY_SECONDS = 600.0

_GPU = ("gpu", "uuid")
INFO = MetricSpec(
    "powerplane_gpu_info",
    "info",
    "One series per GPU: its model, PCI address and the driver version.",
    ("gpu", "uuid", "model", "pci_bus_id", "driver_version"),
)
POWER = MetricSpec("powerplane_gpu_power_watts", "gauge", "Instantaneous board power draw.", _GPU)
ENERGY = MetricSpec(
    "powerplane_gpu_energy_joules_total",
    "counter",
    "Energy consumed by the GPU (NVML counts mJ since the driver loaded; a reload is not a drop).",
    _GPU,
)
TEMPERATURE = MetricSpec(
    "powerplane_gpu_temperature_celsius",
    "gauge",
    "Temperature by sensor: gpu (the die) or memory (HBM; absent on GDDR boards).",
    (*_GPU, "sensor"),
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
)
CLOCK_EVENT = MetricSpec(
    "powerplane_gpu_clock_event_active",
    "gauge",
    "Whether a reason for holding clocks down (formerly throttle reason) is active (1) or not (0).",
    (*_GPU, "reason"),
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
)
JOB_INFO = MetricSpec(
    "powerplane_gpu_job_info",
    "info",
    "An HPC job running on the GPU, from the job mapping directory; join it on gpu and uuid.",
    ("gpu", "uuid", "hpc_job"),
)
METRICS = (
    INFO,
    POWER,
    ENERGY,
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

# NVML field IDs read in one batch (nvml.h NVML_FI_DEV_*).
FI_ECC_SBE_AGG, FI_ECC_DBE_AGG = 5, 6
FI_MEMORY_TEMP, FI_TOTAL_ENERGY, FI_PCIE_REPLAY = 82, 83, 94
FI_POWER_INSTANT, FI_POWER_MIN, FI_POWER_MAX, FI_POWER_DEFAULT, FI_POWER_CURRENT = 186, 187, 188, 189, 190
FIELDS = (
    FI_POWER_INSTANT,
    FI_TOTAL_ENERGY,
    FI_MEMORY_TEMP,
    FI_ECC_SBE_AGG,
    FI_ECC_DBE_AGG,
    FI_PCIE_REPLAY,
    FI_POWER_CURRENT,
    FI_POWER_MIN,
    FI_POWER_MAX,
    FI_POWER_DEFAULT,
)


def _pynvml() -> Any:
    import pynvml  # imported lazily: `powerplane exporter rapl` must not need it

    return pynvml


@dataclass(frozen=True)
class Identity:
    index: int
    uuid: str
    model: str
    pci_bus_id: str
    driver_version: str
    minor: int | None

    @property
    def labels(self) -> list[str]:
        return [str(self.index), self.uuid]


@dataclass(frozen=True)
class MigReading:
    gpu_instance: int
    compute_instance: int
    uuid: str
    name: str
    memory_used: int | None
    memory_total: int | None


@dataclass
class GpuReading:
    """One GPU's values in one scrape; None means the GPU does not support it."""

    identity: Identity
    power_watts: float | None = None
    energy_joules: float | None = None
    gpu_temp: float | None = None
    memory_temp: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    utilization: float | None = None
    memory_utilization: float | None = None
    sm_clock_hz: float | None = None
    memory_clock_hz: float | None = None
    limits: dict[str, float] = field(default_factory=dict)
    clock_events: int | None = None
    ecc: dict[str, float] = field(default_factory=dict)
    pcie_replays: float | None = None
    mig_enabled: bool | None = None
    migs: list[MigReading] = field(default_factory=list)
    xids: dict[int, int] = field(default_factory=dict)
    last_xid: int = 0


class Nvml:
    """The process's NVML session and what is known about its GPUs (shared by the collectors)."""

    def __init__(self) -> None:
        self.available = False
        self.error = ""
        self.count = 0
        self.driver_version = ""
        self.identities: dict[int, Identity] = {}
        self._identity_at: dict[int, float] = {}
        #: MIG device UUID → (GPU index, GPU instance id), refreshed by each GPU's scrape.
        self.mig_uuids: dict[str, tuple[int, int]] = {}
        self.unsupported: dict[int, set[str]] = {}
        self.lock = threading.Lock()

    def init(self) -> bool:
        try:
            nv = _pynvml()
            nv.nvmlInit()
            self.count = int(nv.nvmlDeviceGetCount())
            self.driver_version = str(nv.nvmlSystemGetDriverVersion())
        except ImportError as exc:
            self.error = f"nvidia-ml-py is not installed: {exc}"
            return False
        except Exception as exc:  # NVMLError: no library, no driver, no permission on /dev/nvidia*
            self.error = f"NVML unavailable: {exc}"
            return False
        self.available = True
        return True

    def shutdown(self) -> None:
        if self.available:
            self.available = False
            try:
                _pynvml().nvmlShutdown()
            except Exception as exc:  # at exit nothing more can be done
                logger.debug("nvmlShutdown failed: %s", exc)

    def handle(self, index: int) -> Any:
        return _pynvml().nvmlDeviceGetHandleByIndex(index)

    def identity(self, index: int, handle: Any) -> Identity:
        known = self.identities.get(index)
        if known is not None and time.monotonic() - self._identity_at[index] < IDENTITY_SECONDS:
            return known
        nv = _pynvml()
        minor: int | None
        try:
            minor = int(nv.nvmlDeviceGetMinorNumber(handle))
        except nv.NVMLError_NotSupported:
            minor = None
        identity = Identity(
            index,
            str(nv.nvmlDeviceGetUUID(handle)),
            str(nv.nvmlDeviceGetName(handle)),
            str(nv.nvmlDeviceGetPciInfo(handle).busId),
            self.driver_version,
            minor,
        )
        with self.lock:
            self.identities[index] = identity
            self._identity_at[index] = time.monotonic()
        return identity

    def identities_now(self) -> dict[int, Identity]:
        """Every reachable GPU's identity, reading those not yet known (the collectors run concurrently)."""
        for index in range(self.count):
            if index not in self.identities:
                try:
                    self.identity(index, self.handle(index))
                except Exception as exc:  # a lost GPU: its own collector reports it
                    logger.debug("GPU %d identity: %s", index, exc)
        with self.lock:
            return dict(self.identities)

    def forget(self, index: int) -> None:
        with self.lock:
            self.identities.pop(index, None)
            self.unsupported.pop(index, None)


class XidWatcher:
    """The one background task: wait on an NVML event set and count XIDs per GPU.

    Events cannot be polled afterwards, so a thread blocks in ``nvmlEventSetWait`` (with a short
    timeout, to notice shutdown).  Counts only grow: a scrape reads them, nothing resets them.
    """

    def __init__(self, nvml: Nvml, wait_ms: int = 500) -> None:
        self.nvml = nvml
        self.wait_ms = wait_ms
        self.counts: dict[int, dict[int, int]] = {}
        self.last: dict[int, int] = {}
        self.registered: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error = ""

    def start(self) -> None:
        nv = _pynvml()
        try:
            self._set = nv.nvmlEventSetCreate()
        except Exception as exc:
            self.error = f"no NVML event set: {exc}"
            log(logger, logging.WARNING, "XID events unavailable", err=self.error)
            return
        for index in range(self.nvml.count):
            try:
                nv.nvmlDeviceRegisterEvents(
                    self.nvml.handle(index), nv.nvmlEventTypeXidCriticalError, self._set
                )
                self.registered.add(index)
            except nv.NVMLError_NotSupported:
                pass
            except Exception as exc:
                log(logger, logging.WARNING, "XID events unavailable for a GPU", gpu=index, err=str(exc))
        self._thread = threading.Thread(target=self._run, name="nvml-xid-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        nv = _pynvml()
        while not self._stop.is_set():
            try:
                data = nv.nvmlEventSetWait(self._set, self.wait_ms)
            except nv.NVMLError_Timeout:
                continue
            except Exception as exc:
                # A lost GPU or a driver problem: keep waiting, but not in a tight loop.
                logger.debug("nvmlEventSetWait failed: %s", exc)
                self._stop.wait(1.0)
                continue
            if not data.eventType & nv.nvmlEventTypeXidCriticalError:
                continue
            try:
                index = int(nv.nvmlDeviceGetIndex(data.device))
            except Exception as exc:  # the GPU went away between the event and now
                logger.debug("XID event for an unknown GPU: %s", exc)
                continue
            xid = int(data.eventData)
            with self._lock:
                per_gpu = self.counts.setdefault(index, {})
                per_gpu[xid] = per_gpu.get(xid, 0) + 1
                self.last[index] = xid
            log(logger, logging.WARNING, "XID error", gpu=index, xid=xid)

    def snapshot(self, index: int) -> tuple[dict[int, int], int]:
        with self._lock:
            return dict(self.counts.get(index, {})), self.last.get(index, 0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
            try:
                _pynvml().nvmlEventSetFree(self._set)
            except Exception as exc:
                logger.debug("nvmlEventSetFree failed: %s", exc)


class GpuCollector(Collector[GpuReading]):
    """Everything about one GPU."""

    def __init__(
        self,
        nvml: Nvml,
        index: int,
        xids: XidWatcher | None,
        namings: Sequence[str],
        attribution: Attribution,
        hostname: str,
    ) -> None:
        self.name = f"gpu{index}"
        self.nvml = nvml
        self.index = index
        self.xids = xids
        self.namings = tuple(namings)
        self.attribution = attribution
        self.hostname = hostname
        self.energy = ResettableCounter()
        self._inflight: asyncio.Future[tuple[GpuReading, list[str]]] | None = None
        self._handle: Any = None

    async def fetch(self, deadline: Deadline) -> GpuReading | Partial[GpuReading]:
        # A hung NVML call cannot be cancelled: a new scrape waits for the read in flight
        # instead of stacking up threads behind it.
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(asyncio.to_thread(self.read))
        reading, errors = await asyncio.shield(self._inflight)
        return Partial(reading, errors) if errors else reading

    def read(self) -> tuple[GpuReading, list[str]]:
        nv = _pynvml()
        errors: list[str] = []
        unsupported = self.nvml.unsupported.setdefault(self.index, set())
        try:
            if self._handle is None:
                self._handle = self.nvml.handle(self.index)
            handle = self._handle
            reading = GpuReading(self.nvml.identity(self.index, handle))
        except nv.NVMLError_GpuIsLost:
            self.nvml.forget(self.index)
            self._handle = None
            raise CollectorError(f"GPU {self.index}: GPU is lost (fallen off the bus)") from None
        except nv.NVMLError as exc:
            raise CollectorError(f"GPU {self.index}: {exc}") from None

        def get(what: str, call: Callable[[], T]) -> T | None:
            if what in unsupported:
                return None
            try:
                return call()
            except nv.NVMLError_NotSupported:
                unsupported.add(what)
            except nv.NVMLError_FunctionNotFound:
                unsupported.add(what)  # an older driver
            except nv.NVMLError_GpuIsLost:
                self.nvml.forget(self.index)
                self._handle = None
                raise CollectorError(f"GPU {self.index}: GPU is lost (fallen off the bus)") from None
            except nv.NVMLError as exc:
                errors.append(f"GPU {self.index} {what}: {exc}")
            return None

        values = get("field_values", lambda: nv.nvmlDeviceGetFieldValues(handle, list(FIELDS)))
        fv: dict[int, float] = {}
        for v in values or ():
            if v.nvmlReturn != 0:
                continue
            fv[int(v.fieldId)] = _field_value(v)
        if FI_POWER_INSTANT in fv:
            reading.power_watts = fv[FI_POWER_INSTANT] / 1000.0
        else:
            mw = get("power", lambda: nv.nvmlDeviceGetPowerUsage(handle))
            reading.power_watts = None if mw is None else mw / 1000.0
        mj = fv.get(FI_TOTAL_ENERGY)
        if mj is None:
            mj = get("energy", lambda: nv.nvmlDeviceGetTotalEnergyConsumption(handle))
        if mj is not None:
            reading.energy_joules = self.energy.update(self.index, float(mj)) / 1000.0
        reading.memory_temp = fv.get(FI_MEMORY_TEMP)
        if FI_ECC_SBE_AGG in fv:
            reading.ecc["corrected"] = fv[FI_ECC_SBE_AGG]
        if FI_ECC_DBE_AGG in fv:
            reading.ecc["uncorrected"] = fv[FI_ECC_DBE_AGG]
        reading.pcie_replays = fv.get(FI_PCIE_REPLAY)
        for fid, kind in (
            (FI_POWER_CURRENT, "current"),
            (FI_POWER_MIN, "min"),
            (FI_POWER_MAX, "max"),
            (FI_POWER_DEFAULT, "default"),
        ):
            if fid in fv:
                reading.limits[kind] = fv[fid] / 1000.0
        if "current" not in reading.limits:
            current = get("power_limit", lambda: nv.nvmlDeviceGetPowerManagementLimit(handle))
            if current is not None:
                reading.limits["current"] = current / 1000.0
                limits = get(
                    "power_limit_constraints", lambda: nv.nvmlDeviceGetPowerManagementLimitConstraints(handle)
                )
                if limits is not None:
                    reading.limits["min"], reading.limits["max"] = limits[0] / 1000.0, limits[1] / 1000.0
                default = get(
                    "power_limit_default", lambda: nv.nvmlDeviceGetPowerManagementDefaultLimit(handle)
                )
                if default is not None:
                    reading.limits["default"] = default / 1000.0
        enforced = get("enforced_power_limit", lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle))
        if enforced is not None:
            reading.limits["enforced"] = enforced / 1000.0
        temp = get("temperature", lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))
        reading.gpu_temp = None if temp is None else float(temp)
        memory = get("memory", lambda: _memory(nv, handle))
        if memory is not None:
            reading.memory_used, reading.memory_total = int(memory.used), int(memory.total)
        util = get("utilization", lambda: nv.nvmlDeviceGetUtilizationRates(handle))
        if util is not None:
            reading.utilization, reading.memory_utilization = util.gpu / 100.0, util.memory / 100.0
        sm = get("sm_clock", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM))
        reading.sm_clock_hz = None if sm is None else sm * 1e6
        mem = get("memory_clock", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM))
        reading.memory_clock_hz = None if mem is None else mem * 1e6
        reading.clock_events = get("clock_events", lambda: _clock_events(nv, handle))
        mode = get("mig", lambda: nv.nvmlDeviceGetMigMode(handle))
        if mode is not None:
            reading.mig_enabled = bool(mode[0])
            if reading.mig_enabled:
                reading.migs = self._migs(nv, handle, errors)
        if self.xids is not None:
            reading.xids, reading.last_xid = self.xids.snapshot(self.index)
        return reading, errors

    def _migs(self, nv: Any, handle: Any, errors: list[str]) -> list[MigReading]:
        migs: list[MigReading] = []
        try:
            slots = int(nv.nvmlDeviceGetMaxMigDeviceCount(handle))
        except nv.NVMLError as exc:
            errors.append(f"GPU {self.index} MIG devices: {exc}")
            return migs
        uuids = {}
        for slot in range(slots):
            try:
                mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except (nv.NVMLError_NotFound, nv.NVMLError_InvalidArgument):
                continue  # an empty slot
            except nv.NVMLError as exc:
                errors.append(f"GPU {self.index} MIG device {slot}: {exc}")
                continue
            try:
                gi = int(nv.nvmlDeviceGetGpuInstanceId(mig))
                ci = int(nv.nvmlDeviceGetComputeInstanceId(mig))
                uuid = str(nv.nvmlDeviceGetUUID(mig))
                name = str(nv.nvmlDeviceGetName(mig))
            except nv.NVMLError as exc:
                errors.append(f"GPU {self.index} MIG device {slot}: {exc}")
                continue
            used = total = None
            try:
                memory = nv.nvmlDeviceGetMemoryInfo(mig)
                used, total = int(memory.used), int(memory.total)
            except nv.NVMLError_NotSupported:
                pass
            except nv.NVMLError as exc:
                errors.append(f"GPU {self.index} MIG device {slot} memory: {exc}")
            migs.append(MigReading(gi, ci, uuid, name, used, total))
            uuids[uuid] = (self.index, gi)
        with self.nvml.lock:
            for key in [k for k, v in self.nvml.mig_uuids.items() if v[0] == self.index]:
                del self.nvml.mig_uuids[key]
            self.nvml.mig_uuids.update(uuids)
        return migs

    def render(self, snapshot: GpuReading) -> Iterable[Metric]:
        if "powerplane" in self.namings:
            yield from render_powerplane(snapshot)
        if "dcgm" in self.namings:
            yield from dcgm.render(snapshot, self.hostname, self.attribution.dcgm_labels(snapshot.identity))


def _field_value(v: Any) -> float:
    kind = int(v.valueType)
    value = v.value
    if kind == 0:
        return float(value.dVal)
    if kind == 1:
        return float(value.uiVal)
    if kind == 2:
        return float(value.ulVal)
    if kind == 3:
        return float(value.ullVal)
    if kind == 4:
        return float(value.sllVal)
    if kind == 5:
        return float(value.siVal)
    return float(value.usVal)


def _memory(nv: Any, handle: Any) -> Any:
    # Version 2 keeps the driver's reserved memory out of "used", as nvidia-smi does; drivers
    # before R510 only have version 1.
    try:
        return nv.nvmlDeviceGetMemoryInfo(handle, version=nv.nvmlMemory_v2)
    except (nv.NVMLError_FunctionNotFound, nv.NVMLError_ArgumentVersionMismatch):
        return nv.nvmlDeviceGetMemoryInfo(handle)


def _clock_events(nv: Any, handle: Any) -> int:
    try:
        return int(nv.nvmlDeviceGetCurrentClocksEventReasons(handle))
    except nv.NVMLError_FunctionNotFound:  # drivers before R535 only know the old name
        return int(nv.nvmlDeviceGetCurrentClocksThrottleReasons(handle))


def render_powerplane(r: GpuReading) -> Iterable[Metric]:
    ident = r.identity
    labels = ident.labels
    info = INFO.family()
    info.add_metric([*labels, ident.model, ident.pci_bus_id, ident.driver_version], 1.0)
    yield info
    for spec, value in (
        (POWER, r.power_watts),
        (ENERGY, r.energy_joules),
        (MEMORY_USED, r.memory_used),
        (MEMORY_TOTAL, r.memory_total),
        (UTILIZATION, r.utilization),
        (MEMORY_UTILIZATION, r.memory_utilization),
        (SM_CLOCK, r.sm_clock_hz),
        (MEMORY_CLOCK, r.memory_clock_hz),
        (PCIE_REPLAYS, r.pcie_replays),
    ):
        if value is not None:
            family = spec.family()
            family.add_metric(labels, float(value))
            yield family
    temps = TEMPERATURE.family()
    for sensor, value in (("gpu", r.gpu_temp), ("memory", r.memory_temp)):
        if value is not None:
            temps.add_metric([*labels, sensor], value)
    yield temps
    limits = POWER_LIMIT.family()
    for kind in ("current", "enforced", "default", "min", "max"):
        if kind in r.limits:
            limits.add_metric([*labels, kind], r.limits[kind])
    yield limits
    if r.clock_events is not None:
        events = CLOCK_EVENT.family()
        for bit, reason in CLOCK_EVENT_REASONS:
            events.add_metric([*labels, reason], 1.0 if r.clock_events & bit else 0.0)
        yield events
    ecc = ECC.family()
    for kind, count in sorted(r.ecc.items()):
        ecc.add_metric([*labels, kind], count)
    yield ecc
    xids = XID.family()
    for code, count in sorted(r.xids.items()):
        xids.add_metric([*labels, str(code)], float(count))
    yield xids
    if r.mig_enabled is not None:
        mode = MIG_MODE.family()
        mode.add_metric(labels, 1.0 if r.mig_enabled else 0.0)
        yield mode
    if r.migs:
        info_f, used_f, total_f = MIG_INFO.family(), MIG_MEMORY_USED.family(), MIG_MEMORY_TOTAL.family()
        for m in r.migs:
            mig_labels = [*labels, str(m.gpu_instance), str(m.compute_instance)]
            info_f.add_metric([*mig_labels, m.uuid, m.name], 1.0)
            if m.memory_used is not None:
                used_f.add_metric(mig_labels, float(m.memory_used))
            if m.memory_total is not None:
                total_f.add_metric(mig_labels, float(m.memory_total))
        yield from (info_f, used_f, total_f)


# --- attribution: pods (kubelet pod-resources) and HPC jobs (mapping directory) -----------------


class Attribution:
    """The latest pod and job assignments, for the info collectors and the dcgm profile's labels."""

    def __init__(self) -> None:
        self.pods: list[tuple[int, str, str, DeviceAssignment]] = []  # (gpu, uuid, gpu_instance, who)
        self.jobs: dict[int, list[str]] = {}

    def dcgm_labels(self, ident: Identity) -> dict[str, str]:
        # dcgm-exporter puts pod labels on every series of a GPU held by one container; a GPU
        # shared by several keeps none rather than multiplying series.
        holders = {
            (a.namespace, a.pod, a.container) for g, _u, gi, a in self.pods if g == ident.index and not gi
        }
        labels: dict[str, str] = {}
        if len(holders) == 1:
            namespace, pod, container = holders.pop()
            labels.update(namespace=namespace, pod=pod, container=container)
        jobs = self.jobs.get(ident.index, [])
        if len(jobs) == 1:
            labels["hpc_job"] = jobs[0]
        return labels


@dataclass(frozen=True)
class PodSnapshot:
    rows: tuple[tuple[int, str, str, DeviceAssignment], ...]


class PodCollector(Collector[PodSnapshot]):
    """Which container holds which GPU, from the kubelet's pod-resources socket."""

    name = "pods"

    def __init__(
        self, nvml: Nvml, socket_path: str, attribution: Attribution, resources: Sequence[str]
    ) -> None:
        self.nvml = nvml
        self.socket_path = socket_path
        self.attribution = attribution
        self.resources = tuple(resources)

    async def fetch(self, deadline: Deadline) -> PodSnapshot | Partial[PodSnapshot]:
        if not os.path.exists(self.socket_path):  # noqa: ASYNC240 - one stat of a local socket
            self.attribution.pods = []
            raise NoData(f"no kubelet pod-resources socket at {self.socket_path}")
        try:
            assignments = await list_assignments(self.socket_path, deadline.remaining())
        except ValueError as exc:
            raise CollectorError(f"pod-resources {self.socket_path}: malformed response: {exc}") from None
        except Exception as exc:  # grpc.aio.AioRpcError and friends
            detail = getattr(exc, "details", lambda: None)() or str(exc) or type(exc).__name__
            raise CollectorError(f"pod-resources {self.socket_path}: {detail}") from None
        identities = await asyncio.to_thread(self.nvml.identities_now)
        by_uuid = {ident.uuid: ident for ident in identities.values()}
        with self.nvml.lock:
            migs = dict(self.nvml.mig_uuids)
        rows: list[tuple[int, str, str, DeviceAssignment]] = []
        unknown = 0
        for a in assignments:
            if not a.resource.startswith(self.resources):
                continue
            # Time-sliced GPUs are advertised as "<uuid>::<replica>".
            device = a.device_id.split("::", 1)[0]
            if device in by_uuid:
                rows.append((by_uuid[device].index, device, "", a))
            elif device in migs:
                index, gi = migs[device]
                parent = identities.get(index)
                if parent is not None:
                    rows.append((index, parent.uuid, str(gi), a))
            else:
                unknown += 1
        self.attribution.pods = rows
        if unknown:
            logger.debug("%d device IDs from pod-resources match no GPU here", unknown)
        return PodSnapshot(tuple(rows))

    def render(self, snapshot: PodSnapshot) -> Iterable[Metric]:
        family = POD_INFO.family()
        seen = set()
        for index, uuid, gi, a in snapshot.rows:
            key = (index, uuid, gi, a.namespace, a.pod, a.container)
            if key not in seen:
                seen.add(key)
                family.add_metric([str(index), uuid, gi, a.namespace, a.pod, a.container], 1.0)
        yield family


@dataclass(frozen=True)
class JobSnapshot:
    jobs: tuple[tuple[Identity, str], ...]


class JobCollector(Collector[JobSnapshot]):
    """HPC jobs per GPU from a directory of files named by GPU index, one job ID per line."""

    name = "jobs"
    MAX_BYTES = 64 * 1024

    def __init__(self, nvml: Nvml, directory: Path, attribution: Attribution) -> None:
        self.nvml = nvml
        self.directory = Path(directory)
        self.attribution = attribution

    async def fetch(self, deadline: Deadline) -> JobSnapshot | Partial[JobSnapshot]:
        return await asyncio.to_thread(self._read)

    def _read(self) -> JobSnapshot | Partial[JobSnapshot]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            self.attribution.jobs = {}
            raise NoData(f"no HPC job mapping directory at {self.directory}") from None
        except OSError as exc:
            raise CollectorError(f"{self.directory}: {exc.strerror}") from None
        errors: list[str] = []
        jobs: dict[int, list[str]] = {}
        for name in names:
            if name.startswith("."):
                continue  # editors' and atomic writers' temporary files
            if not name.isdigit():
                errors.append(f"{self.directory}/{name}: not named by a GPU index")
                continue
            index = int(name)
            try:
                with open(self.directory / name, "rb") as f:
                    data = f.read(self.MAX_BYTES + 1)
            except OSError as exc:
                errors.append(f"{self.directory}/{name}: {exc.strerror}")
                continue
            if len(data) > self.MAX_BYTES:
                errors.append(f"{self.directory}/{name}: larger than {self.MAX_BYTES} bytes, ignored")
                continue
            ids = []
            for line in data.decode("utf-8", "replace").splitlines():
                job = line.strip()
                if not job:
                    continue
                if len(job) > 128 or not job.isprintable():
                    errors.append(f"{self.directory}/{name}: job id {job[:32]!r} rejected")
                    continue
                ids.append(job)
            if ids:
                jobs[index] = ids
        self.attribution.jobs = jobs
        rows = []
        identities = self.nvml.identities_now()
        for index, ids in sorted(jobs.items()):
            ident = identities.get(index)
            if ident is None:
                if index >= self.nvml.count:
                    errors.append(f"{self.directory}/{index}: no GPU {index} on this node")
                continue
            rows += [(ident, job) for job in ids]
        snapshot = JobSnapshot(tuple(rows))
        return Partial(snapshot, errors) if errors else snapshot

    def render(self, snapshot: JobSnapshot) -> Iterable[Metric]:
        family = JOB_INFO.family()
        for ident, job in snapshot.jobs:
            family.add_metric([*ident.labels, job], 1.0)
        yield family


class AbsentCollector(Collector[None]):
    """Stands in for the GPU collectors when NVML is not there: no data, not a failure."""

    name = "nvml"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def fetch(self, deadline: Deadline) -> None:
        raise NoData(self.reason)

    def render(self, snapshot: None) -> Iterable[Metric]:
        return ()


def make_server(
    namings: Sequence[str] = ("powerplane",),
    pod_resources_socket: str | None = DEFAULT_SOCKET,
    pod_resources: Sequence[str] = ("nvidia.com/",),
    job_mapping_dir: Path | None = None,
    xid_events: bool = True,
    hostname: str | None = None,
    **kwargs: Any,
) -> ExporterServer:
    """The GPU exporter.  NVML is initialised here; without it the exporter serves no GPU data."""
    unknown = set(namings) - set(NAMINGS)
    if unknown or not namings:
        raise ValueError(f"naming must be among {', '.join(NAMINGS)}, not {sorted(unknown) or 'nothing'}")
    nvml = Nvml()
    collectors: list[Collector[Any]] = []
    shutdown: list[Callable[[], Any]] = []
    if not nvml.init():
        log(logger, logging.INFO, "no GPUs: NVML is not available", err=nvml.error)
        collectors.append(AbsentCollector(nvml.error))
    else:
        attribution = Attribution()
        watcher = XidWatcher(nvml) if xid_events else None
        if watcher is not None:
            watcher.start()
            shutdown.append(watcher.stop)
        host = hostname or os.environ.get("NODE_NAME") or socket.gethostname()
        collectors += [GpuCollector(nvml, i, watcher, namings, attribution, host) for i in range(nvml.count)]
        if pod_resources_socket:
            collectors.append(PodCollector(nvml, pod_resources_socket, attribution, pod_resources))
        if job_mapping_dir is not None:
            collectors.append(JobCollector(nvml, job_mapping_dir, attribution))
        shutdown.append(nvml.shutdown)
        log(logger, logging.INFO, "NVML ready", gpus=nvml.count, driver=nvml.driver_version)

    async def close() -> None:
        for hook in shutdown:
            await asyncio.to_thread(hook)

    server = ExporterServer(
        "gpu",
        collectors=collectors,
        description="NVIDIA GPUs through NVML",
        on_shutdown=[close],
        **kwargs,
    )
    server.nvml = nvml  # type: ignore[attr-defined]  # for tests and the benchmark
    return server


@click.command("gpu")
@click.option(
    "--naming",
    "namings",
    multiple=True,
    type=click.Choice(NAMINGS),
    default=("powerplane",),
    show_default=True,
    help="Metric names to emit; repeat for both (dcgm: dcgm-exporter's default counters).",
)
@click.option(
    "--pod-resources.socket",
    "pod_socket",
    default=DEFAULT_SOCKET,
    show_default=True,
    help="Kubelet pod-resources socket ('' to disable); absent socket: no pod info.",
)
@click.option(
    "--hpc-job-mapping.dir",
    "job_dir",
    envvar="DCGM_HPC_JOB_MAPPING_DIR",
    default=DEFAULT_JOB_DIR,
    show_default=True,
    help="Directory of files named by GPU index listing the HPC job IDs on that GPU ('' to disable); "
    "absent directory: no job info.",
)
@click.option("--no-xid-events", is_flag=True, help="Do not watch NVML events for XID errors.")
@web_options(DEFAULT_PORT)
def command(
    web: WebOptions, namings: tuple[str, ...], pod_socket: str, job_dir: str, no_xid_events: bool
) -> None:
    """NVIDIA GPU power, energy, thermals, clocks and errors through NVML."""
    server = make_server(
        namings=namings,
        pod_resources_socket=pod_socket or None,
        job_mapping_dir=Path(job_dir) if job_dir else None,
        xid_events=not no_xid_events,
        web_config=web.web_config,
    )
    run(server, web.listen_address)


COMPONENT = Component(
    name="gpu",
    order=20,
    exporter="powerplane.exporters.gpu:command",
    metrics=("powerplane.exporters.gpu:METRICS",),
    demo="powerplane.lab.gpu:gpu_component",
)
