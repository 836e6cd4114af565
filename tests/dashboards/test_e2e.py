"""End to end: a real Prometheus with the rules scrapes the demo lab; every dashboard query returns data.

Variables are bound the way Grafana binds them: each ``label_values()`` query is evaluated
against the lab's Prometheus in order and its values (the "All" option) fill the next ones.
Every query over metrics the lab's Prometheus has must return data; a metric it lacks must be
pending (not merged yet, test_dashboards.PENDING) or listed in ``NOT_IN_LAB`` below.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane.dashboards import build, queries
from powerplane.dashboards.preview import scrape_interval
from powerplane.lab import procs
from powerplane.lab.demo import DemoContext, start_parts
from tests.conftest import LAB_START_S

from .test_build import PENDING, RULES_DIR

#: Declared metrics the demo lab does not produce (yet), and why: their panels cannot be checked
#: here.  A test fails when one of them appears, so the set only shrinks.
NOT_IN_LAB_WHY: dict[str, str] = {
    "powerplane_gpu_xid_errors_total": "a series per XID appears with the first event; the demo injects none",
    "powerplane_cooling_humidity_ratio": "the lab's coolers are InRow RC units, which report no humidity "
    "(the DX RP does; tests/snmp/test_inrow.py reads it)",
}
NOT_IN_LAB = set(NOT_IN_LAB_WHY)
#: Metrics the lab produces only at some moments: checked when present, allowed to be absent.
SOMETIMES_IN_LAB: dict[str, str] = {
    "powerplane_controller_cap_desired_watts": "only while a policy wants a cap (the demo price spike)",
    "powerplane_controller_cap_enforced_watts": "exists only while a GPU is capped",
}

#: Panels the demo lab cannot fill yet, and why.  Strict: the test fails once one returns data.
KNOWN_LAB_GAPS: dict[str, str] = {}

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
    await start_parts(ctx)
    return ctx


@pytest.mark.e2e
def test_every_dashboard_query_returns_lab_data(
    prometheus: Any, background_loop: procs.BackgroundLoop, tmp_path: Path
) -> None:
    stack = contextlib.AsyncExitStack()
    try:
        ctx = background_loop.run(_start_lab(tmp_path / "lab", stack), timeout=LAB_START_S)
        probe = tmp_path / "probe-alert.yaml"
        probe.write_text(yaml.safe_dump(PROBE_ALERT))
        rule_files = sorted(RULES_DIR.glob("*.yaml")) if RULES_DIR.is_dir() else []
        # Some lab jobs (SNMP) set their own scrape timeout: the interval must not be shorter.
        interval = scrape_interval(ctx.scrape_configs)
        prom = prometheus(
            ctx.scrape_configs,
            rule_files=[*rule_files, probe],
            scrape_interval=f"{interval}s",
            evaluation_interval="1s",
        )
        # Grafana's $__rate_interval: at least four scrape intervals.
        builtins = {**queries.BUILTINS, "__rate_interval": f"{4 * interval + 1}s"}
        static = [sc for c in ctx.scrape_configs for sc in c.get("static_configs", [])]
        prom.wait_targets_up(max(1, sum(len(sc["targets"]) for sc in static)))

        docs = [json.loads(text) for text in build.render().values()]
        state: dict[str, Any] = {}

        def check() -> bool:
            present = set(prom.api("label/__name__/values"))
            checked: dict[str, str] = {}
            missing: dict[str, set[str]] = {}
            for doc in docs:
                values, empty = queries.bind_variables(doc, prom.query)
                for name in empty:  # a variable may be empty only when its source metric is absent
                    var = next(v for v in doc["templating"]["list"] if v["name"] == name)
                    selector = queries.label_values(var["query"])[0] or ""
                    assert not queries.metric_names(selector) <= present, f"{doc['uid']}: ${name} is empty"
                for q in queries.queries(doc):
                    expr = queries.substitute(q.expr, values, builtins)
                    absent = queries.metric_names(expr) - present
                    if absent:
                        missing[q.name] = absent
                    else:
                        checked[q.name] = expr
            answered = {name for name, expr in checked.items() if prom.query(expr)}
            empty_queries = sorted(set(checked) - answered - set(KNOWN_LAB_GAPS))
            state["gaps_filled"] = sorted(answered & set(KNOWN_LAB_GAPS))
            state.update(present=present, checked=checked, missing=missing, empty=empty_queries)
            unexplained = set().union(set(), *missing.values()) - PENDING - NOT_IN_LAB - set(SOMETIMES_IN_LAB)
            return not empty_queries and not unexplained

        with contextlib.suppress(TimeoutError):
            procs.wait_until(check, 120, interval=2.0, what="every dashboard query to return data")
        assert state["empty"] == [], f"dashboard queries with no data against the lab: {state['empty']}"
        assert state["gaps_filled"] == [], "the lab fills these now: remove them from KNOWN_LAB_GAPS"
        allowed = PENDING | NOT_IN_LAB | set(SOMETIMES_IN_LAB)
        unexplained = {
            name: sorted(absent - allowed) for name, absent in state["missing"].items() if absent - allowed
        }
        names = sorted(set().union(set(), *map(set, unexplained.values())))
        assert unexplained == {}, (
            f"declared metrics missing from the lab (NOT_IN_LAB, with a reason?): {names}"
        )
        assert NOT_IN_LAB & state["present"] == set(), "the lab has these now: remove them from NOT_IN_LAB"
        # Never vacuous: what main's lab provides (RAPL, scrape health, alerts) is checked.
        assert any("RAPL" in name for name in state["checked"]), sorted(state["checked"])
        assert len(state["checked"]) >= 6, sorted(state["checked"])
        print(
            f"\n{len(state['checked'])} dashboard queries returned data; "
            f"{len(state['missing'])} wait for metrics the lab lacks: "
            f"{sorted(set().union(set(), *state['missing'].values()))}"
        )
    finally:
        background_loop.run(stack.aclose())
