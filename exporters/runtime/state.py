"""Per-target state with a bound: what the process remembers about a target expires when unused.

A multi-target exporter remembers things per target between probes: sessions, discovered paths,
counters that must stay monotonic, detected modules, the failure last logged.  Every distinct
allowed target adds entries, so without a bound a scan of an allowed /16 grows the process for
good.  ``ExpiringMap`` is the one mechanism every such structure uses: an entry unused for
``ttl`` seconds (several scrape intervals; each exporter's ``state_ttl``) is evicted, and the
owner's ``on_evict`` releases what it holds (the Redfish client logs out of the session).

The map is kept in order of last use, so an eviction pass looks at the oldest entries only and
stops at the first live one: every access runs one, at a cost proportional to what it evicts.
The clock is injectable, so tests move time instead of waiting for it.

Evicting is not enough to give the memory back: a dict keeps the table of its largest size after
its entries are deleted, so a map that shrank to a quarter of its peak is rebuilt; and freed
objects stay in the C library's free lists, so once many entries were evicted anywhere in the
process, ``release_if_due`` drops the URL libraries' caches, collects garbage and trims the heap
(glibc's ``malloc_trim``), at most once per ``RELEASE_INTERVAL``.  CPython's own allocator gives
back a 1 MiB arena only when every block in it is free, which a few long-lived objects made
during a scan prevent: the multi-target exporters' units run on glibc's (``PYTHONMALLOC=malloc``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import platform
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

import yarl

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]

#: Seconds a target's state (sessions, counters, detected modules, failure logs) outlives its last
#: probe: ten scrapes at a one-minute interval.
DEFAULT_STATE_TTL = 600.0


#: Once this many entries were evicted (by every map of the process), the memory is handed back.
RELEASE_AFTER = 1000
#: Seconds between two releases at least: a full collection and a trim cost a few milliseconds.
RELEASE_INTERVAL = 10.0
#: A map is rebuilt when it holds under a quarter of its peak, if the peak was at least this.
REBUILD_FROM = 1024


class _Releases:
    """Entries evicted since the last release, process-wide, and when that release was."""

    pending = 0
    last = float("-inf")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    # Only glibc has it; musl and other C libraries give memory back on their own terms.
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    library = ctypes.CDLL(name) if name else None
    trim: Callable[[int], int] | None = getattr(library, "malloc_trim", None)
    return trim


def _clear_url_caches() -> None:
    yarl.cache_clear()
    # cache_clear covers the hosts; yarl and aiohttp memoise more (the last 128 URLs parsed,
    # each with its parsed query: every probe's target): every function cache of their modules.
    for name, module in list(sys.modules.items()):
        if module is not None and name.partition(".")[0] in ("yarl", "aiohttp"):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)) and hasattr(value, "cache_info"):
                    value.cache_clear()


def release_memory() -> None:
    """Drop yarl's caches, collect garbage and return freed heap to the operating system
    (glibc's ``malloc_trim``).

    Freed Python objects go back to the interpreter's and the C library's free lists, not to
    the system: without this, the RSS a scan of many targets raised stays raised long after
    their state was evicted.  yarl caches the hosts and URLs it parsed last (every target's and
    every probe's URL passes through it): those entries, made during the scan, would each keep
    the small-object arena they sit in from being returned, although their targets are gone."""
    _clear_url_caches()
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def release_if_due(clock: Clock = time.monotonic) -> bool:
    """``release_memory`` if ``RELEASE_AFTER`` entries were evicted since the last release and
    ``RELEASE_INTERVAL`` has passed; whether it ran."""
    now = clock()
    if _Releases.pending < RELEASE_AFTER or now - _Releases.last < RELEASE_INTERVAL:
        return False
    _Releases.pending, _Releases.last = 0, now
    release_memory()
    return True


class ExpiringMap(Generic[K, V]):
    """A mapping whose entries are evicted ``ttl`` seconds after their last use."""

    def __init__(
        self,
        ttl: float,
        *,
        clock: Clock = time.monotonic,
        on_evict: Callable[[K, V], object] | None = None,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.on_evict = on_evict
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        #: The most entries held since the map was last (re)built.
        self._peak = 0
        #: Entries evicted so far (for the exporter's own metrics and for tests).
        self.evicted = 0

    def get(self, key: K, factory: Callable[[], V]) -> V:
        """The entry for ``key`` (made by ``factory`` when absent), marked as used now."""
        now = self.clock()
        self._expire(now)
        found = self._entries.get(key)
        value = factory() if found is None else found[0]
        self._entries[key] = (value, now)
        self._entries.move_to_end(key)
        self._peak = max(self._peak, len(self._entries))
        return value

    def peek(self, key: K) -> V | None:
        """The entry for ``key`` without marking it used (None when absent or expired)."""
        self._expire(self.clock())
        found = self._entries.get(key)
        return None if found is None else found[0]

    def touch(self, key: K) -> None:
        """Mark ``key`` used now, if present."""
        found = self._entries.get(key)
        if found is not None:
            self._entries[key] = (found[0], self.clock())
            self._entries.move_to_end(key)

    def discard(self, key: K) -> V | None:
        """Remove ``key`` without calling ``on_evict`` (the owner releases it itself)."""
        found = self._entries.pop(key, None)
        return None if found is None else found[0]

    def sweep(self) -> int:
        """Evict every expired entry now; the number evicted."""
        return self._expire(self.clock())

    def drain(self) -> list[tuple[K, V]]:
        """Remove and return every entry, without ``on_evict`` (shutdown releases them all)."""
        items = [(k, v) for k, (v, _t) in self._entries.items()]
        self._entries, self._peak = OrderedDict(), 0
        return items

    def _expire(self, now: float) -> int:
        count = 0
        while self._entries:
            key, (value, used) = next(iter(self._entries.items()))
            if now - used < self.ttl:
                break
            del self._entries[key]
            count += 1
            if self.on_evict is not None:
                self.on_evict(key, value)
        self.evicted += count
        _Releases.pending += count
        if self._peak >= REBUILD_FROM and len(self._entries) * 4 < self._peak:
            # Deleting keeps the table sized for the peak: a copy is sized for what is left.
            self._entries = OrderedDict(self._entries)
            self._peak = len(self._entries)
        return count

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def values(self) -> Iterator[V]:
        return (v for v, _t in list(self._entries.values()))

    def items(self) -> Iterator[tuple[K, V]]:
        return ((k, v) for k, (v, _t) in list(self._entries.items()))
