"""CPU energy and power limits from the Linux powercap sysfs (Intel RAPL and AMD Zen).

Zones are discovered under ``<sysfs>/class/powercap``: packages ``intel-rapl:N`` (N may be
hexadecimal, ``intel-rapl:a``), their subzones ``intel-rapl:N:M`` (core, uncore, dram), psys,
and AMD Zen zones, which have an energy counter but no constraint files.  The ``zone`` label
is the zone's name without its socket suffix and ``index`` is the top-level zone number, so
``sum by (zone)`` adds sockets up.  Limits are labelled by the constraint's *name*
(``long_term``, ``short_term``, ``peak_power``), never by its position.

``energy_uj`` wraps at ``max_energy_range_uj``; the counter exported here adds the energy
across a wrap instead of dropping to zero (Prometheus would count the drop as a reset and lose
up to a whole range).  Since Linux 5.10 ``energy_uj`` is readable by root only; without it the
limits are still exported and the cause is logged once.

    powerplane_rapl_energy_joules_total{index="0",zone="package"} 123456.789
    powerplane_rapl_energy_joules_total{index="0",zone="dram"} 2345.6
    powerplane_rapl_power_limit_watts{constraint="long_term",index="0",zone="package"} 250.0
    powerplane_rapl_time_window_seconds{constraint="long_term",index="0",zone="package"} 0.999424
    powerplane_rapl_max_power_watts{constraint="long_term",index="0",zone="package"} 350.0
    powerplane_rapl_zone_enabled{index="0",zone="package"} 1.0
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import click
from prometheus_client.core import Metric

from .runtime import (
    Collector,
    CollectorError,
    Deadline,
    ExporterServer,
    NoData,
    Partial,
    WrappingCounter,
    run,
)
from .runtime.cli import WebOptions, web_options
from .runtime.metrics import MetricSpec

logger = logging.getLogger("powerplane.rapl")

DEFAULT_PORT = 9871
_ZONE_DIR = re.compile(r"^intel-rapl:([0-9a-f]+)(?::([0-9a-f]+))?$")
_SOCKET_SUFFIX = re.compile(r"-\d+$")
#: How long a discovered zone list is trusted before the tree is listed again.
REDISCOVER_SECONDS = 60.0
ROOT_ONLY_HINT = (
    "energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694): run the exporter as root "
    "or in a container running as root with the host's /sys mounted; power limits are still exported"
)


_ZONE = ("zone", "index")
_CONSTRAINT = ("zone", "index", "constraint")
ENERGY = MetricSpec(
    "powerplane_rapl_energy_joules_total",
    "counter",
    "Energy consumed by the RAPL zone (wrap-safe: a wrap of energy_uj adds energy, it is not a reset).",
    _ZONE,
)
POWER_LIMIT = MetricSpec(
    "powerplane_rapl_power_limit_watts",
    "gauge",
    "Power limit of the RAPL constraint (by constraint name).",
    _CONSTRAINT,
)
TIME_WINDOW = MetricSpec(
    "powerplane_rapl_time_window_seconds", "gauge", "Averaging window of the RAPL constraint.", _CONSTRAINT
)
MAX_POWER = MetricSpec(
    "powerplane_rapl_max_power_watts",
    "gauge",
    "Highest power limit the RAPL constraint accepts.",
    _CONSTRAINT,
)
ZONE_ENABLED = MetricSpec(
    "powerplane_rapl_zone_enabled",
    "gauge",
    "Whether power limiting is enabled for the RAPL zone (1) or not (0).",
    _ZONE,
)
METRICS = (ENERGY, POWER_LIMIT, TIME_WINDOW, MAX_POWER, ZONE_ENABLED)


@dataclass(frozen=True)
class Constraint:
    number: int
    name: str
    max_power_uw: int | None
    #: Paths as strings, built once at discovery: a scrape reads them, it does not build them.
    limit_file: str = ""
    window_file: str = ""


@dataclass(frozen=True)
class Zone:
    path: Path
    dirname: str
    zone: str
    index: str
    max_energy_range_uj: int | None
    has_energy: bool
    constraints: tuple[Constraint, ...]
    energy_file: str = ""
    enabled_file: str = ""

    @property
    def labels(self) -> list[str]:
        return [self.zone, self.index]


def _read_text(path: Path | str) -> str:
    # os.open/os.read: a sysfs attribute is one small read, and this is the scrape's hot path.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 256).decode("ascii", "replace").strip()
    finally:
        os.close(fd)


def _read_int(path: Path | str, zone: str) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        name = os.path.basename(path)
        raise CollectorError(f"{zone}/{name}: not an integer: {text[:32]!r}") from None


class PowercapTree:
    """The zones of one powercap tree, discovered lazily and refreshed now and then."""

    def __init__(self, sysfs: Path) -> None:
        self.root = Path(sysfs) / "class" / "powercap"
        self._zones: tuple[Zone, ...] = ()
        self._discovered_at = -REDISCOVER_SECONDS
        self.errors: tuple[str, ...] = ()

    def zones(self) -> tuple[Zone, ...]:
        if time.monotonic() - self._discovered_at >= REDISCOVER_SECONDS:
            self.discover()
        return self._zones

    def invalidate(self) -> None:
        self._discovered_at = -REDISCOVER_SECONDS

    def discover(self) -> None:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            raise NoData(f"no powercap directory at {self.root}") from None
        zones: list[Zone] = []
        errors: list[str] = []
        seen: set[tuple[str, str]] = set()
        for dirname in names:
            match = _ZONE_DIR.match(dirname)
            if not match:
                continue
            try:
                zone = self._zone(dirname, match)
            except (OSError, CollectorError) as exc:
                errors.append(str(exc) if isinstance(exc, CollectorError) else f"{dirname}: {exc.strerror}")
                continue
            if (zone.zone, zone.index) in seen:
                errors.append(f"{dirname}: duplicate zone {zone.zone} in package {zone.index}, skipped")
                continue
            seen.add((zone.zone, zone.index))
            zones.append(zone)
        if not zones and not errors:
            raise NoData(f"no RAPL zones under {self.root}")
        self._zones = tuple(zones)
        self.errors = tuple(errors)
        self._discovered_at = time.monotonic()

    def _zone(self, dirname: str, match: re.Match[str]) -> Zone:
        path = self.root / dirname
        name = _read_text(path / "name")
        if not name:
            raise CollectorError(f"{dirname}/name: empty")
        has_energy = (path / "energy_uj").exists()
        max_range = _read_int(path / "max_energy_range_uj", dirname) if has_energy else None
        constraints = []
        number = 0
        while (path / f"constraint_{number}_name").exists():
            cname = _read_text(path / f"constraint_{number}_name")
            max_file = path / f"constraint_{number}_max_power_uw"
            max_power = None
            if max_file.exists():
                try:
                    max_power = _read_int(max_file, dirname)
                except OSError as exc:
                    # Some firmware answers ENODATA for an unset maximum: not an error.
                    if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
                        raise
            constraints.append(
                Constraint(
                    number,
                    cname,
                    max_power,
                    str(path / f"constraint_{number}_power_limit_uw"),
                    str(path / f"constraint_{number}_time_window_us"),
                )
            )
            number += 1
        return Zone(
            path=path,
            dirname=dirname,
            zone=_SOCKET_SUFFIX.sub("", name),
            index=str(int(match.group(1), 16)),
            max_energy_range_uj=max_range,
            has_energy=has_energy,
            constraints=tuple(constraints),
            energy_file=str(path / "energy_uj"),
            enabled_file=str(path / "enabled"),
        )


@dataclass(frozen=True)
class EnergySnapshot:
    joules: tuple[tuple[Zone, float], ...]


class RaplEnergyCollector(Collector[EnergySnapshot]):
    """Wrap-safe energy counters of every zone that has one."""

    name = "energy"

    def __init__(self, tree: PowercapTree) -> None:
        self.tree = tree
        self.counter = WrappingCounter()

    async def fetch(self, deadline: Deadline) -> EnergySnapshot | Partial[EnergySnapshot]:
        zones = [z for z in self.tree.zones() if z.has_energy]
        if not zones:
            if self.tree.errors:
                raise CollectorError("; ".join(self.tree.errors))
            raise NoData("no RAPL zone with an energy counter")
        readings: list[tuple[Zone, float]] = []
        errors = list(self.tree.errors)
        denied = 0
        for zone in zones:
            try:
                raw = _read_int(zone.energy_file, zone.dirname)
            except PermissionError:
                denied += 1
                continue
            except FileNotFoundError:
                self.tree.invalidate()
                errors.append(f"{zone.dirname}/energy_uj: vanished")
                continue
            except OSError as exc:
                errors.append(f"{zone.dirname}/energy_uj: {exc.strerror}")
                continue
            except CollectorError as exc:
                errors.append(str(exc))
                continue
            total_uj = self.counter.update(zone.dirname, raw, zone.max_energy_range_uj or 0)
            readings.append((zone, total_uj / 1e6))
        if denied == len(zones):
            raise CollectorError(ROOT_ONLY_HINT)
        if denied:
            errors.append(f"{denied} zone(s): {ROOT_ONLY_HINT}")
        snapshot = EnergySnapshot(tuple(readings))
        return Partial(snapshot, errors) if errors else snapshot

    def render(self, snapshot: EnergySnapshot) -> Iterable[Metric]:
        energy = ENERGY.family()
        for zone, joules in snapshot.joules:
            energy.add_metric(zone.labels, joules)
        yield energy


@dataclass(frozen=True)
class LimitsSnapshot:
    enabled: tuple[tuple[Zone, float], ...]
    # (zone, constraint, power limit W, time window s or None)
    limits: tuple[tuple[Zone, Constraint, float, float | None], ...]


class RaplLimitsCollector(Collector[LimitsSnapshot]):
    """Power limits, time windows and maxima by constraint name; zone enabled state."""

    name = "limits"

    def __init__(self, tree: PowercapTree) -> None:
        self.tree = tree

    async def fetch(self, deadline: Deadline) -> LimitsSnapshot | Partial[LimitsSnapshot]:
        zones = self.tree.zones()
        enabled: list[tuple[Zone, float]] = []
        limits: list[tuple[Zone, Constraint, float, float | None]] = []
        errors = list(self.tree.errors)
        for zone in zones:
            try:
                enabled.append((zone, float(_read_int(zone.enabled_file, zone.dirname) != 0)))
            except FileNotFoundError:
                pass  # AMD zones may have no enable switch
            except (OSError, CollectorError) as exc:
                errors.append(_cause(zone, "enabled", exc))
            for c in zone.constraints:
                try:
                    limit = _read_int(c.limit_file, zone.dirname)
                except (OSError, CollectorError) as exc:
                    # ENODATA: a limit the BIOS never set; nothing to export, nothing wrong.
                    if not (isinstance(exc, OSError) and exc.errno == errno.ENODATA):
                        errors.append(_cause(zone, f"constraint_{c.number}_power_limit_uw", exc))
                    continue
                window: float | None = None
                try:
                    window = _read_int(c.window_file, zone.dirname) / 1e6
                except FileNotFoundError:
                    pass
                except (OSError, CollectorError) as exc:
                    if not (isinstance(exc, OSError) and exc.errno == errno.ENODATA):
                        errors.append(_cause(zone, f"constraint_{c.number}_time_window_us", exc))
                limits.append((zone, c, limit / 1e6, window))
        snapshot = LimitsSnapshot(tuple(enabled), tuple(limits))
        return Partial(snapshot, errors) if errors else snapshot

    def render(self, snapshot: LimitsSnapshot) -> Iterable[Metric]:
        limit, window, maximum, enabled = (
            s.family() for s in (POWER_LIMIT, TIME_WINDOW, MAX_POWER, ZONE_ENABLED)
        )
        for zone, value in snapshot.enabled:
            enabled.add_metric(zone.labels, value)
        for zone, c, watts, seconds in snapshot.limits:
            label_values = [*zone.labels, c.name]
            limit.add_metric(label_values, watts)
            if seconds is not None:
                window.add_metric(label_values, seconds)
            if c.max_power_uw is not None:
                maximum.add_metric(label_values, c.max_power_uw / 1e6)
        return [limit, window, maximum, enabled]


def _cause(zone: Zone, filename: str, exc: Exception) -> str:
    if isinstance(exc, CollectorError):
        return str(exc)
    return f"{zone.dirname}/{filename}: {getattr(exc, 'strerror', None) or exc}"


def make_server(sysfs: Path, **kwargs: object) -> ExporterServer:
    """The RAPL exporter for the powercap tree under ``sysfs``."""
    tree = PowercapTree(sysfs)
    return ExporterServer(
        "rapl",
        collectors=[RaplEnergyCollector(tree), RaplLimitsCollector(tree)],
        description=f"CPU energy and power limits from {tree.root}",
        **kwargs,  # type: ignore[arg-type]
    )


@click.command("rapl")
@click.option(
    "--path.sysfs",
    "sysfs",
    default="/sys",
    show_default=True,
    type=click.Path(file_okay=False),
    help="sysfs mount point (the host's /sys when running in a container).",
)
@web_options(DEFAULT_PORT)
def command(web: WebOptions, sysfs: str) -> None:
    """CPU energy counters and power limits from powercap (RAPL)."""
    run(make_server(Path(sysfs), web_config=web.web_config), web.listen_address)
