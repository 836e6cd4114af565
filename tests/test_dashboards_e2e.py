"""End to end: a real Prometheus with the rules scrapes the demo lab; every dashboard query returns data.

Variables are bound the way Grafana binds them: each ``label_values()`` query is evaluated
against the lab's Prometheus in order and its values (the "All" option) fill the next ones.
Queries over metrics still listed as pending in test_dashboards.py are reported, not checked.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane.dashboards import build, queries
from powerplane.lab import procs
from powerplane.lab.demo import COMPONENTS, DemoContext, _component

from .test_dashboards import PENDING, RULES_DIR

#: An alert that always fires, so the alert panels have something to list.
PROBE_ALERT = {
    "groups": [
        {
            "name": "dashboard-probe",
            "rules": [
                {
                    "alert": "PowerplaneDashboardProbe",
                    "expr": "vector(1)",
                    "labels": {"severity": "info"},
                    "annotations": {"summary": "probe", "description": "probe", "runbook_url": "none"},
                }
            ],
        }
    ]
}


async def _start_lab(workdir: Path, stack: contextlib.AsyncExitStack) -> DemoContext:
    ctx = DemoContext(workdir, [f"node-{i + 1:02d}" for i in range(3)], stack)
    for ref in COMPONENTS:
        await _component(ref)(ctx)
    return ctx


@pytest.mark.e2e
def test_every_dashboard_query_returns_lab_data(
    prometheus: Any, background_loop: procs.BackgroundLoop, tmp_path: Path
) -> None:
    stack = contextlib.AsyncExitStack()
    ctx = background_loop.run(_start_lab(tmp_path / "lab", stack))
    try:
        probe = tmp_path / "probe-alert.yaml"
        probe.write_text(yaml.safe_dump(PROBE_ALERT))
        rule_files = sorted(RULES_DIR.glob("*.yaml")) if RULES_DIR.is_dir() else []
        prom = prometheus(ctx.scrape_configs, rule_files=[*rule_files, probe])
        static = [sc for c in ctx.scrape_configs for sc in c.get("static_configs", [])]
        prom.wait_targets_up(max(1, sum(len(sc["targets"]) for sc in static)))

        docs = [json.loads(text) for text in build.render().values()]
        checked: dict[str, str] = {}
        skipped: list[str] = []
        for doc in docs:
            values, empty = queries.bind_variables(doc, prom.query)
            for name in empty:  # only a variable whose source metric has not landed may be empty
                var = next(v for v in doc["templating"]["list"] if v["name"] == name)
                selector = queries.label_values(var["query"])[0] or ""
                assert queries.metric_names(selector) & PENDING, f"{doc['uid']}: variable {name} is empty"
            for q in queries.queries(doc):
                expr = queries.substitute(q.expr, values)
                if queries.metric_names(expr) & PENDING:
                    skipped.append(q.name)
                else:
                    checked[q.name] = expr

        def all_answer() -> bool:
            return all(prom.query(expr) for expr in checked.values())

        with contextlib.suppress(TimeoutError):
            procs.wait_until(all_answer, 90, interval=1.0, what="every dashboard query to return data")
        empty = sorted(name for name, expr in checked.items() if not prom.query(expr))
        assert empty == [], f"dashboard queries with no data against the lab: {empty}"
        # Never vacuous: what main's lab provides (RAPL, scrape health, alerts) is checked.
        assert any("RAPL" in name for name in checked), sorted(checked)
        assert len(checked) >= 6, sorted(checked)
        print(f"\n{len(checked)} dashboard queries returned data; {len(skipped)} await pending metrics")
    finally:
        background_loop.run(stack.aclose())
