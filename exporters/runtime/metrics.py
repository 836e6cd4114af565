"""Metric specifications: one declaration per metric, used to emit it and to document it.

Every module that emits metrics declares them as ``MetricSpec`` objects in a module-level
``METRICS`` tuple and builds its families with ``spec.family()``; its component's declaration
names those tuples (``powerplane.components``).  docs/METRICS.md is generated from them
(``powerplane docs metrics``), and a test checks that the committed file matches and that every
family an exporter emits is declared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .exposition import Family

Kind = Literal["gauge", "counter", "info"]


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name (as exposed, counters ending in ``_total``), type, labels and help.

    ``values`` lists every value an enumerated label takes (e.g. ``{"kind": ("current", …)}``), so
    that rule and dashboard selectors can be checked against them; labels not listed are open
    (names, IDs).  ``source`` says where the value comes from when that is not simply the
    component that emits it (docs/METRICS.md's "source" column).
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must end in _total")
        if self.kind == "info" and not self.name.endswith("_info"):
            raise ValueError(f"info metric {self.name} must end in _info")
        unknown = set(self.values) - set(self.labels)
        if unknown:
            raise ValueError(f"{self.name}: values for labels it does not have: {sorted(unknown)}")
        if any(not v for v in self.values.values()):
            raise ValueError(f"{self.name}: an enumerated label needs at least one value")

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
        "Labels with a closed set of values list them; the rules and dashboards select only those.",
        "The source column says where a value comes from: a device or service the exporter reads,",
        "the inventory (declared facts, not measurements), a recording rule, or powerplane itself.",
        "",
    ]
    for section, specs in sections:
        lines += [
            f"## {section}",
            "",
            "| metric | type | labels | source | meaning |",
            "|---|---|---|---|---|",
        ]
        for spec in specs:
            labels = ", ".join(_label(spec, label) for label in spec.labels) or "—"
            meaning = spec.help.replace("|", "\\|")
            lines.append(f"| `{spec.name}` | {spec.kind} | {labels} | {spec.source or section} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _label(spec: MetricSpec, label: str) -> str:
    values = spec.values.get(label)
    return f"`{label}` ({', '.join(values)})" if values else f"`{label}`"
