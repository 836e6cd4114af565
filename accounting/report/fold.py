"""Folding the answers of a report's range queries, one time chunk at a time, into bounded totals.

Nothing here holds raw points: a chunk's answers become matrices (entity x step) that are folded
into per-entity totals, per-entity x period energies (for cost, emissions and charts) and
per-group peaks, and are then dropped.  Memory is O(entities x periods + groups x periods).

An *entity* is what a query returns one series of: a node (infrastructure groupings) or an owner
on a node (a job or a pod, from the attribution rules).  A *group* is a row of the report; an
entity belongs to one or more groups of each grouping (a node can be in several partitions).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import numpy.typing as npt

from ..prometheus import Series
from .queries import PERIOD_SECONDS

Matrix = npt.NDArray[np.float64]
#: Gap runs kept per entity; more are counted, not listed.
MAX_GAPS = 50


@dataclass(frozen=True)
class Window:
    """The report's range: whole market periods, cut into steps that divide a period."""

    start: float
    end: float
    step: float

    def __post_init__(self) -> None:
        if self.start % PERIOD_SECONDS or self.end % PERIOD_SECONDS:
            raise ValueError("a report window starts and ends on a market period boundary")
        if PERIOD_SECONDS % self.step:
            raise ValueError(f"the step ({self.step:g}s) must divide the {PERIOD_SECONDS}s market period")
        if self.end <= self.start:
            raise ValueError("the report range is empty")

    @property
    def steps(self) -> int:
        return round((self.end - self.start) / self.step)

    @property
    def periods(self) -> int:
        return round((self.end - self.start) / PERIOD_SECONDS)

    @property
    def steps_per_period(self) -> int:
        return round(PERIOD_SECONDS / self.step)

    def step_index(self, times: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Step number of evaluation times (a step is named by its end: ``start + (k + 1) * step``)."""
        return np.rint((times - self.start) / self.step).astype(np.int64) - 1

    def chunks(self, steps_per_chunk: int) -> list[tuple[int, int]]:
        """[k0, k1) step ranges of whole periods, of at most ``steps_per_chunk`` steps (at least a period)."""
        per = self.steps_per_period
        size = max(per, steps_per_chunk // per * per)
        return [(k, min(k + size, self.steps)) for k in range(0, self.steps, size)]


def dense(
    series: Sequence[Series], key: Callable[[Mapping[str, str]], Hashable], window: Window, k0: int, k1: int
) -> dict[Hashable, Matrix]:
    """Each series' values on the chunk's steps (NaN where it has none), summed per entity key."""
    rows: dict[Hashable, Matrix] = {}
    for s in series:
        k = window.step_index(s.times) - k0
        keep = (k >= 0) & (k < k1 - k0) & np.isfinite(s.values)
        row = rows.get(key(s.labels))
        if row is None:
            row = rows[key(s.labels)] = np.full(k1 - k0, np.nan)
        row[k[keep]] = np.where(np.isnan(row[k[keep]]), 0.0, row[k[keep]]) + s.values[keep]
    return rows


@dataclass
class Runs:
    """Runs of steps without data for one entity: (first step, last step), merged across chunks."""

    runs: list[tuple[int, int]] = field(default_factory=list)
    more: int = 0

    def add(self, missing: npt.NDArray[np.bool_], k0: int) -> None:
        if not missing.any():
            return
        edges = np.flatnonzero(np.diff(np.concatenate(([0], missing.astype(np.int8), [0]))))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            first, last = k0 + int(a), k0 + int(b) - 1
            if self.runs and self.runs[-1][1] == first - 1:
                self.runs[-1] = (self.runs[-1][0], last)
            elif len(self.runs) < MAX_GAPS:
                self.runs.append((first, last))
            else:
                self.more += 1


class Growing:
    """A float matrix (rows: entities) that grows as entities appear."""

    def __init__(self, columns: int, fill: float = 0.0) -> None:
        self.fill = fill
        self.data: Matrix = np.full((8, columns), fill)

    def ensure(self, rows: int) -> None:
        if rows > self.data.shape[0]:
            grown = np.full((max(rows, 2 * self.data.shape[0]), self.data.shape[1]), self.fill)
            grown[: self.data.shape[0]] = self.data
            self.data = grown

    def view(self, rows: int) -> Matrix:
        self.ensure(rows)
        return self.data[:rows]


@dataclass
class GroupPeaks:
    """Per group: the highest step power and when, the steps with data, the steps above each threshold."""

    peak_w: dict[str, float] = field(default_factory=dict)
    peak_at: dict[str, float] = field(default_factory=dict)
    steps_with_data: dict[str, int] = field(default_factory=dict)
    gauge_max: dict[tuple[str, str], float] = field(default_factory=dict)
    gauge_above_steps: dict[tuple[str, str], int] = field(default_factory=dict)


class EntityFold:
    """Totals per entity of one entity set (nodes, or one kind of owner), folded chunk by chunk."""

    def __init__(
        self,
        window: Window,
        sources: Sequence[str],
        precedence: Sequence[Sequence[str]],
        gauges: Mapping[str, str],
    ) -> None:
        self.window = window
        self.sources = tuple(sources)
        self.precedence = tuple(tuple(level) for level in precedence)
        self.gauge_reduce = dict(gauges)
        self.index: dict[Hashable, int] = {}
        self.keys: list[Hashable] = []
        n_src = len(self.sources)
        #: Joules per source, from counters (column 2i) and from integrated power (2i + 1).
        self.energy = Growing(2 * n_src)
        #: Steps per source by method, same columns.
        self.method_steps = Growing(2 * n_src)
        #: Steps whose best-source energy came from each precedence level.
        self.level_steps = Growing(len(self.precedence))
        #: Steps whose best-source energy came from counters only (the rest integrated some power).
        self.counter_steps = Growing(1)
        #: Best-source joules per market period.
        self.period_energy = Growing(window.periods, np.nan)
        #: Steps with best-source data per period.
        self.period_steps = Growing(window.periods)
        self.gauge_max = {g: Growing(1, np.nan) for g in gauges}
        self.gauge_sum = {g: Growing(2) for g in gauges}
        self.gaps: dict[int, Runs] = {}

    def _row(self, key: Hashable) -> int:
        row = self.index.get(key)
        if row is None:
            row = self.index[key] = len(self.keys)
            self.keys.append(key)
        return row

    def add_entities(self, keys: Sequence[Hashable]) -> None:
        """Entities known to exist (the inventory's nodes) even if no query returns them."""
        for key in keys:
            self._row(key)

    def fold(
        self,
        k0: int,
        k1: int,
        counters: Mapping[str, dict[Hashable, Matrix]],
        integrated: Mapping[str, dict[Hashable, Matrix]],
        gauges: Mapping[str, dict[Hashable, Matrix]],
    ) -> tuple[Matrix, dict[str, Matrix]]:
        """Fold one chunk; returns the best-source joules (entity x step) and the gauges for group folds."""
        for parts in (*counters.values(), *integrated.values(), *gauges.values()):
            for key in parts:
                self._row(key)
        n, width = len(self.keys), k1 - k0
        per_source: dict[str, tuple[Matrix, npt.NDArray[np.bool_]]] = {}
        energy, steps = self.energy.view(n), self.method_steps.view(n)
        for i, name in enumerate(self.sources):
            merged = np.full((n, width), np.nan)
            integrated_here = np.zeros((n, width), dtype=bool)
            for column, parts in ((2 * i, counters.get(name, {})), (2 * i + 1, integrated.get(name, {}))):
                for key, row in parts.items():
                    r = self.index[key]
                    fill = np.isnan(merged[r]) & ~np.isnan(row)
                    merged[r, fill] = row[fill]
                    integrated_here[r, fill] = column % 2 == 1
                    energy[r, column] += np.nansum(row[fill])
                    steps[r, column] += int(fill.sum())
            per_source[name] = (merged, integrated_here)
        best = self._best(per_source, n, width)
        self._periods(best, k0, n)
        missing = np.isnan(best)
        for lacking in np.flatnonzero(missing.any(axis=1)):
            self.gaps.setdefault(int(lacking), Runs()).add(missing[lacking], k0)
        gauge_rows = {}
        for name, parts in gauges.items():
            matrix = np.full((n, width), np.nan)
            for key, row in parts.items():
                matrix[self.index[key]] = row
            gauge_rows[name] = matrix
            with np.errstate(all="ignore"):
                top = np.nanmax(np.where(np.isnan(matrix), -np.inf, matrix), axis=1)
            top[np.isinf(top)] = np.nan
            current = self.gauge_max[name].view(n)[:, 0]
            current[:] = np.fmax(current, top)
            sums = self.gauge_sum[name].view(n)
            sums[:, 0] += np.nansum(matrix, axis=1)
            sums[:, 1] += np.sum(~np.isnan(matrix), axis=1)
        return best, gauge_rows

    def _best(
        self, per_source: Mapping[str, tuple[Matrix, npt.NDArray[np.bool_]]], n: int, width: int
    ) -> Matrix:
        best = np.full((n, width), np.nan)
        levels = self.level_steps.view(n)
        counted = self.counter_steps.view(n)
        for li, level in enumerate(self.precedence):
            stacked = np.stack([per_source[s][0] for s in level])
            integrated = np.stack([per_source[s][1] for s in level]).any(axis=0)
            present = ~np.isnan(stacked).all(axis=0)
            value = np.nansum(stacked, axis=0)
            take = np.isnan(best) & present
            best[take] = value[take]
            levels[:, li] += take.sum(axis=1)
            counted[:, 0] += (take & ~integrated).sum(axis=1)
        return best

    def _periods(self, best: Matrix, k0: int, n: int) -> None:
        per = self.window.steps_per_period
        p0 = k0 // per
        shaped = best.reshape(n, best.shape[1] // per, per)
        sums = np.nansum(shaped, axis=2)
        counts = (~np.isnan(shaped)).sum(axis=2)
        sums[counts == 0] = np.nan
        self.period_energy.view(n)[:, p0 : p0 + sums.shape[1]] = sums
        self.period_steps.view(n)[:, p0 : p0 + sums.shape[1]] = counts


def fold_groups(
    peaks: GroupPeaks,
    membership: Sequence[tuple[int, str]],
    best: Matrix,
    gauges: Mapping[str, Matrix],
    thresholds: Mapping[str, float | None],
    window: Window,
    k0: int,
) -> None:
    """Group step sums (for the peak and the time with data) and group gauge maxima of one chunk."""
    if not membership:
        return
    names = sorted({g for _r, g in membership})
    gi = {g: i for i, g in enumerate(names)}
    rows = np.array([r for r, _g in membership if r < best.shape[0]], dtype=np.int64)
    cols = np.array([gi[g] for r, g in membership if r < best.shape[0]], dtype=np.int64)
    width = best.shape[1]
    power = np.zeros((len(names), width))
    present = np.zeros((len(names), width), dtype=np.int64)
    np.add.at(power, cols, np.nan_to_num(best[rows], nan=0.0))
    np.add.at(present, cols, (~np.isnan(best[rows])).astype(np.int64))
    power /= window.step
    has = present > 0
    at = np.argmax(np.where(has, power, -np.inf), axis=1)
    # Per group at once, then as Python numbers: a node grouping has thousands of groups.
    with_data = cast(list[bool], has.any(axis=1).tolist())
    top_power: list[float] = power[np.arange(len(names)), at].tolist()
    steps: list[int] = has.sum(axis=1).tolist()
    first: list[int] = at.tolist()
    for i, g in enumerate(names):
        if with_data[i] and top_power[i] > peaks.peak_w.get(g, -np.inf):
            peaks.peak_w[g] = top_power[i]
            peaks.peak_at[g] = float(window.start + (k0 + first[i] + 1) * window.step)
        peaks.steps_with_data[g] = peaks.steps_with_data.get(g, 0) + steps[i]
    for name, matrix in gauges.items():
        values = matrix[rows]
        if np.isnan(values).all():
            continue  # the gauge has no data for these groups in this chunk (most sites lack some)
        top = np.full((len(names), width), -np.inf)
        np.maximum.at(top, cols, np.where(np.isnan(values), -np.inf, values))
        finite = np.isfinite(top)
        highest: list[float] = np.where(finite, top, -np.inf).max(axis=1).tolist()
        threshold = thresholds.get(name)
        above: list[int] = (finite & (top > threshold)).sum(axis=1).tolist() if threshold is not None else []
        for i in np.flatnonzero(finite.any(axis=1)).tolist():
            key = (names[i], name)
            peaks.gauge_max[key] = max(peaks.gauge_max.get(key, -np.inf), highest[i])
            if threshold is not None:
                peaks.gauge_above_steps[key] = peaks.gauge_above_steps.get(key, 0) + above[i]
