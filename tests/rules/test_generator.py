"""The rules suite: generated files current, promtool-valid and unit-tested, every alert well formed."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane.components import all_specs
from powerplane.exporters.runtime import ConfigError
from powerplane.rulegen import render
from powerplane.rulegen.config import KIND, RulesConfig
from powerplane.rulegen.model import Alert, Family, Recording
from tests.conftest import require_binary

RULES = Path(__file__).resolve().parent.parent.parent / "rules"
TESTS = sorted((RULES / "tests").glob("*.yaml"))

#: Metrics the rules use whose exporters are not on main yet (their names follow DESIGN.md).
#: Each must move to a METRICS declaration; the test below fails once one is declared, so the set
#: shrinks as exporters land.
PENDING: set[str] = set()
#: Series Prometheus itself produces.
BUILTIN = {"up", "ALERTS"}

_METRIC = re.compile(r"(?<![\w\"])([a-zA-Z_][a-zA-Z0-9_]*(?::[a-zA-Z0-9_]+)*)\s*(?=[{\[),\s]|$)")
_KEYWORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "by",
    "on",
    "or",
    "and",
    "unless",
    "without",
    "group_left",
    "group_right",
    "rate",
    "increase",
    "abs",
    "round",
    "label_replace",
    "time",
    "hour",
    "offset",
    "ignoring",
    "bool",
    "e6",
    "1e6",
}


def metrics_in(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_groupings = re.sub(
        r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", without_labels
    )
    without_ranges = re.sub(r"\[[^\]]*\]", "[]", without_groupings)
    names = set(_METRIC.findall(without_ranges)) - _KEYWORDS
    return {n for n in names if not re.fullmatch(r"\d+(ms|s|m|h|d|w|y)?", n)}


def committed() -> dict[str, Any]:
    return {name: yaml.safe_load((RULES / name).read_text()) for name in render.render()}


def test_committed_rules_match_the_generator() -> None:
    for name, text in render.render_text().items():
        assert (RULES / name).read_text() == text, f"rules/{name} drifted: run `powerplane rules build`"


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, sorted(RULES.glob("*.yaml")))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests() -> None:
    promtool = require_binary("promtool")

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [promtool, "test", "rules", str(path)], cwd=RULES, capture_output=True, text=True, timeout=600
        )

    # One promtool per file, side by side: it tests the files of one invocation one after another.
    with ThreadPoolExecutor(len(TESTS)) as pool:
        results = dict(zip(TESTS, pool.map(run, TESTS), strict=True))
    failed = {p.name: r.stdout + r.stderr for p, r in results.items() if r.returncode != 0}
    assert failed == {}


def test_every_alert_is_well_formed_and_unique() -> None:
    rules = list(render.iter_rules(committed()))
    alerts = [r for r in rules if "alert" in r]
    names = [r["alert"] for r in alerts]
    assert len(names) == len(set(names)), "duplicate alert names"
    # Rules recording one name each set a label of their own (the part they record).
    records = [(r["record"], tuple(sorted(r.get("labels", {}).items()))) for r in rules if "record" in r]
    assert len(records) == len(set(records)), "duplicate recording rules"
    assert all(labels for name, labels in records if [n for n, _ in records].count(name) > 1)
    assert len(alerts) >= 25
    for rule in alerts:
        name = rule["alert"]
        assert re.fullmatch(r"Powerplane[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert all(v.strip() for v in rule["annotations"].values()), name
        assert rule["annotations"]["runbook_url"].endswith("#" + name.lower()), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
    for rule in rules:
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:powerplane_[a-z0-9_]+(:[a-z0-9_]+)?", rule["record"]), rule[
                "record"
            ]


def test_every_metric_a_rule_uses_exists() -> None:
    declared = set(all_specs())
    recorded = set(render.recorded_names())
    used: set[str] = set()
    for rule in render.iter_rules(committed()):
        used |= metrics_in(rule["expr"])
    unknown = used - declared - recorded - PENDING - BUILTIN
    assert unknown == set(), f"rules use metrics nobody emits: {sorted(unknown)}"
    landed = PENDING & declared
    assert landed == set(), f"declared now, remove from PENDING: {sorted(landed)}"
    assert used >= PENDING, f"PENDING lists metrics no rule uses: {sorted(PENDING - used)}"


def test_metric_extraction() -> None:
    expr = 'sum by (node) (rate(powerplane_rapl_energy_joules_total{zone=~"package|dram"}[5m])) / on (x) up'
    assert metrics_in(expr) == {"powerplane_rapl_energy_joules_total", "up"}
    assert metrics_in("node:powerplane_power_watts:best unless on (node) foo offset 10m") == {
        "node:powerplane_power_watts:best",
        "foo",
    }


def _tested(path: Path) -> tuple[set[str], set[str], set[str]]:
    """(alerts with a firing case, alerts with a quiet case, names the PromQL tests read) of a file."""
    firing: set[str] = set()
    quiet: set[str] = set()
    exprs: list[str] = []
    for case in yaml.safe_load(path.read_text())["tests"]:
        for t in case.get("alert_rule_test", []):
            (firing if t.get("exp_alerts") else quiet).add(t["alertname"])
        exprs += [t["expr"] for t in case.get("promql_expr_test", [])]
    return firing, quiet, set().union(*(metrics_in(e) for e in exprs))


@pytest.mark.parametrize("family", render.families(), ids=lambda f: f.name)
def test_each_family_is_covered_by_its_own_unit_tests(family: Family) -> None:
    config = RulesConfig()
    firing, quiet, read = set[str](), set[str](), set[str]()
    for name in family.test_files:
        in_file = _tested(RULES / "tests" / name)
        firing, quiet, read = firing | in_file[0], quiet | in_file[1], read | in_file[2]
    files = ", ".join(family.test_files)
    alerts = {a.name for a in family.alerts(config)}
    assert alerts - firing == set(), f"alerts without a firing case in {files}"
    assert alerts - quiet == set(), f"alerts without a not-firing case in {files}"
    recorded = {r.record for r in family.recording(config)}
    assert recorded - read == set(), f"recording rules without a promql_expr_test in {files}"
    assert alerts or recorded, f"family {family.name} has no rules"


def test_every_rule_belongs_to_one_family_and_every_tests_file_to_one_family() -> None:
    families = render.families()
    assert sorted(name for f in families for name in f.test_files) == sorted(p.name for p in TESTS)
    assert len({f.name for f in families}) == len(families)
    assert sorted(render.alert_names()) == sorted(a.name for f in families for a in f.alerts(RulesConfig()))


def test_a_family_is_one_module_and_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later component adds its rules by a module declaring FAMILY and its entry in FAMILIES."""
    monkeypatch.setattr(render, "FAMILIES", (*render.FAMILIES, __name__))
    names = render.alert_names()
    assert names[-1] == "PowerplaneToyBroken"
    docs = render.render()
    assert {r.get("record") for r in render.iter_rules(docs)} >= {"node:powerplane_toy_widgets:sum"}
    monkeypatch.setattr(render, "FAMILIES", (*render.FAMILIES, "json"))
    with pytest.raises(TypeError, match="json declares no FAMILY"):
        render.families()


FAMILY = Family(
    "toy",
    tests="alerts-toy.yaml",
    alerts=lambda c: [Alert("PowerplaneToyBroken", "powerplane_toy_broken > 0", "5m", "info", "s", "d")],
    recording=lambda c: [
        Recording("node:powerplane_toy_widgets:sum", "sum by (node) (powerplane_toy_widgets)")
    ],
)


def test_overrides_change_thresholds_selectors_runbooks_and_for(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "job_selector: 'job=\"pp\"'\ngpu_power_watts: 330\ngpu_temperature_warning_celsius: 85\n"
        "runbook_url: 'https://wiki.example/{anchor}'\nfor_overrides: {'*': 30s, PowerplaneTargetDown: 1m}\n"
        "rate_window: 2m\ninterval: 15s\n"
    )
    config = KIND.load(site)
    docs = render.render(config)
    rules = {r.get("alert") or r["record"]: r for r in render.iter_rules(docs)}
    assert rules["PowerplaneExporterDown"]["expr"] == 'up{job="pp"} == 0'
    assert rules["PowerplaneGpuPowerNearLimit"]["expr"] == "powerplane_gpu_power_watts > 330"
    assert "> 85" in rules["PowerplaneGpuTemperatureHigh"]["expr"]
    assert rules["PowerplaneGpuTemperatureHigh"]["annotations"]["runbook_url"] == (
        "https://wiki.example/powerplanegputemperaturehigh"
    )
    assert rules["PowerplaneGpuTemperatureHigh"]["for"] == "30s"
    assert rules["PowerplaneTargetDown"]["for"] == "1m"
    assert "[2m]" in rules["node:powerplane_rapl_power_watts:sum"]["expr"]
    assert all(g["interval"] == "15s" for d in docs.values() for g in d["groups"])
    out = tmp_path / "out"
    render.write(out, config)
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "rules", *map(str, out.glob("*.yaml"))], capture_output=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nope: 1", "unknown key(s) 'nope'"),
        ("rate_window: five minutes", "rate_window"),
        ("gpu_power_watts: -3", "gpu_power_watts"),
        ("runbook_url: https://x/", "must contain {anchor}"),
        ("for_overrides: {PowerplaneTargetDown: soon}", "for_overrides.PowerplaneTargetDown"),
    ],
)
def test_bad_rules_config_is_rejected(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        KIND.load_text(text, "site.yaml")
    assert any(expected in e for e in err.value.errors), err.value.errors


def test_every_alert_has_a_runbook_section() -> None:
    text = (RULES.parent / "docs" / "rules.md").read_text()
    headings = set(re.findall(r"^### (Powerplane\w+)$", text, re.M))
    assert set(render.alert_names()) - headings == set()
    for record in render.recorded_names():
        short = record.split(":")[0] + ":"
        assert record in text or short in text, record
