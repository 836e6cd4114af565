"""What a rule family is made of, and the PromQL fragments several families share."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
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
    #: ALLOCATIONS_GROUP for the slow-moving joins a site may evaluate apart; "" for the main group.
    group: str = ""
    #: Labels the rule sets on what it records (the rule's ``labels``): several rules may record one
    #: name, each its own part, without a label_replace and an ``or`` over every series.
    sets: Mapping[str, str] = {}


#: The group of the slow-moving joins (who holds what), when a site gives them a longer interval.
ALLOCATIONS_GROUP = "powerplane.accounting.allocations"


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
    #: More test files under rules/tests/, for tests that need another evaluation interval: promtool
    #: evaluates every rule at each step of a test's span, so tests over days step coarser.
    more_tests: tuple[str, ...] = ()

    @property
    def test_files(self) -> tuple[str, ...]:
        return (self.tests, *self.more_tests)


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


_GROUPING = re.compile(
    r"\b(?P<kw>by|on)\s*\((?P<labels>[^()]*)\)(?P<group>\s*(?:group_left|group_right)\s*\((?P<extra>[^()]*)\))?"
)


def _label_list(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def scoped(expr: str, labels: Sequence[str]) -> str:
    """``expr`` with ``labels`` added to every non-empty ``by (...)`` and ``on (...)``.

    Where rules see several sites at once (shards remote-writing to one TSDB, each adding a
    ``cluster`` label), an aggregation ``by (node)`` or a join ``on (node)`` would merge two
    clusters' nodes of the same name; scoped, each keeps to its own.  Empty groupings stay empty:
    ``sum by ()`` is a deliberate total and ``on ()`` joins a series without labels, such as
    ``hour()``.  A label added to ``on`` leaves the ``group_left``/``group_right`` that follows,
    since PromQL refuses a label in both.
    """
    if not labels:
        return expr

    def repl(match: re.Match[str]) -> str:
        present = _label_list(match.group("labels"))
        if not present:
            return match.group(0)
        added = [label for label in labels if label not in present]
        out = f"{match.group('kw')} ({', '.join([*added, *present])})"
        if match.group("group"):
            keyword = "group_left" if "group_left" in match.group("group") else "group_right"
            extra = [label for label in _label_list(match.group("extra")) if label not in labels]
            out += f" {keyword} ({', '.join(extra)})"
        return out

    return _GROUPING.sub(repl, expr)
