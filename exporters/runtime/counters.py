"""Turning device meters into Prometheus counters.

Two kinds of device meter exist.  A *wrapping* meter (RAPL ``energy_uj``) counts up to a known
range and restarts from zero: the energy between two readings across a wrap is
``range - previous + current``, and treating the drop as a counter reset (as Prometheus would)
loses up to a whole range of energy.  A *resettable* meter (a PDU's kWh register that an
operator can clear, an NVML counter after a driver reload) drops to an arbitrary value: the
drop is a reset, and the counter we expose must keep increasing from where it was.

Both classes accumulate per key, so one instance serves every zone, outlet or GPU of an
exporter (or, in the multi-target exporters, every meter of one device: the instance lives in
that device's state and is evicted with it).  The first reading of a key is exposed as-is, so
a fresh exporter agrees with the device (and with node_exporter) until the first wrap or reset.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass
class _State:
    last_raw: float
    total: float


class WrappingCounter:
    """Accumulates readings of meters that wrap at a known range (in the meter's own unit)."""

    def __init__(self) -> None:
        self._state: dict[Hashable, _State] = {}

    def update(self, key: Hashable, raw: float, wrap_range: float) -> float:
        """Record a reading; return the accumulated total (in the meter's unit)."""
        state = self._state.get(key)
        if state is None:
            self._state[key] = _State(raw, raw)
            return raw
        delta = raw - state.last_raw
        if delta < 0:
            # One wrap between readings; several cannot be told apart and are not expected
            # within a scrape interval (a package at 500 W wraps a 32-bit range every ~9 min).
            delta += wrap_range if wrap_range > 0 else 0.0
            if delta < 0:
                delta = raw  # the range was wrong or the device reset: count from zero
        state.last_raw = raw
        state.total += delta
        return state.total


class ResettableCounter:
    """Accumulates readings of meters that may be reset to any lower value."""

    def __init__(self) -> None:
        self._state: dict[Hashable, _State] = {}
        self.resets: dict[Hashable, int] = {}
        #: Unix time of each key's first reading: the total never drops after it (a reader that
        #: sees an earlier one knows the counter ran without a drop since then).
        self.started: dict[Hashable, float] = {}

    def update(self, key: Hashable, raw: float) -> float:
        """Record a reading; return a total that never decreases."""
        state = self._state.get(key)
        if state is None:
            self._state[key] = _State(raw, raw)
            self.started[key] = time.time()
            return raw
        if raw < state.last_raw:
            # A reset: the meter restarted from zero and has counted ``raw`` since.
            self.resets[key] = self.resets.get(key, 0) + 1
            state.total += raw
        else:
            state.total += raw - state.last_raw
        state.last_raw = raw
        return state.total
