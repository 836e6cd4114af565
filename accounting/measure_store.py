"""A measured run: its totals (folded batch by batch), its HDF5 trace, its market prices, its summary.

The trace (h5py) holds one dataset per source, each a table with a ``time`` column (Unix
seconds) and the source's columns: ``rapl`` (joules per zone since the start, wrap-safe) and
``gpu0``, ``gpu1``… (energy since the start, power, temperature, SM clock, utilisation, memory).
The run's facts are attributes of the file; the prices of the periods it spanned are the dataset
``market``.  Read it with h5py or pandas::

    import h5py, pandas as pd
    with h5py.File("run.h5") as f:
        rapl = pd.DataFrame(f["rapl"][()])         # columns: time, package-0, dram-0, ...
        print(dict(f.attrs))                        # command, host, start, end, exit_status, ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .measure_sampling import TOTAL_ZONES

#: Energy is bucketed per quarter-hour (UTC-aligned) so that any market period length can price it.
BUCKET_SECONDS = 900
J_PER_KWH = 3.6e6


@dataclass
class _Domain:
    energy_j: float = 0.0
    peak_w: float = 0.0
    last: npt.NDArray[np.float64] | None = None
    #: Time of the domain's first and last reading: its energy covers [first, last].
    first_at: float | None = None
    last_at: float | None = None

    @property
    def span(self) -> float:
        return (
            (self.last_at - self.first_at) if self.first_at is not None and self.last_at is not None else 0.0
        )


@dataclass
class Totals:
    """Energy and peak power per domain, and total energy per quarter-hour, folded from batches."""

    domains: dict[str, _Domain] = field(default_factory=dict)
    buckets: dict[int, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def __call__(self, table: str, rows: npt.NDArray[np.float64], columns: Sequence[str]) -> None:
        if table == "rapl":
            for i, name in enumerate(columns[1:], start=1):
                self._energy(name, rows[:, [0, i]], counted=name.split("-")[0] in TOTAL_ZONES)
        else:
            energy = rows[:, [0, list(columns).index("energy_j")]]
            power = rows[:, list(columns).index("power_w")]
            self._energy(table, energy, counted=True, power=power)

    def _energy(
        self,
        name: str,
        rows: npt.NDArray[np.float64],
        counted: bool,
        power: npt.NDArray[np.float64] | None = None,
    ) -> None:
        domain = self.domains.get(name)
        if domain is None:
            domain = self.domains[name] = _Domain()
            self.order.append(name)
        valid = rows[~np.isnan(rows[:, 1])]
        series = valid if domain.last is None else np.vstack([domain.last, valid])
        if len(valid):
            domain.last = valid[-1:].copy()
            domain.first_at = float(valid[0, 0]) if domain.first_at is None else domain.first_at
            domain.last_at = float(valid[-1, 0])
        if len(series) < 2:
            if power is not None and np.isfinite(power).any():
                domain.peak_w = max(domain.peak_w, float(np.nanmax(power)))
            return
        dt = np.diff(series[:, 0])
        de = np.diff(series[:, 1])
        domain.energy_j = float(series[-1, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            derived = np.where(dt > 0, de / dt, np.nan)
        peak = power if power is not None and np.isfinite(power).any() else derived
        if np.isfinite(peak).any():
            domain.peak_w = max(domain.peak_w, float(np.nanmax(peak)))
        if counted:
            middles = (series[1:, 0] + series[:-1, 0]) / 2
            for bucket, joules in zip((middles // BUCKET_SECONDS).astype(np.int64), de, strict=True):
                self.buckets[int(bucket)] = self.buckets.get(int(bucket), 0.0) + float(joules)

    @property
    def total_j(self) -> float:
        return sum(self.buckets.values())


class Trace:
    """The HDF5 file being written: resizable tables, appended batch by batch."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.file = h5py.File(path, "w")

    def __call__(self, table: str, rows: npt.NDArray[np.float64], columns: Sequence[str]) -> None:
        dtype = np.dtype([(c, np.float64) for c in columns])
        records = np.rec.fromarrays(rows.T, dtype=dtype) if len(rows) else np.zeros(0, dtype)
        if table in self.file and self.file[table].dtype != dtype:
            table = f"{table}.{sum(1 for k in self.file if k.startswith(table + '.')) + 1}"
        if table not in self.file:
            self.file.create_dataset(table, data=records, maxshape=(None,), chunks=True, compression="gzip")
            return
        dataset = self.file[table]
        dataset.resize((dataset.shape[0] + len(records),))
        dataset[-len(records) :] = records

    def finish(self, attrs: Mapping[str, Any], market: Sequence[tuple[float, float, float, float]]) -> None:
        for key, value in attrs.items():
            self.file.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)
        dtype = np.dtype([(c, np.float64) for c in ("start", "end", "price_eur_per_mwh", "carbon_g_per_kwh")])
        self.file.create_dataset("market", data=np.array(list(market), dtype=dtype))
        self.file.close()


class Tee:
    def __init__(self, *sinks: Any) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def __call__(self, table: str, rows: npt.NDArray[np.float64], columns: Sequence[str]) -> None:
        for sink in self.sinks:
            sink(table, rows, columns)


def read_trace(path: Path) -> tuple[dict[str, Any], Totals, list[tuple[float, float, float, float]]]:
    """A stored run: its attributes, its totals (recomputed from the tables) and its market periods."""
    import h5py

    totals = Totals()
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            for key in ("command", "start", "end", "exit_status"):
                if key not in attrs:
                    raise ValueError(f"{path}: not a powerplane measure trace (attribute {key!r} missing)")
            for name in sorted(f, key=lambda n: (n != "rapl", n)):
                if name == "market":
                    continue
                data = f[name][()]
                columns = list(data.dtype.names or ())
                if "time" not in columns:
                    raise ValueError(f"{path}: dataset {name!r} has no 'time' column")
                rows = (
                    np.column_stack([data[c] for c in columns]) if len(data) else np.zeros((0, len(columns)))
                )
                totals(name.split(".")[0], rows, columns)
            market = [_period(r) for r in f["market"][()]] if "market" in f else []
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 trace ({exc})") from None
    return attrs, totals, market


def _period(record: Any) -> tuple[float, float, float, float]:
    start, end, price, grams = (float(x) for x in record)
    return start, end, price, grams


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value.item() if hasattr(value, "item") else value


def money(
    totals: Totals, market: Sequence[tuple[float, float, float, float]]
) -> tuple[float | None, float | None, int]:
    """Cost (EUR) and CO2 (g) of the energy, each quarter-hour at its period's price; periods priced."""
    if not market:
        return None, None, 0
    cost = co2 = 0.0
    priced = carbon = 0
    periods: set[float] = set()
    for bucket, joules in totals.buckets.items():
        middle = bucket * BUCKET_SECONDS + BUCKET_SECONDS / 2
        for start, end, price, grams in market:
            if start <= middle < end:
                kwh = joules / J_PER_KWH
                if math.isfinite(price):
                    cost += kwh * price / 1000
                    priced += 1
                if math.isfinite(grams):
                    co2 += kwh * grams
                    carbon += 1
                periods.add(start)
                break
    return (cost if priced else None), (co2 if carbon else None), len(periods)


def summary(
    attrs: Mapping[str, Any], totals: Totals, market: Sequence[tuple[float, float, float, float]]
) -> str:
    """The text printed after a run (and by ``--summary``)."""
    duration = float(attrs["end"]) - float(attrs["start"])
    command = attrs["command"]
    shown = " ".join(command) if isinstance(command, list) else str(command)
    lines = [
        f"powerplane measure: {shown}",
        f"  duration {duration:.3f} s, exit status {attrs['exit_status']},"
        f" {attrs.get('samples', '?')} samples"
        f" every {float(attrs.get('interval', 0)):g} s on {attrs.get('host', '?')}",
    ]
    models = attrs.get("gpu_models") or {}
    labels = {name: f"{name} ({models[name]})" if name in models else name for name in totals.order}
    # GPU model names are long: the first column is as wide as its longest label.
    w = max([14, *map(len, labels.values())])
    lines.append(f"  {'domain':<{w}} {'energy (J)':>12} {'avg (W)':>10} {'peak (W)':>10}")
    for name in totals.order:
        d = totals.domains[name]
        avg = d.energy_j / d.span if d.span > 0 else float("nan")
        lines.append(f"  {labels[name]:<{w}} {d.energy_j:>12.1f} {avg:>10.1f} {d.peak_w:>10.1f}")
    total = totals.total_j
    lines.append(
        f"  {'total':<{w}} {total:>12.1f} {total / duration if duration > 0 else float('nan'):>10.1f}"
        f"   ({' + '.join(TOTAL_ZONES)} zones and GPUs)"
    )
    if not totals.domains:
        lines.append("  no RAPL zone or GPU could be read: " + str(attrs.get("errors") or "nothing found"))
    elif attrs.get("errors"):
        lines.append(f"  note: {attrs['errors']}")
    cost, co2, periods = money(totals, market)
    energy = f"  energy {total / J_PER_KWH:.6f} kWh"
    if cost is not None:
        energy += f"; cost {cost:.6f} EUR at the day-ahead price of {periods} period(s)"
    if co2 is not None:
        energy += f"; CO2 {co2:.3f} g"
    if market == [] and attrs.get("market"):
        energy += f"; no price: {attrs['market']}"
    lines.append(energy)
    if "sampler_cpu_seconds" in attrs and duration > 0:
        lines.append(
            f"  sampling overhead {100 * float(attrs['sampler_cpu_seconds']) / duration:.3f} % of one core"
        )
    return "\n".join(lines) + "\n"
