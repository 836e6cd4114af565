"""End to end: real Prometheus evaluating the generated rules against the lab, real Alertmanager.

The rules are rendered with short windows and `for` durations (the generator's overrides) so
that each fault reaches Alertmanager within seconds; thresholds and expressions are the shipped
ones.  Faults: a rack over its budget (inventory), stalled RAPL counters (lab), a dead exporter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane import rulegen
from powerplane.exporters.inventory import make_server as inventory_server
from powerplane.exporters.rapl import make_server as rapl_server
from powerplane.lab import procs
from powerplane.lab.inventory import demo_inventory
from powerplane.lab.powercap import PowercapLab, intel_server

from .conftest import require_binary

pytestmark = pytest.mark.e2e

#: Simulated package watts per socket (2 sockets + 20 W dram each): node truth 360, 440, 360 W.
PACKAGE_WATTS = {"node-01": 160.0, "node-02": 200.0, "node-03": 160.0}
FAST = rulegen.RulesConfig(rate_window="10s", error_window="30s", for_overrides={"*": "2s"})
ALERT_TIMEOUT = 45.0


def truth(node: str) -> float:
    return 2 * (PACKAGE_WATTS[node] + 20.0)


def close(a: float | None, b: float, rel: float = 0.03) -> bool:
    return a is not None and abs(a - b) <= rel * b


@pytest.fixture
def alertmanager(tmp_path: Path) -> Any:
    binary = require_binary("alertmanager")
    with procs.Alertmanager(tmp_path / "alertmanager", binary=binary) as am:
        yield am


def test_alerts_reach_alertmanager_and_resolve(
    tmp_path: Path, background_loop: procs.BackgroundLoop, prometheus: Any, alertmanager: procs.Alertmanager
) -> None:
    require_binary("prometheus")
    labs: dict[str, PowercapLab] = {}
    servers: dict[str, Any] = {}
    targets = []
    try:
        for node, watts in PACKAGE_WATTS.items():
            lab = PowercapLab(tmp_path / node, intel_server(sockets=2, package_watts=watts)).create()
            labs[node] = lab.start()
            servers[node] = rapl_server(lab.root)
            host, port = background_loop.run(servers[node].start("127.0.0.1", 0))
            targets.append({"targets": [f"{host}:{port}"], "labels": {"node": node}})
        inventory_path = tmp_path / "inventory.yaml"
        doc = demo_inventory(list(PACKAGE_WATTS), budget_watts=600.0)
        inventory_path.write_text(yaml.safe_dump(doc))
        servers["inventory"] = inventory_server(inventory_path)
        inv_host, inv_port = background_loop.run(servers["inventory"].start("127.0.0.1", 0))
        rules = rulegen.write(tmp_path / "rules", FAST)
        prom = prometheus(
            [
                {"job_name": "powerplane-rapl", "static_configs": targets},
                {
                    "job_name": "powerplane-inventory",
                    "static_configs": [{"targets": [f"{inv_host}:{inv_port}"]}],
                },
            ],
            rule_files=rules,
            alertmanagers=[alertmanager.address],
        )
        prom.wait_targets_up(4)

        # Node, rack, row and cluster power match the simulated truth (RAPL is the only source).
        for node in PACKAGE_WATTS:
            expr = f'node:powerplane_power_watts:best{{node="{node}",source="rapl_gpu"}}'
            procs.wait_until(lambda e=expr, n=node: close(prom.value(e), truth(n)), 30, 0.5, what=expr)
        rack1 = truth("node-01") + truth("node-02")
        procs.wait_until(
            lambda: close(prom.value('rack:powerplane_power_watts:sum{rack="rack-01",row="row-a"}'), rack1),
            20,
            0.5,
            what="rack-01 power",
        )
        total = sum(truth(n) for n in PACKAGE_WATTS)
        assert close(prom.value('cluster:powerplane_power_watts:sum{cluster="demo"}'), total)
        assert close(prom.value('row:powerplane_power_watts:sum{row="row-a"}'), total)
        assert close(prom.value('rack:powerplane_power_budget_ratio{rack="rack-01"}'), rack1 / 600.0)
        assert prom.value('node:powerplane_status:state{node="node-01"}') in (0.0, 1.0)

        # Rack over budget: rack-01 draws 800 W of 600 W; rack-02 360 W of 600 W stays quiet.
        procs.wait_until(
            lambda: alertmanager.active("PowerplaneRackOverPowerBudget", rack="rack-01"),
            ALERT_TIMEOUT,
            0.5,
            what="PowerplaneRackOverPowerBudget in Alertmanager",
        )
        alert = alertmanager.active("PowerplaneRackOverPowerBudget", rack="rack-01")[0]
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["runbook_url"].endswith("#powerplanerackoverpowerbudget")
        assert not alertmanager.active("PowerplaneRackOverPowerBudget", rack="rack-02")
        doc["racks"] = [{**r, "power_budget_watts": 2000.0} for r in doc["racks"]]
        inventory_path.write_text(yaml.safe_dump(doc))
        procs.wait_until(
            lambda: not alertmanager.active("PowerplaneRackOverPowerBudget"),
            ALERT_TIMEOUT,
            0.5,
            what="PowerplaneRackOverPowerBudget resolved",
        )

        # RAPL counters stall on node-02 (the simulation stops advancing them), then recover.
        labs["node-02"].stop()
        procs.wait_until(
            lambda: alertmanager.active("PowerplaneRaplCountersStalled", node="node-02"),
            ALERT_TIMEOUT,
            0.5,
            what="PowerplaneRaplCountersStalled in Alertmanager",
        )
        assert not alertmanager.active("PowerplaneRaplCountersStalled", node="node-01")
        labs["node-02"].start()
        procs.wait_until(
            lambda: not alertmanager.active("PowerplaneRaplCountersStalled"),
            ALERT_TIMEOUT,
            0.5,
            what="PowerplaneRaplCountersStalled resolved",
        )

        # A dead exporter: node-03 goes offline in the status and PowerplaneExporterDown fires.
        host, port = targets[2]["targets"][0].split(":")
        background_loop.run(servers["node-03"].stop())
        procs.wait_until(
            lambda: alertmanager.active("PowerplaneExporterDown", node="node-03"),
            ALERT_TIMEOUT,
            0.5,
            what="PowerplaneExporterDown in Alertmanager",
        )
        procs.wait_until(
            lambda: prom.value('node:powerplane_status:state{node="node-03"}') == 2.0,
            ALERT_TIMEOUT,
            0.5,
            what="node-03 offline",
        )
        servers["node-03"] = rapl_server(labs["node-03"].root)
        background_loop.run(servers["node-03"].start(host, int(port)))
        procs.wait_until(
            lambda: not alertmanager.active("PowerplaneExporterDown"),
            ALERT_TIMEOUT,
            0.5,
            what="PowerplaneExporterDown resolved",
        )
        procs.wait_until(
            lambda: prom.value('node:powerplane_status:state{node="node-03"}') == 0.0,
            ALERT_TIMEOUT,
            0.5,
            what="node-03 healthy again",
        )
    finally:
        for server in servers.values():
            background_loop.run(server.stop())
        for lab in labs.values():
            lab.stop()
