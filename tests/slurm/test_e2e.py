"""A real Prometheus scrapes the exporter while a job runs, a node is drained and a maintenance
reservation is created: the series, the recording rules and an alert follow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from powerplane.exporters.slurm.config import KIND
from powerplane.exporters.slurm.exporter import make_server
from powerplane.lab import procs
from powerplane.rulegen import render
from powerplane.rulegen.config import RulesConfig
from tests.conftest import PrometheusFactory

from .conftest import Cluster

pytestmark = pytest.mark.e2e


def test_prometheus_follows_jobs_drains_and_reservations(
    slurm: Cluster, prometheus: PrometheusFactory, background_loop: procs.BackgroundLoop, tmp_path: Path
) -> None:
    lab = slurm.lab
    source = "slurmrestd" if lab.rest_binary else "cli"
    path = tmp_path / "slurm.yml"
    path.write_text(yaml.safe_dump(lab.exporter_config(source, min_interval=1)))
    server = make_server(KIND.load(path))
    host, port = background_loop.run(server.start())
    rules = render.write(
        tmp_path / "rules", RulesConfig(for_overrides={"PowerplaneSlurmMaintenanceSoon": "0s"})
    )
    prom = prometheus(
        [{"job_name": "powerplane-slurm", "static_configs": [{"targets": [f"{host}:{port}"]}]}], rules
    )
    try:
        prom.wait_targets_up(1)
        gpu = f'powerplane_slurm_job_gpu_info{{job_id="{slurm.gpu_job}"}}'
        assert prom.wait_value(f"count({gpu})") == 2
        # Power joins: the job's GPUs on its node, as the GPU exporter labels them (node, gpu).
        assert (
            prom.wait_value(
                f'count({gpu} * on (node) group_left powerplane_slurm_node_state{{state="mixed"}})'
            )
            == 2
        )
        assert prom.wait_value('partition:powerplane_slurm_gpus_allocated:ratio{partition="gpu"}') == 0.5
        lab.drain("node-02", "e2e: bad DIMM")
        lab.reserve("e2e_maint", "node-02", start="now+1hour", minutes=30)
        try:
            reason = 'powerplane_slurm_node_reason_info{node="node-02",reason="e2e: bad DIMM"}'
            assert prom.wait_value(reason) == 1
            assert prom.wait_value('powerplane_slurm_node_state{node="node-02",state="draining"}') == 1
            assert prom.wait_value("cluster:powerplane_slurm_nodes_unavailable:ratio") == 0.5
            procs.wait_until(
                lambda: any(
                    a["labels"].get("alertname") == "PowerplaneSlurmMaintenanceSoon"
                    and a["labels"].get("reservation") == "e2e_maint"
                    and a["state"] == "firing"
                    for a in prom.api("alerts")["alerts"]
                ),
                60,
                0.5,
                "PowerplaneSlurmMaintenanceSoon firing",
            )
        finally:
            lab.delete_reservation("e2e_maint")
            lab.resume("node-02")
    finally:
        background_loop.run(server.stop())
