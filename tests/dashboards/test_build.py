"""The generated Grafana dashboards: drift, the Grafana 11 model, structure, links, PromQL and metrics."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from click.testing import CliRunner
from grafanalib._gen import DashboardEncoder
from jsonschema import Draft202012Validator

from powerplane.cli import main
from powerplane.components import all_specs
from powerplane.dashboards import build, common, queries
from powerplane.rulegen.config import RulesConfig
from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parent.parent.parent
RULES_DIR = ROOT / "rules"

#: Names the dashboards use that are not declared on main yet (an exporter, rule or the controller
#: still being built).  Empty now that everything has landed; a test fails as soon as a name listed
#: here is declared, so the set only shrinks.
PENDING: set[str] = set()
#: Series Prometheus itself makes: scrape health and the alerts its rules fire.
PROMETHEUS_BUILTINS = {"up", "ALERTS"}


def recording_rules() -> set[str]:
    names = set()
    for path in sorted(RULES_DIR.glob("**/*.y*ml")) if RULES_DIR.is_dir() else []:
        doc = yaml.safe_load(path.read_text()) or {}
        if not isinstance(doc, dict):
            continue
        for group in doc.get("groups") or []:
            names.update(rule["record"] for rule in group.get("rules") or [] if "record" in rule)
    return names


def declared() -> set[str]:
    return set(all_specs()) | recording_rules() | PROMETHEUS_BUILTINS


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in build.render().items()}


def all_panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in queries.panels(doc) if p["type"] != "row"]


def bound(doc: dict[str, Any], value: str = "x") -> dict[str, str]:
    return {v["name"]: value for v in doc["templating"]["list"]}


def test_committed_json_equals_a_fresh_build() -> None:
    assert build.stale() == [], "run `powerplane dashboards build` and commit dashboards/json"


def test_build_command_writes_every_dashboard_and_check_detects_drift(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["dashboards", "build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{uid}.json" for uid in common.DASHBOARDS)
    assert runner.invoke(main, ["dashboards", "check", "--dir", str(tmp_path)]).exit_code == 0
    (tmp_path / "powerplane-gpu.json").write_text("{}")
    (tmp_path / "powerplane-obsolete.json").write_text("{}")
    result = runner.invoke(main, ["dashboards", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "powerplane-gpu.json" in result.output and "powerplane-obsolete.json" in result.output
    runner.invoke(main, ["dashboards", "build", "--out", str(tmp_path)])
    assert not (tmp_path / "powerplane-obsolete.json").exists()


# --- the Grafana 11 dashboard model --------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(build.SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_every_dashboard_is_a_valid_grafana11_dashboard(
    docs: dict[str, dict[str, Any]], validator: Draft202012Validator
) -> None:
    for name, doc in docs.items():
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], f"{name}: {errors[:5]}"
        assert doc["schemaVersion"] == build.SCHEMA_VERSION


def test_raw_grafanalib_output_is_not_valid_without_the_fixup(validator: Draft202012Validator) -> None:
    # The reason grafana11() exists: what grafanalib 0.7 writes is the Grafana 4-7 model.
    raw = json.loads(json.dumps(build.dashboards()["powerplane-rack"].to_json_data(), cls=DashboardEncoder))
    messages = " ".join(e.message for e in validator.iter_errors(raw))
    assert raw["schemaVersion"] == 12
    assert "'rows'" in messages and "'step'" in messages  # legacy dashboard and target keys
    assert "'null' is not of type 'null'" in messages  # threshold base step written as a string
    bar = next(p for p in raw["panels"] if p["type"] == "bargauge")
    assert "fieldOptions" in bar["options"] and "unit" not in bar["fieldConfig"]["defaults"]


def test_fixup_moves_bar_gauge_settings_and_is_idempotent(docs: dict[str, dict[str, Any]]) -> None:
    doc = docs["powerplane-rack.json"]
    bar = next(p for p in all_panels(doc) if p["title"] == "Share of budget")
    assert bar["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert [s["value"] for s in bar["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None,
        *common.THRESHOLDS["rack_budget_ratio"],
    ]
    assert bar["options"]["reduceOptions"]["calcs"] == ["lastNotNull"]
    assert "fieldOptions" not in bar["options"]
    assert build.grafana11(doc) == doc


def test_schema_rejects_what_grafana11_does_not_load(
    docs: dict[str, dict[str, Any]], validator: Draft202012Validator
) -> None:
    doc = json.loads(json.dumps(docs["powerplane-gpu.json"]))
    panel = all_panels(doc)[0]

    def base_step(d: dict[str, Any]) -> dict[str, Any]:
        step: dict[str, Any] = all_panels(d)[0]["fieldConfig"]["defaults"]["thresholds"]["steps"][0]
        return step

    bad_cases = [
        ("schemaVersion", lambda d: d.update(schemaVersion=12)),
        ("legacy rows", lambda d: d.update(rows=[])),
        ("panel span", lambda d: all_panels(d)[0].update(span=6)),
        ("datasource by name", lambda d: all_panels(d)[0].update(datasource="Prometheus")),
        ("string base step", lambda d: base_step(d).update(value="null")),
        ("grid overflow", lambda d: all_panels(d)[0]["gridPos"].update(w=25)),
        ("target step", lambda d: all_panels(d)[0]["targets"][0].update(step=10)),
        ("no refId", lambda d: all_panels(d)[0]["targets"][0].pop("refId")),
    ]  # fmt: skip
    assert panel["type"] != "row"
    for what, mutate in bad_cases:
        broken = json.loads(json.dumps(doc))
        mutate(broken)
        assert list(validator.iter_errors(broken)), f"schema accepted {what}"


# --- structure -----------------------------------------------------------------------------------


def test_uids_are_unique_stable_and_name_the_files(docs: dict[str, dict[str, Any]]) -> None:
    uids = [doc["uid"] for doc in docs.values()]
    assert len(set(uids)) == len(uids)
    assert {f"{uid}.json" for uid in uids} == set(docs)
    assert set(uids) == set(common.DASHBOARDS)
    titles = [doc["title"] for doc in docs.values()]
    assert len(set(titles)) == len(titles)


def test_panel_ids_are_unique_and_panels_do_not_overlap(docs: dict[str, dict[str, Any]]) -> None:
    for name, doc in docs.items():
        ids = [p["id"] for p in queries.panels(doc)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        cells: dict[tuple[int, int], str] = {}
        for p in queries.panels(doc):
            pos = p["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name}/{p['title']}: wider than the grid"
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = p["title"]


def test_every_panel_reads_the_datasource_variable_and_has_a_unit(docs: dict[str, dict[str, Any]]) -> None:
    for name, doc in docs.items():
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for v in variables.values():
            if v["type"] == "query":
                assert v["datasource"] == common.DATASOURCE, f"{name}: variable {v['name']}"
        for p in all_panels(doc):
            where = f"{name}/{p['title']}"
            assert p["datasource"] == common.DATASOURCE, where
            assert p["targets"], f"{where}: no query"
            assert all(t["datasource"] == common.DATASOURCE for t in p["targets"]), where
            assert p["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"


def test_every_series_is_named_by_its_legend(docs: dict[str, dict[str, Any]]) -> None:
    for name, doc in docs.items():
        for p in all_panels(doc):
            for t in p["targets"]:
                assert t["legendFormat"].strip(), f"{name}/{p['title']}/{t['refId']}: no legend"
                labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t["legendFormat"]))
                # A legend may only name labels the query keeps; aggregations list theirs.
                for by in re.findall(r"\bby \(([^)]*)\)", t["expr"]):
                    outer = t["expr"].lstrip().startswith(("sum by", "avg by", "max by", "count by"))
                    if outer and by == re.findall(r"\bby \(([^)]*)\)", t["expr"])[0]:
                        kept = {label.strip() for label in by.split(",")}
                        assert labels <= kept, f"{name}/{p['title']}: legend uses {labels - kept}"


def test_rates_follow_the_scrape_interval(docs: dict[str, dict[str, Any]]) -> None:
    windowed = re.compile(r"\b(rate|irate|increase|delta|deriv)\((?:[^()\[]|\([^()]*\))*\[([^\]]+)\]")
    for doc in docs.values():
        for q in queries.queries(doc):
            for func, window in windowed.findall(q.expr):
                assert window in ("$__rate_interval", "$__range"), f"{q.name}: {func}(...[{window}])"


def test_variables_used_are_defined_in_order(docs: dict[str, dict[str, Any]]) -> None:
    for name, doc in docs.items():
        defined: list[str] = []
        for v in doc["templating"]["list"]:
            used = queries.variables_used(v.get("query", ""))
            assert used <= set(defined), f"{name}: variable {v['name']} uses {used - set(defined)} before"
            defined.append(v["name"])
        for q in queries.queries(doc):
            used = queries.variables_used(q.expr) - set(queries.BUILTINS)
            assert used <= set(defined), f"{q.name}: undefined variables {used - set(defined)}"


def test_thresholds_match_the_alerting_thresholds(docs: dict[str, dict[str, Any]]) -> None:
    def steps(uid: str, title: str) -> list[float]:
        panel = next(p for p in all_panels(docs[f"{uid}.json"]) if p["title"] == title)
        return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]

    assert steps("powerplane-gpu", "GPU temperature") == [90.0, 95.0]
    assert steps("powerplane-gpu", "GPU memory used") == [0.95]
    assert steps("powerplane-status", "Data age per job") == [600.0]
    assert steps("powerplane-rack", "Share of budget") == list(common.THRESHOLDS["rack_budget_ratio"])
    assert steps("powerplane-node", "Inlet and exhaust") == list(
        common.THRESHOLDS["inlet_temperature_celsius"]
    )


def test_links_resolve_to_dashboards_and_their_variables(docs: dict[str, dict[str, Any]]) -> None:
    by_uid = {doc["uid"]: doc for doc in docs.values()}
    variables = {uid: {v["name"] for v in doc["templating"]["list"]} for uid, doc in by_uid.items()}

    def check(url: str, where: str) -> None:
        parts = urlsplit(url)
        match = re.fullmatch(r"/d/([\w-]+)", parts.path)
        assert match, f"{where}: {url} is not a dashboard link"
        uid = match.group(1)
        assert uid in by_uid, f"{where}: {url} links to an unknown dashboard"
        for key, _value in parse_qsl(parts.query.replace("${__url_time_range}", "")):
            if key.startswith("var-"):
                assert key[4:] in variables[uid], f"{where}: {uid} has no variable {key[4:]}"

    for name, doc in docs.items():
        targets = {urlsplit(link["url"]).path for link in doc["links"]}
        others = {f"/d/{uid}" for uid in by_uid if uid != doc["uid"]}
        assert targets == others, f"{name}: must link every other dashboard"
        for link in doc["links"]:
            assert link["includeVars"] and link["keepTime"]
            check(link["url"], name)
        found = 0
        for p in all_panels(doc):
            defaults = p["fieldConfig"]["defaults"]
            links = list(defaults.get("links", []))
            for override in p["fieldConfig"]["overrides"]:
                links += [
                    v for prop in override["properties"] if prop["id"] == "links" for v in prop["value"]
                ]
            for link in links:
                check(link["url"], f"{name}/{p['title']}")
                found += 1
        if doc["uid"] in ("powerplane-fleet", "powerplane-status"):
            assert found, f"{name}: no drill-down links"


# --- PromQL --------------------------------------------------------------------------------------


def all_expressions(docs: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(where, expression with variables bound) for every panel query and variable selector."""
    out = []
    for doc in docs.values():
        values = bound(doc, "lab-value")
        for q in queries.queries(doc):
            out.append((q.name, queries.substitute(q.expr, values)))
        for v in doc["templating"]["list"]:
            if v["type"] == "query":
                selector, _label = queries.label_values(v["query"])
                if selector:
                    out.append((f"{doc['uid']} / variable {v['name']}", queries.substitute(selector, values)))
    return out


def test_every_query_parses_with_promtool(docs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    exprs = all_expressions(docs)
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{i}:check", "expr": e} for i, (_, e) in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_promtool_check_catches_a_broken_query(tmp_path: Path) -> None:
    # The parse check above must be able to fail: a typo in a query is reported.
    promtool = require_binary("promtool")
    path = tmp_path / "bad.yaml"
    bad = queries.substitute('sum by (node (rate(x_total{node=~"$node"}[$__rate_interval]))', {"node": "n"})
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "a:b:c", "expr": bad}]}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_queries_use_only_declared_metrics(docs: dict[str, dict[str, Any]]) -> None:
    known = declared() | PENDING
    unknown = {}
    for where, expr in all_expressions(docs):
        missing = queries.metric_names(expr) - known
        if missing:
            unknown[where] = sorted(missing)
    assert unknown == {}, "queries use metrics neither declared (docs/METRICS.md, rules/) nor pending"


def test_pending_metrics_are_still_pending_and_still_used(docs: dict[str, dict[str, Any]]) -> None:
    landed = PENDING & declared()
    assert landed == set(), f"declared now, remove from PENDING: {sorted(landed)}"
    used = set().union(*(queries.metric_names(e) for _, e in all_expressions(docs)))
    assert PENDING - used == set(), "PENDING lists names no dashboard uses"


def test_metric_name_extraction() -> None:
    assert queries.metric_names(
        'sum by (node, zone) (rate(powerplane_rapl_energy_joules_total{zone=~"package|dram"}[5s])) '
        "/ on(node) group_left(rack) powerplane_node_info * 3.6e6 + time() - max by (job) "
        "(last_over_time(timestamp(up == 1)[1h:]))"
    ) == {"powerplane_rapl_energy_joules_total", "powerplane_node_info", "up"}
    assert queries.metric_names("node:powerplane_status:state == bool 0") == {"node:powerplane_status:state"}
    assert queries.metric_names('ALERTS{alertname="sum(x)", alertstate="firing"}') == {"ALERTS"}


def test_substitute_binds_variables_and_builtins_and_refuses_unknown() -> None:
    expr = 'increase(x_total{node=~"$node", gpu=~"${gpu}"}[$__rate_interval]) * $__range_s'
    assert queries.substitute(expr, {"node": "n1", "gpu": "0"}) == (
        'increase(x_total{node=~"n1", gpu=~"0"}[5s]) * 300'
    )
    with pytest.raises(KeyError, match="rack"):
        queries.substitute('x{rack=~"$rack"}', {})
    assert queries.label_values('label_values(powerplane_node_info{cluster=~"$cluster"}, row)') == (
        'powerplane_node_info{cluster=~"$cluster"}',
        "row",
    )
    with pytest.raises(ValueError):
        queries.label_values("query_result(up)")


def test_provisioning_example_points_at_the_dashboards() -> None:
    provider = yaml.safe_load((build.JSON_DIR.parent / "provisioning" / "powerplane.yaml").read_text())
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"].startswith("/")
    datasource = yaml.safe_load((build.JSON_DIR.parent / "provisioning" / "datasource.yaml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"


def _panel_steps(rendered: dict[str, str]) -> dict[tuple[str, str], tuple[float, ...]]:
    """(dashboard uid, panel title) → the panel's threshold levels above its base."""
    out = {}
    for text in rendered.values():
        doc = json.loads(text)
        for panel in all_panels(doc):
            steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
            out[(doc["uid"], panel["title"])] = tuple(s["value"] for s in steps[1:])
    return out


def test_panel_thresholds_follow_the_rules_config(tmp_path: Path) -> None:
    """A site's rules overrides move the panels' thresholds with the alerts': none is restated."""
    shipped = RulesConfig()
    numeric = {
        f.name: getattr(shipped, f.name) * 0.5
        for f in fields(RulesConfig)
        if isinstance(getattr(shipped, f.name), float)
    }
    site = RulesConfig(**numeric)
    before, after = common.thresholds(shipped), common.thresholds(site)
    fixed = {"data_age_seconds"}  # a display rule, no alert behind it
    for key in set(before) - fixed:
        assert before[key] != after[key], f"{key} does not follow RulesConfig"
    default_panels, site_panels = _panel_steps(build.render()), _panel_steps(build.render(site))
    used = set()
    for where, levels in default_panels.items():
        if site_panels[where] == levels:
            continue  # a display rule of its own (availability, data age, ...)
        keys = {k for k in set(before) - fixed if (before[k], after[k]) == (levels, site_panels[where])}
        assert keys, f"{where}: thresholds {levels} moved to {site_panels[where]}, not as any rule setting"
        used |= keys
    assert used == set(before) - fixed, f"thresholds no panel shows: {set(before) - fixed - used}"
    # The command line takes the same site file as `powerplane rules build`.
    path = tmp_path / "site-rules.yaml"
    path.write_text(
        yaml.safe_dump({"gpu_temperature_warning_celsius": 80, "gpu_temperature_critical_celsius": 88})
    )
    result = CliRunner().invoke(
        main, ["dashboards", "build", "--out", str(tmp_path / "out"), "--rules-config", str(path)]
    )
    assert result.exit_code == 0, result.output
    built = _panel_steps({"gpu": (tmp_path / "out" / "powerplane-gpu.json").read_text()})
    assert built[("powerplane-gpu", "GPU temperature")] == (80.0, 88.0)
    assert common.THRESHOLDS["gpu_temperature_celsius"] == (90.0, 95.0), (
        "the override leaked out of the build"
    )


def test_bind_variables_chains_like_grafana_all() -> None:
    doc = {
        "templating": {
            "list": [
                {"type": "datasource", "name": "datasource", "query": "prometheus"},
                {"type": "query", "name": "rack", "query": "label_values(powerplane_node_info, rack)"},
                {
                    "type": "query",
                    "name": "node",
                    "query": 'label_values(powerplane_node_info{rack=~"$rack"}, node)',
                },
                {
                    "type": "query",
                    "name": "gpu",
                    "query": 'label_values(powerplane_gpu_info{node=~"$node"}, gpu)',
                },
            ]
        }
    }
    seen = []

    def query(expr: str) -> list[dict[str, Any]]:
        seen.append(expr)
        if expr == "powerplane_node_info":
            return [{"metric": {"rack": "r.1"}}, {"metric": {"rack": "r2"}}, {"metric": {}}]
        if expr == 'powerplane_node_info{rack=~"(r\\.1|r2)"}':
            return [{"metric": {"node": "node-01"}}]
        return []

    values, empty = queries.bind_variables(doc, query)
    assert values == {"rack": "(r\\.1|r2)", "node": "(node-01)", "gpu": ".+"}
    assert empty == ["gpu"]
    assert seen[-1] == 'powerplane_gpu_info{node=~"(node-01)"}'
