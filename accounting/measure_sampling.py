"""Sampling the local RAPL zones and NVML GPUs at a fixed interval on a background thread.

The readers are the exporters' own: ``RaplEnergyCollector`` (its wrap-safe ``WrappingCounter``
over ``PowercapTree``) and the GPU exporter's NVML session, calls and ``ResettableCounter`` for
the energy of each GPU.  Samples go to a ``Sink`` in batches, so a run of any length holds at most
one batch in memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from powerplane.exporters.runtime import CollectorError, Deadline, NoData, Partial

logger = logging.getLogger("powerplane.accounting.measure")

#: Samples buffered before they are handed to the sink.
BATCH = 256
#: Fields of one GPU's table besides the time (the HDF5 columns, in order).
GPU_FIELDS = ("energy_j", "power_w", "temperature_c", "sm_clock_hz", "utilization", "memory_used_bytes")
#: RAPL zones summed into the total (nested core/uncore zones are inside their package).
TOTAL_ZONES = ("package", "dram")


@dataclass(frozen=True)
class Domain:
    """One measured thing: a RAPL zone (``package-0``) or a GPU (``gpu0``)."""

    name: str
    kind: str  # "rapl" or "gpu"
    description: str = ""


class Rapl:
    """The RAPL zones with an energy counter, read through the RAPL exporter's collector."""

    def __init__(self, sysfs: Path) -> None:
        from powerplane.exporters.rapl.collectors import RaplEnergyCollector
        from powerplane.exporters.rapl.powercap import PowercapTree

        self.collector = RaplEnergyCollector(PowercapTree(sysfs))
        self.loop = asyncio.new_event_loop()
        self.names: list[str] = []
        self.error = ""
        self._first: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        """Joules per zone since the first reading (wrap-safe); empty when unreadable."""
        try:
            snapshot = self.loop.run_until_complete(self.collector.fetch(Deadline.after(1.0)))
        except (NoData, CollectorError) as exc:
            self.error = str(exc)
            return {}
        if isinstance(snapshot, Partial):
            self.error = "; ".join(snapshot.errors)
            snapshot = snapshot.snapshot
        result = {}
        for zone, joules in snapshot.joules:
            name = f"{zone.zone}-{zone.index}"
            first = self._first.setdefault(name, joules)
            result[name] = joules - first
            if name not in self.names:
                self.names.append(name)
        return result

    def close(self) -> None:
        self.loop.close()


class Gpus:
    """The NVML GPUs, read with the GPU exporter's NVML session, calls and energy counter.

    A sample reads only what the trace stores (one field-value batch of power and energy, then
    temperature, SM clock, utilisation and memory): the exporter's full read (limits, ECC, MIG,
    clock reasons) costs over three times the CPU (four fake-NVML H100s: 0.72 ms a sample against
    0.21 ms), and at 10 Hz that is the sampling overhead.
    """

    def __init__(self) -> None:
        from powerplane.exporters.gpu.collectors import Gpu
        from powerplane.exporters.gpu.nvml import Nvml

        self.nvml = Nvml()
        self.gpus: list[Gpu] = []
        self.error = ""
        self.models: dict[str, str] = {}
        self._handles: dict[int, Any] = {}
        self._first: dict[str, float] = {}
        if not self.nvml.init():
            self.error = self.nvml.error
            return
        self.gpus = [Gpu(self.nvml, i) for i in range(self.nvml.count)]

    def read(self) -> dict[str, tuple[float, ...]]:
        from powerplane.exporters.gpu.nvml import pynvml

        nv = pynvml()
        result: dict[str, tuple[float, ...]] = {}
        for gpu in self.gpus:
            name = gpu.name
            try:
                values, errors = self._read(nv, gpu, name)
            except CollectorError as exc:
                self._handles.pop(gpu.index, None)
                self.error = str(exc)
                continue
            except nv.NVMLError as exc:
                self._handles.pop(gpu.index, None)
                self.error = f"GPU {gpu.index}: {exc}"
                continue
            if errors:
                self.error = "; ".join(errors)
            result[name] = tuple(np.nan if v is None else float(v) for v in values)
        return result

    def _read(self, nv: Any, gpu: Any, name: str) -> tuple[tuple[float | None, ...], list[str]]:
        from powerplane.exporters.gpu.collectors import NvmlCalls
        from powerplane.exporters.gpu.nvml import FI_POWER_INSTANT, FI_TOTAL_ENERGY, field_values, memory_info

        index = gpu.index
        handle = self._handles.get(index)
        if handle is None:
            handle = self._handles[index] = self.nvml.handle(index)
            self.models.setdefault(name, self.nvml.identity(index, handle).model)
        get = NvmlCalls(gpu)  # unsupported calls skipped from then on, a lost GPU raised
        batch = get(
            "field_values", lambda: nv.nvmlDeviceGetFieldValues(handle, [FI_POWER_INSTANT, FI_TOTAL_ENERGY])
        )
        fv = field_values(batch) if batch else {}
        mw = fv.get(FI_POWER_INSTANT)
        if mw is None:
            mw = get("power", lambda: nv.nvmlDeviceGetPowerUsage(handle))
        mj = fv.get(FI_TOTAL_ENERGY)
        if mj is None:
            mj = get("energy", lambda: nv.nvmlDeviceGetTotalEnergyConsumption(handle))
        energy = None
        if mj is not None:
            energy = gpu.energy.update(index, float(mj)) / 1000.0
            energy -= self._first.setdefault(name, energy)
        temp = get("temperature", lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))
        sm = get("sm_clock", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM))
        util = get("utilization", lambda: nv.nvmlDeviceGetUtilizationRates(handle))
        memory = get("memory", lambda: memory_info(nv, handle))
        values = (
            energy,
            None if mw is None else mw / 1000.0,
            temp,
            None if sm is None else sm * 1e6,
            None if util is None else util.gpu / 100.0,
            None if memory is None else memory.used,
        )
        return values, get.errors

    def close(self) -> None:
        self.nvml.shutdown()


Sink = Callable[[str, npt.NDArray[np.float64], Sequence[str]], None]


@dataclass
class Sampler:
    """Reads every ``interval`` seconds on its own thread; ``sample()`` once more at the edges."""

    interval: float
    rapl: Rapl | None
    gpus: Gpus | None
    sink: Sink
    #: CPU seconds the sampling thread spent reading (its overhead).
    cpu_seconds: float = 0.0
    samples: int = 0
    _buffers: dict[str, list[list[float]]] = field(default_factory=dict)
    _columns: dict[str, list[str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self) -> None:
        with self._lock:
            begin = time.thread_time()
            now = time.time()
            if self.rapl is not None:
                joules = self.rapl.read()
                if joules:
                    self._add("rapl", now, list(joules), list(joules.values()))
            if self.gpus is not None:
                for name, values in self.gpus.read().items():
                    self._add(name, now, list(GPU_FIELDS), list(values))
            self.samples += 1
            self.cpu_seconds += time.thread_time() - begin

    def _add(self, table: str, now: float, columns: list[str], values: list[float]) -> None:
        known = self._columns.get(table)
        if known is not None and known != columns:
            # A zone appeared or vanished: close the batch so each batch has one set of columns.
            self._flush(table)
        self._columns[table] = columns
        self._buffers.setdefault(table, []).append([now, *values])
        if len(self._buffers[table]) >= BATCH:
            self._flush(table)

    def _flush(self, table: str) -> None:
        rows = self._buffers.pop(table, [])
        if rows:
            self.sink(table, np.array(rows, dtype=np.float64), ["time", *self._columns[table]])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="measure-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # An absolute schedule: a slow read delays one sample, it does not shift the rest.
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.sample()
            next_at += self.interval
            late = time.monotonic() - next_at
            if late > self.interval:
                next_at += (late // self.interval + 1) * self.interval  # skip what was missed

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def flush(self) -> None:
        with self._lock:
            for table in list(self._buffers):
                self._flush(table)
