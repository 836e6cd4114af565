"""Grid carbon intensity from generation per production type, and the emission factors it uses.

The intensity of a period is the generation-weighted mean of the production types' lifecycle
emission factors::

    intensity = sum(MW[type] * factor[type]) / sum(MW[type])      (gCO2eq/kWh)

over the types that have a factor.  Generation documents are often incomplete, most of all for
the latest hour (each TSO publishes on its own schedule), and leaving a coal plant out would
make the grid look cleaner than it is.  So a period is computed only when the generation whose
emissions are known covers at least ``min_coverage`` (0.95) of the period's generation, where
the generation of a type missing from the period is estimated by its mean over the document,
and generation of an unknown code (no factor) counts as uncovered.  Other periods are gaps.

The factors are data (``emission_factors.yaml``, each with its source), overridable per site.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import yaml

from .curve import Curve, Period
from .provider import ProviderError

#: Share of a period's generation that must have a known emission factor.
DEFAULT_MIN_COVERAGE = 0.95
#: Most periods one computation produces (three days of minutes; the exporter asks for ~2 days).
MAX_SLOTS = 5_000
UNIT = "gCO2eq/kWh"


@dataclass(frozen=True)
class EmissionFactor:
    """One production type's lifecycle emission factor and where it comes from."""

    code: str
    name: str
    grams_per_kwh: float
    source: str
    note: str = ""


@dataclass(frozen=True)
class FactorSource:
    key: str
    title: str
    url: str


@functools.lru_cache(maxsize=1)
def _data() -> tuple[dict[str, EmissionFactor], dict[str, FactorSource]]:
    text = resources.files("powerplane.exporters.market").joinpath("emission_factors.yaml").read_text()
    doc: dict[str, Any] = yaml.safe_load(text)
    sources = {
        key: FactorSource(key, " ".join(str(item["title"]).split()), str(item["url"]))
        for key, item in doc["sources"].items()
    }
    factors = {
        code: EmissionFactor(
            code,
            str(item["name"]),
            float(item["grams_per_kwh"]),
            str(item["source"]),
            str(item.get("note", "")),
        )
        for code, item in doc["factors"].items()
    }
    return factors, sources


def default_factors() -> dict[str, EmissionFactor]:
    """The shipped factors by psrType code (B01…B20)."""
    return dict(_data()[0])


def factor_sources() -> dict[str, FactorSource]:
    """The sources the shipped factors cite, by key."""
    return dict(_data()[1])


def factor_table(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """psrType → gCO2eq/kWh: the shipped factors with ``overrides`` (which may add codes)."""
    table = {code: f.grams_per_kwh for code, f in _data()[0].items()}
    table.update(overrides or {})
    return table


@dataclass(frozen=True)
class Intensity:
    """The result of one computation: the intensity curve and what was left out of it."""

    curve: Curve
    #: Production types present in the document that have no emission factor.
    unknown_types: tuple[str, ...] = ()
    #: Periods left out because too little of their generation was covered.
    gaps: int = 0


def _grid(
    generation: Mapping[str, Curve], start: datetime, end: datetime
) -> tuple[timedelta, list[datetime]]:
    """Slot starts at the finest resolution present, from the first period within [start, end)."""
    periods = [p for curve in generation.values() for p in curve.between(start, end)]
    if not periods:
        return timedelta(0), []
    step = min(p.end - p.start for p in periods)
    first = max(start, min(p.start for p in periods))
    last = min(end, max(p.end for p in periods))
    count = int((last - first) / step)
    if count > MAX_SLOTS:
        raise ProviderError(
            f"generation spans {count} periods of {step}; at most {MAX_SLOTS} are computed", "too_large"
        )
    return step, [first + i * step for i in range(count)]


def _value(curve: Curve, slot: datetime, step: timedelta) -> float | None:
    period = curve.period_at(slot)
    if period is None or period.end < slot + step:
        return None
    # Some platforms report storage netted (negative while charging): no generation then.
    return max(period.price, 0.0)


def intensity(
    area: str,
    generation: Mapping[str, Curve],
    factors: Mapping[str, float],
    start: datetime,
    end: datetime,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    source: str = "",
) -> Intensity:
    """Carbon intensity per slot of [start, end) from MW per production type (see the module)."""
    step, slots = _grid(generation, start, end)
    if not slots:
        return Intensity(Curve(area, source=source))
    values = {code: [_value(curve, slot, step) for slot in slots] for code, curve in generation.items()}
    typical = {
        code: (sum(v for v in series if v is not None) / max(1, sum(v is not None for v in series)))
        for code, series in values.items()
    }
    periods = []
    gaps = 0
    for i, slot in enumerate(slots):
        known = grams = uncovered = 0.0
        for code, series in values.items():
            mw = series[i]
            factor = factors.get(code)
            if mw is None:
                uncovered += typical[code]
            elif factor is None:
                uncovered += mw
            else:
                known += mw
                grams += mw * factor
        if known <= 0 or known < min_coverage * (known + uncovered):
            gaps += 1
            continue
        value = grams / known
        if math.isfinite(value):
            periods.append(Period(slot, slot + step, round(value, 3)))
    unknown = tuple(sorted(code for code in generation if code not in factors))
    return Intensity(Curve(area, tuple(periods), source), unknown, gaps)
