"""The sharded topology, started once for the scale tests: two clusters with the same node and
rack names, two shards each, two replicas of each multi-target exporter, VictoriaMetrics,
vmalert and Alertmanager, all real, on 127.0.0.1.

Per cluster: four nodes with a simulated iDRAC each (fixed input power, the truth the recordings
must meet) and two racks with a Raritan PX3 PDU each (snmpsim, 2840 W inlet).  The clusters'
powers differ, so a rule that merged their nodes or racks would read a wrong sum.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane.exporters.inventory.exporter import make_server as inventory_server
from powerplane.exporters.redfish.config import KIND as REDFISH_KIND
from powerplane.exporters.redfish.exporter import make_server as redfish_server
from powerplane.exporters.snmp.config import KIND as SNMP_KIND
from powerplane.exporters.snmp.exporter import make_server as snmp_server
from powerplane.lab import procs
from powerplane.lab.inventory import demo_inventory
from powerplane.lab.redfish import IDRAC9_R760, RedfishLab, SimulatedBMC
from powerplane.lab.snmp import Snmpsim, raritan_pdu2
from powerplane.lab.topology import ShardedStack, probe_job
from powerplane.rulegen import render
from powerplane.rulegen.config import RulesConfig
from tests.conftest import require_binary
from tests.snmp.conftest import require_snmpsim

CLUSTERS = ("east", "west")
NODES = ("node-01", "node-02", "node-03", "node-04")
RACKS = ("rack-01", "rack-02")
SHARDS = 2
REPLICAS = 2
PDU_WATTS = 2840.0  # the Raritan recording's inlet power
#: East's rack-01 is over this budget (its PDU draws 2840 W); every other rack is far below its own.
EAST_RACK1_BUDGET = 2000.0
SCRAPE_INTERVAL = "2s"
#: A series without a sample for this long is gone from instant queries: four scrape intervals.
LOOKBACK = "8s"
#: The shipped thresholds and expressions with short windows, scoped by cluster for the global view.
GLOBAL_RULES = RulesConfig(
    rate_window="10s", error_window="30s", for_overrides={"*": "2s"}, scope_labels=("cluster",)
)
#: The same, unscoped: what one Prometheus per cluster (or one machine) evaluates.
LOCAL_RULES = RulesConfig(rate_window="10s", error_window="30s", for_overrides={"*": "2s"})


def node_watts(cluster: str, node: str) -> float:
    """The simulated truth: east's nodes draw 300-330 W, west's 500-530 W."""
    return (300.0 if cluster == "east" else 500.0) + 10.0 * NODES.index(node)


def rack_nodes(rack: str) -> list[str]:
    return [n for i, n in enumerate(NODES) if RACKS[i // 2] == rack]


@dataclass
class Topology:
    stack: ShardedStack
    alertmanager: procs.Alertmanager
    #: One Prometheus scraping west alone with the unscoped rules: the single-machine setup.
    local: procs.Prometheus
    redfish: list[str]
    snmp: list[str]
    #: (cluster, job, device) of every probe target the shards should scrape, once each.
    expected: set[tuple[str, str, str]] = field(default_factory=set)
    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _cluster_jobs(
    cluster: str,
    bmcs: dict[str, SimulatedBMC],
    snmpsim_port: int,
    redfish: list[str],
    snmp: list[str],
    inventory: str,
) -> list[dict[str, Any]]:
    return [
        probe_job(
            "powerplane-redfish-probe",
            redfish,
            [{"targets": [bmcs[n].address], "labels": {"node": n}} for n in NODES],
            {"auth": ["idrac"]},
        ),
        probe_job(
            "powerplane-snmp-pdu",
            snmp,
            [
                {
                    "targets": [f"127.0.0.1:{snmpsim_port}"],
                    # One snmpsim serves every PDU, each under its own community (auth); the rack's
                    # A-feed PDU of the inventory is metered, its B feed left out.
                    "labels": {"pdu": f"pdu-{rack}-a", "__param_auth": f"{cluster}-pdu-{rack}"},
                }
                for rack in RACKS
            ],
            {"module": ["raritan_pdu2"]},
        ),
        {"job_name": "powerplane-inventory", "static_configs": [{"targets": [inventory]}]},
    ]


def _inventory(cluster: str, path: Path) -> None:
    doc = demo_inventory(list(NODES), budget_watts=100_000.0)
    doc["clusters"][0]["name"] = cluster
    doc["rows"][0]["cluster"] = cluster
    if cluster == "east":
        doc["racks"][0]["power_budget_watts"] = EAST_RACK1_BUDGET
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="session")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    binaries = {
        name: require_binary(name) for name in ("prometheus", "alertmanager", "victoria-metrics", "vmalert")
    }
    require_snmpsim()
    workdir = tmp_path_factory.mktemp("scale")
    password = workdir / "bmc-password"
    password.write_text("scale-topology-bmc-password\n")
    communities = {f"{c}-pdu-{r}": raritan_pdu2() for c in CLUSTERS for r in RACKS}
    with procs.BackgroundLoop() as loop, contextlib.ExitStack() as stack:
        sim = stack.enter_context(Snmpsim(workdir / "snmpsim", communities))
        lab = RedfishLab()
        bmcs: dict[str, dict[str, SimulatedBMC]] = {}
        for cluster in CLUSTERS:
            bmcs[cluster] = {
                n: lab.add(
                    SimulatedBMC(
                        f"bmc-{cluster}-{n}",
                        IDRAC9_R760,
                        password=password.read_text().strip(),
                        power_source=lambda c=cluster, n=n: node_watts(c, n),
                    )
                )
                for n in NODES
            }
        loop.run(lab.start())
        stack.callback(lambda: loop.run(lab.stop()))
        auths = {}
        for community in communities:
            secret = workdir / f"community-{community}"
            secret.write_text(community + "\n")
            auths[community] = {"version": 2, "community": {"file": str(secret)}}
        servers = []
        for _ in range(REPLICAS):
            servers.append(
                redfish_server(
                    REDFISH_KIND.load_text(
                        f"auths: {{idrac: {{username: root, password: {{file: {password}}}}}}}\n"
                        "defaults: {scheme: http}\nallow: ['127.0.0.1/32:*']\n"
                    )
                )
            )
            servers.append(
                snmp_server(
                    SNMP_KIND.load_text(yaml.safe_dump({"auths": auths, "allow": ["127.0.0.1/32:*"]}))
                )
            )
        for cluster in CLUSTERS:
            _inventory(cluster, workdir / f"inventory-{cluster}.yaml")
            servers.append(inventory_server(workdir / f"inventory-{cluster}.yaml"))
        addresses = []
        for server in servers:
            host, port = loop.run(server.start("127.0.0.1", 0))
            stack.callback(lambda s=server: loop.run(s.stop()))
            addresses.append(f"{host}:{port}")
        redfish, snmp = addresses[0 : 2 * REPLICAS : 2], addresses[1 : 2 * REPLICAS : 2]
        inventories = dict(zip(CLUSTERS, addresses[2 * REPLICAS :], strict=True))
        jobs = {c: _cluster_jobs(c, bmcs[c], sim.port, redfish, snmp, inventories[c]) for c in CLUSTERS}
        am = stack.enter_context(
            procs.Alertmanager(workdir / "alertmanager", binary=binaries["alertmanager"])
        )
        rules = render.write(workdir / "rules-global", GLOBAL_RULES)
        sharded = stack.enter_context(
            ShardedStack(
                workdir / "stack",
                jobs,
                rules,
                shards=SHARDS,
                alertmanagers=[am.address],
                scrape_interval=SCRAPE_INTERVAL,
                binaries=binaries,
                lookback=LOOKBACK,
            )
        )
        local = stack.enter_context(
            procs.Prometheus(
                workdir / "local",
                jobs["west"],
                render.write(workdir / "rules-local", LOCAL_RULES),
                scrape_interval=SCRAPE_INTERVAL,
                evaluation_interval="1s",
                binary=binaries["prometheus"],
            )
        )
        expected = {(c, "powerplane-redfish-probe", n) for c in CLUSTERS for n in NODES}
        expected |= {(c, "powerplane-snmp-pdu", f"pdu-{r}-a") for c in CLUSTERS for r in RACKS}
        expected |= {(c, "powerplane-inventory", "") for c in CLUSTERS}
        yield Topology(sharded, am, local, redfish, snmp, expected, jobs)
