"""``powerplane job``'s summary against a real Prometheus on a backfilled TSDB whose every value is known.

Two hours at the rules' 60 s interval: nodes n1, n2 and n3 (400 W of rest each, two GPUs at 300 W).  Job 7
holds half of each node's CPUs, both GPUs of n1 and GPU 0 of n2, alone; job 8 a quarter of n2's
CPUs and its GPU 1, which a pod shares in the second hour (job 8's fraction drops to 0.5); job 9
the whole of n3.  Prices
change every market period; the GPUs' energy counters never reset, though n3's exporter restarts.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from powerplane.accounting import model
from powerplane.accounting import summary as s
from powerplane.accounting.job import as_dict
from powerplane.accounting.prometheus import QueryRecord
from powerplane.accounting.window import JobWindow
from powerplane.lab import procs
from powerplane.lab.tsdb import backfill
from powerplane.rulegen import render
from powerplane.rulegen.config import RulesConfig
from tests.conftest import require_binary
from tests.helpers import assert_same_document

STEP, REST_W, GPU_W = 60, 400.0, 300.0
# Hours ago, within the Prometheus's retention.
END = int(time.time()) // 3600 * 3600 - 3 * 3600
START = END - 7200
SHARED_FROM = START + 3600


def _series() -> list[tuple[str, str, Callable[[int], float]]]:
    rows: list[tuple[str, str, Callable[[int], float]]] = []

    def add(name: str, labels: str, value: Callable[[int], float]) -> None:
        rows.append((name, labels, value))

    def shared(t: int) -> float:
        return 0.5 if t >= SHARED_FROM else 1.0

    def job(j: str) -> str:
        return f'cluster="c",hpc_job="{j}"'

    for node in ("n1", "n2", "n3"):
        add(model.BEST, f'node="{node}",source="bmc"', lambda _t: REST_W + 2 * GPU_W)
        add(model.REST, f'node="{node}"', lambda _t: REST_W)
        add(model.NODE_GPU_POWER, f'node="{node}"', lambda _t: 2 * GPU_W)
        add("powerplane_node_info", f'node="{node}",rack="r",row="w",cluster="c",bmc="",partition=""',
            lambda _t: 1)  # fmt: skip
        for gpu in ("0", "1"):
            ids = f'node="{node}",gpu="{gpu}",uuid="GPU-{node}-{gpu}"'
            add("powerplane_gpu_power_watts", ids, lambda _t: GPU_W)
            add(model.GPU_ENERGY, ids, lambda t: GPU_W * (t - START + 3600))
            # n3's GPU exporter restarted half an hour into the window, without a drop of its counters.
            add(model.GPU_ENERGY_START, ids, (lambda t: START + 1800 if t >= START + 1800 else START - 3600)
                if node == "n3" else (lambda _t: START - 3600))  # fmt: skip
    held7 = (("n1", "0"), ("n1", "1"), ("n2", "0"))
    for node, gpu in held7:
        add(model.JOB_HOLDER, f'{job("7")},node="{node}",gpu="{gpu}"', lambda _t: 1)
        add(model.GPU_SHARE, f'node="{node}",gpu="{gpu}"', lambda _t: 1)
    add(model.JOB_HOLDER, f'{job("8")},node="n2",gpu="1"', lambda _t: 1)
    add(model.POD_HOLDER, 'cluster="c",namespace="ml",pod="p",node="n2",gpu="1"',
        lambda t: 1 if t >= SHARED_FROM else math.nan)  # fmt: skip
    add(model.GPU_SHARE, 'node="n2",gpu="1"', shared)
    for node in ("n1", "n2"):
        add(model.JOB_CPU_SHARE, f'{job("7")},node="{node}"', lambda _t: 0.5)
        gpus = sum(1 for n, _g in held7 if n == node)
        add(model.JOB_POWER, f'{job("7")},node="{node}",part="gpu"', lambda _t, g=gpus: g * GPU_W)
        add(model.JOB_POWER, f'{job("7")},node="{node}",part="rest"', lambda _t: REST_W / 2)
    add(model.JOB_CPU_SHARE, f'{job("8")},node="n2"', lambda _t: 0.25)
    for gpu in ("0", "1"):  # job 9: the whole of n3
        add(model.JOB_HOLDER, f'{job("9")},node="n3",gpu="{gpu}"', lambda _t: 1)
        add(model.GPU_SHARE, f'node="n3",gpu="{gpu}"', lambda _t: 1)
    add(model.JOB_CPU_SHARE, f'{job("9")},node="n3"', lambda _t: 1)
    add(model.JOB_POWER, f'{job("8")},node="n2",part="gpu"', lambda t: GPU_W * shared(t))
    add(model.JOB_POWER, f'{job("8")},node="n2",part="rest"', lambda _t: REST_W / 4)
    add(model.JOB_TOTAL, job("7"), lambda _t: 3 * GPU_W + REST_W)

    def running(t: int) -> float:
        return 1 if START <= t <= END else math.nan

    slurm = 'cluster="c",job_id="7"'
    add("powerplane_slurm_job_info", f'{slurm},user="alice",account="physics",partition="gpu",qos="normal"',
        running)  # fmt: skip
    add("powerplane_slurm_job_start_timestamp_seconds", slurm, lambda t: START if running(t) else math.nan)
    for node in ("n1", "n2"):
        add(
            "powerplane_slurm_job_allocation",
            f'{slurm},node="{node}",resource="cpus"',
            lambda t: 32 * running(t),
        )
    add("powerplane_cluster_info", 'cluster="c",area="DE-LU"', lambda _t: 1)
    add("powerplane_market_period_seconds", 'area="DE-LU"', lambda _t: 900)
    add("powerplane_market_price_eur_per_mwh", 'area="DE-LU"', lambda t: 50 + (t - START) // 900 * 10)
    add("powerplane_grid_carbon_intensity_grams_per_kwh", 'area="DE-LU"', lambda _t: 300)
    return rows


def _lines() -> Iterator[str]:
    # A stale marker is not OpenMetrics: a series absent at a time is left out (NaN here).
    for name, labels, value in _series():
        for t in range(START - 600, END + 601, STEP):
            v = value(t)
            if not math.isnan(v):
                yield f"{name}{{{labels}}} {v} {t}\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s.Prometheus]:
    binary = require_binary("prometheus")
    require_binary("promtool")
    work = tmp_path_factory.mktemp("summary-prom")
    backfill(work / "prom" / "data", _lines())
    rules = render.write(work / "rules", RulesConfig())
    # The rules are loaded for their interval; they find nothing current to record.
    with procs.Prometheus(work / "prom", [], rules, evaluation_interval=f"{STEP}s", binary=binary) as started:
        yield s.Prometheus(started.url)


def _summary(prom: s.Prometheus, job: str, nodes: tuple[str, ...]) -> s.Summary:
    window = JobWindow(job, "scontrol", "COMPLETED", start=float(START), end=float(END), nodes=nodes)
    return s.summarize(prom, window, now=END + 3600.0)


def test_the_command_logs_each_query_with_what_prometheus_read(prom: s.Prometheus, tmp_path: Path) -> None:
    log = tmp_path / "q.jsonl"
    argv = [sys.executable, "-m", "powerplane.cli", "job", "7", "--json", "--slurm", "prometheus",
            "--prometheus", prom.where, "--lookback", "12h", "--query-log", str(log)]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["window_source"] == "prometheus" and doc["nodes"] == ["n1", "n2"]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    # The window's queries and the summary's, each with Prometheus's own count of what it read.
    assert any("powerplane_slurm_job_info" in r["query"] for r in records)
    # The counters are read at the window's two ends, with when their exporter began counting them:
    # counted since before the job, none of their samples in between is read.
    readings = [r for r in records if f"{model.GPU_ENERGY}{{" in r["query"]]
    assert len(readings) == 2 and all("@" in r["query"] for r in readings)
    assert all(r["samples"] > 0 and r["server_seconds"] is not None for r in readings)
    assert len([r for r in records if f"{model.GPU_ENERGY_START}{{" in r["query"]]) == 1
    assert doc["methods"]["gpu"].startswith("energy counters")
    assert all(r["seconds"] > 0 and r["bytes"] > 0 for r in records)
    argv[-1] = str(tmp_path / "no" / "q.jsonl")
    unwritable = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert unwritable.returncode == 1 and "q.jsonl" in unwritable.stderr


def test_a_job_holding_its_gpus_alone_is_read_from_the_index_with_the_same_figures(
    prom: s.Prometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[QueryRecord] = []
    prom.query_log = log.append
    fast = _summary(prom, "7", ("n1", "n2"))
    prom.query_log = None
    # Its fractions over the whole window are not read (the index says it held its GPUs alone) ...
    assert not [r for r in log if f"min_over_time({model.JOB_HOLDER}" in r.query]
    # The job's holders, other owners' (jobs, pods) and the power series of GPUs it did not hold.
    assert sum(r.path == "series" for r in log) == 5
    # Not every GPU of n2 is its own: its GPU power is joined with its fractions.
    gpu_power = [r for r in log if "powerplane_gpu_power_watts{" in r.query and r.path != "series"]
    assert gpu_power and all("group_right" in r.query for r in gpu_power)
    # ... and give what comparing their largest and smallest values gives.
    monkeypatch.setattr(s, "_held_alone", lambda *_a: (False, False))
    compared = _summary(prom, "7", ("n1", "n2"))
    assert_same_document(as_dict(fast), as_dict(compared), 1e-9)
    hours = 2.0
    assert fast.methods["gpu"].startswith("energy counters")
    assert math.isclose(fast.energy_kwh["gpu"], 3 * GPU_W * hours / 1000, rel_tol=1e-9)
    assert math.isclose(fast.energy_kwh["rest"], 2 * REST_W / 2 * hours / 1000, rel_tol=1e-9)
    assert [(n.node, n.gpus, n.cpu_share) for n in fast.nodes] == [("n1", 2, 0.5), ("n2", 1, 0.5)]
    # The per-node figures (whole-window queries) add up to the per-period ones (range queries).
    assert fast.it_energy_kwh is not None
    assert math.isclose(sum(n.energy_kwh for n in fast.nodes), fast.it_energy_kwh, rel_tol=1e-9)
    prices = [50 + 10 * k for k in range(8)]
    per_period = (3 * GPU_W + REST_W) * 900 / 3.6e6
    assert math.isclose(fast.total("cost_eur") or 0, sum(per_period * p / 1000 for p in prices), rel_tol=1e-9)
    assert fast.peak_watts == 3 * GPU_W + REST_W and fast.coverage == 1.0


def _held(prom: s.Prometheus, job: str) -> list[dict[str, str]]:
    (found,) = prom.many(s._series(f'{model.JOB_HOLDER}{{hpc_job="{job}"}}', START, END))
    return found


@pytest.mark.parametrize("sets", [s.MAX_GPU_SETS, 0], ids=["per-set", "listed"])
def test_the_index_is_asked_for_other_owners_and_unheld_gpus(
    prom: s.Prometheus, monkeypatch: pytest.MonkeyPatch, sets: int
) -> None:
    # Per set of held GPUs (n1's two, n2's one) the index names the GPUs outside it; past
    # MAX_GPU_SETS it is listed whole: the same answers either way.
    monkeypatch.setattr(s, "MAX_GPU_SETS", sets)
    log: list[QueryRecord] = []
    prom.query_log = log.append

    def alone(
        job: str, nodes: str, cluster: str = "c", held: list[dict[str, str]] | None = None
    ) -> tuple[bool, bool]:
        q = s._Q(job, float(END), END - START, cluster, float(STEP), nodes_re=nodes)
        return s._held_alone(prom, q, _held(prom, job) if held is None else held)

    assert alone("9", "n3") == (True, True)  # both GPUs of n3, no one else's
    assert alone("7", "n1|n2") == (True, False)  # alone on its three, but n2's GPU 1 is not its own
    assert alone("8", "n2") == (False, False)  # a pod shares n2's GPU 1 in the second hour
    # Job 7 claiming n2's GPU 1 too meets job 8's holder series there.
    claimed = [*_held(prom, "7"), {"hpc_job": "7", "cluster": "c", "node": "n2", "gpu": "1"}]
    assert alone("7", "n1|n2", held=claimed) == (False, False)
    # The same job id in another cluster is another job: job 9's series of cluster c are not its own.
    assert alone("9", "n3", cluster="elsewhere") == (False, False)
    prom.query_log = None
    series = [r for r in log if r.path == "series" and model.JOB_HOLDER + "{hpc_job=" not in r.query]
    if sets:
        # None lists the job's own GPUs: the exceptions are asked for, and there are few.
        assert any('gpu!~"0|1"' in r.query for r in series) and any('gpu!~"0"' in r.query for r in series)
        assert all(r.bytes < 2000 for r in series)
    else:
        assert not any("gpu!~" in r.query for r in series)


def test_a_gpu_shared_for_part_of_the_job_is_integrated_from_its_recorded_series(prom: s.Prometheus) -> None:
    shared = _summary(prom, "8", ("n2",))
    assert any("share of a GPU changed" in line for line in shared.statements)
    assert shared.methods["gpu"] == "integrated GPU power"
    # The recorded samples in (START, END]: 59 at the whole GPU, 61 at half of it.
    assert math.isclose(shared.energy_kwh["gpu"], GPU_W * STEP * (59 + 61 / 2) / 3.6e6, rel_tol=1e-9)
    assert [(n.node, n.gpus, n.cpu_share) for n in shared.nodes] == [("n2", 1, 0.25)]


def test_a_job_holding_whole_nodes_takes_their_gpu_power_whole(
    prom: s.Prometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[QueryRecord] = []
    prom.query_log = log.append
    whole = _summary(prom, "9", ("n3",))
    prom.query_log = None
    # Its GPU power is the node's recorded sum: no GPU's power is read, nor joined with its fractions ...
    read = [r for r in log if r.path != "series"]
    assert not [r for r in read if "powerplane_gpu_power_watts{" in r.query]
    assert [r for r in read if f"{model.NODE_GPU_POWER}{{" in r.query]
    # Its exporter restarted during the job: its counters' window is checked for a drop, there only.
    (check,) = [r for r in read if f"resets({model.GPU_ENERGY}" in r.query]
    assert 'node=~"n3"' in check.query and check.samples > 0
    assert whole.methods["gpu"].startswith("energy counters")
    # ... and the figures of the joined queries.
    monkeypatch.setattr(s, "_held_alone", lambda *_a: (True, False))
    joined = _summary(prom, "9", ("n3",))
    assert_same_document(as_dict(whole), as_dict(joined), 1e-9)
    assert math.isclose(whole.it_energy_kwh or 0, (2 * GPU_W + REST_W) * 2 / 1000, rel_tol=1e-9)
    assert [(n.node, n.gpus, n.cpu_share) for n in whole.nodes] == [("n3", 2, 1.0)]
