"""The rules' scope labels (`scope_labels: [cluster]`): every grouping keeps sites apart; the
default leaves the shipped rules as they are.  tests/scale evaluates the scoped rules on
vmalert over VictoriaMetrics; tests/rules/test_e2e.py the shipped ones on Prometheus."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from powerplane.exporters.runtime.config import ConfigError
from powerplane.rulegen import render
from powerplane.rulegen.config import KIND, RulesConfig
from powerplane.rulegen.model import scoped
from tests.conftest import require_binary

GLOBAL = RulesConfig(scope_labels=("cluster",))


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("sum by (node) (x)", "sum by (cluster, node) (x)"),
        ("sum by (rack, cluster) (x)", "sum by (rack, cluster) (x)"),
        ("a * on(node) group_left(rack, cluster) b", "a * on (cluster, node) group_left (rack) b"),
        ("a / on (pdu) group_right () b", "a / on (cluster, pdu) group_right () b"),
        ("x and on () hour() > 14", "x and on () hour() > 14"),
        ("sum by () (x)", "sum by () (x)"),
        ("sum without (result) (x)", "sum without (result) (x)"),
    ],
)
def test_scoped_adds_the_labels_to_every_grouping(expr: str, want: str) -> None:
    assert scoped(expr, ("cluster",)) == want


def test_no_scope_labels_leave_the_shipped_rules_unchanged() -> None:
    assert render.render(RulesConfig(scope_labels=())) == render.render(RulesConfig())
    assert scoped("sum by (node) (x)", ()) == "sum by (node) (x)"


def test_every_scoped_grouping_names_the_cluster() -> None:
    groupings = re.compile(r"\b(?:by|on)\s*\(([^()]*)\)")
    for rule in render.iter_rules(render.render(GLOBAL)):
        for labels in groupings.findall(rule["expr"]):
            names = [n.strip() for n in labels.split(",") if n.strip()]
            assert not names or "cluster" in names, (rule.get("record") or rule.get("alert"), labels)
        for extra in re.findall(r"group_(?:left|right)\s*\(([^()]*)\)", rule["expr"]):
            assert "cluster" not in extra, rule["expr"]


def test_scoped_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    paths = render.write(tmp_path, GLOBAL)
    done = subprocess.run([promtool, "check", "rules", *map(str, paths)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scope_labels_are_validated() -> None:
    assert KIND.load_text("scope_labels: [cluster]").scope_labels == ("cluster",)
    with pytest.raises(ConfigError, match="scope_labels"):
        KIND.load_text("scope_labels: ['not a label']")
    with pytest.raises(ConfigError, match="scope_labels"):
        KIND.load_text("scope_labels: cluster")
