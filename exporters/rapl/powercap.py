"""Reading a powercap sysfs tree: zones, constraints, counters (used by the exporter and the controller)."""

from __future__ import annotations

import errno
import logging
import os
import re
import time
import weakref
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..runtime import (
    CollectorError,
    NoData,
)

logger = logging.getLogger("powerplane.rapl")

_ZONE_DIR = re.compile(r"^intel-rapl:([0-9a-f]+)(?::([0-9a-f]+))?$")
_SOCKET_SUFFIX = re.compile(r"-\d+$")
#: How long a discovered zone list is trusted before the tree is listed again.
REDISCOVER_SECONDS = 60.0


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

    @cached_property
    def labels(self) -> tuple[str, str]:
        return (self.zone, self.index)


def read_bytes(path: Path | str) -> bytes:
    # os.open/os.read: a sysfs attribute is one small read, and this is the scrape's hot path.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 256)
    finally:
        os.close(fd)


def read_text(path: Path | str) -> str:
    return read_bytes(path).decode("ascii", "replace").strip()


def read_int(path: Path | str, zone: str) -> int:
    return parse_int(read_bytes(path), path, zone)


def parse_int(raw: bytes, path: Path | str, zone: str) -> int:
    try:
        return int(raw)  # int() takes the bytes as they are and ignores the newline
    except ValueError:
        text = raw.decode("ascii", "replace").strip()
        name = os.path.basename(path)
        raise CollectorError(f"{zone}/{name}: not an integer: {text[:32]!r}") from None


def open_attribute(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


#: A held descriptor failing with one of these is stale (its zone went away, the file was
#: replaced on a network or overlay mount): the file is opened afresh and read once more.
_STALE = frozenset({errno.ENODEV, errno.ESTALE, errno.EBADF})


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


class HeldFiles:
    """Attribute files kept open and read with ``pread`` at offset 0: one syscall per value.

    sysfs regenerates an attribute's text on every read from offset 0, so each ``pread`` is a
    fresh reading (never a cached value), without the ``open`` and ``close`` around it that
    made up two thirds of a scrape's syscalls.  A descriptor is dropped when its read fails (the
    next read opens the file again, and a stale one is reopened at once) and all of them when
    the tree is listed again, so a file replaced by a new one (a new inode) is followed.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        # Descriptors are closed with the tree that holds them, whoever drops it.
        self._finalizer = weakref.finalize(self, _close_all, self._fds)

    def read(self, path: str) -> bytes:
        fd = self._fds.get(path)
        if fd is not None:
            try:
                return os.pread(fd, 256, 0)
            except OSError as exc:
                self._drop(path)
                if exc.errno not in _STALE:
                    raise
        fd = open_attribute(path)
        try:
            raw = os.pread(fd, 256, 0)
        except BaseException:
            os.close(fd)
            raise
        self._fds[path] = fd
        return raw

    def _drop(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        _close_all(self._fds)

    def __len__(self) -> int:
        return len(self._fds)


def optional_int(path: Path, zone: str) -> int | None:
    """An optional attribute: absent, empty, unreadable or not a number gives None.

    Firmware leaves some attributes empty (node_exporter's own fixture has an empty
    ``constraint_0_max_power_uw`` on a core subzone) or answers ENODATA for an unset maximum;
    that drops this one value, never the zone and its energy.
    """
    try:
        return read_int(path, zone)
    except (OSError, CollectorError) as exc:
        logger.debug(
            "optional powercap attribute unreadable", extra={"fields": {"path": str(path), "err": str(exc)}}
        )
        return None


class PowercapTree:
    """The zones of one powercap tree, discovered lazily and refreshed now and then."""

    def __init__(self, sysfs: Path) -> None:
        self.root = Path(sysfs) / "class" / "powercap"
        self._zones: tuple[Zone, ...] = ()
        self._discovered_at = -REDISCOVER_SECONDS
        self.errors: tuple[str, ...] = ()
        #: The scrape's attribute reads (the controller reads and writes its own way).
        self.files = HeldFiles()

    def read_int(self, path: str, zone: str) -> int:
        """A zone attribute read afresh through its held descriptor."""
        return parse_int(self.files.read(path), path, zone)

    def zones(self) -> tuple[Zone, ...]:
        if time.monotonic() - self._discovered_at >= REDISCOVER_SECONDS:
            self.discover()
        return self._zones

    def invalidate(self) -> None:
        self._discovered_at = -REDISCOVER_SECONDS

    def discover(self) -> None:
        self.files.close()
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
        name = read_text(path / "name")
        if not name:
            raise CollectorError(f"{dirname}/name: empty")
        has_energy = (path / "energy_uj").exists()
        max_range = optional_int(path / "max_energy_range_uj", dirname) if has_energy else None
        constraints = []
        number = 0
        while (path / f"constraint_{number}_name").exists():
            cname = read_text(path / f"constraint_{number}_name")
            max_power = optional_int(path / f"constraint_{number}_max_power_uw", dirname)
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
