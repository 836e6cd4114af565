"""The GPU collectors: one per GPU (its NVML reads and the series they give), and the stand-in when
NVML is absent."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from prometheus_client.core import Metric

from ..runtime import Collector, CollectorError, Deadline, NoData, Partial, ResettableCounter
from . import dcgm
from .attribution import Attribution
from .metrics import (
    CLOCK_EVENT,
    CLOCK_EVENT_REASONS,
    ECC,
    ENERGY,
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

    def __init__(self, collector: GpuCollector) -> None:
        self.collector = collector
        self.unsupported = collector.nvml.unsupported.setdefault(collector.index, set())
        self.errors: list[str] = []

    def __call__(self, what: str, call: Callable[[], T]) -> T | None:
        nv = pynvml()
        if what in self.unsupported:
            return None
        try:
            return call()
        except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound):  # or an older driver
            self.unsupported.add(what)
        except nv.NVMLError_GpuIsLost:
            raise self.collector.lost() from None
        except nv.NVMLError as exc:
            self.errors.append(f"GPU {self.collector.index} {what}: {exc}")
        return None


Result = tuple[GpuReading, list[str]]


class _Read:
    """One GPU's read in a batch: ``taken`` once a thread starts it or a later batch takes it over."""

    __slots__ = ("collector", "future", "taken")

    def __init__(self, collector: GpuCollector, future: asyncio.Future[Result]) -> None:
        self.collector = collector
        self.future = future
        self.taken = False


class ReadBatch:
    """The reads of every GPU in one scrape, made in one worker thread and handed back together.

    NVML calls block, so they run off the event loop; a thread hop per GPU (a pool submission,
    a thread woken, the loop woken, the GIL passed to and fro) costs more than the GPU's reads.
    Collectors that fetch in the same turn of the loop (a scrape starts them all at once) share
    one hop.  A read that hangs (NVML calls cannot be interrupted) holds up its batch for that
    scrape; the next scrape waits only for the GPU that hangs and takes the reads queued behind
    it, or finished but not yet handed back, into a batch of its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: list[_Read] = []

    def submit(self, collector: GpuCollector) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        current = collector.current_read
        if current is not None and not current.future.done():
            with self._lock:
                if current.taken and current.collector.reading:
                    return current.future  # being read now, perhaps hung: wait for it
                current.taken = True  # stuck behind a hung read: read it here instead
            read = _Read(collector, current.future)
        else:
            read = _Read(collector, loop.create_future())
        collector.current_read = read
        if not self._queued:
            loop.call_soon(self._start, loop)
        self._queued.append(read)
        return read.future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queued = self._queued, []
        loop.run_in_executor(None, self._run, loop, batch)

    def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Read]) -> None:
        done: list[tuple[_Read, Result | None, BaseException | None]] = []
        for read in batch:
            with self._lock:
                if read.taken:
                    continue
                read.taken = read.collector.reading = True
            try:
                done.append((read, read.collector.read(), None))
            except BaseException as exc:  # handed to the awaiting fetch, which reports it
                done.append((read, None, exc))
            finally:
                read.collector.reading = False
        loop.call_soon_threadsafe(_settle, done)


def _settle(done: list[tuple[_Read, Result | None, BaseException | None]]) -> None:
    for read, result, exc in done:
        if read.future.done() or read.collector.current_read is not read:
            continue  # a later batch took this GPU over
        if exc is not None:
            read.future.set_exception(exc)
        else:
            assert result is not None
            read.future.set_result(result)


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
        batch: ReadBatch | None = None,
    ) -> None:
        self.name = f"gpu{index}"
        self.nvml = nvml
        self.index = index
        self.xids = xids
        self.namings = tuple(namings)
        self.attribution = attribution
        self.hostname = hostname
        self.energy = ResettableCounter()
        self.batch = batch or ReadBatch()
        #: The batch's bookkeeping: this GPU's latest read, and whether a thread is in it now.
        self.current_read: _Read | None = None
        self.reading = False
        self._handle: Any = None

    async def fetch(self, deadline: Deadline) -> GpuReading | Partial[GpuReading]:
        # A hung NVML call cannot be cancelled: a new scrape waits for the read in flight
        # instead of stacking up threads behind it (shielded: a timed-out scrape leaves it be).
        reading, errors = await asyncio.shield(self.batch.submit(self))
        return Partial(reading, errors) if errors else reading

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

    def render(self, snapshot: GpuReading) -> Iterable[Metric]:
        if "powerplane" in self.namings:
            yield from render_powerplane(snapshot)
        if "dcgm" in self.namings:
            yield from dcgm.render(snapshot, self.hostname, self.attribution.dcgm_labels(snapshot.identity))


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


def render_powerplane(r: GpuReading) -> Iterable[Metric]:
    ident = r.identity
    labels = ident.labels
    info = INFO.family()
    minor = "" if ident.minor is None else str(ident.minor)
    info.add_metric([*labels, ident.model, ident.pci_bus_id, ident.driver_version, minor], 1.0)
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
    for sensor, value in zip(TEMPERATURE.values["sensor"], (r.gpu_temp, r.memory_temp), strict=True):
        if value is not None:
            temps.add_metric([*labels, sensor], value)
    yield temps
    limits = POWER_LIMIT.family()
    for kind in POWER_LIMIT.values["kind"]:
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


class AbsentCollector(Collector[None]):
    """Stands in for the GPU collectors when NVML is not there: no data, not a failure."""

    name = "nvml"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def fetch(self, deadline: Deadline) -> None:
        raise NoData(self.reason)

    def render(self, snapshot: None) -> Iterable[Metric]:
        return ()
