"""``powerplane simulate`` against a real Prometheus backfilled with known power, and on CSV traces.

The TSDB holds exactly known data (promtool ``tsdb create-blocks-from openmetrics``): energy
counters rising at a constant power within each 15-minute period, sampled every minute, and the
exporters' limit metrics.  With a perfectly flat model (a cap costs no throughput) the saved
cost is plain arithmetic, computed here by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from bs4 import BeautifulSoup
from click.testing import CliRunner

from powerplane.cli import main
from powerplane.controller import perfmodel
from powerplane.controller.policy import Policy, policy_from_spec
from powerplane.controller.simreport import render, summary
from powerplane.controller.simulate import (
    Device,
    Request,
    SimulationError,
    device_limits,
    make_timeline,
    period_starts,
    read_trace,
    run,
    simulate,
)
from powerplane.exporters.market.curve import Curve
from powerplane.lab.tsdb import BackfilledPrometheus, backfill
from tests.conftest import require_binary

T0 = 1_777_852_800  # 2026-05-04T00:00:00Z, a period boundary
START = datetime.fromtimestamp(T0, UTC)
Q = 900
PRICES = [50.0, 150.0, 80.0, 200.0, 120.0, 40.0, 300.0, 90.0]  # EUR/MWh, one per period
#: Constant power of each device (node, domain) through the 8 periods.
POWER = {
    ("g1", "package-0"): 180.0,
    ("g1", "package-1"): 180.0,
    ("g1", "gpu-0"): 600.0,
    ("g1", "gpu-1"): 300.0,
    ("c1", "package-0"): 200.0,
}
#: Bands: at 100 EUR/MWh and above, a 1000 W node budget, 20 % to the CPUs.
SPEC: dict[str, Any] = {
    "signal": {"curveFile": {"path": "prices.csv"}},
    "policy": {"type": "bands", "bands": {"thresholds": [{"above": 100, "watts": 1000, "level": "high"}]}},
    "budget": {"cpuShare": 0.2},
}


def prices_csv(path: Path, prices: list[float] = PRICES) -> Path:
    rows = ["start,end,price"]
    for i, price in enumerate(prices):
        a, b = START + timedelta(seconds=i * Q), START + timedelta(seconds=(i + 1) * Q)
        rows.append(f"{a.isoformat()},{b.isoformat()},{price}")
    path.write_text("\n".join(rows) + "\n")
    return path


def openmetrics() -> Iterator[str]:
    """Energy counters at every minute (exact at each period boundary) and the limit metrics."""
    for t in range(T0, T0 + len(PRICES) * Q + 1, 60):
        for (node, domain), watts in POWER.items():
            joules = watts * (t - T0)
            index = domain.split("-")[1]
            if domain.startswith("package"):
                zone = f'node="{node}",zone="package",index="{index}"'
                yield f"powerplane_rapl_energy_joules_total{{{zone}}} {joules} {t}\n"
                yield f'powerplane_rapl_power_limit_watts{{{zone},constraint="long_term"}} 250 {t}\n'
                yield f'powerplane_rapl_max_power_watts{{{zone},constraint="long_term"}} 350 {t}\n'
            else:
                gpu = f'node="{node}",gpu="{index}"'
                yield f'powerplane_gpu_energy_joules_total{{{gpu},uuid="GPU-{index}"}} {joules} {t}\n'
                for kind, value in (("current", 700), ("min", 200), ("max", 700), ("default", 700)):
                    yield f'powerplane_gpu_power_limit_watts{{{gpu},kind="{kind}"}} {value} {t}\n'


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    binary = require_binary("prometheus")
    require_binary("promtool")
    work = tmp_path_factory.mktemp("simulate-prom")
    backfill(work / "data", openmetrics())
    with BackfilledPrometheus(work / "prom", work / "data", binary=binary) as prom:
        yield prom


def write_policy(tmp_path: Path, spec: dict[str, Any] = SPEC) -> Path:
    spec = json.loads(json.dumps(spec))
    if "curveFile" in spec["signal"]:
        spec["signal"]["curveFile"]["path"] = str(prices_csv(tmp_path / "prices.csv"))
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def flat_model(tmp_path: Path) -> Path:
    path = tmp_path / "model.yaml"
    flat = [[0.01, 1.0], [0.5, 1.0]]
    path.write_text(
        yaml.safe_dump(
            {
                "classes": {
                    "flatcpu": {"kind": "cpu", "curves": {"compute": flat, "memory": flat}},
                    "flatgpu": {"kind": "gpu", "curves": {"compute": flat, "memory": flat}},
                },
                "default": {"cpu": "flatcpu", "gpu": "flatgpu"},
            }
        )
    )
    return path


def request(tmp_path: Path, url: str, **extra: Any) -> Request:
    end = (START + timedelta(seconds=len(PRICES) * Q)).isoformat()
    return Request(
        write_policy(tmp_path, extra.pop("spec", SPEC)),
        START.isoformat(),
        end,
        prometheus=url,
        model_file=extra.pop("model_file", flat_model(tmp_path)),
        **extra,
    )


async def test_flat_model_saves_exactly_the_hand_computed_cost(prometheus: Any, tmp_path: Path) -> None:
    sim = await run(request(tmp_path, prometheus.url))
    doc = summary(sim)
    c = doc["cluster"]
    # Capped periods: prices >= 100, i.e. 150, 200, 120 and 300 EUR/MWh.  g1's budget is
    # 200 W for two packages (100 W each: 80 W less than their 180 W) and 800 W for two GPUs
    # (400 W each: gpu-0 loses 200 W, gpu-1 draws 300 W anyway); c1's 1000 W are clamped to its
    # 250 W original and do not bind.  Saved: (80 + 80 + 200) W x 0.25 h = 0.09 kWh per period.
    assert c["cost_saved_eur"] == pytest.approx(0.09 * (150 + 200 + 120 + 300) / 1000, abs=1e-9)  # 0.0693
    assert c["energy_kwh"]["without"] == pytest.approx(1.46 * 2, abs=1e-9)  # 1460 W for 2 hours
    assert c["energy_kwh"]["with"] == pytest.approx(2.92 - 4 * 0.09, abs=1e-9)
    cost0 = sum(1.46 * 0.25 * p / 1000 for p in PRICES)
    assert c["cost_eur"]["without"] == pytest.approx(cost0, abs=1e-9)
    assert c["work_lost_ratio"] == 0.0  # flat: a cap costs no throughput
    assert c["periods_capped"] == 4 and c["periods_binding"] == 4
    assert doc["hours_at_level"] == {"high": 1.0, "low": 1.0}
    assert doc["nodes"]["g1"]["hours_at_level"] == {"high": 1.0, "low": 1.0}
    assert doc["nodes"]["c1"]["cost_saved_eur"] == 0.0
    assert doc["nodes"]["g1"]["devices"] == ["gpu-0", "gpu-1", "package-0", "package-1"]
    caps = {r.device.domain: r.caps for r in sim.devices if r.device.node == "g1"}
    assert list(caps["package-0"][[1, 3, 4, 6]]) == [100.0] * 4
    assert list(caps["gpu-0"][[1, 3, 4, 6]]) == [400.0] * 4
    assert np.isnan(caps["gpu-0"][[0, 2, 5, 7]]).all()


async def test_limits_come_from_the_exporters_metrics(prometheus: Any, tmp_path: Path) -> None:
    sim = await run(request(tmp_path, prometheus.url))
    limits = {(r.device.node, r.device.domain): r.device.limits for r in sim.devices}
    cpu = limits[("g1", "package-0")]
    gpu = limits[("g1", "gpu-1")]
    assert cpu is not None and (cpu.min_watts, cpu.max_watts, cpu.original_watts) == (43.75, 250.0, 250.0)
    assert gpu is not None and (gpu.min_watts, gpu.max_watts, gpu.original_watts) == (200.0, 700.0, 700.0)
    watts = {(r.device.node, r.device.domain): r.device.watts for r in sim.devices}
    for key, value in POWER.items():
        assert watts[key] == pytest.approx([value] * len(PRICES))  # rate() over each period, exact


async def test_a_policy_above_the_original_is_reported_not_hidden(prometheus: Any, tmp_path: Path) -> None:
    spec = {
        **SPEC,
        "policy": {
            "type": "bands",
            "bands": {"thresholds": [{"above": 100, "watts": 5000, "level": "high"}]},
        },
    }
    sim = await run(request(tmp_path, prometheus.url, spec=spec))
    doc = summary(sim)
    safety = doc["safety"]
    # 5000 W: g1's 1000 W for CPUs (500 W a package > 250 W) and 4000 W for GPUs (2000 W > 700 W),
    # c1's 5000 W for one package: every device in each of the 4 capped periods asked for more.
    assert safety["asked_above_original"] == 5 * 4
    assert safety["caps_above_original"] == 0 and safety["caps_below_hardware_minimum"] == 0
    assert any("more than a device's original limit in 20 device-periods" in w for w in doc["warnings"])
    assert "more than a device's original limit" in render(sim, "md")
    for r in sim.devices:
        ceiling = r.device.limits.original_watts if r.device.limits else None
        assert ceiling is not None and np.nanmax(r.caps) == ceiling


async def test_unsafe_counters_catch_a_range_below_the_hardware_minimum(tmp_path: Path) -> None:
    """A GPU an operator had set below NVML's minimum: ``gpu_limits`` tops its range at that
    original, so every cap lies below the hardware minimum; the counter says so and the command fails."""
    starts = period_starts(START, START + timedelta(hours=1), timedelta(minutes=15))
    limits, low = device_limits("gpu-0", "gpu", 150.0, 700.0, 200.0)
    assert limits is not None and limits.max_watts == 150.0 and low == 200.0
    device = Device("g1", "gpu-0", "gpu", np.full(4, 400.0), limits, low)
    policy = policy_from_spec("p", {**SPEC, "signal": {"static": {"value": 500}}})
    curve = Curve.uniform("X", START, timedelta(minutes=15), [500.0] * 4)
    timeline = make_timeline(policy, {"signal": {"static": {"value": 500}}}, starts, curve)
    doc = summary(simulate(policy, timeline, [device], perfmodel.Model()))
    assert doc["safety"]["caps_below_hardware_minimum"] == 4 and doc["safety"]["unsafe"] == 4


def test_command_writes_every_format(prometheus: Any, tmp_path: Path) -> None:
    policy = write_policy(tmp_path)
    end = (START + timedelta(seconds=len(PRICES) * Q)).isoformat()
    common = [
        "simulate",
        "--policy",
        str(policy),
        "--prometheus",
        prometheus.url,
        "--from",
        START.isoformat(),
        "--to",
        end,
    ]
    outs = {}
    for fmt in ("md", "json", "html"):
        out = tmp_path / f"report.{fmt}"
        result = CliRunner().invoke(
            main, [*common, "--model", str(flat_model(tmp_path)), "--format", fmt, "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        outs[fmt] = out.read_text()
    doc = json.loads(outs["json"])
    assert doc["cluster"]["cost_saved_eur"] == pytest.approx(0.0693)
    assert doc["safety"]["unsafe"] == 0
    assert "| cost (EUR) | 0.38 | 0.31 |" in outs["md"]
    page = BeautifulSoup(outs["html"], "html.parser")
    img = page.find("img")
    assert img is not None and str(img["src"]).startswith("data:image/png;base64,")
    assert not page.find_all(src=lambda s: s and not s.startswith("data:"))  # self-contained
    assert "g1" in page.get_text()


def test_shipped_model_loses_work_for_the_cost_it_saves(prometheus: Any, tmp_path: Path) -> None:
    policy = write_policy(tmp_path)
    end = (START + timedelta(seconds=len(PRICES) * Q)).isoformat()
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--policy",
            str(policy),
            "--prometheus",
            prometheus.url,
            "--from",
            START.isoformat(),
            "--to",
            end,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    c = doc["cluster"]
    assert c["cost_saved_eur"] == pytest.approx(0.0693)  # the caps are the same, the power too
    # gpu-0 at 400/600 of its draw and the packages at 100/180 keep less than all their throughput.
    assert 0 < c["work_lost_ratio"] < 0.5
    assert c["kwh_per_work"]["with"] != c["kwh_per_work"]["without"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-05-04T00:00:00"], "give a UTC offset"),
        (["--from", "yesterday"], "not an ISO-8601 instant"),
        (["--to", "2026-05-04T00:05:00Z"], "no whole period"),
        (["--to", "2028-05-04T00:00:00Z"], "at most 400 days"),
        (["--nodes", "("], "--nodes: not a regular expression"),
        (["--prices", "/nonexistent.csv"], "--prices"),
    ],
)
def test_command_refuses_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    policy = write_policy(tmp_path)
    base = {"--from": START.isoformat(), "--to": (START + timedelta(hours=2)).isoformat()}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [x for kv in base.items() for x in kv]
    trace = tmp_path / "t.csv"
    trace.write_text("time,node,domain,watts\n")
    result = CliRunner().invoke(main, ["simulate", "--policy", str(policy), "--trace", str(trace), *flat])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_prometheus_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    policy = write_policy(tmp_path)
    cfg = tmp_path / "prom.yaml"
    cfg.write_text("url: http://127.0.0.1:9\nretries: 0\ntimeout: 2\n")
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--policy",
            str(policy),
            "--prometheus-config",
            str(cfg),
            "--from",
            START.isoformat(),
            "--to",
            (START + timedelta(hours=1)).isoformat(),
        ],
    )
    assert result.exit_code == 1 and "127.0.0.1:9" in result.output and "Traceback" not in result.output


# --- CSV traces --------------------------------------------------------------------------------


def trace_rows(rows: list[str]) -> str:
    return "time,node,domain,watts,work\n" + "".join(r + "\n" for r in rows)


def test_a_csv_trace_is_averaged_per_period_and_gaps_stay_gaps(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    t = START.isoformat()
    t2 = (START + timedelta(minutes=20)).isoformat()
    path.write_text(
        trace_rows(
            [
                f"{t},n1,gpu-0,500,compute",
                f"{START.timestamp() + 300},n1,gpu-0,700,compute",  # Unix seconds are accepted too
                f"{t2},n1,gpu-0,300,",
                f"{t},n1,package-0,100,memory",
                f"{(START + timedelta(days=9)).isoformat()},n1,gpu-0,1,",  # outside the range: ignored
            ]
        )
    )
    starts = period_starts(START, START + timedelta(hours=1), timedelta(minutes=15))
    devices = {d.domain: d for d in read_trace(path, starts, timedelta(minutes=15), perfmodel.Model())}
    gpu = devices["gpu-0"]
    assert gpu.watts[0] == 600.0 and gpu.watts[1] == 300.0
    assert math.isnan(gpu.watts[2]) and math.isnan(gpu.watts[3])
    assert gpu.work == ["compute", None, None, None]
    assert devices["package-0"].limits is None  # no range in the trace or the model: never capped


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,node,watts\n", "the header lacks domain"),
        ("time,node,domain,watts\nsoon,n1,gpu-0,1\n", "line 2: time or watts is not a valid value"),
        (
            "time,node,domain,watts\n2026-05-04T00:00:00Z,n1,gpu-0,nan\n",
            "line 2: watts must be a finite number",
        ),
        (
            "time,node,domain,watts\n2026-05-04T00:00:00Z,n1,gpu-0,-5\n",
            "line 2: watts must be a finite number",
        ),
        (
            "time,node,domain,watts\n2026-05-04T00:00:00Z,n1,disk-0,5\n",
            "line 2: domain 'disk-0' is not package-N or gpu-N",
        ),
        ("time,node,domain,watts\n2026-05-04T00:00:00Z,,gpu-0,5\n", "line 2: node must be a name"),
        ("time,node,domain,watts\n1e400,n1,gpu-0,5\n", "line 2: time or watts"),
        (
            "time,node,domain,watts,max_watts\n2026-05-04T00:00:00Z,n1,gpu-0,5,lots\n",
            "line 2: max_watts is not a number",
        ),
    ],
)
def test_a_malformed_trace_names_the_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    starts = period_starts(START, START + timedelta(hours=1), timedelta(minutes=15))
    with pytest.raises(SimulationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_trace(path, starts, timedelta(minutes=15), perfmodel.Model())


def test_binary_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x00\n" * 10)
    starts = period_starts(START, START + timedelta(hours=1), timedelta(minutes=15))
    with pytest.raises(SimulationError, match=r"bad\.csv"):
        read_trace(path, starts, timedelta(minutes=15), perfmodel.Model())


def test_trace_through_the_command_with_a_csv_store_of_prices(tmp_path: Path) -> None:
    from powerplane.exporters.market.files import CsvStore

    store = tmp_path / "store"
    day = Curve.uniform("DE-LU", datetime(2026, 5, 3, 22, tzinfo=UTC), timedelta(minutes=15), [100.0] * 96)
    assert CsvStore("s", store).write_day(day, datetime(2026, 5, 4).date())
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "time,node,domain,watts,min_watts,max_watts,original_watts\n"
        + "".join(
            f"{(START + timedelta(minutes=15 * i)).isoformat()},n1,gpu-0,600,200,700,700\n" for i in range(8)
        )
    )
    policy = tmp_path / "p.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "signal": {"market": {"url": "http://127.0.0.1:9/api/v1/curve", "area": "DE-LU"}},
                "policy": {
                    "type": "linear",
                    "linear": {"minWatts": 300, "maxWatts": 600, "signalMin": 0, "signalMax": 200},
                },
            }
        )
    )
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--policy",
            str(policy),
            "--trace",
            str(trace),
            "--prices",
            str(store),
            "--from",
            START.isoformat(),
            "--to",
            (START + timedelta(hours=2)).isoformat(),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # Price 100 of 0..200, inverse: 600 W * 0.5 = 300 W, the GPU drawing 600 W: half the energy.
    assert doc["cluster"]["energy_kwh"] == {"without": pytest.approx(1.2), "with": pytest.approx(0.6)}
    assert doc["cluster"]["cost_saved_eur"] == pytest.approx(0.6 * 100 / 1000)


def test_policy_type_and_warnings_in_the_report(tmp_path: Path) -> None:
    starts = period_starts(START, START + timedelta(hours=2), timedelta(minutes=15))
    curve = Curve.uniform("X", START - timedelta(days=2), timedelta(minutes=15), [100.0] * (96 * 5))
    spec = {
        "signal": {"curveFile": {"path": "x"}},
        "policy": {"type": "lookahead", "lookahead": {"minWatts": 100, "maxWatts": 200, "workBudget": 0.1}},
    }
    policy: Policy = policy_from_spec("la", spec)
    limits, low = device_limits("gpu-0", "gpu", 700.0, 700.0, 200.0)
    device = Device("n1", "gpu-0", "gpu", np.full(len(starts), 600.0), limits, low)
    sim = simulate(policy, make_timeline(policy, spec, starts, curve), [device], perfmodel.Model())
    doc = summary(sim)
    assert doc["type"] == "lookahead"
    assert any("schedule.timezone" in w for w in doc["warnings"])


def test_the_docs_trace_example_reads(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "capping-economics.md"
    block = next(b.split("```")[0] for b in docs.read_text().split("```\n")[1:] if b.startswith("time,node"))
    path = tmp_path / "trace.csv"
    path.write_text(block)
    starts = period_starts(
        datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 1, 1, tzinfo=UTC), timedelta(minutes=15)
    )
    devices = read_trace(path, starts, timedelta(minutes=15), perfmodel.Model())
    assert {(d.node, d.domain) for d in devices} == {("gpu-01", "gpu-0"), ("gpu-01", "package-0")}
    assert devices[0].work is not None and devices[0].work[0] == "compute"
