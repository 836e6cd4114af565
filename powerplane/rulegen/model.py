"""What a rule family is made of, and the PromQL fragments several families share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .config import RulesConfig


class Recording(NamedTuple):
    record: str
    expr: str
    #: The labels it keeps, and what it means (docs/METRICS.md, section rules).
    labels: tuple[str, ...] = ()
    help: str = ""
    #: The values of its enumerated labels (as ``MetricSpec.values``).
    values: Mapping[str, tuple[str, ...]] = {}


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str


def _no_alerts(_c: RulesConfig) -> list[Alert]:
    return []


def _no_recording(_c: RulesConfig) -> list[Recording]:
    return []


@dataclass(frozen=True)
class Family:
    """A group of rules that belong together and are tested together."""

    name: str
    #: Its promtool unit tests: a file under rules/tests/.
    tests: str
    alerts: Callable[[RulesConfig], list[Alert]] = _no_alerts
    #: In evaluation order: a rule may read those before it, in this family or an earlier one.
    recording: Callable[[RulesConfig], list[Recording]] = _no_recording


def sel(*matchers: str) -> str:
    """A label selector from matchers written without braces (empty ones dropped)."""
    inner = ", ".join(m for m in matchers if m)
    return "{" + inner + "}" if inner else ""


def fmt(x: float) -> str:
    return f"{x:g}"


#: The inventory's site labels per node, one series per node whatever the number of replicas.
NODE_INFO = "max by (node, rack, row, cluster) (powerplane_node_info)"


def new_errors(metric: str, window: str) -> str:
    """True when the counter ``metric`` rose within ``window``."""
    # increase() misses the first error of a series that did not exist before; `unless offset`
    # catches a counter that appeared within the window.
    return f"increase({metric}[{window}]) > 0\nor\n({metric} > 0 unless {metric} offset {window})"
