"""End to end: real Prometheus evaluating the generated rules against the lab, real Alertmanager.

The rules are rendered with short windows and `for` durations (the generator's overrides) so
that each fault reaches Alertmanager within seconds; thresholds and expressions are the shipped
ones.  Faults: a rack over its budget (inventory), stalled RAPL counters (lab), a dead exporter;
then, in one session and in parallel, a hot GPU (fake NVML under the GPU exporter process), a hot
in-row cooler (snmpsim under the SNMP exporter) and a dead BMC (simulated iDRAC under the
Redfish exporter).  The second session also checks that the label selectors of the shipped rules
match what the real exporters emit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane.exporters.inventory.exporter import make_server as inventory_server
from powerplane.exporters.rapl.exporter import make_server as rapl_server
from powerplane.exporters.redfish.config import KIND as REDFISH_KIND
from powerplane.exporters.redfish.exporter import make_server as redfish_server
from powerplane.exporters.snmp.config import KIND as SNMP_KIND
from powerplane.exporters.snmp.exporter import make_server as snmp_server
from powerplane.lab import procs
from powerplane.lab.fakenvml import FakeGpu, FakeNvml
from powerplane.lab.gpu import start_exporter as start_gpu_exporter
from powerplane.lab.inventory import demo_inventory
from powerplane.lab.powercap import PowercapLab, intel_server
from powerplane.lab.redfish import IDRAC9_R760, RedfishLab, SimulatedBMC
from powerplane.lab.snmp import Snmpsim, apc_inrow
from powerplane.rulegen import render
from powerplane.rulegen.config import RulesConfig
from tests.conftest import require_binary
from tests.snmp.conftest import require_snmpsim

pytestmark = pytest.mark.e2e

#: Simulated package watts per socket (2 sockets + 20 W dram each): node truth 360, 440, 360 W.
PACKAGE_WATTS = {"node-01": 160.0, "node-02": 200.0, "node-03": 160.0}
FAST = RulesConfig(rate_window="10s", error_window="30s", for_overrides={"*": "2s"})
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
        rules = render.write(tmp_path / "rules", FAST)
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


BMC_PASSWORD = "rules-e2e-bmc-password"
#: What each fault must raise: alert name → the labels naming the faulty device.
GPU_NODE, BMC_NODE, COOLER = "gpu-node-01", "node-01", "inrow-01"


def probe_job(
    name: str, exporter: str, targets: list[dict[str, Any]], params: dict[str, list[str]]
) -> dict[str, Any]:
    """The multi-target pattern: the device is the target, the exporter's /probe is scraped."""
    return {
        "job_name": name,
        "metrics_path": "/probe",
        "params": params,
        "static_configs": targets,
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": exporter},
        ],
    }


def wait_all(
    expected: dict[str, Callable[[], bool]], since: float, timeout: float, what: str
) -> dict[str, float]:
    """Poll every condition until each holds once; seconds from ``since`` to each one's first success."""
    seen: dict[str, float] = {}

    def all_seen() -> bool:
        for name, condition in expected.items():
            if name not in seen and condition():
                seen[name] = time.monotonic() - since
        return len(seen) == len(expected)

    try:
        procs.wait_until(all_seen, timeout, 0.25, what=what)
    except TimeoutError:
        raise AssertionError(f"{what}: only {sorted(seen)} within {timeout} s") from None
    return seen


def test_device_faults_reach_alertmanager_and_resolve(
    tmp_path: Path,
    background_loop: procs.BackgroundLoop,
    prometheus: Any,
    alertmanager: procs.Alertmanager,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hot GPU (and one at its power limit), a hot cooler and a dead BMC at once: each alert
    arrives, each resolves."""
    require_binary("prometheus")
    require_snmpsim()
    monkeypatch.setenv("RULES_E2E_BMC_PASSWORD", BMC_PASSWORD)
    nvml = FakeNvml(
        tmp_path / "nvml", [FakeGpu("h100-sxm", util_base=0.5), FakeGpu("h100-sxm", util_base=0.5)]
    )
    gpu_process, gpu_address = start_gpu_exporter(nvml, tmp_path / "gpu-exporter.log")
    sim = Snmpsim(tmp_path / "snmpsim", {"apc-inrow": apc_inrow()}).start()
    lab = RedfishLab()
    bmc = lab.add(SimulatedBMC("bmc-node-01", IDRAC9_R760, password=BMC_PASSWORD))
    background_loop.run(lab.start())
    community = tmp_path / "community"
    community.write_text("apc-inrow\n")
    servers = {
        "snmp": snmp_server(
            SNMP_KIND.load_text(
                yaml.safe_dump(
                    {
                        "auths": {"inrow": {"version": 2, "community": {"file": str(community)}}},
                        "allow": ["127.0.0.1/32:*"],
                        "timeout": 5,
                    }
                )
            )
        ),
        "redfish": redfish_server(
            REDFISH_KIND.load_text(
                "auths: {idrac: {username: root, password: {env: RULES_E2E_BMC_PASSWORD}}}\n"
                "defaults: {scheme: http}\nallow: ['127.0.0.1/32:*']\n"
            )
        ),
    }
    try:
        addresses = {}
        for name, server in servers.items():
            host, port = background_loop.run(server.start("127.0.0.1", 0))
            addresses[name] = f"{host}:{port}"
        rules = render.write(tmp_path / "rules", FAST)
        prom = prometheus(
            [
                {
                    "job_name": "powerplane-gpu",
                    "static_configs": [{"targets": [gpu_address], "labels": {"node": GPU_NODE}}],
                },
                probe_job(
                    "powerplane-snmp-cooler",
                    addresses["snmp"],
                    [{"targets": [f"127.0.0.1:{sim.port}"], "labels": {"cooler": COOLER}}],
                    {"auth": ["inrow"], "module": ["apc_inrow"]},
                ),
                probe_job(
                    "powerplane-redfish-probe",
                    addresses["redfish"],
                    [{"targets": [bmc.address], "labels": {"node": BMC_NODE}}],
                    {"auth": ["idrac"]},
                ),
            ],
            rule_files=rules,
            alertmanagers=[alertmanager.address],
        )
        prom.wait_targets_up(3)
        assert prom.wait_value('powerplane_target_up{job="powerplane-redfish-probe"}') == 1.0
        assert prom.wait_value('powerplane_target_up{job="powerplane-snmp-cooler"}') == 1.0
        check_selectors(prom, psus=IDRAC9_R760.psus, fans=IDRAC9_R760.fans)

        # Inject the three faults at once.
        start = time.monotonic()
        nvml.update(0, overrides={"temp_idle": 80.0})  # ~100 °C at half load: above 90 and 95
        nvml.update(1, util_base=1.0)  # flat out: at its 700 W enforced limit
        sim.replace("apc-inrow", apc_inrow(supply_celsius=30.0, return_celsius=50.0))
        background_loop.run(lab.stop())
        fired = wait_all(
            {
                "PowerplaneGpuTemperatureHigh": lambda: bool(
                    alertmanager.active("PowerplaneGpuTemperatureHigh", node=GPU_NODE, gpu="0")
                ),
                "PowerplaneGpuTemperatureCritical": lambda: bool(
                    alertmanager.active("PowerplaneGpuTemperatureCritical", node=GPU_NODE, gpu="0")
                ),
                "PowerplaneGpuPowerNearLimit": lambda: bool(
                    alertmanager.active("PowerplaneGpuPowerNearLimit", node=GPU_NODE, gpu="1")
                ),
                "PowerplaneCoolerSupplyTemperatureHigh": lambda: bool(
                    alertmanager.active("PowerplaneCoolerSupplyTemperatureHigh", cooler=COOLER)
                ),
                "PowerplaneCoolerReturnTemperatureHigh": lambda: bool(
                    alertmanager.active("PowerplaneCoolerReturnTemperatureHigh", cooler=COOLER)
                ),
                "PowerplaneTargetDown": lambda: bool(
                    alertmanager.active("PowerplaneTargetDown", node=BMC_NODE, exporter="redfish")
                ),
            },
            start,
            ALERT_TIMEOUT,
            "device alerts in Alertmanager",
        )
        # Only the faulty devices alert, with the severity and runbook the rules promise.
        assert not alertmanager.active("PowerplaneGpuTemperatureHigh", gpu="1")
        assert not alertmanager.active("PowerplaneGpuPowerNearLimit", gpu="0")
        critical = alertmanager.active("PowerplaneGpuTemperatureCritical", node=GPU_NODE)
        assert [a["labels"]["severity"] for a in critical] == ["critical"]
        assert critical[0]["labels"]["sensor"] == "gpu"
        assert critical[0]["annotations"]["runbook_url"].endswith("#powerplanegputemperaturecritical")
        assert not alertmanager.active("PowerplaneTargetDown", exporter="snmp")
        assert not alertmanager.active("PowerplaneExporterDown")
        assert not alertmanager.active("PowerplaneCoolerHumidityLow")
        assert not alertmanager.active("PowerplaneCoolerLeakDetected")
        hot = prom.value(f'powerplane_gpu_temperature_celsius{{node="{GPU_NODE}",gpu="0",sensor="gpu"}}')
        assert hot is not None and hot > 95
        # Each alert still fires when its fault is removed: what follows is resolution, not flapping.
        still = {n for n in fired if alertmanager.active(n)}
        assert still == set(fired)

        # Remove them: the GPU cools down, the cooler recovers, the BMC answers again (same port).
        start = time.monotonic()
        nvml.update(0, overrides={})
        nvml.update(1, util_base=0.5)
        sim.replace("apc-inrow", apc_inrow())
        lab = RedfishLab()
        lab.add(SimulatedBMC(bmc.name, IDRAC9_R760, password=BMC_PASSWORD, port=bmc.port))
        background_loop.run(lab.start())
        resolved = wait_all(
            {name: (lambda n=name: not alertmanager.active(n)) for name in fired},
            start,
            ALERT_TIMEOUT,
            "device alerts resolved",
        )
        print(
            "\nRESULT "
            + " ".join(f"fire_s.{n}={fired[n]:.1f} resolve_s.{n}={resolved[n]:.1f}" for n in sorted(fired))
        )
    finally:
        for server in servers.values():
            background_loop.run(server.stop())
        background_loop.run(lab.stop())
        sim.stop()
        gpu_process.stop()


def check_selectors(prom: procs.Prometheus, psus: int, fans: int) -> None:
    """The shipped rules' selectors pick the series the real exporters emit, and only those."""
    c = RulesConfig()

    def count(expr: str) -> float:
        return prom.value(f"count({expr}) or vector(0)") or 0.0

    assert count(f"powerplane_gpu_temperature_celsius{{{c.gpu_temperature_selector}}}") == 2
    assert count(f"powerplane_gpu_power_limit_watts{{{c.gpu_power_limit_selector}}}") == 2
    assert count(f"powerplane_gpu_ecc_errors_total{{{c.gpu_ecc_uncorrected_selector}}}") == 2
    assert count("powerplane_gpu_ecc_errors_total") == 4  # corrected ones stay out
    assert count("powerplane_gpu_memory_used_bytes / powerplane_gpu_memory_total_bytes") == 2
    for point in ("supply", "return"):
        assert count(f'powerplane_cooling_temperature_celsius{{point="{point}",cooler="{COOLER}"}}') == 1
    assert count(f'powerplane_cooling_leak_detected{{cooler="{COOLER}"}}') == 1
    assert count(f'powerplane_cooling_operating_mode{{cooler="{COOLER}"}}') == 3  # standby, on, idle
    assert count(f'powerplane_cooling_operating_mode{{mode="standby",{c.cooler_standby_selector}}}') == 1
    assert count(f"powerplane_redfish_temperature_celsius{{{c.inlet_selector}}}") == 1
    states = len(("ok", "warning", "critical"))
    assert count(f"powerplane_redfish_health{{{c.psu_health_selector}}}") == psus * states
    assert count(f"powerplane_redfish_health{{{c.fan_health_selector}}}") == fans * states
    assert count(f"powerplane_redfish_health{{{c.unhealthy_state_selector}}}") == 2 * count(
        'powerplane_redfish_health{state="ok"}'
    )
    assert count(f"up{{{c.job_selector}}}") == 3
    # Node power from the BMC meets its limit on the same probe (PowerplaneNodePowerAboveLimit).
    assert (
        count(
            "powerplane_redfish_power_watts"
            " * on (instance, chassis) group_left () powerplane_redfish_power_limit_watts"
        )
        == 1
    )
