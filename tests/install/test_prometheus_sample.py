"""deploy/prometheus/prometheus.yml with a real Prometheus: the bare-metal site's scrape config.

The sample is used as shipped except for its file locations, ports and the scrape interval
(rewritten to a temporary directory, free ports on 127.0.0.1 and 1 s). The probe targets come from
`powerplane inventory sd` on the example inventory, the rules from `powerplane rules build`, the
node list names 127.0.0.1, where a real RAPL exporter serves a lab powercap tree. The BMC and PDU
addresses of the example inventory are never contacted: Prometheus sends each probe to the
exporter's address (nothing listens there in this test), which is what is checked.
"""

from __future__ import annotations

import re
import subprocess
import urllib.parse
from pathlib import Path

import yaml
from click.testing import CliRunner

from powerplane.cli import main
from powerplane.lab import procs
from powerplane.lab.powercap import PowercapLab, intel_server
from tests.conftest import require_binary

from .units import ROOT

SAMPLE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
INVENTORY = ROOT / "docs" / "examples" / "inventory.yaml"


def site_config(tmp_path: Path, ports: dict[int, int]) -> Path:
    text = SAMPLE.read_text()
    text = text.replace("/etc/prometheus/powerplane", str(tmp_path / "etc")).replace(
        "/var/lib/powerplane-sd", str(tmp_path / "sd")
    )
    for shipped, free in ports.items():
        text = text.replace(f":{shipped}", f":{free}")
    text = text.replace("localhost:", "127.0.0.1:")
    text = re.sub(r"scrape_interval: \d+s", "scrape_interval: 1s", text)
    text = re.sub(r"scrape_timeout: \d+s", "scrape_timeout: 1s", text)
    text = text.replace("evaluation_interval: 30s", "evaluation_interval: 1s")
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    return path


def test_promtool_accepts_the_sample_as_shipped(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    done = subprocess.run(
        [promtool, "check", "config", str(SAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(SAMPLE.read_text())
    names = [job["job_name"] for job in config["scrape_configs"]]
    assert len(names) == len(set(names)), names
    assert all(name.startswith("powerplane") for name in names), "the rules' job selector is powerplane.*"


def test_a_real_prometheus_scrapes_the_site(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    binary = require_binary("prometheus")
    ports = {p: procs.free_port() for p in range(9871, 9879)}
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nodes.yml").write_text("- targets:\n  - 127.0.0.1\n")
    (tmp_path / "etc/gpu-nodes.yml").write_text("[]\n")
    for command in (
        ["inventory", "sd", "--file", str(INVENTORY), "--out", str(tmp_path / "sd")],
        ["rules", "build", "--out", str(tmp_path / "etc/rules")],
    ):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
    config = site_config(tmp_path, ports)
    checked = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0 and "WARNING" not in checked.stdout + checked.stderr, checked.stdout

    lab = PowercapLab(tmp_path / "sys", intel_server()).create().start()
    rapl = procs.Process(
        [
            str(ROOT / ".venv/bin/powerplane"),
            "exporter",
            "rapl",
            f"--path.sysfs={tmp_path / 'sys'}",
            f"--web.listen-address=127.0.0.1:{ports[9871]}",
        ],
        tmp_path / "rapl.log",
    )
    server = procs.Prometheus(tmp_path / "prometheus", [], binary=binary)
    server.config_path.write_text(config.read_text())
    try:
        rapl.wait_ready(f"http://127.0.0.1:{ports[9871]}/-/ready")
        server.start()
        energy = server.wait_value(
            'powerplane_rapl_energy_joules_total{job="powerplane-rapl",node="127.0.0.1"}'
        )
        assert energy >= 0
        targets = server.targets()
        groups = server.api("rules")["groups"]
    finally:
        server.stop()
        rapl.stop()
        lab.stop()
    assert {g["file"] for g in groups} == {str(p) for p in (tmp_path / "etc/rules").glob("*.yaml")}

    redfish = [t for t in targets if t["labels"]["job"] == "powerplane-redfish"]
    assert len(redfish) == 3  # the example inventory's nodes with a BMC
    for target in redfish:
        url = urllib.parse.urlsplit(target["scrapeUrl"])
        assert url.netloc == f"127.0.0.1:{ports[9873]}" and url.path == "/probe", target["scrapeUrl"]
        query = urllib.parse.parse_qs(url.query)
        assert query["target"][0].startswith("https://10.20.2.") and query["module"] == ["idrac"]
        assert {"node", "rack", "row", "cluster"} <= set(target["labels"]), target["labels"]
        assert target["labels"]["instance"] == query["target"][0]
    snmp = [t for t in targets if t["labels"]["job"] == "powerplane-snmp"]
    assert {t["labels"].get("pdu") or t["labels"].get("cooler") for t in snmp} == {
        "pdu-a01-l",
        "pdu-a02-l",
        "irc-a01",
    }
    (node,) = (t for t in targets if t["labels"]["job"] == "powerplane-controller")
    assert (
        node["scrapeUrl"] == f"http://127.0.0.1:{ports[9877]}/metrics"
        and node["labels"]["node"] == "127.0.0.1"
    )
