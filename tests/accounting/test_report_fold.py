"""The report's fold on its own: windows, chunks, hostile answers (NaN, Inf, stray times, duplicates)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.accounting.prometheus import Series
from powerplane.accounting.report.fold import EntityFold, GroupPeaks, Window, dense, fold_groups

T0 = 1_772_409_600


def test_window_refuses_ranges_off_the_market_grid() -> None:
    with pytest.raises(ValueError, match="period boundary"):
        Window(T0 + 60, T0 + 900, 60)
    with pytest.raises(ValueError, match="must divide"):
        Window(T0, T0 + 900, 7)
    with pytest.raises(ValueError, match="empty"):
        Window(T0, T0, 60)


# No per-example deadline: the machines that run these are shared, and a wall-clock limit would
# make the test a timed one.
@settings(deadline=None)
@given(periods=st.integers(1, 500), step=st.sampled_from([60.0, 300.0, 900.0]), budget=st.integers(1, 20_000))
def test_chunks_are_whole_periods_covering_the_range_once(periods: int, step: float, budget: int) -> None:
    window = Window(T0, T0 + periods * 900, step)
    chunks = window.chunks(budget)
    assert chunks[0][0] == 0 and chunks[-1][1] == window.steps
    assert all(a == prev[1] for prev, (a, _b) in itertools.pairwise(chunks))
    assert all(a % window.steps_per_period == 0 for a, _b in chunks)


def _series(labels: dict[str, str], times: list[float], values: list[float]) -> Series:
    return Series(labels, np.array(times, dtype=float), np.array(values, dtype=float))


def test_hostile_points_are_dropped_not_counted() -> None:
    window = Window(T0, T0 + 900, 60)
    answer = [
        # NaN, +Inf, a time before the chunk, one after it, one off the grid: only finite in-range count.
        _series(
            {"node": "a"},
            [T0 + 60, T0 + 120, T0 + 180, T0 - 600, T0 + 9000, T0 + 241],
            [1, np.nan, np.inf, 5, 5, 7],
        ),
        # The same node twice (two scrape jobs): summed, as sum by (node) would.
        _series({"node": "a"}, [T0 + 60], [2]),
        _series({}, [T0 + 60], [3]),
    ]
    rows = dense(answer, lambda labels: labels.get("node", ""), window, 0, window.steps)
    assert rows["a"][0] == 3.0 and np.isnan(rows["a"][1]) and np.isnan(rows["a"][2])
    assert rows["a"][3] == 7.0  # T0 + 241 rounds to the step ending at T0 + 240
    assert np.nansum(rows["a"]) == 10.0 and rows[""][0] == 3.0


def test_fold_prefers_counters_and_the_best_source_and_lists_gaps() -> None:
    window = Window(T0, T0 + 900, 300)  # three steps
    fold = EntityFold(window, ["bmc", "rapl"], [("bmc",), ("rapl",)], {})
    counters = {
        "bmc": {"n": np.array([300.0, np.nan, np.nan])},
        "rapl": {"n": np.array([100.0, 100.0, np.nan])},
    }
    integrated = {"bmc": {"n": np.array([999.0, 200.0, np.nan])}}  # ignored where the counter has the step
    best, _ = fold.fold(0, 3, counters, integrated, {})
    assert list(best[0][:2]) == [300.0, 200.0] and np.isnan(best[0][2])
    assert fold.counter_steps.view(1)[0, 0] == 1  # step 2 came from integrated power
    assert list(fold.level_steps.view(1)[0]) == [2, 0]  # the BMC was best whenever it was there
    assert fold.gaps[0].runs == [(2, 2)]
    peaks = GroupPeaks()
    fold_groups(peaks, [(0, "g")], best, {}, {}, window, 0)
    assert peaks.peak_w["g"] == 1.0 and peaks.peak_at["g"] == T0 + 300 and peaks.steps_with_data["g"] == 2
