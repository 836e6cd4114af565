"""From folded totals to the report's rows: cost per period at that period's price, coverage, gaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import queries as q
from .fold import Matrix
from .model import AlertEpisode, Gap, Period, Report, Row

if TYPE_CHECKING:
    from .build import Builder, _Set

#: Joules per kWh, and per kWh times the 1000 of EUR/MWh or of grams per kg.
J_PER_KWH = 3.6e6
J_PER_KWH_1000 = 3.6e9


@dataclass
class _Acc:
    """A group's sums while its members are added."""

    members: int = 0
    energy_j: float = 0.0
    source_j: dict[str, float] = field(default_factory=dict)
    levels: dict[str, float] = field(default_factory=dict)
    counter_steps: float = 0.0
    best_steps: float = 0.0
    cost: float = 0.0
    priced_j: float = 0.0
    co2: float = 0.0
    carboned_j: float = 0.0
    gauge_sum: dict[str, float] = field(default_factory=dict)
    gauge_count: dict[str, float] = field(default_factory=dict)
    covered_steps: float = 0.0
    gaps: list[Gap] = field(default_factory=list)
    periods: Matrix | None = None


def _market(values: Mapping[str, Matrix], area: str | None, periods: int) -> Matrix:
    if area is None or area not in values:
        return np.full(periods, np.nan)
    return values[area]


def _entity_money(
    builder: Builder, entity_set: _Set, prices: Mapping[str, Matrix], carbon: Mapping[str, Matrix]
) -> tuple[Matrix, Matrix, Matrix, Matrix]:
    """Per entity: cost (EUR), priced joules, CO2 (kg), joules with a carbon intensity."""
    fold = entity_set.fold
    n, periods = len(fold.keys), builder.window.periods
    energy = fold.period_energy.view(n)
    areas = sorted(set(prices) | set(carbon))
    price = np.empty((n, periods))
    grams = np.empty((n, periods))
    for r, key in enumerate(fold.keys):
        labels = dict(zip(_labels(entity_set), key, strict=False)) if isinstance(key, tuple) else {}
        node = key if isinstance(key, str) else labels.get("node", "")
        area = builder.inv.node_area(str(node), areas)
        price[r] = _market(prices, area, periods)
        grams[r] = _market(carbon, area, periods)
    with np.errstate(invalid="ignore"):
        cost = np.nansum(energy * price, axis=1) / J_PER_KWH_1000
        priced = np.nansum(np.where(np.isnan(price), np.nan, energy), axis=1)
        co2 = np.nansum(energy * grams, axis=1) / J_PER_KWH_1000
        carboned = np.nansum(np.where(np.isnan(grams), np.nan, energy), axis=1)
    return cost, priced, co2, carboned


def _labels(entity_set: _Set) -> tuple[str, ...]:
    for name in entity_set.groupings:
        grouping = q.GROUPINGS.get(name)
        if grouping is not None and grouping.entity_labels:
            return grouping.entity_labels
    return ("node",)


def _member_name(entity_set: _Set, key: object) -> str:
    if isinstance(key, tuple):
        return "/".join(str(k) for k in key if k)
    return str(key)


def _add_set(
    builder: Builder, entity_set: _Set, grouping: str, accs: dict[str, _Acc], money: tuple[Matrix, ...]
) -> None:
    fold = entity_set.fold
    n = len(fold.keys)
    w = builder.window
    cost, priced, co2, carboned = money
    energy_cols = fold.energy.view(n)
    period_energy = fold.period_energy.view(n)
    period_steps = fold.period_steps.view(n)
    levels = fold.level_steps.view(n)
    counted = fold.counter_steps.view(n)
    level_names = ["+".join(level) for level in fold.precedence]
    if entity_set.name == "unattributed":
        level_names = ["unattributed"]
    for row, group in builder.membership(entity_set, grouping):
        acc = accs.setdefault(group, _Acc())
        acc.members += 1
        acc.energy_j += float(np.nansum(period_energy[row]))
        method_steps = fold.method_steps.view(n)
        for i, source in enumerate(fold.sources):
            if method_steps[row, 2 * i] + method_steps[row, 2 * i + 1] == 0:
                continue  # the source never reported for this member: no figure, not zero
            value = float(energy_cols[row, 2 * i] + energy_cols[row, 2 * i + 1])
            acc.source_j[source] = acc.source_j.get(source, 0.0) + value
        for i, name in enumerate(level_names):
            acc.levels[name] = acc.levels.get(name, 0.0) + float(levels[row, i])
        acc.counter_steps += float(counted[row, 0])
        acc.best_steps += float(levels[row].sum())
        acc.cost += float(cost[row])
        acc.priced_j += float(priced[row])
        acc.co2 += float(co2[row])
        acc.carboned_j += float(carboned[row])
        for name, growing in fold.gauge_sum.items():
            sums = growing.view(n)
            acc.gauge_sum[name] = acc.gauge_sum.get(name, 0.0) + float(sums[row, 0])
            acc.gauge_count[name] = acc.gauge_count.get(name, 0.0) + float(sums[row, 1])
        acc.covered_steps += float(period_steps[row].sum())
        runs = fold.gaps.get(row)
        if runs is not None and entity_set.name == "nodes":
            member = _member_name(entity_set, fold.keys[row])
            for first, last in runs.runs:
                acc.gaps.append(Gap(member, w.start + first * w.step, w.start + (last + 1) * w.step))
            if runs.more and acc.gaps:
                last_gap = acc.gaps[-1]
                acc.gaps[-1] = Gap(last_gap.member, last_gap.start, last_gap.end, runs.more)
        values = np.nan_to_num(period_energy[row])
        acc.periods = values.copy() if acc.periods is None else acc.periods + values


def _row(builder: Builder, grouping: str, group: str, acc: _Acc, alerts: int) -> Row:
    w = builder.window
    peaks = builder.peaks.get(grouping)
    steps_with_data = peaks.steps_with_data.get(group, 0) if peaks else 0
    node_kind = grouping == "(total)" or q.GROUPINGS[grouping].kind == "node"

    def gauge_max(name: str) -> float | None:
        return peaks.gauge_max.get((group, name)) if peaks else None

    def above(name: str) -> float | None:
        if gauge_max(name) is None or peaks is None:
            return None
        return peaks.gauge_above_steps.get((group, name), 0) * w.step

    util_count = acc.gauge_count.get("gpu_utilisation", 0.0)
    facility_steps = acc.gauge_count.get("facility", 0.0)
    has_best = acc.best_steps > 0
    total_levels = sum(acc.levels.values())
    return Row(
        grouping=grouping,
        group=group,
        members=acc.members,
        energy_kwh=acc.energy_j / J_PER_KWH,
        source_kwh={k: v / J_PER_KWH for k, v in acc.source_j.items()},
        best_sources={k: (v / total_levels if total_levels else 0.0) for k, v in acc.levels.items()},
        counter_share=acc.counter_steps / acc.best_steps if has_best else None,
        cost_eur=acc.cost if acc.priced_j > 0 else None,
        unpriced_kwh=max(acc.energy_j - acc.priced_j, 0.0) / J_PER_KWH,
        co2_kg=acc.co2 if acc.carboned_j > 0 else None,
        avg_power_w=acc.energy_j / (steps_with_data * w.step) if steps_with_data else None,
        peak_power_w=peaks.peak_w.get(group) if peaks else None,
        peak_at=peaks.peak_at.get(group) if peaks else None,
        facility_kwh=acc.gauge_sum["facility"] / J_PER_KWH if facility_steps else None,
        gpu_utilisation=acc.gauge_sum["gpu_utilisation"] / util_count if util_count else None,
        max_gpu_temperature_c=gauge_max("gpu_temperature"),
        gpu_temperature_above_s=above("gpu_temperature"),
        max_inlet_temperature_c=gauge_max("inlet_temperature"),
        inlet_temperature_above_s=above("inlet_temperature"),
        alerts=alerts,
        coverage=(acc.covered_steps / (acc.members * w.steps) if acc.members else 0.0) if node_kind else None,
        gaps=tuple(sorted(acc.gaps, key=lambda g: (g.start, g.member))),
    )


def _alert_groups(builder: Builder, grouping: str, episode: AlertEpisode) -> set[str]:
    labels = episode.labels
    if grouping == "(total)":
        return {"(total)"}
    g = q.GROUPINGS[grouping]
    if g.kind != "node":
        return set()
    if labels.get("node"):
        return set(builder.groups_of("nodes", grouping, labels["node"]))
    if labels.get(g.label):
        return {labels[g.label]}
    return set()


def assemble(
    builder: Builder,
    prices: Mapping[str, Matrix],
    carbon: Mapping[str, Matrix],
    episodes: Sequence[AlertEpisode],
    alerts_more: int,
    generated_at: float,
    prometheus: str,
) -> Report:
    w = builder.window
    money = {name: _entity_money(builder, s, prices, carbon) for name, s in builder.sets.items()}
    rows: dict[str, tuple[Row, ...]] = {}
    power: dict[str, dict[str, tuple[float, ...]]] = {}
    period_energy = np.zeros(w.periods)
    for grouping in ("(total)", *builder.options.groupings):
        accs: dict[str, _Acc] = {}
        for name, entity_set in builder.sets.items():
            if grouping in entity_set.groupings:
                _add_set(builder, entity_set, grouping, accs, money[name])
        counts: dict[str, int] = {}
        for episode in episodes:
            for group in _alert_groups(builder, grouping, episode):
                counts[group] = counts.get(group, 0) + 1
        built = [_row(builder, grouping, g, acc, counts.get(g, 0)) for g, acc in accs.items()]
        built.sort(key=lambda r: (-r.energy_kwh, r.group))
        rows[grouping] = tuple(built)
        power[grouping] = _charted(accs, [r.group for r in built], builder.options.charted)
        if grouping == "(total)" and "(total)" in accs and accs["(total)"].periods is not None:
            period_energy = accs["(total)"].periods
    total = rows.pop("(total)")
    total_row = total[0] if total else _row(builder, "(total)", "(total)", _Acc(), 0)
    return Report(
        start=w.start,
        end=w.end,
        step=w.step,
        timezone=builder.options.timezone,
        prometheus=prometheus,
        generated_at=generated_at,
        groupings=builder.options.groupings,
        rows=rows,
        total=total_row,
        periods=_periods(builder, prices, carbon, period_energy, money["nodes"]),
        power_by_period=power,
        alerts=tuple(episodes),
        alerts_more=alerts_more,
        thresholds={
            "gpu_temperature": builder.options.rules.gpu_temperature_warning_celsius,
            "inlet_temperature": builder.options.rules.inlet_max_celsius,
        },
    )


def _charted(accs: Mapping[str, _Acc], order: Sequence[str], top: int) -> dict[str, tuple[float, ...]]:
    shown: dict[str, tuple[float, ...]] = {}
    others: Matrix | None = None
    for i, group in enumerate(order):
        periods = accs[group].periods
        if periods is None:
            continue
        watts = periods / q.PERIOD_SECONDS
        if i < top:
            shown[group] = tuple(float(x) for x in watts)
        else:
            others = watts if others is None else others + watts
    if others is not None:
        shown["others"] = tuple(float(x) for x in others)
    return shown


def _periods(
    builder: Builder,
    prices: Mapping[str, Matrix],
    carbon: Mapping[str, Matrix],
    energy: Matrix,
    node_money: tuple[Matrix, ...],
) -> tuple[Period, ...]:
    w = builder.window
    fold = builder.sets["nodes"].fold
    n = len(fold.keys)
    areas = sorted(set(prices) | set(carbon))
    per_entity = fold.period_energy.view(n)
    price = np.array([_market(prices, builder.inv.node_area(str(k), areas), w.periods) for k in fold.keys])
    with np.errstate(invalid="ignore"):
        cost = np.nansum(per_entity * price, axis=0) / J_PER_KWH_1000 if n else np.zeros(w.periods)
        priced = (~np.isnan(per_entity * price)).any(axis=0) if n else np.zeros(w.periods, dtype=bool)
    return tuple(
        Period(
            start=w.start + p * q.PERIOD_SECONDS,
            price_eur_per_mwh={a: float(v[p]) for a, v in prices.items() if not np.isnan(v[p])},
            carbon_g_per_kwh={a: float(v[p]) for a, v in carbon.items() if not np.isnan(v[p])},
            energy_kwh=float(energy[p]) / J_PER_KWH,
            cost_eur=float(cost[p]) if priced[p] else None,
        )
        for p in range(w.periods)
    )
