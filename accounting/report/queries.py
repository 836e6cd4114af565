"""What a report asks Prometheus: the energy sources, the node gauges, the owners and the joins.

Each query is evaluated at the end of every step ``s`` of the range and covers the step before
it (``[t - s, t]``): an energy counter's ``increase`` over the step where a counter exists, the
power gauge's ``avg_over_time`` times the step where none does (``unless`` the counter, so a
node is never counted twice).  Steps divide the 15-minute market period, so a period's energy is
the sum of its steps and is priced at that period's price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from powerplane.rulegen.config import RulesConfig

#: Length of a day-ahead market period (SDAC quarter-hours), the unit of pricing.
PERIOD_SECONDS = 900

_OUTLET_JOIN = "* on (pdu, outlet) group_left (node) max by (pdu, outlet, node) (powerplane_pdu_outlet_info)"


@dataclass(frozen=True)
class Source:
    """One way of metering a node: its counter and, where there is one, its power gauge."""

    name: str
    #: PromQL of the node's energy over the step, in joules, from the counter (``$s``: the step).
    counter: str
    #: The same from the power gauge, integrated over the step (``$seconds``); empty without a gauge.
    power: str = ""

    def counter_query(self, step: float) -> str:
        return at_step(self.counter, step)

    def power_query(self, step: float, counter_exists: bool = True) -> str:
        """The integrated gauge where the counter is missing (``unless`` it: never both).

        Prometheus evaluates both sides of ``unless``: when no series of the counter exists in the
        range the guard is left out rather than paid for.
        """
        if not self.power:
            return ""
        if not counter_exists:
            return at_step(self.power, step)
        return f"({at_step(self.power, step)}) unless on (node) ({at_step(self.counter, step)})"


#: A metric name written as a selector in these queries (followed by its matchers or range).
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)(?=[{\[])")


def selected_metrics(expr: str) -> frozenset[str]:
    """The metric names a query selects: if any has no series in the range, its answer is empty."""
    return frozenset(_SELECTOR.findall(expr))


def at_step(template: str, step: float) -> str:
    """``template`` with ``$s`` the step as a PromQL duration and ``$seconds`` as a number."""
    return template.replace("$seconds", f"{step:g}").replace("$s", f"{step:g}s")


def sources(rules: RulesConfig) -> tuple[Source, ...]:
    """The sources, best first (the precedence of ``node:powerplane_power_watts:best``)."""
    return (
        Source(
            "bmc",
            "sum by (node) (increase(powerplane_redfish_energy_joules_total[$s]))",
            # Blades of one BMC summed per scrape, then the max over replicas (as the recording rule).
            "max by (node) (sum without (chassis) (avg_over_time(powerplane_redfish_power_watts[$s])))"
            " * $seconds",
        ),
        Source(
            "pdu",
            f"sum by (node) (increase(powerplane_pdu_outlet_energy_joules_total[$s]) {_OUTLET_JOIN})",
            f"sum by (node) (avg_over_time(powerplane_pdu_outlet_power_watts[$s]) {_OUTLET_JOIN}) * $seconds",
        ),
        Source(
            "rapl",
            "sum by (node) (increase(powerplane_rapl_energy_joules_total"
            f"{{{rules.rapl_zone_selector}}}[$s]))",
        ),
        Source(
            "gpu",
            "sum by (node) (increase(powerplane_gpu_energy_joules_total[$s]))",
            "sum by (node) (avg_over_time(powerplane_gpu_power_watts[$s])) * $seconds",
        ),
    )


#: Sources combined into the best-source total: the first present wins; rapl and gpu count together.
PRECEDENCE: tuple[tuple[str, ...], ...] = (("bmc",), ("pdu",), ("rapl", "gpu"))


@dataclass(frozen=True)
class Gauge:
    """A node gauge reduced over each step (temperatures, utilisation) and its alert threshold."""

    name: str
    query: str
    #: How the step values of a group combine: "max" or "mean".
    reduce: str
    threshold: float | None = None


def gauges(rules: RulesConfig) -> tuple[Gauge, ...]:
    return (
        Gauge(
            "gpu_temperature",
            "max by (node) (max_over_time(powerplane_gpu_temperature_celsius"
            f"{{{rules.gpu_temperature_selector}}}[$s]))",
            "max",
            rules.gpu_temperature_warning_celsius,
        ),
        Gauge(
            "inlet_temperature",
            "max by (node) (max_over_time(powerplane_redfish_temperature_celsius"
            f"{{{rules.inlet_selector}}}[$s]))",
            "max",
            rules.inlet_max_celsius,
        ),
        Gauge(
            "gpu_utilisation", "avg by (node) (avg_over_time(powerplane_gpu_utilization_ratio[$s]))", "mean"
        ),
        # Facility overhead (cooling, distribution losses) where the accounting rules record it:
        # energy per step, kept apart from IT energy.
        Gauge("facility", f"sum by (node) (avg_over_time({FACILITY}[$s])) * $seconds", "sum"),
    )


@dataclass(frozen=True)
class Grouping:
    """A ``--by`` choice: nodes joined to the inventory, or the owners of attributed power."""

    name: str
    #: "node": groups of nodes; "owner": groups of attributed power series.
    kind: str
    #: The label that names the group (on node_info, the partition info, or the owner series).
    label: str
    #: For owners: the recorded series of attributed power and the labels that tell entities apart.
    series: str = ""
    entity_labels: tuple[str, ...] = ()


_JOB = "hpc_job:powerplane_power_watts:attributed"
#: The node's facility overhead power recorded by the accounting rules (absent where not measured).
FACILITY = "node:powerplane_facility_power_watts:overhead"
_POD = "pod:powerplane_power_watts:attributed"
UNATTRIBUTED = "node:powerplane_power_watts:unattributed"
#: The group holding the power nobody holds (owners + unattributed = metered node power).
UNATTRIBUTED_GROUP = "(unattributed)"
#: The group of nodes the inventory does not place (never dropped).
UNPLACED_GROUP = "(not in inventory)"

GROUPINGS: dict[str, Grouping] = {
    g.name: g
    for g in (
        Grouping("cluster", "node", "cluster"),
        Grouping("row", "node", "row"),
        Grouping("rack", "node", "rack"),
        Grouping("node", "node", "node"),
        Grouping("partition", "node", "partition"),
        Grouping("job", "owner", "hpc_job", _JOB, ("cluster", "hpc_job", "node")),
        Grouping("user", "owner", "user", _JOB, ("cluster", "hpc_job", "node")),
        Grouping("account", "owner", "account", _JOB, ("cluster", "hpc_job", "node")),
        Grouping("pod", "owner", "pod", _POD, ("cluster", "namespace", "pod", "node")),
        Grouping("namespace", "owner", "namespace", _POD, ("cluster", "namespace", "pod", "node")),
    )
}


def owner_query(series: str, entity_labels: tuple[str, ...], step: float) -> str:
    """Attributed power integrated over each step, one series per owner on each node."""
    by = ", ".join(entity_labels)
    return at_step(f"sum by ({by}) (avg_over_time({series}[$s])) * $seconds", step)


def price_query(metric: str, lookback: str) -> str:
    """The value of a per-area market series inside each period (evaluated at the period's middle)."""
    return f"max by (area) (last_over_time({metric}[{lookback}]))"


PRICE = "powerplane_market_price_eur_per_mwh"
CARBON = "powerplane_grid_carbon_intensity_grams_per_kwh"
#: Firing alerts, present in a step when a sample of theirs falls inside it (backfilled or remote data
#: may lack the stale markers that end a series at once).
ALERTS = (
    'max by (alertname, severity, node, rack, cluster, gpu) (max_over_time(ALERTS{alertstate="firing"}[$s]))'
)
