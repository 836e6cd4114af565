"""The standard ``process_*`` metrics, read cheaply.

The same names and meanings as prometheus_client's process collector, but values that cannot
change (page size, clock ticks, boot time, start time) are read once, and each scrape costs one
read of ``/proc/self/stat``, one ``getrlimit`` and one directory listing.

    process_cpu_seconds_total 1.27
    process_resident_memory_bytes 4.4e+07
    process_open_fds 12.0
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

from prometheus_client.core import Metric

from .exposition import Family


def _boot_time() -> float:
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return 0.0


class ProcessMetrics:
    """A prometheus_client-style collector of this process's CPU, memory and file descriptors."""

    def __init__(self) -> None:
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page = resource.getpagesize()
        self._start: float | None = None
        try:
            stat = self._stat()
            self._start = _boot_time() + float(stat[19]) / self._ticks
        except OSError:
            pass

    @staticmethod
    def _stat() -> list[bytes]:
        # os.open/os.read: one unbuffered read, no file object (this runs on every scrape).
        fd = os.open("/proc/self/stat", os.O_RDONLY)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        # Fields after the command name, which is in parentheses and may contain spaces.
        return data.rpartition(b")")[2].split()

    def collect(self) -> Iterator[Metric]:
        try:
            stat = self._stat()
        except OSError:
            return
        yield _one("process_virtual_memory_bytes", "Virtual memory size in bytes.", float(stat[20]))
        yield _one(
            "process_resident_memory_bytes", "Resident memory size in bytes.", float(stat[21]) * self._page
        )
        if self._start is not None:
            yield _one(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self._start,
            )
        cpu = (float(stat[11]) + float(stat[12])) / self._ticks
        yield _one("process_cpu_seconds", "Total user and system CPU time spent in seconds.", cpu, "counter")
        try:
            fds = float(len(os.listdir("/proc/self/fd")))
        except OSError:
            pass
        else:
            yield _one("process_open_fds", "Number of open file descriptors.", fds)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        yield _one("process_max_fds", "Maximum number of open file descriptors.", float(soft))


def _one(name: str, documentation: str, value: float, kind: str = "gauge") -> Family:
    # A Family row renders from the exposition's line cache; a prometheus_client family would
    # build a Sample and a label dict for each of these every scrape.
    family = Family(name, documentation, kind)
    family.rows.append(((), value))
    return family
