"""The chart's sharding: one ScrapeConfig per Prometheus shard whose hashmod keep rules split the
probe targets (the same rules tests/scale runs on real Prometheus shards), replicas and their
PodDisruptionBudgets."""

from __future__ import annotations

from typing import Any

from powerplane.lab.topology import SHARD_KEY
from tests.chart.test_chart import CHART, by_kind, load_values, render

SHARDED = CHART / "ci" / "sharded-values.yaml"


def scrape_configs(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s for s in by_kind(render(values), "ScrapeConfig")}


def test_one_scrape_config_per_shard_keeps_its_share() -> None:
    configs = scrape_configs(load_values(SHARDED))
    assert sorted(configs) == [
        "powerplane-redfish-shard-0",
        "powerplane-redfish-shard-1",
        "powerplane-snmp-shard-0",
        "powerplane-snmp-shard-1",
    ]
    for name, config in configs.items():
        shard = name.rsplit("-", 1)[1]
        assert config["metadata"]["labels"]["powerplane.io/shard"] == shard
        assert config["metadata"]["labels"]["release"] == "kps"
        target, instance, hashmod, keep, address = config["spec"]["relabelings"]
        assert (target["targetLabel"], instance["targetLabel"]) == ("__param_target", "instance")
        # Hashed on the device (before __address__ becomes the exporter's Service), as in the lab.
        assert hashmod == {
            "sourceLabels": list(SHARD_KEY),
            "modulus": 2,
            "targetLabel": "__tmp_shard",
            "action": "hashmod",
        }
        assert keep == {"sourceLabels": ["__tmp_shard"], "regex": shard, "action": "keep"}
        assert address["targetLabel"] == "__address__"
    # Both shards carry every target: the keep rule, not the target list, splits them.
    assert (
        configs["powerplane-redfish-shard-0"]["spec"]["staticConfigs"]
        == configs["powerplane-redfish-shard-1"]["spec"]["staticConfigs"]
    )


def test_one_shard_renders_the_single_scrape_config() -> None:
    values = load_values(SHARDED)
    values["scrapeConfig"]["shards"] = 1
    configs = scrape_configs(values)
    assert sorted(configs) == ["powerplane-redfish", "powerplane-snmp"]
    for config in configs.values():
        assert "powerplane.io/shard" not in config["metadata"]["labels"]
        assert all(r.get("action") != "hashmod" for r in config["spec"]["relabelings"])


def test_replicas_keep_their_disruption_budgets() -> None:
    objects = render(load_values(SHARDED))
    deployments = {d["metadata"]["name"]: d["spec"] for d in by_kind(objects, "Deployment")}
    assert deployments["powerplane-redfish"]["replicas"] == 3
    assert deployments["powerplane-snmp"]["replicas"] == 2
    budgets = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "PodDisruptionBudget")}
    for name in ("powerplane-redfish", "powerplane-snmp"):
        assert budgets[name]["maxUnavailable"] == 1
        assert budgets[name]["selector"]["matchLabels"] == deployments[name]["selector"]["matchLabels"]
    # Rules run once, globally: the sharded example ships no PrometheusRule for every shard.
    assert not by_kind(objects, "PrometheusRule")
