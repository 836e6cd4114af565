"""The demo's real Slurm jobs in the ledger: its GPU jobs' power is attributed, and ``powerplane job``
summarises one of them from the demo's Prometheus (what the README's demo shows)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from powerplane.accounting import model
from powerplane.dashboards.preview import scrape_interval
from powerplane.lab import procs
from powerplane.lab.demo import DemoContext, start_parts
from powerplane.lab.slurm import SlurmCluster
from powerplane.rulegen import render
from tests.conftest import IN_CI, LAB_START_S, PrometheusFactory

pytestmark = pytest.mark.e2e


def test_powerplane_job_summarises_a_running_demo_job(
    prometheus: PrometheusFactory, background_loop: procs.BackgroundLoop, tmp_path: Path
) -> None:
    stack = contextlib.AsyncExitStack()
    ctx = DemoContext(tmp_path / "lab", [f"node-{i + 1:02d}" for i in range(3)], stack)
    try:
        background_loop.run(start_parts(ctx), timeout=LAB_START_S)
        cluster = ctx.shared.get("slurm")
        if not isinstance(cluster, SlurmCluster):
            message = "REAL COMPONENT MISSING: the demo started no Slurm cluster (not root, or Slurm absent)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        interval = scrape_interval(ctx.scrape_configs)
        prom = prometheus(
            ctx.scrape_configs,
            rule_files=render.write(tmp_path / "rules"),
            scrape_interval=f"{interval}s",
            evaluation_interval="1s",
        )

        # The demo's GPU jobs run on node-01 (H100s, some held by pods too) and node-02 (A100s).
        # The demo submits its jobs as it starts: the scheduler starts them a moment later.
        def running() -> str | None:
            lines = cluster.run("squeue", "-h", "-t", "R", "-o", "%i %j").split()
            return dict(zip(lines[1::2], lines[::2], strict=True)).get("train-node-01")

        job = procs.wait_until(running, 60, 1.0, "the demo's train-node-01 job running")
        gpu = f'{model.JOB_POWER}{{hpc_job="{job}",part="gpu"}}'
        assert prom.wait_value(gpu, timeout=120) > 0
        # Cost and CO2 need the market's price and carbon intensity, whose first fetch may come
        # after the job's power: ten evaluations of each before the summary is asked for.
        for series in (gpu, f'{model.NODE_PRICE}{{node="node-01"}}'):
            procs.wait_until(
                lambda s=series: (prom.value(f"count_over_time({s}[1m])") or 0) >= 10,
                90,
                1.0,
                f"ten evaluations of {series}",
            )
        result = subprocess.run(
            [sys.executable, "-m", "powerplane.cli", "job", job, "--json", "--prometheus", prom.url],
            capture_output=True, text=True, env=cluster.env(), timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        got = json.loads(result.stdout)
        assert got["state"] == "RUNNING" and got["nodes"] == ["node-01"]
        assert got["energy_kwh"]["gpu"] > 0
        # A period the price series does not reach back to (the demo started inside it) is named
        # and left unpriced, never guessed: cost and CO2 then exist only from the priced periods on.
        unpriced = [x for x in got["statements"] if x.startswith("no price for ")]
        if got["cost_eur"] is None:
            assert unpriced, json.dumps(got)
        else:
            # Each priced period's energy at its price: the lab's market, like DE-LU's, has hours
            # of negative prices, so the cost may be below zero.
            priced = [p for p in got["periods"] if p["price_eur_per_mwh"] is not None]
            expected = sum(p["energy_kwh"] * p["price_eur_per_mwh"] / 1000 for p in priced)
            assert priced and got["cost_eur"] == pytest.approx(expected, rel=1e-9), json.dumps(got)
            assert got["co2_kg"] is not None and got["co2_kg"] > 0, json.dumps(got)
        assert got["node_share"][0]["gpus"] == 2
        # Where the lab's node meter reads less than its GPUs, the summary must say so, not bill it.
        during = f'{model.REST}{{node="node-01"}}[{int(got["duration_seconds"])}s]'
        at = datetime.fromisoformat(got["end"]).timestamp()
        # The summary's end is "now": the evaluation that covers it may land a moment later.
        (lowest,) = procs.wait_until(
            lambda: [v for v in [prom.value(f"min_over_time({during})", at=at)] if v is not None],
            30,
            1.0,
            "the rest of node-01's power",
        )
        disagree = [s for s in got["statements"] if s.startswith("node-01: its GPUs read more")]
        if lowest < 0:
            assert disagree and got["energy_kwh"]["rest"] >= 0, got["statements"]
        else:
            assert not disagree and got["energy_kwh"]["rest"] > 0
            assert 0 < got["node_share"][0]["share_of_node_energy"] < 1
        assert any("still running" in s for s in got["statements"])
    finally:
        background_loop.run(stack.aclose())
