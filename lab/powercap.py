"""A simulated powercap sysfs tree whose RAPL counters advance and whose limits can be written.

The tree is laid out like the kernel's: zone directories under
``devices/virtual/powercap/intel-rapl/`` (subzones nested in their package) and symlinks to
them in ``class/powercap/``.  ``energy_uj`` advances at each zone's simulated power and wraps
at ``max_energy_range_uj``; a package's power follows the ``long_term`` limit written into its
``constraint_N_power_limit_uw`` file (the controller's writes take effect), and its subzones
scale with it.  Counters are rewritten in place, on the same inode, as the kernel regenerates an
attribute, so a reader holding the file open (the RAPL exporter) sees each new value.
``true_joules`` is the unwrapped ground truth that tests compare against.

A ``source`` replaces that built-in demand: it gives each zone's power, and whoever provides it
(the lab's node model, ``powerplane.lab.model``) reads the limits through ``limit_w`` and
advances the counters itself, so the tree reports what that model says the packages draw.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ConstraintSpec:
    name: str
    limit_w: float
    window_s: float
    max_w: float | None = None


@dataclass
class ZoneSpec:
    """One zone.  ``dirname`` is the kernel's directory name, e.g. ``intel-rapl:0:2``."""

    dirname: str
    name: str
    watts: float
    max_energy_range_uj: int | None = 262_143_328_850
    constraints: list[ConstraintSpec] = field(default_factory=list)
    enabled: bool = True
    start_uj: int = 0

    @property
    def parent(self) -> str | None:
        parts = self.dirname.split(":")
        return ":".join(parts[:2]) if len(parts) == 3 else None


def intel_package_constraints(tdp: float) -> list[ConstraintSpec]:
    """PL1 (long_term), PL2 (short_term) and PL4 (peak_power) as a Xeon exposes them."""
    return [
        ConstraintSpec("long_term", tdp, 0.999424, tdp * 1.4),
        ConstraintSpec("short_term", tdp * 1.2, 0.00244, tdp * 1.4),
        ConstraintSpec("peak_power", tdp * 2.0, 0.0, None),
    ]


def intel_server(
    sockets: int = 2,
    package_watts: float = 180.0,
    dram_watts: float = 20.0,
    tdp: float = 250.0,
    max_energy_range_uj: int = 262_143_328_850,
    start_uj: int = 0,
) -> list[ZoneSpec]:
    """An Intel Xeon server: per socket a package with PL1/PL2/PL4, its core and dram subzones."""
    zones: list[ZoneSpec] = []
    for s in range(sockets):
        top = f"intel-rapl:{s:x}"
        zones.append(
            ZoneSpec(
                top,
                f"package-{s}",
                package_watts,
                max_energy_range_uj,
                intel_package_constraints(tdp),
                start_uj=start_uj,
            )
        )
        zones.append(
            ZoneSpec(
                f"{top}:0",
                "core",
                package_watts * 0.7,
                max_energy_range_uj,
                [ConstraintSpec("long_term", 0.0, 0.000976)],
                start_uj=start_uj,
            )
        )
        zones.append(
            ZoneSpec(
                f"{top}:1",
                "dram",
                dram_watts,
                65_532_610_987,
                [ConstraintSpec("long_term", 0.0, 0.000976)],
                start_uj=start_uj,
            )
        )
    return zones


def amd_zen(sockets: int = 2, package_watts: float = 200.0) -> list[ZoneSpec]:
    """An AMD Zen server: energy counters per package and core zone, no constraint files."""
    zones: list[ZoneSpec] = []
    for s in range(sockets):
        zones.append(ZoneSpec(f"intel-rapl:{s:x}", f"package-{s}", package_watts, 65_712_999_613))
        zones.append(ZoneSpec(f"intel-rapl:{s:x}:0", "core", package_watts * 0.8, 65_712_999_613))
    return zones


def laptop_with_psys() -> list[ZoneSpec]:
    """A client part: one package with core/uncore/dram and a platform (psys) zone."""
    return [
        ZoneSpec("intel-rapl:0", "package-0", 15.0, 262_143_328_850, intel_package_constraints(28.0)),
        ZoneSpec(
            "intel-rapl:0:0", "core", 9.0, 262_143_328_850, [ConstraintSpec("long_term", 0.0, 0.000976)]
        ),
        ZoneSpec(
            "intel-rapl:0:1", "uncore", 1.0, 262_143_328_850, [ConstraintSpec("long_term", 0.0, 0.000976)]
        ),
        ZoneSpec(
            "intel-rapl:0:2", "dram", 2.0, 262_143_328_850, [ConstraintSpec("long_term", 0.0, 0.000976)]
        ),
        ZoneSpec("intel-rapl:1", "psys", 25.0, 262_143_328_850, intel_package_constraints(45.0)[:2]),
    ]


def _write(path: Path, text: str) -> None:
    # In place, on the same inode, as the kernel regenerates an attribute: a reader that holds
    # the file open and reads it at offset 0 (the RAPL exporter) sees every new value.  Each
    # state a concurrent reader can see is a whole number: one write at offset 0, never a
    # truncation first (a counter's text keeps its length or grows by a digit, and a reader
    # still at the old length sees the new digits without their newline); when the text gets
    # shorter (a wrap), it is padded with spaces to the old length, which int() and
    # node_exporter ignore, and only then cut to its own length.
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        os.pwrite(fd, data.ljust(size), 0)
        if size > len(data):
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class PowercapLab:
    """A powercap tree under ``root`` (use ``root`` as the exporter's ``--path.sysfs``)."""

    def __init__(
        self,
        root: Path,
        zones: Sequence[ZoneSpec],
        load: Callable[[float], float] | None = None,
        source: Callable[[str], float] | None = None,
    ) -> None:
        self.root = Path(root)
        self.zones = {z.dirname: z for z in zones}
        #: Demand multiplier as a function of time (1.0 = each zone's ``watts``).
        self.load = load or (lambda _t: 1.0)
        #: When set, each zone's power now (dirname → W), instead of ``watts`` times ``load``.
        self.source = source
        self._raw: dict[str, int] = {}
        self._true: dict[str, float] = {}
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- layout ---------------------------------------------------------------------------

    def zone_dir(self, dirname: str) -> Path:
        zone = self.zones[dirname]
        base = self.root / "devices" / "virtual" / "powercap" / "intel-rapl"
        return base / zone.parent / dirname if zone.parent else base / dirname

    def create(self) -> PowercapLab:
        control = self.root / "devices" / "virtual" / "powercap" / "intel-rapl"
        control.mkdir(parents=True, exist_ok=True)
        (control / "enabled").write_text("1\n")
        klass = self.root / "class" / "powercap"
        klass.mkdir(parents=True, exist_ok=True)
        link = klass / "intel-rapl"
        if not link.exists():
            link.symlink_to(os.path.relpath(control, klass))
        for dirname, zone in self.zones.items():
            path = self.zone_dir(dirname)
            path.mkdir(parents=True, exist_ok=True)
            (path / "name").write_text(zone.name + "\n")
            (path / "enabled").write_text(("1" if zone.enabled else "0") + "\n")
            if zone.max_energy_range_uj is not None:
                (path / "max_energy_range_uj").write_text(f"{zone.max_energy_range_uj}\n")
                _write(path / "energy_uj", f"{zone.start_uj}\n")
            self._raw[dirname] = zone.start_uj
            self._true[dirname] = 0.0
            for n, c in enumerate(zone.constraints):
                (path / f"constraint_{n}_name").write_text(c.name + "\n")
                (path / f"constraint_{n}_power_limit_uw").write_text(f"{round(c.limit_w * 1e6)}\n")
                (path / f"constraint_{n}_time_window_us").write_text(f"{round(c.window_s * 1e6)}\n")
                if c.max_w is not None:
                    (path / f"constraint_{n}_max_power_uw").write_text(f"{round(c.max_w * 1e6)}\n")
            zlink = klass / dirname
            if not zlink.exists():
                zlink.symlink_to(os.path.relpath(path, klass))
        self._last = time.monotonic()
        return self

    # --- simulation -----------------------------------------------------------------------

    def limit_w(self, dirname: str, constraint: str) -> float | None:
        """The limit written for ``constraint`` of a zone, or None (disabled, unset or unreadable)."""
        zone = self.zones[dirname]
        path = self.zone_dir(dirname)
        try:
            if (path / "enabled").read_text().strip() == "0":
                return None
        except OSError:
            return None
        for n, c in enumerate(zone.constraints):
            if c.name == constraint:
                try:
                    uw = int((path / f"constraint_{n}_power_limit_uw").read_text())
                except (OSError, ValueError):
                    return None
                return uw / 1e6 if uw > 0 else None
        return None

    def power(self, dirname: str, now: float | None = None) -> float:
        """The zone's simulated power now: demand, limited by its package's long_term limit."""
        if self.source is not None:
            return self.source(dirname)
        zone = self.zones[dirname]
        demand = zone.watts * self.load(time.monotonic() if now is None else now)
        package = zone.parent or dirname
        pkg_zone = self.zones.get(package)
        if pkg_zone is None or zone.name == "dram" or pkg_zone.name.startswith("psys"):
            return demand
        pkg_demand = pkg_zone.watts * self.load(time.monotonic() if now is None else now)
        cap = self.limit_w(package, "long_term")
        if cap is None or pkg_demand <= cap or pkg_demand <= 0:
            return demand
        return demand * cap / pkg_demand

    def advance(self, seconds: float) -> None:
        """Advance every counter by ``seconds`` of simulated time (writes energy_uj)."""
        with self._lock:
            now = time.monotonic()
            for dirname, zone in self.zones.items():
                if zone.max_energy_range_uj is None:
                    continue
                joules = self.power(dirname, now) * seconds
                self._true[dirname] += joules
                raw = self._raw[dirname] + round(joules * 1e6)
                # The hardware counter wraps to zero past its range.
                raw %= zone.max_energy_range_uj + 1
                self._raw[dirname] = raw
                _write(self.zone_dir(dirname) / "energy_uj", f"{raw}\n")

    def tick(self) -> None:
        now = time.monotonic()
        self.advance(now - self._last)
        self._last = now

    def true_joules(self, dirname: str) -> float:
        """Energy the zone consumed since ``create`` (never wraps)."""
        with self._lock:
            return self._true[dirname]

    def raw_uj(self, dirname: str) -> int:
        with self._lock:
            return self._raw[dirname]

    def start(self, interval: float = 0.05) -> PowercapLab:
        """Advance the counters in real time from a background thread."""
        self._stop.clear()
        self._last = time.monotonic()

        def loop() -> None:
            while not self._stop.wait(interval):
                self.tick()

        self._thread = threading.Thread(target=loop, name="powercap-lab", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def diurnal_load(period_s: float = 600.0, depth: float = 0.3) -> Callable[[float], float]:
    """A demand multiplier that swings ±``depth`` around 1 over ``period_s`` (for the demo)."""
    return lambda t: 1.0 + depth * math.sin(2 * math.pi * t / period_s)
