"""deploy/prometheus/prometheus-shard.yml: promtool accepts it, and its sharding and spreading
rules are the ones the scale tests run on real shards (lab/topology.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from powerplane.lab.topology import shard_relabel, spread
from tests.conftest import require_binary

SAMPLE = Path(__file__).resolve().parent.parent.parent / "deploy" / "prometheus" / "prometheus-shard.yml"


def test_promtool_accepts_the_shard_sample() -> None:
    promtool = require_binary("promtool")
    done = subprocess.run(
        [promtool, "check", "config", str(SAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_sample_shards_and_spreads_as_the_tested_topology() -> None:
    config = yaml.safe_load(SAMPLE.read_text())
    assert set(config["global"]["external_labels"]) == {"cluster", "replica"}
    assert config["remote_write"] and "rule_files" not in config
    jobs = {job["job_name"]: job["relabel_configs"] for job in config["scrape_configs"]}
    for name in ("powerplane-redfish-probe", "powerplane-snmp-pdu"):
        rules = jobs[name]
        assert rules[:2] == shard_relabel(0, 2)
        port = "9873" if "redfish" in name else "9874"
        assert rules[4:] == spread([f"exporter-a.example:{port}", f"exporter-b.example:{port}"])
    assert jobs["powerplane-inventory"] == shard_relabel(0, 2, key=("__address__",))
