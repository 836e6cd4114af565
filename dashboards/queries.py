"""The PromQL inside the generated dashboards: listing it, binding variables, naming its metrics.

Used by the tests (every query parses and uses only declared metrics; every query returns data
against the lab) and by the documentation previews, so they all read the queries exactly as
Grafana would send them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: Grafana's built-in variables, bound as Grafana would for a short time range on a 1 s scrape.
BUILTINS = {
    "__rate_interval": "5s",
    "__interval": "1s",
    "__range_s": "300",
    "__range": "5m",
}
#: What Grafana's Prometheus data source escapes in multi-value variables.
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]]")
_VAR = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.S)


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


def panels(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, rows' nested panels included."""

    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from walk(panel.get("panels", []))

    yield from walk(list(doc.get("panels", [])))


def queries(doc: Mapping[str, Any]) -> list[Query]:
    return [
        Query(doc["uid"], panel["title"], t["refId"], t["expr"], bool(t.get("instant")))
        for panel in panels(doc)
        for t in panel.get("targets", [])
    ]


def variables_used(expr: str) -> set[str]:
    return {a or b for a, b in _VAR.findall(expr)}


def substitute(expr: str, values: Mapping[str, str], builtins: Mapping[str, str] = BUILTINS) -> str:
    """``expr`` with ``$name``/``${name}`` replaced from ``values`` and Grafana's built-ins."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in values:
            return values[name]
        if name in builtins:
            return builtins[name]
        raise KeyError(f"unbound variable ${name} in {expr!r}")

    return _VAR.sub(repl, expr)


def label_values(query: str) -> tuple[str | None, str]:
    """A Prometheus variable query ``label_values(selector, label)`` → (selector, label)."""
    match = _LABEL_VALUES.match(query.strip())
    if not match:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group(1), match.group(2)


def bind_variables(
    doc: Mapping[str, Any], query: Callable[[str], list[dict[str, Any]]]
) -> tuple[dict[str, str], list[str]]:
    """Bind a dashboard's query variables as Grafana does with "All" selected.

    Each ``label_values()`` query runs (through ``query``, an instant query returning the result
    vector) with the variables before it bound; the variable becomes the regex of every value
    found.  A variable that finds nothing is bound to ``.+`` and returned in the second list.
    """
    values: dict[str, str] = {}
    empty: list[str] = []
    for var in doc["templating"]["list"]:
        if var["type"] != "query":
            continue
        selector, label = label_values(var["query"])
        found = sorted({r["metric"].get(label) for r in query(substitute(selector or "", values))} - {None})
        if found:
            values[var["name"]] = "(" + "|".join(_REGEX_SPECIAL.sub(r"\\\g<0>", v) for v in found) + ")"
        else:
            values[var["name"]] = ".+"
            empty.append(var["name"])
    return values, empty


_TOKEN = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<punct>[{}()\[\],])
      | (?P<other>\S)""",
    re.X,
)
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2",
}  # fmt: skip
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATIONS = {
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords or label names)."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    names: set[str] = set()
    depth_braces = 0  # inside {label matchers} or [range:step]
    skip_list = 0  # inside a by(...)/on(...) label list
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "punct":
            if text in "{[":
                depth_braces += 1
            elif text in "}]":
                depth_braces -= 1
            elif text == "(" and skip_list:
                skip_list += 1
            elif text == ")" and skip_list:
                skip_list = 0 if skip_list == 2 else skip_list - 1
            continue
        if kind != "ident" or depth_braces or skip_list > 1:
            continue
        if text.lower() in _KEYWORDS:
            if text in _LABEL_LISTS and following == "(":
                skip_list = 1
            continue
        if following == "(" or (text in _AGGREGATIONS and following in ("by", "without")):
            continue  # a function call or an aggregation
        names.add(text)
    return names
