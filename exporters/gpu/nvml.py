"""The NVML wrapper: the process's NVML session, what is known about each GPU, and what a read gives.

``pynvml`` (nvidia-ml-py) is imported on first use, so commands that need no GPU do not need it.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("powerplane.gpu")

#: Static facts (name, UUID, PCI address) are read again after this long, in case of a hot swap.
IDENTITY_SECONDS = 600.0

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


def pynvml() -> Any:
    """The ``pynvml`` module, imported lazily: ``powerplane exporter rapl`` must not need it."""
    import pynvml as module

    return module


@dataclass(frozen=True)
class Identity:
    index: int
    uuid: str
    model: str
    pci_bus_id: str
    driver_version: str
    minor: int | None

    @property
    def labels(self) -> tuple[str, str]:
        return (str(self.index), self.uuid)


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
    #: When this exporter first read the energy counter (Unix time).
    energy_started: float | None = None
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
            nv = pynvml()
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
                pynvml().nvmlShutdown()
            except Exception as exc:  # at exit nothing more can be done
                logger.debug("nvmlShutdown failed: %s", exc)

    def handle(self, index: int) -> Any:
        return pynvml().nvmlDeviceGetHandleByIndex(index)

    def identity(self, index: int, handle: Any) -> Identity:
        known = self.identities.get(index)
        if known is not None and time.monotonic() - self._identity_at[index] < IDENTITY_SECONDS:
            return known
        nv = pynvml()
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


#: struct formats of nvmlValue_t's members by nvmlValueType_t (native sizes: c_ulong is 8 bytes
#: on 64-bit Linux); an unknown type reads as the smallest member (usVal).
_VALUE_FORMATS = tuple(struct.Struct("@" + f) for f in "dILQqiH")


def field_values(values: Any) -> dict[int, float]:
    """``{field id: value}`` of the fields NVML answered (nvmlReturn 0) in an array from
    ``nvmlDeviceGetFieldValues``.

    Decoded from the array's bytes at once: reading each member through pynvml's structures
    (four attributes and a union per field) costs more than the NVML call that filled them.
    The offsets are taken from pynvml's own structure, so they follow its layout.
    """
    element = values._type_
    size = ctypes.sizeof(element)
    ids, kinds, returns, value_at = (
        element.fieldId.offset,
        element.valueType.offset,
        element.nvmlReturn.offset,
        element.value.offset,
    )
    raw = bytes(values)
    out: dict[int, float] = {}
    for base in range(0, len(raw), size):
        if _INT.unpack_from(raw, base + returns)[0] != 0:
            continue
        kind = _INT.unpack_from(raw, base + kinds)[0]
        fmt = _VALUE_FORMATS[kind if 0 <= kind < 6 else 6]
        out[_UINT.unpack_from(raw, base + ids)[0]] = float(fmt.unpack_from(raw, base + value_at)[0])
    return out


_INT, _UINT = struct.Struct("@i"), struct.Struct("@I")


def memory_info(nv: Any, handle: Any) -> Any:
    # Version 2 keeps the driver's reserved memory out of "used", as nvidia-smi does; drivers
    # before R510 only have version 1.
    try:
        return nv.nvmlDeviceGetMemoryInfo(handle, version=nv.nvmlMemory_v2)
    except (nv.NVMLError_FunctionNotFound, nv.NVMLError_ArgumentVersionMismatch):
        return nv.nvmlDeviceGetMemoryInfo(handle)


def clock_event_reasons(nv: Any, handle: Any) -> int:
    try:
        return int(nv.nvmlDeviceGetCurrentClocksEventReasons(handle))
    except nv.NVMLError_FunctionNotFound:  # drivers before R535 only know the old name
        return int(nv.nvmlDeviceGetCurrentClocksThrottleReasons(handle))
