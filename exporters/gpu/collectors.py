"""The GPU collector: one for every GPU of the node (each GPU's NVML reads, one family per metric
with a series per GPU), and the stand-in when NVML is absent."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from prometheus_client.core import Metric

from ..runtime import Collector, CollectorError, Deadline, NoData, Part, Parts, ResettableCounter
from ..runtime.collector import describe_error
from . import dcgm
from .attribution import Attribution
from .metrics import (
    CLOCK_EVENT,
    CLOCK_EVENT_REASONS,
    ECC,
    ENERGY,
    ENERGY_START,
    INFO,
    MEMORY_CLOCK,
    MEMORY_TOTAL,
    MEMORY_USED,
    MEMORY_UTILIZATION,
    MIG_INFO,
    MIG_MEMORY_TOTAL,
    MIG_MEMORY_USED,
    MIG_MODE,
    PCIE_REPLAYS,
    POWER,
    POWER_LIMIT,
    SM_CLOCK,
    TEMPERATURE,
    UTILIZATION,
    XID,
)
from .nvml import (
    FI_ECC_DBE_AGG,
    FI_ECC_SBE_AGG,
    FI_MEMORY_TEMP,
    FI_PCIE_REPLAY,
    FI_POWER_CURRENT,
    FI_POWER_DEFAULT,
    FI_POWER_INSTANT,
    FI_POWER_MAX,
    FI_POWER_MIN,
    FI_TOTAL_ENERGY,
    FIELDS,
    GpuReading,
    Identity,
    MigReading,
    Nvml,
    clock_event_reasons,
    field_values,
    memory_info,
    pynvml,
)
from .xid import XidWatcher

T = TypeVar("T")


class NvmlCalls:
    """The NVML calls of one read of one GPU: what the GPU does not support is skipped from then on,
    other errors are collected, and a lost GPU ends the read."""

    def __init__(self, gpu: Gpu) -> None:
        self.gpu = gpu
        self.unsupported = gpu.nvml.unsupported.setdefault(gpu.index, set())
        self.errors: list[str] = []
        self._nv = pynvml()

    def __call__(self, what: str, call: Callable[[], T]) -> T | None:
        if what in self.unsupported:
            return None
        nv = self._nv
        try:
            return call()
        except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound):  # or an older driver
            self.unsupported.add(what)
        except nv.NVMLError_GpuIsLost:
            raise self.gpu.lost() from None
        except nv.NVMLError as exc:
            self.errors.append(f"GPU {self.gpu.index} {what}: {exc}")
        return None


#: What one GPU's read gave: its reading (None when the read failed as a whole), the errors and
#: the seconds it took.
Result = tuple[GpuReading | None, list[str], float]


class _Read:
    """One GPU's read in a batch: ``taken`` once a thread starts it or a later batch takes it over."""

    __slots__ = ("future", "gpu", "taken")

    def __init__(self, gpu: Gpu, future: asyncio.Future[Result]) -> None:
        self.gpu = gpu
        self.future = future
        self.taken = False


class ReadBatch:
    """The reads of every GPU in one scrape, made in one worker thread and handed back together.

    NVML calls block, so they run off the event loop; a thread hop per GPU (a pool submission,
    a thread woken, the loop woken, the GIL passed to and fro) costs more than the GPU's reads.
    Reads submitted in the same turn of the loop (a scrape submits every GPU at once) share one
    hop.  A read that hangs (NVML calls cannot be interrupted) holds up its batch for that
    scrape; the next scrape waits only for the GPU that hangs and takes the reads queued behind
    it, or finished but not yet handed back, into a batch of its own.  A read that fails hands
    back its cause, not an exception: nobody may be awaiting it any more.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: list[_Read] = []

    def submit(self, gpu: Gpu) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        current = gpu.current_read
        if current is not None and not current.future.done():
            with self._lock:
                if current.taken and current.gpu.reading:
                    return current.future  # being read now, perhaps hung: wait for it
                current.taken = True  # stuck behind a hung read: read it here instead
            read = _Read(gpu, current.future)
        else:
            read = _Read(gpu, loop.create_future())
        gpu.current_read = read
        if not self._queued:
            loop.call_soon(self._start, loop)
        self._queued.append(read)
        return read.future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queued = self._queued, []
        loop.run_in_executor(None, self._run, loop, batch)

    def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Read]) -> None:
        done: list[tuple[_Read, Result]] = []
        for read in batch:
            with self._lock:
                if read.taken:
                    continue
                read.taken = read.gpu.reading = True
            start = time.perf_counter()
            try:
                reading, errors = read.gpu.read()
            except BaseException as exc:  # handed back as its cause: the batch must be settled
                reading, errors = None, [describe_error(exc)]
            finally:
                read.gpu.reading = False
            done.append((read, (reading, errors, time.perf_counter() - start)))
        loop.call_soon_threadsafe(_settle, done)


def _settle(done: list[tuple[_Read, Result]]) -> None:
    for read, result in done:
        if not read.future.done() and read.gpu.current_read is read:  # else a later batch took it over
            read.future.set_result(result)


class Gpu:
    """One GPU: its handle, its energy counter and its NVML reads (``read``, in a worker thread)."""

    def __init__(self, nvml: Nvml, index: int, xids: XidWatcher | None = None) -> None:
        #: The GPU's name as a part of the collector (``powerplane_scrape_collector_success{collector}``).
        self.name = f"gpu{index}"
        self.nvml = nvml
        self.index = index
        self.xids = xids
        self.energy = ResettableCounter()
        #: The batch's bookkeeping: this GPU's latest read, and whether a thread is in it now.
        self.current_read: _Read | None = None
        self.reading = False
        self._handle: Any = None

    def lost(self) -> CollectorError:
        """Forget a GPU that fell off the bus (its handle and identity are read again when it is back)."""
        self.nvml.forget(self.index)
        self._handle = None
        return CollectorError(f"GPU {self.index}: GPU is lost (fallen off the bus)")

    def read(self) -> tuple[GpuReading, list[str]]:
        nv = pynvml()
        try:
            if self._handle is None:
                self._handle = self.nvml.handle(self.index)
            handle = self._handle
            reading = GpuReading(self.nvml.identity(self.index, handle))
        except nv.NVMLError_GpuIsLost:
            raise self.lost() from None
        except nv.NVMLError as exc:
            raise CollectorError(f"GPU {self.index}: {exc}") from None
        get = NvmlCalls(self)
        fields = self._fields(nv, get, handle, reading)
        _limits(nv, get, handle, fields, reading)
        _state(nv, get, handle, reading)
        mode = get("mig", lambda: nv.nvmlDeviceGetMigMode(handle))
        if mode is not None:
            reading.mig_enabled = bool(mode[0])
            if reading.mig_enabled:
                reading.migs = self._migs(nv, handle, get.errors)
        if self.xids is not None:
            reading.xids, reading.last_xid = self.xids.snapshot(self.index)
        return reading, get.errors

    def _fields(self, nv: Any, get: NvmlCalls, handle: Any, reading: GpuReading) -> dict[int, float]:
        """The one batch of field values, with the classic calls where a driver lacks a field."""
        values = get("field_values", lambda: nv.nvmlDeviceGetFieldValues(handle, list(FIELDS)))
        fv = field_values(values) if values is not None else {}
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
            reading.energy_started = self.energy.started[self.index]
        reading.memory_temp = fv.get(FI_MEMORY_TEMP)
        if FI_ECC_SBE_AGG in fv:
            reading.ecc["corrected"] = fv[FI_ECC_SBE_AGG]
        if FI_ECC_DBE_AGG in fv:
            reading.ecc["uncorrected"] = fv[FI_ECC_DBE_AGG]
        reading.pcie_replays = fv.get(FI_PCIE_REPLAY)
        return fv

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


def _limits(nv: Any, get: NvmlCalls, handle: Any, fv: dict[int, float], reading: GpuReading) -> None:
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
            default = get("power_limit_default", lambda: nv.nvmlDeviceGetPowerManagementDefaultLimit(handle))
            if default is not None:
                reading.limits["default"] = default / 1000.0
    enforced = get("enforced_power_limit", lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle))
    if enforced is not None:
        reading.limits["enforced"] = enforced / 1000.0


def _state(nv: Any, get: NvmlCalls, handle: Any, reading: GpuReading) -> None:
    """Temperature, memory, utilisation, clocks and clock-event reasons: one call each."""
    temp = get("temperature", lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))
    reading.gpu_temp = None if temp is None else float(temp)
    memory = get("memory", lambda: memory_info(nv, handle))
    if memory is not None:
        reading.memory_used, reading.memory_total = int(memory.used), int(memory.total)
    util = get("utilization", lambda: nv.nvmlDeviceGetUtilizationRates(handle))
    if util is not None:
        reading.utilization, reading.memory_utilization = util.gpu / 100.0, util.memory / 100.0
    sm = get("sm_clock", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM))
    reading.sm_clock_hz = None if sm is None else sm * 1e6
    mem = get("memory_clock", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM))
    reading.memory_clock_hz = None if mem is None else mem * 1e6
    reading.clock_events = get("clock_events", lambda: clock_event_reasons(nv, handle))


class GpuCollector(Collector[list[GpuReading]]):
    """Every GPU of the node, read in one batch and rendered as one family per metric.

    Each GPU is a part of its own (``gpu0``, ``gpu1``, …): a GPU whose read fails, or that does not
    answer by the deadline, is reported failed while the others export.
    """

    name = "gpus"
    keeps_deadline = True

    def __init__(
        self,
        gpus: Sequence[Gpu],
        namings: Sequence[str],
        attribution: Attribution,
        hostname: str,
        batch: ReadBatch | None = None,
    ) -> None:
        self.gpus = tuple(gpus)
        self.parts = tuple(gpu.name for gpu in self.gpus)
        self.namings = tuple(namings)
        self.attribution = attribution
        self.hostname = hostname
        self.batch = batch or ReadBatch()

    async def fetch(self, deadline: Deadline) -> Parts[list[GpuReading]]:
        # A hung NVML call cannot be cancelled: a new scrape waits for the read in flight instead
        # of stacking up threads behind it.  asyncio.wait cancels nothing, so a read still running
        # at the deadline is left to finish for the scrape after.
        futures = [self.batch.submit(gpu) for gpu in self.gpus]
        await asyncio.wait(futures, timeout=deadline.remaining())
        readings: list[GpuReading] = []
        parts: list[Part] = []
        for gpu, future in zip(self.gpus, futures, strict=True):
            if not future.done():
                parts.append(Part(gpu.name, 0.0, (f"GPU {gpu.index}: deadline exceeded",)))
                continue
            reading, errors, seconds = future.result()
            if reading is not None:
                readings.append(reading)
            parts.append(Part(gpu.name, seconds, errors))
        return Parts(readings, parts)

    def render(self, snapshot: list[GpuReading]) -> Iterable[Metric]:
        if not snapshot:
            return
        if "powerplane" in self.namings:
            yield from render_powerplane(snapshot)
        if "dcgm" in self.namings:
            yield from dcgm.render(snapshot, self.hostname, self.attribution.dcgm_labels)


class _Series:
    """The label values of one GPU's series that do not change between scrapes."""

    def __init__(self, ident: Identity) -> None:
        self.gpu = ident.labels
        minor = "" if ident.minor is None else str(ident.minor)
        self.info = (*self.gpu, ident.model, ident.pci_bus_id, ident.driver_version, minor)
        self.temperature = tuple((*self.gpu, sensor) for sensor in TEMPERATURE.values["sensor"])
        self.power_limit = tuple((kind, (*self.gpu, kind)) for kind in POWER_LIMIT.values["kind"])
        self.clock_event = tuple((bit, (*self.gpu, reason)) for bit, reason in CLOCK_EVENT_REASONS)


@functools.lru_cache(maxsize=256)  # identities change only when a GPU is swapped
def _series(ident: Identity) -> _Series:
    return _Series(ident)


#: The metrics with one series per GPU, in the order they are exposed.
_SINGLE = (POWER, ENERGY, ENERGY_START, MEMORY_USED, MEMORY_TOTAL, UTILIZATION, MEMORY_UTILIZATION,
           SM_CLOCK, MEMORY_CLOCK, PCIE_REPLAYS)  # fmt: skip


def render_powerplane(readings: Sequence[GpuReading]) -> Iterable[Metric]:
    """The powerplane families of the GPUs that answered: one family per metric, a series per GPU.

    Rows are appended to the families directly, with each GPU's label tuples built once
    (``_series``): a scrape's series repeat, and so can their label tuples.
    """
    info = INFO.family()
    singles = [spec.family() for spec in _SINGLE]
    temps, limits, events, ecc, xids = (
        TEMPERATURE.family(), POWER_LIMIT.family(), CLOCK_EVENT.family(), ECC.family(), XID.family(),
    )  # fmt: skip
    mode = MIG_MODE.family()
    mig_info, mig_used, mig_total = MIG_INFO.family(), MIG_MEMORY_USED.family(), MIG_MEMORY_TOTAL.family()
    migs = False
    for r in readings:
        series = _series(r.identity)
        labels = series.gpu
        info.rows.append((series.info, 1.0))
        for family, value in zip(
            singles,
            (r.power_watts, r.energy_joules, r.energy_started, r.memory_used, r.memory_total, r.utilization,
             r.memory_utilization, r.sm_clock_hz, r.memory_clock_hz, r.pcie_replays),
            strict=True,
        ):  # fmt: skip
            if value is not None:
                family.rows.append((labels, float(value)))
        if r.gpu_temp is not None:
            temps.rows.append((series.temperature[0], r.gpu_temp))
        if r.memory_temp is not None:
            temps.rows.append((series.temperature[1], r.memory_temp))
        for kind, kind_labels in series.power_limit:
            if kind in r.limits:
                limits.rows.append((kind_labels, r.limits[kind]))
        if r.clock_events is not None:
            active = r.clock_events
            for bit, reason_labels in series.clock_event:
                events.rows.append((reason_labels, 1.0 if active & bit else 0.0))
        for kind, count in sorted(r.ecc.items()):
            ecc.rows.append(((*labels, kind), count))
        for code, count in sorted(r.xids.items()):
            xids.rows.append(((*labels, str(code)), float(count)))
        if r.mig_enabled is not None:
            mode.rows.append((labels, 1.0 if r.mig_enabled else 0.0))
        for m in r.migs:
            migs = True
            mig_labels = (*labels, str(m.gpu_instance), str(m.compute_instance))
            mig_info.rows.append(((*mig_labels, m.uuid, m.name), 1.0))
            if m.memory_used is not None:
                mig_used.rows.append((mig_labels, float(m.memory_used)))
            if m.memory_total is not None:
                mig_total.rows.append((mig_labels, float(m.memory_total)))
    yield info
    yield from (family for family in singles if family.rows)
    # Temperatures, limits, ECC and XIDs are exposed (perhaps empty) for every GPU that answered.
    yield from (temps, limits)
    if events.rows:
        yield events
    yield from (ecc, xids)
    if mode.rows:
        yield mode
    if migs:
        yield from (mig_info, mig_used, mig_total)


class AbsentCollector(Collector[None]):
    """Stands in for the GPU collectors when NVML is not there: no data, not a failure."""

    name = "nvml"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def fetch(self, deadline: Deadline) -> None:
        raise NoData(self.reason)

    def render(self, snapshot: None) -> Iterable[Metric]:
        return ()
