"""Names that agree: `_info` metrics are typed info, and every selector in the rules and the
dashboards matches only label values an exporter declares (``MetricSpec.values``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from powerplane.components import all_specs
from powerplane.dashboards import build, queries
from powerplane.exporters.runtime.metrics import MetricSpec
from powerplane.rulegen import render

ROOT = Path(__file__).resolve().parent.parent.parent

#: Label values Prometheus itself gives its own series.
BUILTIN_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "ALERTS": {"alertstate": ("pending", "firing"), "severity": ("critical", "warning", "info")},
}
#: Selected labels of metrics whose owners have not declared their values yet (exporters and the
#: controller outside the rules' area).  The test fails once one is declared, so the set shrinks.
PENDING: set[tuple[str, str]] = {
    ("powerplane_redfish_health", "state"),
    ("powerplane_redfish_health", "resource"),
    ("powerplane_redfish_temperature_celsius", "context"),
    ("powerplane_cooling_temperature_celsius", "point"),
    ("powerplane_market_day_min_eur_per_mwh", "day"),
    ("powerplane_market_day_max_eur_per_mwh", "day"),
    ("powerplane_market_day_mean_eur_per_mwh", "day"),
}

#: Labels whose value is a list (Slurm's reservation flags, comma separated): a selector matches a
#: member with a pattern, and no closed set of whole values exists to check it against.
LISTS: set[tuple[str, str]] = {("powerplane_slurm_reservation_info", "flags")}

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def matchers(expr: str) -> Iterator[tuple[str, str, str, str]]:
    """(metric, label, operator, value) of every label matcher in ``expr``."""
    for selector in _SELECTOR.finditer(expr):
        for label, op, value in _MATCHER.findall(selector.group(2)):
            yield selector.group(1), label, op, value


def alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of a regex, each with the pattern's leading inline flags."""
    flags = re.match(r"^\(\?[a-z]+\)", pattern)
    prefix = flags.group(0) if flags else ""
    body = pattern[len(prefix) :]
    parts, depth, current = [], 0, ""
    for i, ch in enumerate(body):
        escaped = i > 0 and body[i - 1] == "\\"
        if ch in "([" and not escaped:
            depth += 1
        elif ch in ")]" and not escaped:
            depth -= 1
        if ch == "|" and depth == 0 and not escaped:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [prefix + p for p in [*parts, current]]


def dead_values(op: str, value: str, declared: tuple[str, ...]) -> list[str]:
    """The parts of a positive matcher that match no declared value (Prometheus anchors regexes)."""
    if op == "=":
        return [] if value in declared else [value]
    return [alt for alt in alternatives(value) if not any(re.fullmatch(alt, d) for d in declared)]


def selectors() -> Iterator[tuple[str, str]]:
    """(where, expr) of every rule and every dashboard query and variable."""
    for rule in render.iter_rules(render.render()):
        yield rule.get("alert") or rule["record"], rule["expr"]
    for text in build.render().values():
        doc = json.loads(text)
        for q in queries.queries(doc):
            yield q.name, q.expr
        for var in doc["templating"]["list"]:
            if var.get("type") == "query":
                yield f"{doc['uid']} / ${var['name']}", var["query"]


def declared_values() -> dict[str, Mapping[str, tuple[str, ...]]]:
    specs: dict[str, Mapping[str, tuple[str, ...]]] = {n: s.values for n, s in all_specs().items()}
    return {**specs, **BUILTIN_VALUES}


def test_every_positive_matcher_selects_declared_values() -> None:
    known = declared_values()
    problems, pending_seen = [], set()
    for where, expr in selectors():
        for metric, label, op, value in matchers(expr):
            if op not in ("=", "=~") or "$" in value or metric not in known or (metric, label) in LISTS:
                continue  # negative matchers, dashboard variables, recording-rule inputs
            values = known[metric].get(label)
            if values is None:
                if (metric, label) in PENDING:
                    pending_seen.add((metric, label))
                    continue
                problems.append(
                    f"{where}: {metric}{{{label}{op}{value!r}}}: {metric} declares no {label} values"
                )
                continue
            dead = dead_values(op, value, values)
            if dead:
                problems.append(f"{where}: {metric}{{{label}{op}{value!r}}}: {dead} match none of {values}")
    assert problems == []
    landed = {(m, lbl) for m, lbl in PENDING if lbl in known.get(m, {})}
    assert landed == set(), f"values declared now, remove from PENDING: {sorted(landed)}"
    assert pending_seen == PENDING, f"PENDING lists labels no selector uses: {PENDING - pending_seen}"


def test_the_rules_committed_are_those_checked() -> None:
    for name, text in render.render_text().items():
        assert (ROOT / "rules" / name).read_text() == text
    assert yaml.safe_load((ROOT / "rules" / render.ALERTS_FILE).read_text())["groups"]


@pytest.mark.parametrize(
    ("op", "value", "declared", "dead"),
    [
        ("=", "gpu", ("gpu", "memory"), []),
        ("=", "die", ("gpu", "memory"), ["die"]),
        ("=~", "package|dram", ("package", "core", "dram"), []),
        ("=~", "package|psu", ("package", "dram"), ["psu"]),
        ("=~", "(?i).*uncorrected.*", ("corrected", "uncorrected"), []),
        ("=~", "(?i)(psu|powersupply).*", ("psu/1", "fan/2"), []),
        ("=~", "(?i)(ps|fan)x|error", ("FANX",), ["(?i)error"]),
        ("=~", "a\\|b", ("a|b",), []),
    ],
)
def test_dead_value_detection(op: str, value: str, declared: tuple[str, ...], dead: list[str]) -> None:
    assert dead_values(op, value, declared) == dead


def test_matchers_are_found_in_expressions() -> None:
    expr = 'sum by (x) (rate(m_total{zone=~"a|b", index!="0"}[5m])) / on() ALERTS{alertstate="firing"}'
    assert list(matchers(expr)) == [
        ("m_total", "zone", "=~", "a|b"),
        ("m_total", "index", "!=", "0"),
        ("ALERTS", "alertstate", "=", "firing"),
    ]


def test_info_metrics_are_typed_info_and_only_they() -> None:
    specs: dict[str, MetricSpec] = all_specs()
    wrong = {n: s.kind for n, s in specs.items() if n.endswith("_info") != (s.kind == "info")}
    assert wrong == {}
    assert sum(s.kind == "info" for s in specs.values()) >= 10
    with pytest.raises(ValueError, match="must end in _info"):
        MetricSpec("powerplane_widget", "info", "A widget.")


def test_declared_values_belong_to_declared_labels() -> None:
    with pytest.raises(ValueError, match="labels it does not have"):
        MetricSpec("powerplane_x", "gauge", "X.", ("a",), values={"b": ("1",)})
    with pytest.raises(ValueError, match="at least one value"):
        MetricSpec("powerplane_x", "gauge", "X.", ("a",), values={"a": ()})
