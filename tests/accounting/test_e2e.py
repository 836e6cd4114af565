"""The ledger end to end: a real Slurm cluster and its exporter, a real Prometheus evaluating the
shipped rules, and meters and a market curve whose every value is known.

node-01 (8 CPUs) draws 1200 W at its BMC; its GPUs draw 300 W (NVML 0, minor 2: a pod's), 250 W
(NVML 1, minor 0) and 200 W (NVML 2, minor 1), so its rest is 450 W.  Job A holds 2 CPUs and
Slurm's GPU 0 (minor 0: NVML 1), job B 4 CPUs and Slurm's GPU 1 (NVML 2); the pod uses 0.5 cores;
2 CPUs idle.  Job C runs on node-02, which has no power data; job D never starts.  Market periods
last 20 s: 100, 200, (no price), 150 EUR/MWh; carbon 300, 500, 400, 400 g/kWh.  B ends across
the first price change; A runs through the price gap, and its GPU's energy counter resets.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane.exporters.slurm.config import KIND
from powerplane.exporters.slurm.exporter import make_server
from powerplane.lab import procs
from powerplane.lab.slurm import REST_USER, SlurmCluster
from powerplane.rulegen import render
from powerplane.rulegen.config import RulesConfig
from tests.conftest import PrometheusFactory

from .steady import SteadySource, serving, step_curve

pytestmark = pytest.mark.e2e

PERIOD = 20.0
#: Seconds at least from the test's start to t0: Prometheus's start, then more than a rate window.
LEAD = 30.0
PRICES: dict[int, float | None] = {0: 100.0, 1: 200.0, 2: None, 3: 150.0}
CARBON: dict[int, float | None] = {0: 300.0, 1: 500.0, 2: 400.0, 3: 400.0}
NODE_W, GPU_W = 1200.0, {"0": 300.0, "1": 250.0, "2": 200.0}
MINOR = {"0": "2", "1": "0", "2": "1"}
REST_W = NODE_W - sum(GPU_W.values())
POD_CORES, CPUS = 0.5, 8
A_W = GPU_W["1"] + REST_W * 2 / CPUS
B_W = GPU_W["2"] + REST_W * 4 / CPUS
POD_W = GPU_W["0"] + REST_W * POD_CORES / CPUS


def _source(t0: float, reset_at: float) -> SteadySource:
    src = SteadySource()
    base = t0 - 3600
    src.add("powerplane_redfish_power_watts", NODE_W, node="node-01")
    for gpu, watts in GPU_W.items():
        ident = {"node": "node-01", "gpu": gpu, "uuid": f"GPU-{gpu}"}
        src.add("powerplane_gpu_info", 1, **ident, model="H100", pci_bus_id=f"p{gpu}", driver_version="550",
                minor_number=MINOR[gpu])  # fmt: skip
        src.add("powerplane_gpu_power_watts", watts, **ident)
        since = (lambda t, w=watts: w * (t - (reset_at if t >= reset_at else base))) if gpu == "1" else None
        src.add("powerplane_gpu_energy_joules_total", since or (lambda t, w=watts: w * (t - base)), **ident)
        # As the exporter says it: the reset came with its restart.
        began = (lambda t: reset_at if t >= reset_at else base) if gpu == "1" else base
        src.add("powerplane_gpu_energy_start_timestamp_seconds", began, **ident)
    src.add("powerplane_gpu_pod_info", 1, node="node-01", gpu="0", uuid="GPU-0", gpu_instance="",
            namespace="ml", pod="train", container="main")  # fmt: skip
    pod = {"namespace": "ml", "pod": "train"}
    src.add("container_cpu_usage_seconds_total", lambda t: POD_CORES * (t - base), **pod, container="main")
    src.add("kube_pod_info", 1, **pod, node="node-01")
    src.add("kube_node_status_capacity", CPUS, node="node-01", resource="cpu")
    for node in ("node-01", "node-02"):
        src.add(
            "powerplane_node_info", 1, node=node, rack="r1", row="w1", cluster="lab", bmc="", partition=""
        )
    src.add("powerplane_cluster_info", 1, cluster="lab", area="TEST")
    src.add("powerplane_market_period_seconds", PERIOD, area="TEST")
    src.add("powerplane_market_price_eur_per_mwh", step_curve(PERIOD, PRICES, t0), area="TEST")
    src.add("powerplane_grid_carbon_intensity_grams_per_kwh", step_curve(PERIOD, CARBON, t0), area="TEST")
    return src


def _window(lab: SlurmCluster, job: str) -> tuple[float, float]:
    text = lab.run("scontrol", "-o", "show", "job", job)
    fields = dict(re.findall(r"(\w+)=(\S+)", text))
    start, end = (
        datetime.strptime(fields[k], "%Y-%m-%dT%H:%M:%S").timestamp() for k in ("StartTime", "EndTime")
    )
    return start, end


def _truth(
    start: float, end: float, watts: float, t0: float, curve: dict[int, float | None]
) -> tuple[float, float]:
    """(EUR or kg over the known periods, kWh of the unknown ones) of ``watts`` over [start, end]."""
    known = unknown = 0.0
    k = math.floor((start - t0) / PERIOD)
    while t0 + k * PERIOD < end:
        a, b = max(start, t0 + k * PERIOD), min(end, t0 + (k + 1) * PERIOD)
        value = curve.get(k, curve[max(curve)] if k > max(curve) else curve[min(curve)])
        if value is None:
            unknown += watts * (b - a) / 3.6e6
        else:
            known += watts * (b - a) / 3.6e6 * value / 1000
        k += 1
    return known, unknown


def _job(lab: SlurmCluster, prom_url: str, job: str, *extra: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "powerplane.cli", "job", job, "--json", "--prometheus", prom_url, *extra],
        capture_output=True, text=True, env=lab.env(), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def _integral(prom: procs.Prometheus, expr: str, start: float, end: float) -> float:
    """Joules of a watts expression over [start, end], from Prometheus at 1 s resolution (one sample a
    second: the subquery's range holds both its ends)."""
    value = prom.value(f"sum_over_time(({expr})[{int(end - start) - 1}s:1s] @ {end:.0f})", at=end)
    return value or 0.0


def test_the_ledger_matches_hand_computed_truth_and_adds_up(
    slurm: SlurmCluster, prometheus: PrometheusFactory, background_loop: procs.BackgroundLoop, tmp_path: Path
) -> None:
    lab = slurm
    # The periods are aligned like the market's; Prometheus scrapes the meters for a rate window
    # (20 s) and more before the ledger's window opens at t0 - 5.
    t0 = math.ceil((time.time() + LEAD) / PERIOD) * PERIOD
    reset_at = t0 + 50
    config = tmp_path / "slurm.yml"
    config.write_text(
        yaml.safe_dump(lab.exporter_config("slurmrestd" if lab.rest_binary else "cli", min_interval=1))
    )
    server = make_server(KIND.load(config))
    host, port = background_loop.run(server.start())
    try:
        with serving(_source(t0, reset_at), background_loop) as meters:
            slurm_target = {"targets": [f"{host}:{port}"], "labels": {"cluster": "lab"}}
            prom = prometheus(
                [
                    {"job_name": "powerplane-slurm", "static_configs": [slurm_target]},
                    {"job_name": "meters", "static_configs": [{"targets": [meters]}]},
                ],
                # rate() over a window longer than a series' life reads low: the pod's CPU time is
                # a few seconds old, so the window is short (a site setting, rate_window).
                render.write(tmp_path / "rules", RulesConfig(rate_window="20s")),
            )  # fmt: skip
            prom.wait_targets_up(2)
            _scenario(lab, prom, t0, reset_at, tmp_path)
    finally:
        background_loop.run(server.stop())


def _scenario(lab: SlurmCluster, prom: procs.Prometheus, t0: float, reset_at: float, tmp_path: Path) -> None:
    _until(t0 + 1)
    mem = "--mem=1000"
    a = lab.sbatch("-w", "node-01", "-n", "2", "--gres=gpu:h100:1", mem, "--account=physics", user=REST_USER)
    lab.wait_job(a)
    b = lab.sbatch("-w", "node-01", "-n", "4", "--gres=gpu:h100:1", mem, "--account=chem")
    c = lab.sbatch("-w", "node-02", "-n", "1", mem, "--account=chem")
    d = lab.sbatch("-n", "64", mem)
    for job in (b, c):
        lab.wait_job(job)
    _until(t0 + 31)
    lab.run("scancel", b)
    lab.run("scancel", d)
    # At once: slurmctld forgets a job that never ran MinJobAge (60 s) after it ends.
    _check_no_nodes(lab, prom, d)
    # While A and B ran: the rates and the split, as the rules record them.
    mid = t0 + 15
    assert prom.value(
        f'sum(hpc_job:powerplane_power_watts:attributed{{hpc_job="{a}"}})', at=mid
    ) == pytest.approx(A_W)
    assert prom.value(
        f'sum(hpc_job:powerplane_power_watts:attributed{{hpc_job="{b}"}})', at=mid
    ) == pytest.approx(B_W)
    cost_rate = prom.value(f'hpc_job:powerplane_energy_cost_eur_per_hour:sum{{hpc_job="{b}"}}', at=mid)
    assert cost_rate == pytest.approx(B_W * 100 / 1e6)
    assert prom.value('account:powerplane_power_watts:attributed{account="chem"}', at=mid) == pytest.approx(
        B_W
    )
    unattributed = REST_W * (1 - 6 / CPUS - POD_CORES / CPUS)
    # The pod's share is a rate of CPU time read at scrape time: within a scrape's jitter.
    left = prom.value('sum(node:powerplane_power_watts:unattributed{node="node-01"})', at=mid)
    assert left == pytest.approx(unattributed, rel=1e-3)
    # B's checks while A runs on: B has ended, and slurmctld keeps it MinJobAge (60 s) after.
    _check_b(lab, prom, t0, b)
    _check_epilog(lab, prom, b, tmp_path)
    _until(t0 + 71)
    lab.run("scancel", a)
    lab.run("scancel", c)
    _until(t0 + 75)
    _check_a(lab, prom, t0, a)
    _check_ledger(prom, t0)
    _check_hostile(lab, prom, c)


def _check_b(lab: SlurmCluster, prom: procs.Prometheus, t0: float, b: str) -> None:
    """B: across a price change, GPU energy from its counter."""
    start, end = _window(lab, b)
    got = _job(lab, prom.url, b)
    assert got["window_source"] == "scontrol" and got["state"] == "CANCELLED"
    assert got["energy_kwh"]["it"] == pytest.approx(B_W * (end - start) / 3.6e6, rel=0.01)
    assert got["energy_kwh"]["gpu"] == pytest.approx(GPU_W["2"] * (end - start) / 3.6e6, rel=0.01)
    assert got["methods"]["gpu"].startswith("energy counters")
    cost, unpriced = _truth(start, end, B_W, t0, PRICES)
    assert unpriced == 0 and got["cost_complete"]
    assert got["cost_eur"] == pytest.approx(cost, rel=0.01)
    assert len({p["price_eur_per_mwh"] for p in got["periods"]}) == 2, got["periods"]
    co2, _ = _truth(start, end, B_W, t0, CARBON)
    assert got["co2_kg"] == pytest.approx(co2, rel=0.01)
    assert got["power_watts"]["average"] == pytest.approx(B_W, rel=0.01)
    (node,) = got["node_share"]
    assert node["node"] == "node-01" and node["cpu_share"] == 0.5 and node["gpus"] == 1
    assert node["share_of_node_energy"] == pytest.approx(B_W / NODE_W, rel=0.02)
    assert got["coverage"] == pytest.approx(1.0, abs=0.02)
    # The same job with its window from the Slurm exporter's series: the end is a scrape away.
    procs.wait_until(
        lambda: not prom.query(f'powerplane_slurm_job_info{{job_id="{b}"}}'), 30, 0.5, f"job {b} to go stale"
    )
    seen = _job(lab, prom.url, b, "--slurm", "prometheus")
    assert seen["window_source"] == "prometheus"
    assert seen["energy_kwh"]["it"] == pytest.approx(got["energy_kwh"]["it"], rel=0.1)
    assert any("last scrape" in s for s in seen["statements"])


def _check_a(lab: SlurmCluster, prom: procs.Prometheus, t0: float, a: str) -> None:
    """A: through a price gap, with its GPU's counter reset mid-job."""
    start, end = _window(lab, a)
    got = _job(lab, prom.url, a)
    assert got["energy_kwh"]["it"] == pytest.approx(A_W * (end - start) / 3.6e6, rel=0.01)
    assert got["methods"]["gpu"] == "integrated GPU power"
    assert any("reset during the job" in s for s in got["statements"]), got["statements"]
    cost, unpriced = _truth(start, end, A_W, t0, PRICES)
    assert unpriced > 0 and not got["cost_complete"]
    assert got["cost_eur"] == pytest.approx(cost, rel=0.01)
    assert got["unpriced_kwh"] == pytest.approx(unpriced, rel=0.01)
    assert sum("no price for TEST" in s for s in got["statements"]) == 1, got["statements"]
    co2, _ = _truth(start, end, A_W, t0, CARBON)
    assert got["co2_kg"] == pytest.approx(co2, rel=0.01) and got["co2_complete"]
    text = subprocess.run(
        [sys.executable, "-m", "powerplane.cli", "job", a, "--prometheus", prom.url],
        capture_output=True, text=True, env=lab.env(), timeout=120, check=True,
    ).stdout  # fmt: skip
    assert f"Job {a} of {REST_USER} (account physics" in text and "incomplete" in text and "reset" in text


def _check_epilog(lab: SlurmCluster, prom: procs.Prometheus, job: str, tmp_path: Path) -> None:
    """deploy/slurm/powerplane-slurm, run as slurmctld's EpilogSlurmctld, writes what the command says."""
    site = tmp_path / "hook"
    site.mkdir()
    conf = site / "slurm-hooks.conf"
    conf.write_text(
        f"POWERPLANE={Path(sys.executable).parent / 'powerplane'}\nJOB_SUMMARY_DIR={site / 'jobs'}\n"
        # The window from the Slurm exporter's series: slurmctld forgets an ended job after MinJobAge.
        f"JOB_SUMMARY_DELAY=0\nJOB_ARGS=--prometheus {prom.url} --slurm prometheus\n"
    )
    env = {**lab.env(), "POWERPLANE_SLURM_HOOKS_CONF": str(conf), "SLURM_SCRIPT_CONTEXT": "epilog_slurmctld"}
    hook = Path(__file__).resolve().parents[2] / "deploy" / "slurm" / "powerplane-slurm"
    done = subprocess.run(
        [str(hook)], env={**env, "SLURM_JOB_ID": job}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    written = [site / "jobs" / f"{job}.{kind}" for kind in ("json", "txt")]
    procs.wait_until(lambda: all(p.exists() for p in written), 120, 0.5, "the epilog's summaries")
    assert json.loads(written[0].read_text()) == _job(lab, prom.url, job, "--slurm", "prometheus")
    assert written[1].read_text().startswith(f"Job {job} (cluster lab) of ")
    assert sorted(p.name for p in (site / "jobs").iterdir()) == [f"{job}.json", f"{job}.txt"]


def _check_ledger(prom: procs.Prometheus, t0: float) -> None:
    """Owners + unattributed = node energy, and the pod's energy, over the whole scenario."""
    start, end = t0 - 5, t0 + 73
    owners = _integral(
        prom,
        'sum(hpc_job:powerplane_power_watts:attributed{node="node-01"}'
        ' or pod:powerplane_power_watts:attributed{node="node-01"}'
        ' or node:powerplane_power_watts:unattributed{node="node-01"})',
        start,
        end,
    )
    node = _integral(prom, 'max(node:powerplane_power_watts:best{node="node-01"})', start, end)
    assert node == pytest.approx(NODE_W * (end - start), rel=0.01)
    assert owners == pytest.approx(node, rel=0.005)
    pod = _integral(prom, 'sum(pod:powerplane_power_watts:attributed{pod="train"})', t0, t0 + 60)
    assert pod == pytest.approx(POD_W * 60, rel=0.01)


def _check_no_nodes(lab: SlurmCluster, prom: procs.Prometheus, d: str) -> None:
    got = _job(lab, prom.url, d)
    assert got["energy_kwh"]["it"] is None and got["nodes"] == []
    assert any("ran on no nodes" in s for s in got["statements"]), got


def _check_hostile(lab: SlurmCluster, prom: procs.Prometheus, c: str) -> None:
    got = _job(lab, prom.url, c)
    assert got["energy_kwh"]["it"] is None and got["cost_eur"] is None, got
    assert any(s.startswith("node-02: no power data during the job") for s in got["statements"]), got
    missing = subprocess.run(
        [sys.executable, "-m", "powerplane.cli", "job", "99999", "--prometheus", prom.url],
        capture_output=True, text=True, env=lab.env(), timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1 and "99999" in missing.stderr
