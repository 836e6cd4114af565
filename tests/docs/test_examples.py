"""The example site in docs/examples/: every file valid, the files agreeing, its probes working.

Each powerplane config passes ``check-config`` with dummy secrets in the environment (and the
secrets stay out of its output); prometheus.yml and alertmanager.yml pass promtool and amtool.
The inventory's module and auth names are the exporters' configs' names, and its addresses are
in their allow-lists.  Then the site is played by the lab: its inventory with the lab's
addresses goes through ``powerplane inventory sd``, and a real Prometheus probes the lab's BMCs
with the example's probe jobs through a Redfish exporter running redfish.yml.  Command blocks
of README.md and docs/**/*.md preceded by ``<!-- runnable -->`` run as written.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from powerplane.cli import main
from powerplane.lab.redfish import RedfishLab, SimulatedBMC
from powerplane.lab.snmp import BUILDERS, V3_RECORDING, Snmpsim, apc_recording
from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "docs" / "examples"
#: What the examples read from the environment, as a site's secret store would give it.
SECRETS = {
    "IDRAC_USER": "monitor",
    "IDRAC_PASSWORD": "dummy-idrac-password-4711",
    "SNMP_AUTH_PASSWORD": "dummy-snmp-auth-4711",
    "SNMP_PRIV_PASSWORD": "dummy-snmp-priv-4711",
    "ENTSOE_TOKEN": "dummy-entsoe-token-4711",
    "SLURM_JWT": "dummy.slurm.jwt4711",
}
#: The powerplane configs and their kinds; every other file is checked by its own tool.
KINDS = {
    "inventory.yaml": "inventory",
    "redfish.yml": "redfish",
    "snmp.yml": "snmp",
    "market.yaml": "market",
    "slurm.yml": "slurm",
    "policy.yaml": "powercappolicy",
    "site-rules.yaml": "rules",
}
OTHERS = {"prometheus.yml", "alertmanager.yml", "curve.csv", "README.md"}


def load(name: str) -> Any:
    return yaml.safe_load((EXAMPLES / name).read_text())


def test_the_site_has_every_file_and_no_stray_one() -> None:
    assert {p.name for p in EXAMPLES.iterdir()} == set(KINDS) | OTHERS


@pytest.mark.parametrize("name", sorted(KINDS))
def test_check_config_accepts_each_example_with_its_secrets(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, secret in SECRETS.items():
        monkeypatch.setenv(key, secret)
    # The kind is told from the file, as a user runs it; it must be the one intended.
    result = CliRunner().invoke(main, ["check-config", str(EXAMPLES / name)])
    assert result.exit_code == 0, result.output
    assert f"valid {KINDS[name]} config" in result.output
    for key, secret in SECRETS.items():  # user names are no secret
        assert key.endswith("_USER") or secret not in result.output, f"{name}: a secret in its output"


def test_check_config_names_a_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDRAC_PASSWORD", raising=False)
    monkeypatch.setenv("IDRAC_USER", "monitor")
    result = CliRunner().invoke(main, ["check-config", str(EXAMPLES / "redfish.yml")])
    assert result.exit_code == 1
    assert "IDRAC_PASSWORD" in result.output


def test_prometheus_and_alertmanager_accept_their_configs() -> None:
    for tool, args in (
        ("promtool", ["check", "config", "--syntax-only"]),
        ("amtool", ["check-config"]),
    ):
        name = "prometheus.yml" if tool == "promtool" else "alertmanager.yml"
        binary = require_binary(tool)
        result = subprocess.run([binary, *args, str(EXAMPLES / name)], capture_output=True, text=True)
        assert result.returncode == 0, f"{tool}: {result.stdout}{result.stderr}"


def _allowed(address: str, networks: list[str]) -> bool:
    host = re.sub(r"^\w+://", "", address).rsplit(":", 1)[0] if address.count(":") <= 2 else address
    return any(ipaddress.ip_address(host) in ipaddress.ip_network(n) for n in networks)


def test_the_files_agree_on_modules_auths_networks_jobs_and_areas(tmp_path: Path) -> None:
    inventory, redfish, snmp = load("inventory.yaml"), load("redfish.yml"), load("snmp.yml")
    for node in inventory["nodes"]:
        bmc = node["bmc"]
        assert bmc["module"] in redfish["modules"], node["name"]
        assert bmc["auth"] in redfish["auths"], node["name"]
        assert _allowed(bmc["address"], redfish["allow"]), node["name"]
    for device in [*inventory["pdus"], *inventory["coolers"]]:
        assert device["auth"] in snmp["auths"], device["name"]
        assert _allowed(device["address"], snmp["allow"]), device["name"]
    # prometheus.yml reads what `inventory sd` writes, under the names the rules watch.
    result = CliRunner().invoke(
        main, ["inventory", "sd", "--config", str(EXAMPLES / "inventory.yaml"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    prometheus = load("prometheus.yml")
    read = {
        Path(f).name
        for job in prometheus["scrape_configs"]
        for sd in job.get("file_sd_configs", [])
        for f in sd["files"]
    }
    assert read == {p.name for p in tmp_path.iterdir()}
    selector = re.fullmatch(r'job=~"(.*)"', load("site-rules.yaml")["job_selector"])
    assert selector is not None
    for job in prometheus["scrape_configs"]:
        assert re.fullmatch(selector.group(1), job["job_name"]), job["job_name"]
    # Every node agent, with the inventory's node names as `node`.
    nodes = {n["name"] for n in inventory["nodes"]}
    labelled = {
        t["labels"]["node"]
        for job in prometheus["scrape_configs"]
        for t in job.get("static_configs", [])
        if "node" in t.get("labels", {})
    }
    assert labelled == nodes
    # One bidding zone throughout: the inventory's, the market's and the policy's.
    areas = {c["market_area"] for c in inventory["clusters"]}
    assert areas == set(load("market.yaml")["areas"]) == {load("policy.yaml")["signal"]["market"]["area"]}
    # Alertmanager sends each GPU node's alerts to the controller agent on that node.
    receivers = {r["name"]: r for r in load("alertmanager.yml")["receivers"]}
    gpu_nodes = {n["name"] for n in inventory["nodes"] if n.get("gpus")}
    for node in gpu_nodes:
        (hook,) = receivers[f"controller-{node}"]["webhook_configs"]
        assert hook["url"] == f"http://{node}:9877/webhook/alertmanager"


def test_the_policy_decides_on_the_example_curve() -> None:
    result = CliRunner().invoke(
        main,
        [
            "controller", "reconcile-once", "--policy", str(EXAMPLES / "policy.yaml"),
            "--prices", str(EXAMPLES / "curve.csv"), "--at", "2026-05-04T19:00:00+02:00",
            "--dry-run", "--path.sysfs", "/nonexistent", "--no-gpu",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)["decision"]
    # 19:00 is the evening peak (265 EUR/MWh): the policy is near its lowest cap.
    assert decision["reason"] == "signal" and decision["signal"] == pytest.approx(264.83)
    assert 6000 <= decision["watts"] < 6800


def _probe_job(name: str, sd: Path, exporter: str) -> dict[str, Any]:
    """The example's probe job, reading the generated file_sd and probing through ``exporter``."""
    (job,) = [j for j in load("prometheus.yml")["scrape_configs"] if j["job_name"] == name]
    job["file_sd_configs"] = [{"files": [str(sd / Path(f).name) for f in job["file_sd_configs"][0]["files"]]}]
    job["relabel_configs"][-1]["replacement"] = exporter
    # Room for an SNMPv3 walk on a loaded machine; the example's 30 s would make the test slow.
    job.update(scrape_interval="5s", scrape_timeout="5s")
    return job


def _snmp_devices(inventory: dict[str, Any], workdir: Path) -> dict[str, Snmpsim]:
    """One SNMPv3 agent per PDU and cooler, speaking the example's user, serving its module's data."""
    apc = apc_recording()
    if apc is None:
        pytest.fail("REAL COMPONENT MISSING: snmpsim-data is not installed (run scripts/setup)")
    data: dict[str, Traversable | str] = {"apc_rpdu2": apc, "apc_inrow": BUILDERS["apc-inrow"]()}
    user = (
        load("snmp.yml")["auths"]["site_v3"]["username"],
        SECRETS["SNMP_AUTH_PASSWORD"],
        SECRETS["SNMP_PRIV_PASSWORD"],
    )
    return {
        d["name"]: Snmpsim(workdir / d["name"], {V3_RECORDING: data[d["module"]]}, v3_user=user)
        for d in [*inventory["pdus"], *inventory["coolers"]]
    }


@pytest.mark.e2e
def test_prometheus_probes_the_lab_through_the_generated_file_sd(
    tmp_path: Path, prometheus: Any, background_loop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from powerplane.exporters.redfish.config import KIND as REDFISH
    from powerplane.exporters.redfish.exporter import make_server as redfish_server
    from powerplane.exporters.snmp.config import KIND as SNMP
    from powerplane.exporters.snmp.exporter import make_server as snmp_server

    for key, secret in SECRETS.items():
        monkeypatch.setenv(key, secret)
    inventory = load("inventory.yaml")
    lab = RedfishLab()
    bmcs = {
        n["name"]: lab.add(
            SimulatedBMC(
                f"bmc-{n['name']}", username=SECRETS["IDRAC_USER"], password=SECRETS["IDRAC_PASSWORD"]
            )
        )
        for n in inventory["nodes"]
    }
    background_loop.run(lab.start())
    devices = _snmp_devices(inventory, tmp_path / "snmp")
    servers = []
    try:
        for device in devices.values():
            device.start()
        # The site as the lab plays it: the same inventory and configs, at the lab's addresses.
        for node in inventory["nodes"]:
            node["bmc"]["address"] = f"{lab.scheme}://{bmcs[node['name']].address}"
        for device in [*inventory["pdus"], *inventory["coolers"]]:
            device["address"] = f"127.0.0.1:{devices[device['name']].port}"
        lab_inventory = tmp_path / "inventory.yaml"
        lab_inventory.write_text(yaml.safe_dump(inventory))
        sd = tmp_path / "sd"
        result = CliRunner().invoke(
            main, ["inventory", "sd", "--config", str(lab_inventory), "--out", str(sd)]
        )
        assert result.exit_code == 0, result.output
        # The lab listens on loopback and its BMCs speak plain HTTP: the only changes to the examples.
        redfish, snmp = load("redfish.yml"), load("snmp.yml")
        redfish["allow"] = [*redfish["allow"], "127.0.0.0/8:*"]
        redfish["defaults"]["scheme"] = "http"
        snmp["allow"] = [*snmp["allow"], "127.0.0.0/8:*"]
        addresses = {}
        for name, server in (
            ("redfish", redfish_server(REDFISH.load_text(yaml.safe_dump(redfish), "redfish.yml at the lab"))),
            ("snmp", snmp_server(SNMP.load_text(yaml.safe_dump(snmp), "snmp.yml at the lab"))),
        ):
            host, port = background_loop.run(server.start("127.0.0.1", 0))
            servers.append(server)
            addresses[name] = f"{host}:{port}"
        jobs = [
            _probe_job("powerplane-redfish-probe", sd, addresses["redfish"]),
            _probe_job("powerplane-snmp-pdu", sd, addresses["snmp"]),
            _probe_job("powerplane-snmp-cooler", sd, addresses["snmp"]),
        ]
        prom = prometheus(jobs)
        prom.wait_targets_up(len(bmcs) + len(devices), timeout=90)
        for node, bmc in bmcs.items():
            watts = prom.wait_value(
                f'powerplane_redfish_power_watts{{job="powerplane-redfish-probe",node="{node}"}}'
            )
            assert watts > 0
            assert bmc.open_sessions() == 1
        for pdu in inventory["pdus"]:
            assert (
                prom.wait_value(f'powerplane_pdu_power_watts{{pdu="{pdu["name"]}",rack="{pdu["rack"]}"}}') > 0
            )
        for cooler in inventory["coolers"]:
            assert prom.wait_value(f'powerplane_cooling_output_watts{{cooler="{cooler["name"]}"}}') > 0
        assert prom.query("powerplane_target_up == 0") == []
        failing = prom.query("powerplane_scrape_collector_success == 0")
        assert failing == [], [
            (
                f["metric"],
                prom.query(f'powerplane_scrape_collector_success{{instance="{f["metric"]["instance"]}"}}'),
            )
            for f in failing
        ]
    finally:
        for server in servers:
            background_loop.run(server.stop())
        for device in devices.values():
            device.stop()
        background_loop.run(lab.stop())


RUNNABLE = re.compile(r"<!-- runnable -->\n```(?:sh|bash)\n(.*?)```", re.S)


def runnable_blocks() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [
        (f"{page.relative_to(ROOT)}#{i}", block)
        for page in pages
        for i, block in enumerate(RUNNABLE.findall(page.read_text()))
    ]


def test_some_blocks_are_marked_runnable() -> None:
    assert len(runnable_blocks()) >= 2


@pytest.mark.parametrize(("where", "block"), runnable_blocks(), ids=[w for w, _ in runnable_blocks()])
def test_runnable_command_blocks_run_as_written(where: str, block: str, tmp_path: Path) -> None:
    # From a scratch directory that looks like the checkout (.venv, docs, rules), so what a
    # block writes lands there, with the example's secrets in the environment.
    for name in (".venv", "docs", "rules"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, **SECRETS, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{where}:\n{block}\n{result.stdout}\n{result.stderr}"
