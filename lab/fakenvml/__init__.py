"""A fake ``libnvidia-ml.so.1``, compiled from C, that the real nvidia-ml-py (``pynvml``) loads.

Python-level fakes of pynvml cannot catch the bugs that live in the ctypes layer (struct
layouts, versioned entry points, return codes), so the lab ships ``fakenvml.c`` and compiles it
with gcc on first use.  The library reads the machine it simulates from the file named by
``$FAKENVML_CONFIG``, re-reading it whenever it changes, and keeps power limits set through
``nvmlDeviceSetPowerManagementLimit`` in ``<config>.state`` so that every process using the same
config sees them.

In one process (tests, benchmarks)::

    nvml = FakeNvml(tmp_path, [FakeGpu("h100-sxm"), FakeGpu("a100-sxm", set_limit="deny")])
    nvml.activate()                 # writes the config, sets $FAKENVML_CONFIG, preloads the library
    import pynvml; pynvml.nvmlInit()
    nvml.inject_xid(0, 79); nvml.lose(1)

For another process (the exporter as a subprocess, the controller)::

    subprocess.Popen([...], env={**os.environ, **nvml.env()})   # LD_LIBRARY_PATH + FAKENVML_CONFIG

A model in another process can drive the GPUs instead of the library's own sine: with
``FakeNvml(..., shared=True)`` the config names a memory-mapped file (``<config>.shared``) in which
``nvml.shared.publish([...])`` places each GPU's demand, power, energy and utilisation; the
library serves those (temperature, clocks and throttle reasons follow them), so the lab's node
model (``powerplane.lab.model``) is the one truth behind NVML and the node's other meters::

    nvml = FakeNvml(tmp_path, [FakeGpu("h100-sxm")], shared=True)
    nvml.write()
    nvml.shared.publish([SharedReading(demand_mw=650e3, power_mw=500e3, energy_mj=1e9, utilization=0.9)])

The same machine can be described in YAML or JSON (``{driver_version: ..., gpus: [{profile:
h100-sxm, ...}]}``) and loaded with ``FakeNvml.from_spec``; ``python -m powerplane.lab.fakenvml
SPEC DIR`` builds the library and prints the environment to use.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml

from powerplane.resources import on_disk, resource

SOURCE: Traversable = resource("powerplane.lab.fakenvml", "fakenvml.c")
LIBRARY_NAME = "libnvidia-ml.so.1"
CONFIG_ENV = "FAKENVML_CONFIG"

#: Features a GPU may declare NOT_SUPPORTED (the names the C library understands).
FEATURES = frozenset(
    {
        "power",
        "energy",
        "temperature",
        "memory_temperature",
        "ecc",
        "clocks",
        "utilization",
        "power_limit",
        "clock_events",
        "memory",
        "mig",
        "pcie",
        "events",
        "serial",
    }
)


@dataclass(frozen=True)
class GpuProfile:
    """Datasheet figures of one GPU model (power in milliwatts, as NVML reports it)."""

    name: str
    pci_device_id: int
    pci_subsystem_id: int
    memory_total_bytes: int
    power_idle_mw: int
    power_max_mw: int
    power_limit_default_mw: int
    power_limit_min_mw: int
    power_limit_max_mw: int
    sm_clock_max_mhz: int
    sm_clock_idle_mhz: int
    mem_clock_mhz: int
    temp_idle: float
    temp_per_watt: float
    unsupported: frozenset[str] = frozenset()


MIB = 1 << 20
PROFILES: dict[str, GpuProfile] = {
    "h100-sxm": GpuProfile(
        "NVIDIA H100 80GB HBM3", 0x233010DE, 0x16C110DE, 81559 * MIB,
        70_000, 700_000, 700_000, 200_000, 700_000, 1980, 345, 2619, 28.0, 0.055,
    ),
    "a100-sxm": GpuProfile(
        "NVIDIA A100-SXM4-80GB", 0x20B210DE, 0x147F10DE, 81920 * MIB,
        55_000, 400_000, 400_000, 100_000, 400_000, 1410, 210, 1593, 30.0, 0.09,
    ),
    # GDDR6 boards have no memory temperature sensor, and the L40S has no MIG.
    "l40s": GpuProfile(
        "NVIDIA L40S", 0x26B910DE, 0x185110DE, 46068 * MIB,
        35_000, 350_000, 350_000, 100_000, 350_000, 2520, 210, 9001, 32.0, 0.11,
        frozenset({"memory_temperature", "mig"}),
    ),
}  # fmt: skip


@dataclass
class MigDevice:
    """One MIG device: GPU instance id, compute instance id and its memory."""

    gpu_instance: int
    compute_instance: int
    memory_total_bytes: int
    memory_used_bytes: int = 0
    uuid: str = ""


@dataclass
class FakeGpu:
    """One simulated GPU.  Utilisation follows ``util_base + util_amplitude·sin(2πt/period)``."""

    profile: str = "h100-sxm"
    uuid: str = ""
    serial: str = ""
    pci_bus_id: str = ""
    util_base: float = 0.5
    util_amplitude: float = 0.0
    util_period_s: float = 60.0
    phase: float = 0.0
    memory_used_fraction: float = 0.3
    memory_used_amplitude_fraction: float = 0.0
    memory_temp_offset: float = 6.0
    lost: bool = False
    unsupported: frozenset[str] = frozenset()
    #: allow: anyone may set limits; deny: NO_PERMISSION; root: only euid 0 (like the real driver).
    set_limit: Literal["allow", "deny", "root"] = "allow"
    #: Every XID this GPU has raised, in order; an event set receives those raised after it registered.
    xids: list[int] = field(default_factory=list)
    mig: list[MigDevice] = field(default_factory=list)
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    ecc_corrected_volatile: int = 0
    ecc_uncorrected_volatile: int = 0
    pcie_replays: int = 0
    energy_offset_mj: float = 0.0
    #: Raw config keys of the C library, overriding the profile (e.g. ``power_limit_min_mw``).
    overrides: dict[str, str | int | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown GPU profile {self.profile!r} (known: {', '.join(sorted(PROFILES))})")
        unknown = set(self.unsupported) - FEATURES
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)} (known: {', '.join(sorted(FEATURES))})")
        self.unsupported = frozenset(self.unsupported)


def _hash_source() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]


def _cache_root() -> Path:
    base = os.environ.get("POWERPLANE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "powerplane" if base else Path.home() / ".cache" / "powerplane"


def build(directory: Path | None = None, cc: str | None = None) -> Path:
    """Compile the fake library (once per source version); returns the directory holding it.

    The directory is what goes into ``LD_LIBRARY_PATH``.  Without ``directory`` the library is
    cached under ``$POWERPLANE_CACHE`` (or the user's cache directory, or a temporary one).
    """
    if directory is None:
        directory = _cache_root() / "fakenvml" / _hash_source()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            directory = Path(tempfile.gettempdir()) / f"powerplane-fakenvml-{os.getuid()}" / _hash_source()
            directory.mkdir(parents=True, exist_ok=True)
    directory = Path(directory)
    target = directory / LIBRARY_NAME
    if target.exists():
        return directory
    compiler = cc or os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise FileNotFoundError("no C compiler (gcc) to build the fake NVML library")
    directory.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent test processes may build at once.
    fd, tmp = tempfile.mkstemp(prefix=".fakenvml-", suffix=".so", dir=directory)
    os.close(fd)
    try:
        with on_disk(SOURCE) as source:  # the compiler needs a file, a wheel may be a zip
            subprocess.run(
                [compiler, "-O2", "-Wall", "-shared", "-fPIC", "-fvisibility=hidden",
                 f"-Wl,-soname,{LIBRARY_NAME}", "-o", tmp, str(source), "-lm", "-lpthread"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        os.unlink(tmp)
        raise RuntimeError(f"building the fake NVML library failed:\n{exc.stderr}") from None
    os.replace(tmp, target)
    return directory


_loaded: ctypes.CDLL | None = None


def preload(directory: Path | None = None) -> ctypes.CDLL:
    """Load the fake library into this process so that pynvml's ``CDLL("libnvidia-ml.so.1")`` finds it.

    The dynamic loader matches an already loaded object by its SONAME, so loading it once by
    path is enough; LD_LIBRARY_PATH cannot be changed for a running process.
    """
    global _loaded
    if _loaded is None:
        path = (directory or build()) / LIBRARY_NAME
        _loaded = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        _loaded.fakenvml_call_count.restype = ctypes.c_ulonglong
    return _loaded


def call_count() -> int:
    """NVML calls made in this process through the preloaded fake library."""
    return int(preload().fakenvml_call_count())


def reset_call_count() -> None:
    preload().fakenvml_reset_call_count()


#: GPUs the library (and its shared state) holds at most: MAX_GPUS in fakenvml.c.
MAX_GPUS = 64


@dataclass(frozen=True)
class SharedReading:
    """What a driving model publishes for one GPU (NVML's units: milliwatts, millijoules)."""

    demand_mw: float
    power_mw: float
    energy_mj: float
    utilization: float


class SharedState:
    """The memory-mapped file through which a model drives the library's GPUs.

    Layout (``struct shared_state`` in fakenvml.c, little-endian): magic, sequence, version,
    GPU count, padding to 64 bytes, then per GPU four doubles.  The writer makes the sequence
    odd, writes, and makes it even again; the library retries a read that saw an odd or changed
    sequence, so it never serves a half-written reading.  The file is created at its full size
    and never truncated (the library maps it).
    """

    MAGIC = 0x31534C4D564E4650
    HEADER = struct.Struct("<QQII40x")
    GPU = struct.Struct("<4d")
    SIZE = HEADER.size + MAX_GPUS * GPU.size

    def __init__(self, path: Path, gpus: int) -> None:
        if not 0 <= gpus <= MAX_GPUS:
            raise ValueError(f"{path}: {gpus} GPUs (at most {MAX_GPUS})")
        self.path = Path(path)
        self.gpus = gpus
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_bytes(self.HEADER.pack(self.MAGIC, 0, 1, gpus) + bytes(self.SIZE - self.HEADER.size))
        os.replace(tmp, self.path)
        with open(self.path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), self.SIZE)  # keeps its own descriptor
        self._seq = 0

    def publish(self, readings: Sequence[SharedReading]) -> None:
        """Replace every GPU's readings at once (``readings[i]`` is GPU i)."""
        if len(readings) != self.gpus:
            raise ValueError(f"{self.path}: {len(readings)} readings for {self.gpus} GPUs")
        self._seq += 1
        struct.pack_into("<Q", self._map, 8, self._seq)  # odd: an update is under way
        for i, r in enumerate(readings):
            self.GPU.pack_into(
                self._map,
                self.HEADER.size + i * self.GPU.size,
                r.demand_mw,
                r.power_mw,
                r.energy_mj,
                r.utilization,
            )
        self._seq += 1
        struct.pack_into("<Q", self._map, 8, self._seq)

    def close(self) -> None:
        if not self._map.closed:
            self._map.close()


def _clean(value: str, what: str) -> str:
    if any(c in value for c in "\n\r\0"):
        raise ValueError(f"{what}: line breaks are not allowed")
    return value


class FakeNvml:
    """A simulated machine: a config file for the fake library, and the calls to change it."""

    def __init__(
        self,
        directory: Path,
        gpus: Sequence[FakeGpu],
        driver_version: str = "550.90.07",
        cuda_version: int = 12040,
        name: str = "fakenvml",
        shared: bool = False,
    ) -> None:
        """``shared``: a model drives the GPUs through ``self.shared`` (see the module's docstring)."""
        self.directory = Path(directory)
        self.gpus = list(gpus)
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.config_path = self.directory / f"{name}.conf"
        self.state_path = Path(f"{self.config_path}.state")
        self.shared_path = Path(f"{self.config_path}.shared") if shared else None
        self.shared: SharedState | None = None
        self._libdir: Path | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], directory: Path, name: str = "fakenvml") -> FakeNvml:
        """From a parsed YAML/JSON mapping ``{driver_version?, cuda_version?, gpus: [{...}]}``."""
        unknown = set(spec) - {"driver_version", "cuda_version", "gpus"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        gpus = []
        for i, item in enumerate(spec.get("gpus") or []):
            if not isinstance(item, Mapping):
                raise ValueError(f"gpus[{i}]: expected a mapping")
            fields = {f.name for f in dataclasses.fields(FakeGpu)}
            bad = set(item) - fields
            if bad:
                raise ValueError(f"gpus[{i}]: unknown keys {sorted(bad)}")
            args = dict(item)
            args["mig"] = [MigDevice(**m) for m in args.get("mig") or []]
            args["unsupported"] = frozenset(args.get("unsupported") or ())
            try:
                gpus.append(FakeGpu(**args))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"gpus[{i}]: {exc}") from None
        return cls(
            directory,
            gpus,
            str(spec.get("driver_version", "550.90.07")),
            int(spec.get("cuda_version", 12040)),
            name,
        )

    @classmethod
    def from_file(cls, path: Path, directory: Path) -> FakeNvml:
        text = Path(path).read_text()
        spec = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        return cls.from_spec(spec or {}, directory)

    # --- the config file -------------------------------------------------------------------

    def render(self) -> str:
        lines = [
            "# fake NVML machine; written by powerplane.lab.fakenvml",
            f"driver_version {_clean(self.driver_version, 'driver_version')}",
            f"nvml_version 12.{_clean(self.driver_version, 'driver_version')}",
            f"cuda_version {int(self.cuda_version)}",
            f"state_file {self.state_path}",
        ]
        if self.shared_path is not None:
            lines.append(f"shared_state {self.shared_path}")
        for i, gpu in enumerate(self.gpus):
            p = PROFILES[gpu.profile]
            memory_total = p.memory_total_bytes
            keys: dict[str, str | int | float] = {
                "name": p.name,
                "uuid": gpu.uuid
                or f"GPU-{hashlib.md5(f'{self.config_path}:{i}'.encode()).hexdigest()[:8]}"
                f"-0000-4000-8000-{i:012x}",
                "serial": gpu.serial or f"16500{i:08d}",
                "pci_bus_id": gpu.pci_bus_id or f"00000000:{0x18 + 0x10 * i:02X}:00.0",
                "pci_device_id": p.pci_device_id,
                "pci_subsystem_id": p.pci_subsystem_id,
                "minor": i,
                "memory_total_bytes": memory_total,
                "memory_used_bytes": int(memory_total * gpu.memory_used_fraction),
                "memory_used_amplitude": int(memory_total * gpu.memory_used_amplitude_fraction),
                "power_idle_mw": p.power_idle_mw,
                "power_max_mw": p.power_max_mw,
                "power_limit_default_mw": p.power_limit_default_mw,
                "power_limit_min_mw": p.power_limit_min_mw,
                "power_limit_max_mw": p.power_limit_max_mw,
                "util_base": gpu.util_base,
                "util_amplitude": gpu.util_amplitude,
                "util_period_s": gpu.util_period_s,
                "phase": gpu.phase,
                "temp_idle": p.temp_idle,
                "temp_per_watt": p.temp_per_watt,
                "memory_temp_offset": gpu.memory_temp_offset,
                "sm_clock_max_mhz": p.sm_clock_max_mhz,
                "sm_clock_idle_mhz": p.sm_clock_idle_mhz,
                "mem_clock_mhz": p.mem_clock_mhz,
                "ecc_corrected": gpu.ecc_corrected,
                "ecc_uncorrected": gpu.ecc_uncorrected,
                "ecc_corrected_volatile": gpu.ecc_corrected_volatile,
                "ecc_uncorrected_volatile": gpu.ecc_uncorrected_volatile,
                "pcie_replays": gpu.pcie_replays,
                "energy_offset_mj": gpu.energy_offset_mj,
                "lost": int(gpu.lost),
                "set_limit": gpu.set_limit,
                "unsupported": ",".join(sorted(p.unsupported | gpu.unsupported)),
                "xids": ",".join(str(int(x)) for x in gpu.xids),
                "mig_mode": int(bool(gpu.mig)),
            }
            keys.update(gpu.overrides)
            lines.append("gpu")
            lines += [f"{k} {_clean(str(v), k)}" for k, v in keys.items()]
            for j, m in enumerate(gpu.mig):
                uuid = m.uuid or f"MIG-{str(keys['uuid'])[4:12]}-{m.gpu_instance:04x}-4000-8000-{j:012x}"
                lines.append(
                    f"mig {m.gpu_instance} {m.compute_instance} {m.memory_total_bytes} {m.memory_used_bytes} "
                    f"{_clean(uuid, 'mig uuid')}"
                )
        return "\n".join(lines) + "\n"

    def write(self) -> Path:
        """Write the config atomically (the library may be reading it at this moment)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.shared_path is not None and self.shared is None:
            self.shared = SharedState(self.shared_path, len(self.gpus))
        tmp = self.config_path.with_name(f".{self.config_path.name}.{os.getpid()}")
        tmp.write_text(self.render())
        os.replace(tmp, self.config_path)
        return self.config_path

    def library_dir(self) -> Path:
        if self._libdir is None:
            self._libdir = build()
        return self._libdir

    def env(self) -> dict[str, str]:
        """Environment for a process that should see this machine through its own dynamic loader."""
        self.write()
        libdir = str(self.library_dir())
        path = os.environ.get("LD_LIBRARY_PATH", "")
        return {CONFIG_ENV: str(self.config_path), "LD_LIBRARY_PATH": f"{libdir}:{path}" if path else libdir}

    def activate(self) -> FakeNvml:
        """Make this process's pynvml see this machine (the library is process-global)."""
        self.write()
        preload(self.library_dir())
        os.environ[CONFIG_ENV] = str(self.config_path)
        return self

    # --- changing the machine while it runs --------------------------------------------------

    def update(self, index: int, **changes: Any) -> None:
        """Change fields of GPU ``index`` (e.g. ``util_base=0.9``) and rewrite the config."""
        self.gpus[index] = dataclasses.replace(self.gpus[index], **changes)
        self.write()

    def lose(self, index: int, lost: bool = True) -> None:
        """The GPU falls off the bus: every call on it answers NVML_ERROR_GPU_IS_LOST."""
        self.update(index, lost=lost)

    def inject_xid(self, index: int, *xids: int) -> None:
        self.update(index, xids=[*self.gpus[index].xids, *xids])

    def power_limits_mw(self) -> dict[int, int]:
        """Limits set through nvmlDeviceSetPowerManagementLimit (GPU index → mW); defaults omitted."""
        limits: dict[int, int] = {}
        try:
            text = self.state_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return limits
        for line in text.splitlines():
            parts = line.split()
            # The library stops at the first line it cannot read, and so does this.
            if len(parts) != 3 or parts[0] != "limit" or not (parts[1].isdigit() and parts[2].isdigit()):
                break
            limits[int(parts[1])] = int(parts[2])
        return limits

    def set_power_limit_mw(self, index: int, milliwatts: int) -> None:
        """Set a GPU's limit as ``nvidia-smi -pl`` does, within its min/max (the library sees it)."""
        gpu = self.gpus[index]
        p = PROFILES[gpu.profile]
        low = int(gpu.overrides.get("power_limit_min_mw", p.power_limit_min_mw))
        high = int(gpu.overrides.get("power_limit_max_mw", p.power_limit_max_mw))
        if not low <= milliwatts <= high:
            raise ValueError(f"GPU {index}: {milliwatts} mW is outside {low}..{high} mW")
        limits = self.power_limits_mw()
        default = int(gpu.overrides.get("power_limit_default_mw", p.power_limit_default_mw))
        if milliwatts == default:
            limits.pop(index, None)  # as the library writes it: the default is no entry
        else:
            limits[index] = milliwatts
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}")
        tmp.write_text("".join(f"limit {i} {mw}\n" for i, mw in sorted(limits.items())))
        os.replace(tmp, self.state_path)

    def reset_power_limits(self) -> None:
        """Back to the default limits, as after a driver reload."""
        self.state_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Unmap the shared state (the file stays: a library may still map it)."""
        if self.shared is not None:
            self.shared.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m powerplane.lab.fakenvml SPEC.yaml|SPEC.json DIR", file=sys.stderr)
        return 2
    nvml = FakeNvml.from_file(Path(args[0]), Path(args[1]))
    for key, value in nvml.env().items():
        print(f"export {key}={value}")
    return 0


__all__ = [
    "CONFIG_ENV",
    "FEATURES",
    "MAX_GPUS",
    "PROFILES",
    "FakeGpu",
    "FakeNvml",
    "GpuProfile",
    "MigDevice",
    "SharedReading",
    "SharedState",
    "build",
    "call_count",
    "preload",
    "reset_call_count",
]
