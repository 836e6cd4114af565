"""RAPL collectors: wrap-safe energy counters, and the limits of every constraint by name."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import Metric

from ..runtime import (
    Collector,
    CollectorError,
    Deadline,
    NoData,
    Partial,
    WrappingCounter,
)
from .metrics import ENERGY, MAX_POWER, POWER_LIMIT, TIME_WINDOW, ZONE_ENABLED
from .powercap import Constraint, PowercapTree, Zone

logger = logging.getLogger("powerplane.rapl")

ROOT_ONLY_HINT = (
    "energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694): run the exporter as root "
    "or in a container running as root with the host's /sys mounted; power limits are still exported"
)


@dataclass(frozen=True)
class EnergySnapshot:
    joules: tuple[tuple[Zone, float], ...]


class RaplEnergyCollector(Collector[EnergySnapshot]):
    """Wrap-safe energy counters of every zone that has one."""

    name = "energy"
    waits = False  # sysfs reads

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
                raw = self.tree.read_int(zone.energy_file, zone.dirname)
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
    waits = False  # sysfs reads

    def __init__(self, tree: PowercapTree) -> None:
        self.tree = tree

    async def fetch(self, deadline: Deadline) -> LimitsSnapshot | Partial[LimitsSnapshot]:
        zones = self.tree.zones()
        enabled: list[tuple[Zone, float]] = []
        limits: list[tuple[Zone, Constraint, float, float | None]] = []
        errors = list(self.tree.errors)
        for zone in zones:
            try:
                enabled.append((zone, float(self.tree.read_int(zone.enabled_file, zone.dirname) != 0)))
            except FileNotFoundError:
                pass  # AMD zones may have no enable switch
            except (OSError, CollectorError) as exc:
                errors.append(_cause(zone, "enabled", exc))
            for c in zone.constraints:
                try:
                    limit = self.tree.read_int(c.limit_file, zone.dirname)
                except (OSError, CollectorError) as exc:
                    # ENODATA: a limit the BIOS never set; nothing to export, nothing wrong.
                    if not (isinstance(exc, OSError) and exc.errno == errno.ENODATA):
                        errors.append(_cause(zone, f"constraint_{c.number}_power_limit_uw", exc))
                    continue
                window: float | None = None
                try:
                    window = self.tree.read_int(c.window_file, zone.dirname) / 1e6
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
            label_values = (*zone.labels, c.name)
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
