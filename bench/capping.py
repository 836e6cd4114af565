"""What capping pays: a month of the lab cluster under five policies, through ``powerplane simulate``.

The cluster is the lab's (lab/powercap.py, lab/fakenvml): Xeon packages (PL1 250 W, 350 W
max), H100 SXM (200..700 W), A100 SXM (100..400 W) and L40S (100..350 W) boards.  Its nodes
run a job mix of compute- and memory-bound work with idle gaps between jobs; each device's
uncapped draw per 15-minute period follows its job.  Prices are a synthetic month of 15-minute
periods calibrated to the documented statistics of DE-LU in 2024 (docs/capping-economics.md,
"The price curve"): mean, peak/off-peak ratio, share of negative hours, share above 300
EUR/MWh, an evening peak and a midday solar dip.

Each policy is replayed with the controller's own code (``decide`` and ``split``) through the
shipped performance-power model, one policy per node class (budgets are node budgets):

- none: no cap (the baseline);
- static: always 80 % of the node's full power;
- rule of three: linear, inverse, 50..100 % of full power as the price goes 80..300 EUR/MWh;
- bands: 75 % above 150 EUR/MWh, 55 % above 250 (hysteresis 15, dwell 15 min);
- lookahead: the day's dearest periods capped hardest, down to 50 %, daily work budget 6 %
  of full-power throughput (the model it plans with is conservative, see the docs).

It prints the table of cost saved against work lost, writes the plots to docs/img/ with
``--plots``, and ends with a RESULT line.  Deterministic (seeded); not a timed benchmark.

    .venv/bin/python bench/capping.py [--days 30] [--seed 2024] [--plots docs/img]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from powerplane.controller.perfmodel import Model
from powerplane.controller.policy import policy_from_spec
from powerplane.controller.simreport import summary
from powerplane.controller.simulate import Device, Simulation, device_limits, make_timeline, simulate
from powerplane.exporters.market.curve import Curve
from powerplane.lab.fakenvml import PROFILES
from powerplane.lab.powercap import intel_package_constraints

BERLIN = ZoneInfo("Europe/Berlin")
Q = timedelta(minutes=15)
#: DE-LU, June 2025: the calibration targets (sources in docs/capping-economics.md).
TARGET_MEAN = 64.2  # EUR/MWh, the month's average day-ahead price (EPEX Spot)
TARGET_NEGATIVE = 141 / 720  # share of hours below zero (Energy-Charts: 141 h)
TARGET_MIN = -99.0  # EUR/MWh, the month's lowest price (22 June, 13:00)
TARGET_MAX = 289.0  # EUR/MWh, the month's highest price (30 June, 20:00)
TARGET_DAILY_MEANS = (22.6, 102.4)  # EUR/MWh, the lowest and highest daily averages
EVENING = (19, 22)  # local hours in which the daily peak often fell


# --- the price month ---------------------------------------------------------------------------


def _bisect(f: Any, low: float, high: float, target: float, rising: bool = True) -> float:
    for _ in range(50):
        mid = (low + high) / 2
        if (f(mid) < target) == rising:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def synthetic_prices(start: datetime, days: int, rng: np.random.Generator) -> np.ndarray:
    """A month of 15-minute prices calibrated to the DE-LU June 2025 targets.

    The shape: a daily level (a random walk), a morning ramp, an evening peak (19-22 h, when PV
    is gone and load is still high), a midday solar dip whose depth varies by day (overcast to
    clear), a weekend discount and noise; below zero prices are compressed (renewables curtail
    as prices fall, so most negative prices are shallow).  Five numbers are then solved for,
    one target each: the dip's depth (the share of negative periods), the compression (the
    minimum), the evening-peak height (the maximum), the level's scale (the range of daily
    means) and the offset (the mean).
    """
    n = days * 96
    local = [(start + i * Q).astimezone(BERLIN) for i in range(n)]
    hours = np.array([t.hour + t.minute / 60 for t in local])
    weekend = np.array([t.weekday() >= 5 for t in local], dtype=float)
    day = np.arange(n) // 96
    walk = np.cumsum(rng.normal(0, 1, days))
    walk = (walk - walk.mean()) / (walk.std() or 1.0)
    sun = rng.beta(2.5, 1.5, days)[day]  # June: mostly clear (1), some overcast days (0)
    shape = 12 * np.exp(-(((hours - 7.5) / 1.3) ** 2)) - 10 * np.exp(-(((hours - 3.5) / 2.0) ** 2))
    # Most evenings are moderate, a few are dear (the month's maximum came on one hot evening).
    strength = rng.beta(2.0, 5.0, days)
    evening = np.exp(-(((hours - 20.5) / 1.2) ** 2)) * (strength / strength.max())[day]
    dip = sun * np.exp(-(((hours - 13.5) / 2.4) ** 2))
    noise = rng.normal(0, 6, n) - 8 * weekend

    def compose(depth: float, squeeze: float, height: float, spread: float) -> np.ndarray:
        raw = spread * walk[day] + shape + height * evening - depth * dip + noise
        raw = raw - raw.mean() + TARGET_MEAN
        for _ in range(30):  # the mean after the compression of negatives, by fixed point
            p = np.where(raw < 0, raw * squeeze, raw)
            raw = raw + (TARGET_MEAN - p.mean())
        return np.where(raw < 0, raw * squeeze, raw)

    def daily_range(p: np.ndarray) -> float:
        means = p.reshape(-1, 96).mean(axis=1)
        return float(means.max() - means.min())

    x = {"depth": 120.0, "squeeze": 0.5, "height": 150.0, "spread": 15.0}
    target_range = TARGET_DAILY_MEANS[1] - TARGET_DAILY_MEANS[0]
    measures = {
        "depth": (lambda p: float((p < 0).mean()), 0, 2000, TARGET_NEGATIVE),
        "squeeze": (lambda p: -float(p.min()), 0.01, 1, -TARGET_MIN),
        "height": (lambda p: float(p.max()), 0, 1000, TARGET_MAX),
        "spread": (daily_range, 0, 200, target_range),
    }
    for _ in range(6):  # one target per parameter, in turn, until they agree
        for key, (measure, low, high, target) in measures.items():
            x[key] = _bisect(lambda v, k=key, m=measure: m(compose(**{**x, k: v})), low, high, target)
    depth, squeeze, height, spread = x["depth"], x["squeeze"], x["height"], x["spread"]
    prices: np.ndarray = np.round(compose(depth, squeeze, height, spread), 2)
    return prices


def price_stats(starts: Sequence[datetime], prices: np.ndarray) -> dict[str, float]:
    """The statistics the calibration aims at, and a few it does not (the daily spread)."""
    hours = np.array([t.astimezone(BERLIN).hour for t in starts]).reshape(-1, 96)
    daily = prices.reshape(-1, 96)
    peak_hour = hours[np.arange(len(daily)), daily.argmax(axis=1)]
    means = daily.mean(axis=1)
    return {
        "mean": float(prices.mean()),
        "negative_share": float((prices < 0).mean()),
        "min": float(prices.min()),
        "max": float(prices.max()),
        "daily_mean_min": float(means.min()),
        "daily_mean_max": float(means.max()),
        "daily_spread_mean": float((daily.max(axis=1) - daily.min(axis=1)).mean()),
        "days_peaking_19_22h": float(((peak_hour >= EVENING[0]) & (peak_hour < EVENING[1])).mean()),
    }


# --- the cluster and its jobs ------------------------------------------------------------------


@dataclass(frozen=True)
class NodeClass:
    name: str
    count: int
    gpu: str | None  # a lab GPU profile
    gpus: int
    #: Share of compute-bound jobs (the rest are memory-bound).
    compute_share: float


CLASSES = (
    NodeClass("h100", 8, "h100-sxm", 4, 0.7),
    NodeClass("a100", 4, "a100-sxm", 2, 0.6),
    NodeClass("l40s", 4, "l40s", 2, 0.5),
    NodeClass("cpu", 16, None, 0, 0.5),
)
SOCKETS = 2
PL1 = intel_package_constraints(250.0)[0]  # long_term: 250 W limit, 350 W max
PL1_MAX = PL1.max_w or PL1.limit_w


def full_power(cls: NodeClass) -> float:
    gpu = PROFILES[cls.gpu].power_limit_max_mw / 1e3 if cls.gpu else 0.0
    return SOCKETS * PL1.limit_w + cls.gpus * gpu


def jobs(n: int, cls: NodeClass, rng: np.random.Generator) -> tuple[np.ndarray, list[str | None]]:
    """Per period: the job's load level (0: idle) and its kind of work, jobs of 2-24 hours."""
    load = np.zeros(n)
    work: list[str | None] = [None] * n
    i = 0
    while i < n:
        if rng.random() < 0.12:  # an idle gap (the cluster is ~85 % allocated)
            i += int(rng.integers(2, 24))
            continue
        length = int(rng.integers(8, 96))
        kind = "compute" if rng.random() < cls.compute_share else "memory"
        level = rng.uniform(0.85, 1.0) if kind == "compute" else rng.uniform(0.55, 0.75)
        load[i : i + length] = level
        work[i : i + length] = [kind] * len(work[i : i + length])
        i += length
    return load, work


def cluster(n: int, rng: np.random.Generator) -> dict[str, list[Device]]:
    out: dict[str, list[Device]] = {}
    for cls in CLASSES:
        devices: list[Device] = []
        for k in range(cls.count):
            node = f"{cls.name}-{k:02d}"
            load, work = jobs(n, cls, rng)
            jitter = rng.normal(1.0, 0.03, n)
            for s in range(SOCKETS):
                cpu_load = np.where(load > 0, 0.55 + 0.4 * load, 0.0) if cls.gpu else load
                watts = np.maximum(40.0, PL1.limit_w * cpu_load * jitter)
                limits, low = device_limits(f"package-{s}", "cpu", PL1.limit_w, PL1_MAX, None)
                devices.append(Device(node, f"package-{s}", "cpu", watts, limits, low, work))
            if cls.gpu:
                p = PROFILES[cls.gpu]
                top, idle = p.power_limit_max_mw / 1e3, p.power_idle_mw / 1e3
                for g in range(cls.gpus):
                    watts = np.maximum(idle, top * load * jitter)
                    watts = np.minimum(watts, top)
                    limits, low = device_limits(f"gpu-{g}", "gpu", top, top, p.power_limit_min_mw / 1e3)
                    devices.append(Device(node, f"gpu-{g}", "gpu", watts, limits, low, work))
        out[cls.name] = devices
    return out


def model() -> Model:
    """The shipped curves, with each lab class's idle power (no work below it)."""
    from dataclasses import replace

    from powerplane.controller.perfmodel import NodeRule

    shipped = Model()
    classes = dict(shipped.classes)
    rules = []
    for cls in CLASSES:
        if cls.gpu:
            p = PROFILES[cls.gpu]
            classes[cls.name] = replace(shipped.classes["gpu"], idle_watts=p.power_idle_mw / 1e3 * 1.3)
            rules.append(NodeRule(match=f"{cls.name}-.*", gpu=cls.name))
    classes["cpu"] = replace(shipped.classes["cpu"], idle_watts=45.0)
    return Model(classes, tuple(rules), shipped.default)


# --- the policies ------------------------------------------------------------------------------


#: Each policy at five settings, gentlest first, so that they can be compared at equal work
#: lost (the frontier plot); the table's row is the setting in DEFAULT.
SWEEP: dict[str, list[Any]] = {
    "none": [None],
    "static": [0.95, 0.9, 0.85, 0.8, 0.7],  # the cap, a share of full power
    "rule of three": [0.8, 0.65, 0.5, 0.4, 0.3],  # minWatts, a share of full power
    "bands": [(0.85, 0.7), (0.75, 0.55), (0.65, 0.45), (0.55, 0.4), (0.45, 0.3)],  # the two bands' caps
    "lookahead": [0.02, 0.05, 0.1, 0.15, 0.2],  # workBudget
}
DEFAULT = {"none": 0, "static": 3, "rule of three": 2, "bands": 1, "lookahead": 2}


def policy_spec(name: str, setting: Any, full: float, cpu_share: float) -> dict[str, Any]:
    """The policy for a node class of ``full`` watts, its budget split as its full power is."""
    common = {"signal": {"curveFile": {"path": "synthetic"}}, "schedule": {"timezone": "Europe/Berlin"},
              "budget": {"cpuShare": cpu_share}}  # fmt: skip
    if name == "none":  # a band no price reaches: every device stays uncapped
        rule = {"type": "bands", "bands": {"thresholds": [{"above": 1e12, "level": "never"}]}}
    elif name == "static":
        rule = {
            "type": "bands",
            "bands": {"thresholds": [{"above": -1e9, "watts": setting * full, "level": "static"}]},
        }
    elif name == "rule of three":
        rule = {
            "type": "linear",
            "linear": {"minWatts": setting * full, "maxWatts": full, "signalMin": 60, "signalMax": 250},
        }
    elif name == "bands":
        high, extreme = setting
        rule = {"type": "bands", "bands": {"hysteresis": 15, "thresholds": [
            {"above": 120, "watts": high * full, "level": "high"},
            {"above": 200, "watts": extreme * full, "level": "extreme"}]}}  # fmt: skip
        common["minDwellSeconds"] = 900
    else:
        rule = {
            "type": "lookahead",
            "lookahead": {"minWatts": 0.5 * full, "maxWatts": full, "workBudget": setting},
        }
    return {**common, "policy": rule}


def run_policy(
    name: str, setting: Any, starts: list[datetime], curve: Curve, fleet: dict[str, list[Device]], m: Model
) -> tuple[dict[str, Any], list[Simulation]]:
    """One policy over every class; the figures summed over the cluster."""
    sims = []
    for cls in CLASSES:
        spec = policy_spec(name, setting, full_power(cls), SOCKETS * PL1.limit_w / full_power(cls))
        policy = policy_from_spec(name.replace(" ", "-"), spec)
        sims.append(simulate(policy, make_timeline(policy, spec, starts, curve), fleet[cls.name], m))
    docs = [summary(s) for s in sims]
    keys = ("energy_kwh", "cost_eur", "work_units")
    total: dict[str, Any] = {
        k: {side: sum(d["cluster"][k][side] for d in docs) for side in ("without", "with")} for k in keys
    }
    e, c, w = total["energy_kwh"], total["cost_eur"], total["work_units"]
    total |= {
        "cost_saved_ratio": (c["without"] - c["with"]) / c["without"],
        "energy_saved_ratio": (e["without"] - e["with"]) / e["without"],
        "work_lost_ratio": (w["without"] - w["with"]) / w["without"],
        "eur_per_work_change": (c["with"] / w["with"]) / (c["without"] / w["without"]) - 1,
        "unsafe": sum(d["safety"]["unsafe"] for d in docs),
        "asked_above_original": sum(d["safety"]["asked_above_original"] for d in docs),
        "periods_capped": max(d["cluster"]["periods_capped"] for d in docs),
    }  # fmt: skip
    return total, sims


def _row(name: str, setting: Any, t: dict[str, Any]) -> str:
    shown = (
        ""
        if setting is None
        else f" ({setting if not isinstance(setting, tuple) else '/'.join(map(str, setting))})"
    )
    return (
        f"| {name}{shown} | {100 * t['cost_saved_ratio']:.1f} % | {100 * t['energy_saved_ratio']:.1f} %"
        f" | {100 * t['work_lost_ratio']:.1f} % | {100 * t['eur_per_work_change']:+.1f} %"
        f" | {t['periods_capped']} | {t['asked_above_original']} | {t['unsafe']} |"
    )


HEADER = (
    "| policy (setting) | cost saved | energy saved | work lost | EUR per unit of work | periods capped"
    " | clamped to the original | unsafe caps |\n|---|---:|---:|---:|---:|---:|---:|---:|"
)


def plots(
    out: Path,
    starts: list[datetime],
    prices: np.ndarray,
    runs: dict[str, list[Simulation]],
    sweep: dict[str, list[dict[str, Any]]],
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = 0.25
    power = {
        name: np.nansum([r.power for s in sims for r in s.devices], axis=0) / 1000
        for name, sims in runs.items()
    }
    out.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for name, kw in power.items():
        ax.plot(starts, np.cumsum(kw * hours * prices / 1000), label=name, lw=1.2)
    ax.set_ylabel("cumulative energy cost, EUR")
    ax.set_title("Lab cluster, a month of synthetic DE-LU prices (June 2025 statistics): cost per policy")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    written.append(out / "capping-cost.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    week = slice(0, 7 * 96)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(1, 2))
    ax1.plot(starts[week], prices[week], color="tab:gray", lw=0.8)
    ax1.axhline(0, color="black", lw=0.5)
    ax1.set_ylabel("EUR/MWh")
    ax1.set_title("The first week: price, and cluster power per policy")
    for name, kw in power.items():
        ax2.plot(starts[week], kw[week], label=name, lw=0.9)
    ax2.set_ylabel("cluster power, kW")
    ax2.legend(fontsize=8, ncol=5, loc="lower left")
    fig.autofmt_xdate()
    fig.tight_layout()
    written.append(out / "capping-power.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in sweep.items():
        if name == "none":
            continue
        ax.plot([100 * p["work_lost_ratio"] for p in points], [100 * p["cost_saved_ratio"] for p in points],
                marker="o", label=name)  # fmt: skip
    ax.axvline(5, color="gray", lw=0.6, ls="--")
    ax.axhline(15, color="gray", lw=0.6, ls="--")
    ax.set_xlabel("work lost, %")
    ax.set_ylabel("cost saved, %")
    ax.set_title("Cost saved against work lost, each policy at five settings")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out / "capping-frontier.png")
    fig.savefig(written[-1], dpi=90)
    plt.close(fig)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--plots", type=Path, help="Write capping-{cost,power,frontier}.png here.")
    parser.add_argument("--json", type=Path, help="Write the figures as JSON here.")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    start = datetime(2025, 6, 1, tzinfo=BERLIN).astimezone(UTC)
    starts = [start + i * Q for i in range(args.days * 96)]
    prices = synthetic_prices(start, args.days, rng)
    stats = price_stats(starts, prices)
    curve = Curve.uniform("DE-LU", start, Q, prices.tolist())
    fleet = cluster(len(starts), rng)
    m = model()
    print(f"prices: {json.dumps({k: round(v, 3) for k, v in stats.items()})}")
    print(
        f"targets: mean {TARGET_MEAN}, negative {TARGET_NEGATIVE:.3f}, min {TARGET_MIN}, max {TARGET_MAX},"
        f" daily means {TARGET_DAILY_MEANS[0]}..{TARGET_DAILY_MEANS[1]},"
        f" evening peak {EVENING[0]}-{EVENING[1]} h"
    )
    nodes = sum(c.count for c in CLASSES)
    print(
        f"cluster: {nodes} nodes ({', '.join(f'{c.count} {c.name}' for c in CLASSES)}),"
        f" {len(starts)} periods\n"
    )
    rows: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[Simulation]] = {}
    sweep: dict[str, list[dict[str, Any]]] = {}
    for name, settings in SWEEP.items():
        for i, setting in enumerate(settings):
            total, sims = run_policy(name, setting, starts, curve, fleet, m)
            sweep.setdefault(name, []).append({"setting": setting, **total})
            if i == DEFAULT[name]:
                rows[name], runs[name] = total, sims
    print(HEADER)
    for name, total in rows.items():
        print(_row(name, SWEEP[name][DEFAULT[name]], total))
    print("\nEvery setting:\n")
    print(HEADER)
    for name, points in sweep.items():
        for point in points:
            print(_row(name, point["setting"], point))
    base = rows["none"]
    print(f"\nbaseline: {base['energy_kwh']['without']:,.0f} kWh, {base['cost_eur']['without']:,.0f} EUR")
    eligible = [(n, p) for n, ps in sweep.items() if n != "none" for p in ps if p["work_lost_ratio"] <= 0.05]
    best, b = max(eligible, key=lambda np_: np_[1]["cost_saved_ratio"]) if eligible else ("none", base)
    unsafe = sum(p["unsafe"] for ps in sweep.values() for p in ps)
    goal = b["cost_saved_ratio"] >= 0.15 and b["work_lost_ratio"] <= 0.05 and unsafe == 0
    print(f"best at <= 5 % work lost: {best} ({b.get('setting')})")
    if args.plots:
        for path in plots(args.plots, starts, prices, runs, sweep):
            print(f"wrote {path}")
    if args.json:
        args.json.write_text(json.dumps({"prices": stats, "policies": sweep}, indent=2, default=float))
    print(
        f"RESULT capping_best={best.replace(' ', '_')}"
        f" capping_cost_saved_pct={100 * b['cost_saved_ratio']:.1f}"
        f" capping_work_lost_pct={100 * b['work_lost_ratio']:.1f} capping_unsafe_caps={unsafe}"
        f" capping_goal_met={int(goal)}"
    )
    return 0 if unsafe == 0 and math.isfinite(b["cost_saved_ratio"]) else 1


if __name__ == "__main__":
    sys.exit(main())
