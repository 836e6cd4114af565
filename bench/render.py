"""Series rendered per second: powerplane's exposition against prometheus_client, side by side.

The same data (families of gauges and counters with three labels, shaped like a GPU node's
scrape) is built and rendered by both: prometheus_client's own families through its
``generate_latest`` (text 0.0.4) and OpenMetrics encoder, and powerplane's ``Family`` through
``render`` / ``render_openmetrics``.  Building the families is part of the cost (a collector
does both every scrape).  Two cases: every value changes between scrapes (energy counters,
power) and none does (limits, states, info metrics).  Each case is run ``--runs`` times; the
RESULT line gives the median ratio and the spread (min to max) over the runs.

    .venv/bin/python bench/render.py [--series 10000] [--runs 5] [--rounds 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from powerplane.exporters.runtime.exposition import render, render_openmetrics
from powerplane.exporters.runtime.metrics import MetricSpec

LABELS = ("node", "gpu", "kind")
FAMILIES = 50


class _Registry:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _keys(series: int) -> list[tuple[str, str, str]]:
    per = series // FAMILIES
    return [(f"node-{i % 97:04d}", str(i % 8), f"k{i % 3}") for i in range(per)]


def _values(series: int, changing: bool, round_: int) -> list[float]:
    rng = random.Random(round_ if changing else 0)
    return [rng.random() * 1000 for _ in range(series)]


def _theirs(keys: list[tuple[str, str, str]], values: list[float]) -> list[Metric]:
    families: list[Metric] = []
    it = iter(values)
    for f in range(FAMILIES):
        cls = CounterMetricFamily if f % 2 == 0 else GaugeMetricFamily
        family = cls(f"powerplane_bench_{f}", "Bench series.", labels=list(LABELS))
        for key in keys:
            family.add_metric(list(key), next(it))
        families.append(family)
    return families


SPECS = [
    MetricSpec(
        f"powerplane_bench_{f}" + ("_total" if f % 2 == 0 else ""),
        "counter" if f % 2 == 0 else "gauge",
        "Bench series.",
        LABELS,
    )
    for f in range(FAMILIES)
]


def _ours(keys: list[tuple[str, str, str]], values: list[float]) -> list[Metric]:
    families: list[Metric] = []
    it = iter(values)
    for spec in SPECS:
        family = spec.family()
        for key in keys:
            family.add_metric(key, next(it))
        families.append(family)
    return families


def _rate(
    build: Callable[..., list[Metric]],
    emit: Callable[[list[Metric]], bytes],
    series: int,
    changing: bool,
    rounds: int,
) -> float:
    keys = _keys(series)
    data = [_values(series, changing, r) for r in range(rounds + 1)]
    emit(build(keys, data[0]))  # warm caches, as a long-running exporter has them
    start = time.perf_counter()
    for r in range(1, rounds + 1):
        emit(build(keys, data[r]))
    return series * rounds / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    cases = {
        "text": (lambda fs: generate_latest(_Registry(fs)), render),  # type: ignore[arg-type]
        "openmetrics": (lambda fs: generate_openmetrics(_Registry(fs)), render_openmetrics),  # type: ignore[arg-type]
    }
    result = {}
    for fmt, (theirs, ours) in cases.items():
        for changing in (True, False):
            ratios, rates = [], []
            for _ in range(args.runs):
                their_rate = _rate(_theirs, theirs, args.series, changing, args.rounds)
                our_rate = _rate(_ours, ours, args.series, changing, args.rounds)
                ratios.append(our_rate / their_rate)
                rates.append(our_rate)
            case = f"{fmt}_{'changing' if changing else 'static'}"
            print(
                f"{case:24s} ours {statistics.median(rates) / 1e6:.2f} Mseries/s  "
                f"ratio median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
            )
            result[f"render_{case}_ratio"] = f"{statistics.median(ratios):.2f}"
            result[f"render_{case}_spread"] = f"{min(ratios):.2f}-{max(ratios):.2f}"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
