"""Metric specifications: one declaration per metric, used to emit it and to document it.

Every module that emits metrics declares them as ``MetricSpec`` objects in a module-level
``METRICS`` tuple and builds its families with ``spec.family()``; its component's declaration
names those tuples (``powerplane.components``).  docs/METRICS.md is generated from them
(``powerplane docs metrics``), and a test checks that the committed file matches and that every
family an exporter emits is declared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .exposition import Family

Kind = Literal["gauge", "counter", "info"]


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name (as exposed, counters ending in ``_total``), type, labels and help."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must end in _total")
        if self.kind == "info" and not self.name.endswith("_info"):
            raise ValueError(f"info metric {self.name} must end in _info")

    def family(self, labels: Sequence[str] | None = None) -> Family:
        """An empty family for this metric (``labels`` narrows or reorders the label names)."""
        names = list(self.labels if labels is None else labels)
        # Info metrics are gauges of value 1 whose labels carry the information (the form PromQL
        # joins on with group_left), so they need no family type of their own.
        kind = "counter" if self.kind == "counter" else "gauge"
        return Family(
            self.name.removesuffix("_total") if kind == "counter" else self.name, self.help, kind, names
        )


def render_markdown(sections: Iterable[tuple[str, Sequence[MetricSpec]]]) -> str:
    """docs/METRICS.md from (section, specs) pairs (the registry gives them: ``powerplane docs metrics``)."""
    lines = [
        "# Metrics",
        "",
        "Generated from the `METRICS` declarations in the code by",
        "`powerplane docs metrics > docs/METRICS.md`; a test keeps it current.",
        "Every name here is stable API: rules and dashboards depend on it.",
        "",
    ]
    for section, specs in sections:
        lines += [f"## {section}", "", "| metric | type | labels | meaning |", "|---|---|---|---|"]
        for spec in specs:
            labels = ", ".join(f"`{label}`" for label in spec.labels) or "—"
            meaning = spec.help.replace("|", "\\|")
            lines.append(f"| `{spec.name}` | {spec.kind} | {labels} | {meaning} |")
        lines.append("")
    return "\n".join(lines)
