"""End to end on the sharded topology (tests/scale/conftest.py): every target scraped once
across shards, recordings equal to the simulated truth per cluster, one alert per fault, the
dashboards' queries answered by VictoriaMetrics as by Prometheus, and a killed shard's gap.

The shard-kill test runs last: the others read the whole topology.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import pytest

from powerplane.dashboards import build, queries
from powerplane.lab import procs
from powerplane.lab.topology import SPREAD_KEY, PrometheusShard, hashmod

from .conftest import (
    CLUSTERS,
    GLOBAL_RULES,
    NODES,
    PDU_WATTS,
    RACKS,
    SHARDS,
    Topology,
    node_watts,
    rack_nodes,
)

pytestmark = pytest.mark.e2e
TIMEOUT = 60.0


def close(a: float | None, b: float, rel: float = 0.02) -> bool:
    return a is not None and abs(a - b) <= rel * b


def device(labels: dict[str, str]) -> str:
    return labels.get("node") or labels.get("pdu") or ""


def wait_targets(topology: Topology) -> list[dict[str, Any]]:
    """`up` of every target in VictoriaMetrics, once all expected ones have arrived up."""

    def arrived() -> list[dict[str, Any]] | None:
        found = topology.stack.vm.query('up{job=~"powerplane-.*"}')
        keys = {(r["metric"]["cluster"], r["metric"]["job"], device(r["metric"])) for r in found}
        ups = all(r["value"][1] == "1" for r in found)
        return found if keys >= topology.expected and ups else None

    result: list[dict[str, Any]] = procs.wait_until(
        arrived, TIMEOUT, 0.5, what="every target up in VictoriaMetrics"
    )
    return result


def test_every_target_is_scraped_exactly_once_across_shards(topology: Topology) -> None:
    found = wait_targets(topology)
    keys = [(r["metric"]["cluster"], r["metric"]["job"], device(r["metric"])) for r in found]
    # None twice (a target in two shards would give two series differing in `replica`), none lost.
    assert sorted(keys) == sorted(topology.expected)
    for r in found:
        cluster, replica = r["metric"]["cluster"], r["metric"]["replica"]
        assert replica.startswith(cluster + "-")
    # The shards' own view: disjoint target sets whose union is the cluster's targets.
    replicas = {"powerplane-redfish-probe": topology.redfish, "powerplane-snmp-pdu": topology.snmp}
    used: dict[str, set[str]] = {job: set() for job in replicas}
    for cluster in CLUSTERS:
        per_shard = []
        for i in range(SHARDS):
            targets = topology.stack.shards[(cluster, i)].targets()
            per_shard.append({(t["labels"]["job"], device(t["labels"])) for t in targets})
            for t in targets:
                job = t["labels"]["job"]
                if job not in replicas:
                    continue
                url = urllib.parse.urlsplit(t["scrapeUrl"])
                query = dict(urllib.parse.parse_qsl(url.query))
                # Each probe goes to the replica the spread hash names, whichever shard scrapes it.
                values = {"job": job, "__param_target": query["target"], "__param_auth": query["auth"]}
                want = replicas[job][hashmod([values[k] for k in SPREAD_KEY], len(replicas[job]))]
                assert url.netloc == want, f"{job} {query['target']}: probed by {url.netloc}, not {want}"
                used[job].add(url.netloc)
        assert all(per_shard), f"{cluster}: a shard scrapes nothing: {per_shard}"
        assert not set.intersection(*per_shard), f"{cluster}: targets in two shards"
        assert set.union(*per_shard) == {(j, d) for c, j, d in topology.expected if c == cluster}
    # Sixteen BMCs over two replicas: both take a share (all on one has odds of 1 in 32,768; the
    # four PDUs' 1 in 8 is why they are held only to the hash above).
    assert used["powerplane-redfish-probe"] == set(topology.redfish)


def test_power_recordings_equal_the_simulated_truth_per_cluster(topology: Topology) -> None:
    vm = topology.stack.vm
    wait_targets(topology)
    for cluster in CLUSTERS:
        c = f'cluster="{cluster}"'
        for node in NODES:
            expr = f'node:powerplane_power_watts:best{{{c},node="{node}",source="bmc"}}'
            want = node_watts(cluster, node)
            procs.wait_until(lambda e=expr, w=want: close(vm.value(e), w), TIMEOUT, 0.5, what=expr)
        for rack in RACKS:
            want = sum(node_watts(cluster, n) for n in rack_nodes(rack))
            expr = f'rack:powerplane_power_watts:sum{{{c},rack="{rack}"}}'
            procs.wait_until(lambda e=expr, w=want: close(vm.value(e), w), TIMEOUT, 0.5, what=expr)
            expr = f'rack:powerplane_pdu_power_watts:sum{{{c},rack="{rack}"}}'
            procs.wait_until(lambda e=expr: close(vm.value(e), PDU_WATTS), TIMEOUT, 0.5, what=expr)
        total = sum(node_watts(cluster, n) for n in NODES)
        expr = f"cluster:powerplane_power_watts:sum{{{c}}}"
        procs.wait_until(lambda e=expr, w=total: close(vm.value(e), w), TIMEOUT, 0.5, what=expr)
        # One series per cluster, rack and node: the same names in two clusters are not merged.
        assert len(vm.query(f"node:powerplane_power_watts:best{{{c}}}")) == len(NODES)
        assert len(vm.query(f"rack:powerplane_power_watts:sum{{{c}}}")) == len(RACKS)
    assert len(vm.query("cluster:powerplane_power_watts:sum")) == len(CLUSTERS)


def test_the_single_machine_setup_gives_the_same_answers(topology: Topology) -> None:
    """West scraped by one Prometheus with the unscoped rules: the recordings agree with the
    global ones (vmalert over VictoriaMetrics, cluster-scoped rules)."""
    vm, local = topology.stack.vm, topology.local
    wait_targets(topology)
    exprs = [f'node:powerplane_power_watts:best{{node="{n}"}}' for n in NODES]
    exprs += [f'rack:powerplane_power_watts:sum{{rack="{r}"}}' for r in RACKS]
    exprs += [f'rack:powerplane_pdu_power_watts:sum{{rack="{r}"}}' for r in RACKS]
    exprs += [f'rack:powerplane_power_budget_ratio{{rack="{r}"}}' for r in RACKS]
    exprs += ['cluster:powerplane_power_watts:sum{cluster="west"}']
    for expr in exprs:
        global_expr = expr.replace("{", '{cluster="west",', 1).replace(',cluster="west"}', "}")

        def agree(e: str = expr, g: str = global_expr) -> bool:
            a, b = local.value(e), vm.value(g)
            return a is not None and close(b, a, 0.001)

        procs.wait_until(agree, TIMEOUT, 0.5, what=f"{expr} alike in both setups")


def test_one_alert_per_fault_not_per_shard(topology: Topology) -> None:
    """East's rack-01 is over its budget: one alert in Alertmanager, with the cluster and without
    a shard's label; west's rack-01 (same name) and every other rack stay quiet."""
    am = topology.alertmanager
    procs.wait_until(lambda: am.active("PowerplaneRackOverPowerBudget"), TIMEOUT, 0.5, what="the rack alert")
    # Several evaluations later there is still exactly one.
    time.sleep(3)
    alerts = am.active("PowerplaneRackOverPowerBudget")
    assert len(alerts) == 1, alerts
    labels = alerts[0]["labels"]
    assert (labels["cluster"], labels["rack"], labels["severity"]) == ("east", "rack-01", "critical")
    assert "replica" not in labels
    # The rule's value is the rack's own: 2840 W of 2000 W, not both clusters' rack-01 together.
    ratio = topology.stack.vm.value('rack:powerplane_power_budget_ratio{cluster="east",rack="rack-01"}')
    assert close(ratio, PDU_WATTS / 2000.0)


def test_every_dashboard_query_runs_on_victoria_metrics(topology: Topology) -> None:
    """Every panel query parses and runs in MetricsQL; the fleet's per-cluster power matches."""
    vm = topology.stack.vm
    wait_targets(topology)
    docs = [json.loads(text) for text in build.render(GLOBAL_RULES).values()]
    builtins = {**queries.BUILTINS, "__rate_interval": "9s"}  # four 2 s scrape intervals, as Grafana
    ran, failed = 0, []
    for doc in docs:
        values, _empty = queries.bind_variables(doc, vm.query)
        for q in queries.queries(doc):
            try:
                vm.query(queries.substitute(q.expr, values, builtins))
            except RuntimeError as exc:  # VictoriaMetrics's error: a parse error, a many-to-many join
                failed.append(f"{q.name}: {exc}")
            ran += 1
    assert not failed, "\n".join(failed)
    assert ran > 20
    fleet = next(d for d in docs if "fleet" in d["uid"])
    values, _ = queries.bind_variables(fleet, vm.query)
    (by_cluster,) = [
        q for q in queries.queries(fleet) if q.expr.startswith("cluster:powerplane_power_watts:sum")
    ]
    expr = queries.substitute(by_cluster.expr, values)

    def per_cluster() -> bool:
        got = {r["metric"]["cluster"]: float(r["value"][1]) for r in vm.query(expr)}
        truth = {c: sum(node_watts(c, n) for n in NODES) for c in CLUSTERS}
        return got.keys() == truth.keys() and all(close(got[c], truth[c]) for c in CLUSTERS)

    procs.wait_until(per_cluster, TIMEOUT, 0.5, what=f"{expr} per cluster")


def test_a_killed_shard_loses_only_its_targets_and_leaves_a_gap(topology: Topology) -> None:
    vm = topology.stack.vm
    wait_targets(topology)
    shard: PrometheusShard = topology.stack.shards[("east", 0)]
    lost = {(r["metric"]["job"], device(r["metric"])) for r in vm.query('up{replica="east-0"}')}
    kept = {(r["metric"]["job"], device(r["metric"])) for r in vm.query('up{replica="east-1"}')}
    assert lost and kept
    killed_at = time.time()
    shard.kill()
    # Its targets go stale in the global view (no sample, not a zero); the rest keep arriving.
    procs.wait_until(lambda: not vm.query('up{replica="east-0"}'), TIMEOUT, 0.5, what="east-0 stale")
    time.sleep(4)  # two scrape intervals after the kill
    now = time.time()
    assert {(r["metric"]["job"], device(r["metric"])) for r in vm.query('up{replica="east-1"}')} == kept
    assert len(vm.query('up{cluster="west"}')) == len([e for e in topology.expected if e[0] == "west"])
    # No zeros were written for the lost targets: their last sample is 1, from before the kill.
    window = f"{now - killed_at + 30:.0f}s"
    last = vm.query(f'last_over_time(up{{replica="east-0"}}[{window}])', at=now)
    assert {(r["metric"]["job"], device(r["metric"])) for r in last} == lost
    assert all(r["value"][1] == "1" for r in last)
    newest = vm.query(f'tlast_over_time(up{{replica="east-0"}}[{window}])', at=now)
    assert newest and all(float(r["value"][1]) <= killed_at + 1 for r in newest)
    # The lost nodes have no power in the global view (a gap), the kept ones do.
    lost_nodes = {d for j, d in lost if j == "powerplane-redfish-probe"}
    for node in NODES:
        value = vm.value(f'node:powerplane_power_watts:best{{cluster="east",node="{node}",source="bmc"}}')
        if node in lost_nodes:
            assert value is None, f"{node}: {value} after its shard died"
        else:
            assert close(value, node_watts("east", node))
