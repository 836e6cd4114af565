"""Device meters as Prometheus counters: wrap-safe and reset-safe."""

from __future__ import annotations

import time

from powerplane.exporters.runtime import ResettableCounter, WrappingCounter


def test_wrapping_counter_adds_energy_across_a_wrap() -> None:
    c = WrappingCounter()
    assert c.update("z", 900, 1000) == 900
    assert c.update("z", 950, 1000) == 950
    assert c.update("z", 50, 1000) == 1050  # wrapped: 50 to the end, 50 after
    assert c.update("z", 60, 1000) == 1060


def test_resettable_counter_never_decreases() -> None:
    c = ResettableCounter()
    assert c.update("o", 100.0) == 100.0
    assert c.update("o", 130.0) == 130.0
    assert c.update("o", 5.0) == 135.0  # reset to 0 and counted 5 since
    assert c.update("o", 10.0) == 140.0
    assert c.resets == {"o": 1}


def test_resettable_counter_keeps_the_time_it_started_through_a_reset() -> None:
    before = time.time()
    c = ResettableCounter()
    c.update("o", 100.0)
    started = c.started["o"]
    assert before <= started <= time.time()
    c.update("o", 5.0)  # a meter reset: the total goes on, so the start stands
    c.update("p", 1.0)
    assert c.started["o"] == started and c.started["p"] >= started
