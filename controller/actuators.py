"""Actuators: write power caps to RAPL (powercap sysfs) and to NVIDIA GPUs (NVML), read them back.

Safety rules every actuator follows:

* The original limits are recorded in a host state file *before* the first write, and
  restored on exit, on SIGTERM and at the next start after a crash (the file survives the
  crash; its originals are the true ones, so a restart never records capped values as
  originals).
* A limit is never raised: the highest value written is the limit in force before powerplane
  first touched the device (the recorded original).  A cap above it is clamped to it, and the
  result says so (``clamped``, with the reason in its message).
* A value outside the hardware's range, or not a finite number, is refused, not written.
* RAPL caps are written by constraint *name*: ``long_term`` (PL1) and, when asked,
  ``short_term`` (PL2); ``peak_power`` (PL4) and every other constraint are never touched.
* A domain that cannot be capped (AMD zones without constraints, a BIOS-locked limit answering
  EACCES/EPERM, ENODATA, no NVML permission) is reported as ``unsupported`` and not retried
  until the actuator is reset (policy change or restart).
* Every write is read back; the read-back value is what is reported as applied.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from powerplane.exporters.rapl.powercap import PowercapTree, Zone
from powerplane.exporters.runtime import CollectorError, NoData, log

from .policy import DomainCap, DomainLimits, clamp_note, gpu_limits, rapl_limits

logger = logging.getLogger("powerplane.controller")

#: Errors meaning "this limit cannot be written here", reported once and not retried.
PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENODATA, errno.EOPNOTSUPP, errno.EROFS})
#: Read-back tolerance: firmware rounds RAPL limits to its power unit (1/8 W on Intel).
READBACK_TOLERANCE_W = 0.5
_PACKAGE = re.compile(r"^intel-rapl:[0-9a-f]+$")
_DOMAIN = re.compile(r"^(?P<zone>[a-z_]+)-(?P<index>[0-9]+)$")

Status = Literal["applied", "released", "unchanged", "dry_run", "refused", "unsupported", "failed"]


def join_labels(domain: str) -> dict[str, str]:
    """The exporters' labels of a domain: RAPL ``zone``/``index``, the GPU exporter's ``gpu``.

    ``package-10`` is RAPL zone ``package`` index ``10`` (directory ``intel-rapl:a``), as in
    ``powerplane_rapl_power_limit_watts``; ``gpu-3`` is NVML index 3, the ``gpu`` label of the
    GPU exporter.  A dashboard joins cap and measured power on them without label_replace.
    """
    match = _DOMAIN.match(domain)
    if match is None:
        return {}
    if match["zone"] == "gpu":
        return {"gpu": match["index"]}
    return {"zone": match["zone"], "index": match["index"]}


@dataclass(frozen=True)
class Result:
    """What happened to one domain in one reconcile."""

    domain: str
    kind: Literal["cpu", "gpu"]
    status: Status
    desired_watts: float | None
    applied_watts: float | None  # read back
    message: str = ""
    enforced_watts: float | None = None  # GPUs: what NVML enforces (may be lower than the limit)
    #: The cap asked for was outside the domain's allowed range and was moved into it.
    clamped: bool = False
    short_term_desired_watts: float | None = None  # RAPL short_term (PL2), when written
    short_term_applied_watts: float | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("applied", "released", "unchanged", "dry_run")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "domain": self.domain,
            "kind": self.kind,
            "status": self.status,
            "desired_watts": self.desired_watts,
            "applied_watts": self.applied_watts,
        }
        if self.enforced_watts is not None:
            out["enforced_watts"] = self.enforced_watts
        if self.short_term_desired_watts is not None:
            out["short_term_desired_watts"] = self.short_term_desired_watts
            out["short_term_applied_watts"] = self.short_term_applied_watts
        if self.clamped:
            out["clamped"] = True
        if self.message:
            out["message"] = self.message
        return out


class HostState:
    """The original limits, kept on the host so that a crash cannot lose them.

    Layout: ``{"version": 1, "rapl": {zone dir: {constraint name: µW}}, "gpu": {uuid: mW}}``.
    Written atomically (temp file, fsync, rename) before any limit is changed.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rapl: dict[str, dict[str, int]] = {}
        self.gpu: dict[str, int] = {}

    def load(self) -> bool:
        """Read a state file left by an earlier run; True when there was one."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            log(logger, logging.ERROR, "unreadable controller state file, ignored", path=self.path, error=exc)
            return False
        if not isinstance(doc, dict) or doc.get("version") != 1:
            log(logger, logging.ERROR, "controller state file has an unknown format, ignored", path=self.path)
            return False
        rapl, gpu = doc.get("rapl", {}), doc.get("gpu", {})
        if isinstance(rapl, dict):
            self.rapl = {
                str(z): {str(c): int(v) for c, v in cs.items() if isinstance(v, int)}
                for z, cs in rapl.items()
                if isinstance(cs, dict)
            }
        if isinstance(gpu, dict):
            self.gpu = {str(k): int(v) for k, v in gpu.items() if isinstance(v, int)}
        return True

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "rapl": self.rapl, "gpu": self.gpu}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.rapl, self.gpu = {}, {}

    @property
    def empty(self) -> bool:
        return not self.rapl and not self.gpu


def _finite_or_none(watts: float | None) -> float | None:
    return watts if watts is not None and math.isfinite(watts) else None


def _oserror(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# --- RAPL -----------------------------------------------------------------------------------


@dataclass
class RaplPackage:
    zone: Zone
    domain: str
    long_term: int | None  # constraint number
    short_term: int | None
    max_uw: int | None
    short_max_uw: int | None


class RaplActuator:
    """Caps CPU packages through ``<sysfs>/class/powercap``."""

    kind: Literal["cpu"] = "cpu"

    def __init__(self, sysfs: Path, state: HostState) -> None:
        self.tree = PowercapTree(Path(sysfs))
        self.state = state
        self.unsupported: dict[str, str] = {}
        #: Why there is no package at all (no powercap tree), for the reconcile's report.
        self.absent = ""
        self._packages: dict[str, RaplPackage] | None = None

    def reset(self) -> None:
        """Forget which domains failed permanently (a policy change retries them once)."""
        self.unsupported.clear()
        self._packages = None
        self.tree.invalidate()

    def packages(self) -> dict[str, RaplPackage]:
        if self._packages is not None:
            return self._packages
        packages: dict[str, RaplPackage] = {}
        try:
            self.tree.discover()
            zones = self.tree.zones()
        except NoData as exc:
            zones = ()
            self.absent = str(exc)
        for zone in zones:
            if not _PACKAGE.match(zone.dirname) or not zone.zone.startswith("package"):
                continue
            domain = f"package-{zone.index}"
            by_name = {c.name: c for c in zone.constraints}
            lt, st = by_name.get("long_term"), by_name.get("short_term")
            if lt is None:
                # AMD Zen exposes energy only: nothing to cap, say so once.
                self.unsupported.setdefault(domain, "no long_term constraint (e.g. AMD Zen): cannot cap")
            packages[domain] = RaplPackage(
                zone,
                domain,
                lt.number if lt else None,
                st.number if st else None,
                lt.max_power_uw if lt else None,
                st.max_power_uw if st else None,
            )
        if zones and not packages:
            self.absent = f"no RAPL package zone under {self.tree.root}"
        self._packages = packages
        return packages

    def _read_uw(self, path: Path) -> int:
        with open(path, "rb") as f:
            text = f.read(64).decode("ascii", "replace").strip()
        try:
            return int(text)
        except ValueError:
            raise CollectorError(f"{path.parent.name}/{path.name}: not an integer: {text[:24]!r}") from None

    def _write_uw(self, path: Path, value: int) -> None:
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{value}\n")

    def _limit_path(self, pkg: RaplPackage, number: int) -> Path:
        return pkg.zone.path / f"constraint_{number}_power_limit_uw"

    def _original(self, pkg: RaplPackage, name: str, number: int | None) -> int | None:
        """The constraint's limit before powerplane first wrote it: recorded, else the current one."""
        recorded = self.state.rapl.get(pkg.zone.dirname, {}).get(name)
        if recorded is not None or number is None:
            return recorded
        return self._read_uw(self._limit_path(pkg, number))

    def limits(self) -> list[DomainLimits]:
        """The cappable packages and their ranges (highest: the original limit, within the maximum)."""
        out = []
        for domain, pkg in self.packages().items():
            if pkg.long_term is None or domain in self.unsupported:
                continue
            try:
                original = self._original(pkg, "long_term", pkg.long_term)
            except (OSError, CollectorError) as exc:
                self._mark(domain, exc)
                continue
            assert original is not None
            hardware = pkg.max_uw or original
            if hardware <= 0 or original <= 0:
                self.unsupported[domain] = "no usable maximum power (max_power_uw and the limit are 0)"
                continue
            out.append(rapl_limits(domain, hardware / 1e6, original / 1e6))
        return out

    def _mark(self, domain: str, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS:
            self.unsupported[domain] = f"limit not writable ({_oserror(exc)}): BIOS-locked or no privilege"
        log(
            logger,
            logging.WARNING,
            "RAPL limit unavailable",
            domain=domain,
            error=_oserror(exc) if isinstance(exc, OSError) else exc,
        )

    def _record_originals(self, pkgs: Iterable[RaplPackage]) -> None:
        changed = False
        for pkg in pkgs:
            saved = self.state.rapl.setdefault(pkg.zone.dirname, {})
            for name, number in (("long_term", pkg.long_term), ("short_term", pkg.short_term)):
                if number is None or name in saved:
                    continue
                with contextlib.suppress(OSError, CollectorError):
                    saved[name] = self._read_uw(self._limit_path(pkg, number))
                    changed = True
        if changed:
            self.state.save()

    def apply(
        self, caps: Iterable[DomainCap], dry_run: bool = False, short_term_ratio: float | None = None
    ) -> list[Result]:
        """Write the CPU caps (and, with ``short_term_ratio``, PL2 = ratio x PL1); read them back."""
        packages = self.packages()
        todo = [c for c in caps if c.kind == "cpu"]
        if not dry_run:
            self._record_originals(
                packages[c.domain] for c in todo if c.domain in packages and c.watts is not None
            )
        return [self._apply_one(packages.get(c.domain), c, dry_run, short_term_ratio) for c in todo]

    def _targets(
        self, pkg: RaplPackage, cap: DomainCap, ratio: float | None
    ) -> tuple[int, int | None, str] | str:
        """(long_term µW, short_term µW or None, clamp note), or why the cap is refused."""
        assert pkg.long_term is not None and cap.watts is not None
        if not math.isfinite(cap.watts) or cap.watts <= 0:
            return f"{cap.watts} W is not a positive finite number"
        original = self._original(pkg, "long_term", pkg.long_term)
        hardware = pkg.max_uw or original
        if hardware is not None and cap.watts * 1e6 > hardware:
            return f"{cap.watts} W is outside 0..{hardware / 1e6} W"
        target, note = round(cap.watts * 1e6), cap.note
        if original is not None and target > original:
            target, note = original, clamp_note(cap.watts, original / 1e6, "the original limit")
        short = None
        if pkg.short_term is None:
            pass
        elif ratio is not None:
            short = round(target * ratio)
            tops = [t for t in (pkg.short_max_uw, self._original(pkg, "short_term", pkg.short_term)) if t]
            short = min([short, *tops])
        else:
            # short_term no longer asked for: put back its original if an earlier cap changed it.
            recorded = self.state.rapl.get(pkg.zone.dirname, {}).get("short_term")
            if recorded is not None and self._read_uw(self._limit_path(pkg, pkg.short_term)) != recorded:
                short = recorded
        return target, short, note

    def _apply_one(
        self, pkg: RaplPackage | None, cap: DomainCap, dry_run: bool, ratio: float | None
    ) -> Result:
        # What is reported as desired is what gets written (after the domain's range).
        desired = _finite_or_none(cap.watts)

        def result(status: Status, applied: float | None = None, message: str = "", **extra: Any) -> Result:
            return Result(cap.domain, "cpu", status, desired, applied, message, **extra)

        if pkg is None:
            return result("failed", message="no such package")
        if cap.domain in self.unsupported:
            return result("unsupported", message=self.unsupported[cap.domain])
        assert pkg.long_term is not None
        original = self.state.rapl.get(pkg.zone.dirname, {})
        note = ""
        if cap.watts is None:
            target = original.get("long_term")
            if target is None:  # never written by us: the hardware default is in place
                return result("unchanged", self._readback(pkg, pkg.long_term), "no cap")
            short = original.get("short_term")
        else:
            try:
                planned = self._targets(pkg, cap, ratio)
            except (OSError, CollectorError) as exc:
                return result(
                    "failed", message=str(exc) if isinstance(exc, CollectorError) else _oserror(exc)
                )
            if isinstance(planned, str):
                return result("refused", message=planned)
            target, short, note = planned
            desired = target / 1e6
        clamp: dict[str, Any] = {"clamped": bool(note)}
        desired_short = None if short is None or cap.watts is None or ratio is None else short / 1e6
        if dry_run:
            return result(
                "dry_run", None, "; ".join(filter(None, (f"would write {target / 1e6:g} W", note))), **clamp
            )
        try:
            self._write_uw(self._limit_path(pkg, pkg.long_term), target)
            if short is not None and pkg.short_term is not None:
                self._write_uw(self._limit_path(pkg, pkg.short_term), short)
            applied = self._readback(pkg, pkg.long_term)
        except OSError as exc:
            self._mark(cap.domain, exc)
            status: Status = "unsupported" if cap.domain in self.unsupported else "failed"
            return result(status, message=self.unsupported.get(cap.domain) or _oserror(exc))
        short_applied = None
        if desired_short is not None and pkg.short_term is not None:
            short_applied = self._readback(pkg, pkg.short_term)
            clamp |= {"short_term_desired_watts": desired_short, "short_term_applied_watts": short_applied}
        if applied is None or abs(applied - target / 1e6) > READBACK_TOLERANCE_W:
            return result("failed", applied, f"read back {applied} W after writing {target / 1e6} W", **clamp)
        return result("released" if cap.watts is None else "applied", applied, note, **clamp)

    def _readback(self, pkg: RaplPackage, number: int) -> float | None:
        try:
            return self._read_uw(self._limit_path(pkg, number)) / 1e6
        except (OSError, CollectorError):
            return None

    def restore(self) -> list[str]:
        """Write every recorded original back; returns the errors (the state is kept if any)."""
        errors = []
        base = self.tree.root
        for dirname, constraints in list(self.state.rapl.items()):
            zone_dir = base / dirname
            numbers: dict[str, int] = {}
            n = 0
            while (zone_dir / f"constraint_{n}_name").exists():
                with contextlib.suppress(OSError):
                    numbers[(zone_dir / f"constraint_{n}_name").read_text().strip()] = n
                n += 1
            for name, value in constraints.items():
                if name not in numbers:
                    errors.append(f"{dirname}: constraint {name} vanished")
                    continue
                path = zone_dir / f"constraint_{numbers[name]}_power_limit_uw"
                try:
                    # A limit we never managed to change (locked) needs no write.
                    with contextlib.suppress(CollectorError):
                        if self._read_uw(path) == value:
                            continue
                    self._write_uw(path, value)
                except OSError as exc:
                    errors.append(f"{dirname}/{name}: {_oserror(exc)}")
        if not errors:
            self.state.rapl = {}
        return errors


# --- NVML -----------------------------------------------------------------------------------


def load_nvml() -> Any | None:
    """``pynvml`` initialised, or None when there is no NVML (no GPU driver here)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        log(logger, logging.DEBUG, "NVML not available", error=exc)
        return None
    return pynvml


@dataclass
class Gpu:
    index: int
    uuid: str
    handle: Any
    min_mw: int
    max_mw: int
    default_mw: int | None


@dataclass
class NvmlActuator:
    """Caps NVIDIA GPUs through NVML (``nvmlDeviceSetPowerManagementLimit``, needs root)."""

    nvml: Any
    state: HostState
    unsupported: dict[str, str] = field(default_factory=dict)
    kind: Literal["gpu"] = "gpu"
    _gpus: dict[str, Gpu] | None = None

    def reset(self) -> None:
        self.unsupported.clear()
        self._gpus = None

    def _error_name(self, exc: Exception) -> str:
        return type(exc).__name__.removeprefix("NVMLError_") or str(exc)

    def _permanent(self, exc: Exception) -> bool:
        nv = self.nvml
        codes = {getattr(nv, n, None) for n in ("NVML_ERROR_NO_PERMISSION", "NVML_ERROR_NOT_SUPPORTED")}
        return getattr(exc, "value", None) in codes

    def gpus(self) -> dict[str, Gpu]:
        if self._gpus is not None:
            return self._gpus
        nv = self.nvml
        out: dict[str, Gpu] = {}
        for i in range(nv.nvmlDeviceGetCount()):
            domain = f"gpu-{i}"
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                uuid = nv.nvmlDeviceGetUUID(handle)
                uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
                low, high = nv.nvmlDeviceGetPowerManagementLimitConstraints(handle)
                try:
                    default = int(nv.nvmlDeviceGetPowerManagementDefaultLimit(handle))
                except nv.NVMLError:
                    default = None
            except nv.NVMLError as exc:
                self.unsupported[domain] = f"power limits unavailable: {self._error_name(exc)}"
                continue
            out[domain] = Gpu(i, uuid, handle, int(low), int(high), default)
        self._gpus = out
        return out

    def _original_mw(self, gpu: Gpu) -> int | None:
        """The GPU's limit before powerplane first wrote it: recorded, else the current one."""
        return self.state.gpu.get(gpu.uuid) or self._current_mw(gpu)

    def _current_mw(self, gpu: Gpu) -> int | None:
        try:
            return int(self.nvml.nvmlDeviceGetPowerManagementLimit(gpu.handle))
        except self.nvml.NVMLError:
            return None

    def limits(self) -> list[DomainLimits]:
        out = []
        for domain, gpu in self.gpus().items():
            if domain in self.unsupported:
                continue
            original = self._original_mw(gpu)
            watts = None if original is None else original / 1e3
            out.append(gpu_limits(domain, gpu.min_mw / 1e3, gpu.max_mw / 1e3, watts))
        return out

    def apply(self, caps: Iterable[DomainCap], dry_run: bool = False) -> list[Result]:
        gpus = self.gpus()
        todo = [c for c in caps if c.kind == "gpu"]
        if not dry_run:
            changed = False
            for cap in todo:
                gpu = gpus.get(cap.domain)
                if gpu is None or cap.watts is None or gpu.uuid in self.state.gpu:
                    continue
                current = self._current_mw(gpu)
                if current is not None:
                    self.state.gpu[gpu.uuid] = current
                    changed = True
            if changed:
                self.state.save()
        return [self._apply_one(gpus.get(c.domain), c, dry_run) for c in todo]

    def _target(self, gpu: Gpu, watts: float) -> tuple[int, str] | str:
        """(limit in mW, clamp note), or why the cap is refused."""
        if not math.isfinite(watts) or not gpu.min_mw <= watts * 1e3 <= gpu.max_mw:
            return f"{watts} W is outside {gpu.min_mw / 1e3}..{gpu.max_mw / 1e3} W"
        target, original = round(watts * 1e3), self._original_mw(gpu)
        if original is not None and target > original:
            return original, clamp_note(watts, original / 1e3, "the original limit")
        return target, ""

    def _apply_one(self, gpu: Gpu | None, cap: DomainCap, dry_run: bool) -> Result:
        nv = self.nvml
        note = ""
        desired = _finite_or_none(cap.watts)

        def result(
            status: Status, applied: float | None = None, message: str = "", enforced: float | None = None
        ) -> Result:
            return Result(cap.domain, "gpu", status, desired, applied, message, enforced, bool(note))

        if gpu is None:
            return result(
                "unsupported" if cap.domain in self.unsupported else "failed",
                message=self.unsupported.get(cap.domain, "no such GPU"),
            )
        if cap.domain in self.unsupported:
            return result("unsupported", message=self.unsupported[cap.domain])
        if cap.watts is None:
            target = self.state.gpu.get(gpu.uuid, gpu.default_mw)
            if gpu.uuid not in self.state.gpu:
                current = self._current_mw(gpu)
                return result("unchanged", None if current is None else current / 1e3, "no cap")
        else:
            planned = self._target(gpu, cap.watts)
            if isinstance(planned, str):
                return result("refused", message=planned)
            target, note = planned
            note, desired = note or cap.note, target / 1e3
        assert target is not None
        if dry_run:
            return result("dry_run", None, "; ".join(filter(None, (f"would write {target / 1e3:g} W", note))))
        try:
            nv.nvmlDeviceSetPowerManagementLimit(gpu.handle, target)
            applied = int(nv.nvmlDeviceGetPowerManagementLimit(gpu.handle)) / 1e3
            enforced = int(nv.nvmlDeviceGetEnforcedPowerLimit(gpu.handle)) / 1e3
        except nv.NVMLError as exc:
            name = self._error_name(exc)
            if self._permanent(exc):
                self.unsupported[cap.domain] = f"cannot set the power limit: {name} (needs root)"
                log(logger, logging.WARNING, "GPU power limit not writable", domain=cap.domain, error=name)
                return result("unsupported", message=self.unsupported[cap.domain])
            return result("failed", message=name)
        if abs(applied * 1e3 - target) > 1000:
            return result(
                "failed", applied, f"read back {applied} W after writing {target / 1e3} W", enforced
            )
        return result("released" if cap.watts is None else "applied", applied, note, enforced)

    def restore(self) -> list[str]:
        errors = []
        by_uuid = {g.uuid: g for g in self.gpus().values()}
        for uuid, mw in list(self.state.gpu.items()):
            gpu = by_uuid.get(uuid)
            if gpu is None:
                errors.append(f"GPU {uuid}: not found")
                continue
            try:
                # A GPU we never managed to change (no permission) needs no write.
                if int(self.nvml.nvmlDeviceGetPowerManagementLimit(gpu.handle)) != mw:
                    self.nvml.nvmlDeviceSetPowerManagementLimit(gpu.handle, mw)
            except self.nvml.NVMLError as exc:
                errors.append(f"GPU {uuid}: {self._error_name(exc)}")
        if not errors:
            self.state.gpu = {}
        return errors


# --- the node's actuators together --------------------------------------------------------


class Actuators:
    """RAPL and (when present) NVML behind one host state file."""

    def __init__(self, sysfs: Path, state_file: Path, nvml: Any | None = None) -> None:
        self.state = HostState(state_file)
        self.rapl = RaplActuator(sysfs, self.state)
        self.gpu = NvmlActuator(nvml, self.state) if nvml is not None else None

    def recover(self) -> list[str]:
        """After a crash: put back the originals an earlier run recorded.  Call once at start."""
        if not self.state.load() or self.state.empty:
            return []
        log(logger, logging.WARNING, "restoring power limits left by an earlier run", path=self.state.path)
        return self.restore()

    def limits(self) -> list[DomainLimits]:
        return self.rapl.limits() + (self.gpu.limits() if self.gpu else [])

    def domains(self) -> dict[str, str]:
        """Every domain this node has, including unsupported ones, with its kind."""
        out = {d: "cpu" for d in self.rapl.packages()}
        if self.gpu is not None:
            out.update({d: "gpu" for d in self.gpu.gpus()})
            out.update({d: "gpu" for d in self.gpu.unsupported})
        return out

    def absent(self) -> list[str]:
        """Why this node has nothing of a kind to cap (no powercap tree, no NVML), for the report."""
        reasons = []
        if not self.rapl.packages():
            reasons.append(self.rapl.absent or "no RAPL package zone")
        if self.gpu is None:
            reasons.append("no GPUs: NVML is not available here (or --no-gpu)")
        elif not self.gpu.gpus() and not self.gpu.unsupported:
            reasons.append("no GPUs: NVML reports none")
        return reasons

    def apply(
        self, caps: Iterable[DomainCap], dry_run: bool = False, short_term_ratio: float | None = None
    ) -> list[Result]:
        """Write the caps; ``short_term_ratio`` also sets RAPL short_term (PL2) to ratio x PL1."""
        caps = list(caps)
        results = self.rapl.apply(caps, dry_run, short_term_ratio)
        if self.gpu is not None:
            results += self.gpu.apply(caps, dry_run)
        known = {r.domain for r in results}
        results += [
            Result(c.domain, c.kind, "failed", c.watts, None, "no such domain")
            for c in caps
            if c.domain not in known
        ]
        return results

    def unsupported(self) -> Mapping[str, str]:
        return {**self.rapl.unsupported, **(self.gpu.unsupported if self.gpu else {})}

    def reset(self) -> None:
        self.rapl.reset()
        if self.gpu is not None:
            self.gpu.reset()

    def restore(self) -> list[str]:
        """Restore every original limit and drop the state file when all went back."""
        errors = self.rapl.restore() + (self.gpu.restore() if self.gpu else [])
        if self.gpu is None and self.state.gpu:
            errors.append("GPU limits recorded but NVML is not available to restore them")
        if errors:
            self.state.save()
            log(logger, logging.ERROR, "could not restore every power limit", errors="; ".join(errors))
        else:
            self.state.remove()
        return errors
