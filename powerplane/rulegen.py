"""The Prometheus rules suite, generated: recording rules and alerts from thresholds and selectors.

The committed files under ``rules/`` are rendered from ``RulesConfig()`` by
``powerplane rules build``; a test fails when they drift.  Sites that need other thresholds,
selectors (job names) or runbook locations write a small YAML of overrides and render their own
copy (``powerplane rules build --config site.yaml --out DIR``), the monitoring-mixin way.

Recording rules follow ``level:metric:operation`` and their names are a contract shared with
the dashboards, the controller and the chart (see docs/rules.md).  Node input power comes from
the best source available per node: the BMC (Redfish), else the sum of the PDU outlets that feed
the node (via ``powerplane_pdu_outlet_info``), else RAPL plus GPU power.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from powerplane.components import Component
from powerplane.exporters.runtime.config import ConfigError, ConfigKind, strict_object

RECORDING_FILE = "powerplane-recording.yaml"
ALERTS_FILE = "powerplane-alerts.yaml"
_DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"


@dataclass(frozen=True)
class RulesConfig:
    """Everything a site may tune.  Selectors are PromQL label matchers without braces."""

    #: Jobs whose ``up`` is watched by PowerplaneExporterDown.
    job_selector: str = 'job=~"powerplane.*"'
    #: ``{anchor}`` is the lower-cased alert name, the anchor of its section in docs/rules.md.
    runbook_url: str = "https://github.com/powerplane/powerplane/blob/main/docs/rules.md#{anchor}"
    #: Window of rate() over energy counters; at least 4 scrape intervals.
    rate_window: str = "5m"
    #: Window in which new XID or ECC errors raise an alert.
    error_window: str = "10m"
    rapl_zone_selector: str = 'zone=~"package|dram"'
    gpu_temperature_selector: str = 'sensor="gpu"'
    gpu_temperature_warning_celsius: float = 90.0
    gpu_temperature_critical_celsius: float = 95.0
    #: Power limit series the GPU's power is compared with.
    gpu_power_limit_selector: str = 'kind="enforced"'
    gpu_power_limit_ratio: float = 0.95
    #: A fixed threshold instead of the ratio (the original design alerted above 330 W).
    gpu_power_watts: float | None = None
    gpu_memory_ratio: float = 0.95
    gpu_ecc_uncorrected_selector: str = 'type=~"(?i).*uncorrected.*"'
    gpu_utilization_selector: str = ""
    #: BMC temperature sensors measuring the node's air inlet.
    inlet_selector: str = 'context="Intake"'
    #: ASHRAE recommended envelope for IT inlet air (classes A1-A4).
    inlet_min_celsius: float = 18.0
    inlet_max_celsius: float = 27.0
    psu_health_selector: str = 'resource=~"(?i)(psu|powersupply).*"'
    fan_health_selector: str = 'resource=~"(?i)fan.*"'
    unhealthy_state_selector: str = 'state=~"warning|critical"'
    #: Continuous load as a share of the rating (the 80 % rule for branch circuits).
    pdu_load_ratio: float = 0.8
    phase_imbalance_ratio: float = 0.2
    #: Phase imbalance is ignored below this current on the busiest phase.
    phase_imbalance_min_amperes: float = 2.0
    rack_budget_warning_ratio: float = 0.9
    cooler_supply_max_celsius: float = 27.0
    cooler_return_max_celsius: float = 45.0
    humidity_min_ratio: float = 0.2
    humidity_max_ratio: float = 0.8
    #: From this hour (UTC) on, tomorrow's day-ahead prices should be published (~13:00 CET).
    market_tomorrow_hour_utc: int = 14
    market_data_max_age_seconds: float = 86400.0
    controller_failure_selector: str = 'result=~"error|failure|failed"'
    #: Longest time between two reconciles (three 15-minute market periods).
    controller_max_silence_seconds: float = 2700.0
    cap_tolerance_watts: float = 5.0
    #: ``for`` overrides by alert name; the key ``"*"`` overrides every alert.
    for_overrides: Mapping[str, str] = field(default_factory=dict)
    #: Evaluation interval of the rule groups ("" leaves Prometheus's global interval).
    interval: str = ""


def _schema() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for f in dataclasses.fields(RulesConfig):
        if f.name == "for_overrides":
            props[f.name] = {
                "type": "object",
                "additionalProperties": {"type": "string", "pattern": _DURATION},
            }
        elif f.name in ("rate_window", "error_window"):
            props[f.name] = {"type": "string", "pattern": _DURATION}
        elif f.name == "interval":
            props[f.name] = {"type": "string", "pattern": f"^$|{_DURATION}"}
        elif f.type in ("float", "int"):
            props[f.name] = {"type": "integer" if f.type == "int" else "number"}
        elif f.type == "float | None":
            props[f.name] = {"type": ["number", "null"], "exclusiveMinimum": 0}
        else:
            props[f.name] = {"type": "string"}
    return strict_object(props)


def _build(doc: Mapping[str, Any]) -> RulesConfig:
    config = RulesConfig(**dict(doc or {}))
    if "{anchor}" not in config.runbook_url:
        raise ConfigError(["runbook_url: must contain {anchor}"])
    return config


KIND: ConfigKind[RulesConfig] = ConfigKind("rules", _schema(), _build)


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str


def _sel(*matchers: str) -> str:
    inner = ", ".join(m for m in matchers if m)
    return "{" + inner + "}" if inner else ""


def _fmt(x: float) -> str:
    return f"{x:g}"


NODE_INFO = "max by (node, rack, row, cluster) (powerplane_node_info)"


def recording_rules(c: RulesConfig) -> list[tuple[str, str]]:
    """(record, expr) in evaluation order: later rules read earlier ones in the same evaluation."""
    w = c.rate_window
    util = "powerplane_gpu_utilization_ratio" + _sel(c.gpu_utilization_selector)
    price_by_node = (
        "max by (node, area) (powerplane_node_info"
        " * on (cluster) group_left (area) max by (cluster, area) (powerplane_cluster_info))"
    )
    return [
        (
            "node:powerplane_rapl_power_watts:sum",
            f"sum by (node) (rate(powerplane_rapl_energy_joules_total{_sel(c.rapl_zone_selector)}[{w}]))",
        ),
        ("node:powerplane_gpu_power_watts:sum", "sum by (node) (powerplane_gpu_power_watts)"),
        (
            "node:powerplane_pdu_power_watts:sum",
            "sum by (node) (\n  powerplane_pdu_outlet_power_watts\n"
            "  * on (pdu, outlet) group_left (node)"
            " max by (pdu, outlet, node) (powerplane_pdu_outlet_info)\n)",
        ),
        (
            "node:powerplane_power_watts:best",
            # Precedence: the BMC measures the node's input; PDU outlets measure the same feed but
            # may be shared or miswired; RAPL + GPU misses fans, disks, NICs and PSU losses.
            'label_replace(max by (node) (powerplane_redfish_power_watts), "source", "bmc", "", "")\n'
            "or\nlabel_replace(\n"
            "  node:powerplane_pdu_power_watts:sum unless on (node) powerplane_redfish_power_watts,\n"
            '  "source", "pdu", "", ""\n)\n'
            "or\nlabel_replace(\n"
            "  (\n"
            "    (node:powerplane_rapl_power_watts:sum + on (node) node:powerplane_gpu_power_watts:sum)\n"
            "    or node:powerplane_rapl_power_watts:sum\n"
            "    or node:powerplane_gpu_power_watts:sum\n"
            "  )\n"
            "  unless on (node) powerplane_redfish_power_watts\n"
            "  unless on (node) node:powerplane_pdu_power_watts:sum,\n"
            '  "source", "rapl_gpu", "", ""\n)',
        ),
        (
            "rack:powerplane_power_watts:sum",
            "sum by (rack, row, cluster) (\n  node:powerplane_power_watts:best\n"
            f"  * on (node) group_left (rack, row, cluster) {NODE_INFO}\n)",
        ),
        ("row:powerplane_power_watts:sum", "sum by (row, cluster) (rack:powerplane_power_watts:sum)"),
        ("cluster:powerplane_power_watts:sum", "sum by (cluster) (row:powerplane_power_watts:sum)"),
        (
            "rack:powerplane_pdu_power_watts:sum",
            "sum by (rack) (\n  powerplane_pdu_power_watts\n"
            "  * on (pdu) group_left (rack) max by (pdu, rack) (powerplane_pdu_info)\n)",
        ),
        (
            "rack:powerplane_power_budget_ratio",
            # The PDUs meter what the rack's feed carries; without them the nodes' sum stands in.
            "(\n  rack:powerplane_pdu_power_watts:sum\n"
            "  or on (rack) sum by (rack) (rack:powerplane_power_watts:sum)\n)\n"
            "/ on (rack) (max by (rack) (powerplane_rack_power_budget_watts) > 0)",
        ),
        (
            "node:powerplane_energy_cost_eur_per_hour:sum",
            "sum by (node) (\n  node:powerplane_power_watts:best\n"
            f"  * on (node) group_left (area) {price_by_node}\n"
            "  * on (area) group_left () max by (area) (powerplane_market_price_eur_per_mwh)\n) / 1e6",
        ),
        (
            "cluster:powerplane_energy_cost_eur_per_hour:sum",
            "sum by (cluster) (\n  node:powerplane_energy_cost_eur_per_hour:sum\n"
            "  * on (node) group_left (cluster) max by (node, cluster) (powerplane_node_info)\n)",
        ),
        (
            "cluster:powerplane_gpu_utilization_ratio:avg",
            f"avg by (cluster) (\n  {util}\n"
            "  * on (node) group_left (cluster) max by (node, cluster) (powerplane_node_info)\n)",
        ),
        (
            "cooler:powerplane_cooling_output_over_it_power:ratio",
            "max by (cooler) (powerplane_cooling_output_watts)\n/ on (cooler) (\n"
            "  sum by (cooler) (\n    max by (cooler, rack) (powerplane_cooler_rack_info)\n"
            "    * on (rack) group_left () sum by (rack) (rack:powerplane_power_watts:sum)\n  ) > 0\n)",
        ),
        *_attribution("pod", "namespace, pod", "powerplane_gpu_pod_info"),
        *_attribution("hpc_job", "hpc_job", "powerplane_gpu_job_info"),
        (
            "node:powerplane_status:state",
            # 2 offline: in the inventory but no power from any source; 1 degraded: a warning or
            # critical alert names the node; 0 healthy.  `or` keeps the first match per node.
            "2 * (max by (node) (powerplane_node_info) unless on (node) node:powerplane_power_watts:best)\n"
            "or\n(\n  max by (node) (powerplane_node_info)"
            " or max by (node) (node:powerplane_power_watts:best) * 0 + 1\n)\n"
            '  and on (node) ALERTS{alertstate="firing", severity=~"warning|critical", node!=""}\n'
            "or\n(max by (node) (powerplane_node_info)"
            " or max by (node) (node:powerplane_power_watts:best)) * 0",
        ),
    ]


def _attribution(level: str, labels: str, info: str) -> list[tuple[str, str]]:
    # A GPU shared by several pods or jobs counts fully for each of them.
    owners = f"max by (node, gpu, {labels}) ({info})"
    return [
        (
            f"{level}:powerplane_gpu_power_watts:sum",
            f"sum by ({labels}) (\n  {owners}\n"
            "  * on (node, gpu) group_left () max by (node, gpu) (powerplane_gpu_power_watts)\n)",
        ),
        (
            f"{level}:powerplane_gpu_energy_joules:increase1h",
            f"sum by ({labels}) (\n  {owners}\n"
            "  * on (node, gpu) group_left ()"
            " sum by (node, gpu) (increase(powerplane_gpu_energy_joules_total[1h]))\n)",
        ),
    ]


def _new_errors(metric: str, window: str) -> str:
    # increase() misses the first error of a series that did not exist before; `unless offset`
    # catches a counter that appeared within the window.
    return f"increase({metric}[{window}]) > 0\nor\n({metric} > 0 unless {metric} offset {window})"


def alerts(c: RulesConfig) -> list[Alert]:
    temp = "powerplane_gpu_temperature_celsius" + _sel(c.gpu_temperature_selector)
    inlet = "powerplane_redfish_temperature_celsius" + _sel(c.inlet_selector)
    phase = "powerplane_pdu_phase_current_amperes"
    if c.gpu_power_watts is not None:
        gpu_power_expr = f"powerplane_gpu_power_watts > {_fmt(c.gpu_power_watts)}"
        gpu_power_text = f"above {_fmt(c.gpu_power_watts)} W"
    else:
        gpu_power_expr = (
            "powerplane_gpu_power_watts\n>= on (node, gpu) group_left ()\n"
            f"  {_fmt(c.gpu_power_limit_ratio)} * max by (node, gpu) "
            f"(powerplane_gpu_power_limit_watts{_sel(c.gpu_power_limit_selector)})"
        )
        gpu_power_text = f"at {_fmt(c.gpu_power_limit_ratio * 100)} % or more of its power limit"
    health = "powerplane_redfish_health"
    gpu = "GPU {{ $labels.gpu }} on {{ $labels.node }}"
    return [
        Alert(
            "PowerplaneGpuTemperatureHigh",
            f"{temp} > {_fmt(c.gpu_temperature_warning_celsius)}",
            "5m",
            "warning",
            f"{gpu} is above {_fmt(c.gpu_temperature_warning_celsius)} °C",
            f"{gpu} has been at {{{{ $value }}}} °C for 5 minutes; it will throttle its clocks soon.",
        ),
        Alert(
            "PowerplaneGpuTemperatureCritical",
            f"{temp} > {_fmt(c.gpu_temperature_critical_celsius)}",
            "1m",
            "critical",
            f"{gpu} is above {_fmt(c.gpu_temperature_critical_celsius)} °C",
            f"{gpu} is at {{{{ $value }}}} °C, close to its slowdown/shutdown temperature.",
        ),
        Alert(
            "PowerplaneGpuPowerNearLimit",
            gpu_power_expr,
            "15m",
            "warning",
            f"{gpu} runs {gpu_power_text}",
            f"{gpu} has drawn {{{{ $value | humanize }}}}W, {gpu_power_text}, for 15 minutes; "
            "it is power-throttled.",
        ),
        Alert(
            "PowerplaneGpuMemoryNearlyFull",
            "powerplane_gpu_memory_used_bytes / powerplane_gpu_memory_total_bytes"
            f" > {_fmt(c.gpu_memory_ratio)}",
            "15m",
            "warning",
            f"{gpu} has more than {_fmt(c.gpu_memory_ratio * 100)} % of its memory in use",
            f"{gpu} uses {{{{ $value | humanizePercentage }}}} of its memory; jobs may fail to allocate.",
        ),
        Alert(
            "PowerplaneGpuXidErrors",
            _new_errors("powerplane_gpu_xid_errors_total", c.error_window),
            "0s",
            "warning",
            f"{gpu} reported XID {{{{ $labels.xid }}}} errors",
            f"{gpu} reported XID {{{{ $labels.xid }}}} in the last {c.error_window}.",
        ),
        Alert(
            "PowerplaneGpuEccUncorrectedErrors",
            _new_errors(
                "powerplane_gpu_ecc_errors_total" + _sel(c.gpu_ecc_uncorrected_selector), c.error_window
            ),
            "0s",
            "critical",
            f"{gpu} reported uncorrected ECC errors",
            f"{gpu} reported uncorrected ECC errors ({{{{ $labels.type }}}}) in the last {c.error_window}.",
        ),
        Alert(
            "PowerplaneNodeInletTemperatureOutOfRange",
            f"{inlet} > {_fmt(c.inlet_max_celsius)}\nor\n{inlet} < {_fmt(c.inlet_min_celsius)}",
            "15m",
            "warning",
            "Inlet air of {{ $labels.node }} is outside the ASHRAE recommended range",
            "Sensor {{ $labels.sensor }} of {{ $labels.node }} reads {{ $value }} °C, outside "
            f"{_fmt(c.inlet_min_celsius)}-{_fmt(c.inlet_max_celsius)} °C, for 15 minutes.",
        ),
        Alert(
            "PowerplaneNodePowerAboveLimit",
            "powerplane_redfish_power_watts\n> on (instance) group_left ()\n"
            "  (max by (instance) (powerplane_redfish_power_limit_watts) > 0)",
            "10m",
            "warning",
            "{{ $labels.node }} draws more than its BMC power limit",
            "{{ $labels.node }} draws {{ $value | humanize }}W, above the power limit set in its BMC, "
            "for 10 minutes.",
        ),
        Alert(
            "PowerplanePsuUnhealthy",
            f"{health}{_sel(c.psu_health_selector, c.unhealthy_state_selector)} == 1",
            "5m",
            "warning",
            "Power supply {{ $labels.resource }} of {{ $labels.node }} is {{ $labels.state }}",
            "The BMC of {{ $labels.node }} reports {{ $labels.resource }} as {{ $labels.state }}; "
            "the node may have lost power redundancy.",
        ),
        Alert(
            "PowerplaneFanUnhealthy",
            f"{health}{_sel(c.fan_health_selector, c.unhealthy_state_selector)} == 1",
            "5m",
            "warning",
            "Fan {{ $labels.resource }} of {{ $labels.node }} is {{ $labels.state }}",
            "The BMC of {{ $labels.node }} reports {{ $labels.resource }} as {{ $labels.state }}.",
        ),
        Alert(
            "PowerplanePduPowerNearRating",
            "powerplane_pdu_power_watts\n"
            "/ on (pdu) group_left () max by (pdu) (powerplane_pdu_rated_power_watts)\n"
            f"> {_fmt(c.pdu_load_ratio)}",
            "15m",
            "warning",
            f"PDU {{{{ $labels.pdu }}}} is loaded above {_fmt(c.pdu_load_ratio * 100)} % of its rating",
            "PDU {{ $labels.pdu }} carries {{ $value | humanizePercentage }} of its rated power.",
        ),
        Alert(
            "PowerplanePduPhaseNearRating",
            f"{phase}\n/ on (pdu) group_left () max by (pdu) (powerplane_pdu_phase_rated_current_amperes)\n"
            f"> {_fmt(c.pdu_load_ratio)}",
            "15m",
            "warning",
            "Phase {{ $labels.phase }} of PDU {{ $labels.pdu }} is loaded above "
            f"{_fmt(c.pdu_load_ratio * 100)} % of its rating",
            "Phase {{ $labels.phase }} of PDU {{ $labels.pdu }} carries {{ $value | humanizePercentage }} "
            "of its rated current; its breaker may trip.",
        ),
        Alert(
            "PowerplanePduPhaseImbalance",
            f"(max by (pdu) ({phase}) - min by (pdu) ({phase})) / max by (pdu) ({phase})\n"
            f"> {_fmt(c.phase_imbalance_ratio)}\n"
            f"and on (pdu) max by (pdu) ({phase}) > {_fmt(c.phase_imbalance_min_amperes)}\n"
            f"and on (pdu) count by (pdu) ({phase}) > 1",
            "30m",
            "info",
            "The phases of PDU {{ $labels.pdu }} are unbalanced",
            "The lightest phase of PDU {{ $labels.pdu }} carries {{ $value | humanizePercentage }} less "
            "current than the busiest one.",
        ),
        Alert(
            "PowerplaneRackNearPowerBudget",
            f"rack:powerplane_power_budget_ratio > {_fmt(c.rack_budget_warning_ratio)}",
            "15m",
            "warning",
            f"Rack {{{{ $labels.rack }}}} is above {_fmt(c.rack_budget_warning_ratio * 100)} % of its "
            "power budget",
            "Rack {{ $labels.rack }} draws {{ $value | humanizePercentage }} of its power budget.",
        ),
        Alert(
            "PowerplaneRackOverPowerBudget",
            "rack:powerplane_power_budget_ratio > 1",
            "5m",
            "critical",
            "Rack {{ $labels.rack }} is over its power budget",
            "Rack {{ $labels.rack }} draws {{ $value | humanizePercentage }} of its power budget.",
        ),
        Alert(
            "PowerplaneCoolerSupplyTemperatureHigh",
            f'powerplane_cooling_temperature_celsius{{point="supply"}} > {_fmt(c.cooler_supply_max_celsius)}',
            "10m",
            "warning",
            f"Cooler {{{{ $labels.cooler }}}} supplies air above {_fmt(c.cooler_supply_max_celsius)} °C",
            "Cooler {{ $labels.cooler }} supplies air at {{ $value }} °C.",
        ),
        Alert(
            "PowerplaneCoolerReturnTemperatureHigh",
            f'powerplane_cooling_temperature_celsius{{point="return"}} > {_fmt(c.cooler_return_max_celsius)}',
            "10m",
            "warning",
            f"Cooler {{{{ $labels.cooler }}}} return air is above {_fmt(c.cooler_return_max_celsius)} °C",
            "Cooler {{ $labels.cooler }} receives return air at {{ $value }} °C.",
        ),
        Alert(
            "PowerplaneCoolerHumidityLow",
            f"powerplane_cooling_humidity_ratio < {_fmt(c.humidity_min_ratio)}",
            "30m",
            "warning",
            "Humidity at cooler {{ $labels.cooler }} is low",
            "Relative humidity at cooler {{ $labels.cooler }} is {{ $value | humanizePercentage }}; "
            "electrostatic discharge risk.",
        ),
        Alert(
            "PowerplaneCoolerHumidityHigh",
            f"powerplane_cooling_humidity_ratio > {_fmt(c.humidity_max_ratio)}",
            "30m",
            "warning",
            "Humidity at cooler {{ $labels.cooler }} is high",
            "Relative humidity at cooler {{ $labels.cooler }} is {{ $value | humanizePercentage }}; "
            "condensation risk.",
        ),
        Alert(
            "PowerplaneCoolerLeakDetected",
            "powerplane_cooling_leak_detected > 0",
            "0s",
            "critical",
            "Cooler {{ $labels.cooler }} detects a leak",
            "The leak sensor of cooler {{ $labels.cooler }} has tripped.",
        ),
        Alert(
            "PowerplaneRaplCountersStalled",
            f'rate(powerplane_rapl_energy_joules_total{{zone="package"}}[{c.rate_window}]) == 0',
            "10m",
            "warning",
            "RAPL energy counters of {{ $labels.node }} do not advance",
            "The package {{ $labels.index }} energy counter of {{ $labels.node }} has not moved for "
            f"{c.rate_window}; CPU power from RAPL is wrong for this node.",
        ),
        Alert(
            "PowerplaneMarketTomorrowMissing",
            f"powerplane_market_tomorrow_published == 0 and on () hour() >= {c.market_tomorrow_hour_utc}",
            "30m",
            "warning",
            "Tomorrow's day-ahead prices for {{ $labels.area }} are missing",
            f"It is past {c.market_tomorrow_hour_utc}:00 UTC and tomorrow's prices for "
            "{{ $labels.area }} "
            "are not published or not fetched; power caps tomorrow will have no price signal.",
        ),
        Alert(
            "PowerplaneMarketDataStale",
            f"powerplane_market_data_age_seconds > {_fmt(c.market_data_max_age_seconds)}",
            "15m",
            "warning",
            "Market data for {{ $labels.area }} is stale",
            "The market data for {{ $labels.area }} was fetched {{ $value | humanizeDuration }} ago.",
        ),
        Alert(
            "PowerplaneControllerReconcileFailing",
            "sum without (result) (increase(powerplane_controller_reconcile_total"
            f"{_sel(c.controller_failure_selector)}[30m])) > 0",
            "15m",
            "warning",
            "The power-cap controller on {{ $labels.node }} fails to reconcile",
            "The controller on {{ $labels.node }} failed {{ $value | humanize }} reconciles in 30 minutes.",
        ),
        Alert(
            "PowerplaneControllerStalled",
            "time() - powerplane_controller_last_reconcile_timestamp_seconds"
            f" > {_fmt(c.controller_max_silence_seconds)}",
            "5m",
            "warning",
            "The power-cap controller on {{ $labels.node }} has stopped reconciling",
            "The controller on {{ $labels.node }} last reconciled {{ $value | humanizeDuration }} ago.",
        ),
        Alert(
            "PowerplaneCapNotApplied",
            "abs(powerplane_controller_cap_desired_watts - powerplane_controller_cap_applied_watts)"
            f" > {_fmt(c.cap_tolerance_watts)}",
            "30m",
            "warning",
            "The {{ $labels.domain }} power cap of {{ $labels.node }} is not applied",
            "The applied {{ $labels.domain }} cap of {{ $labels.node }} differs from the desired one by "
            "{{ $value | humanize }}W.",
        ),
        Alert(
            "PowerplaneExporterDown",
            f"up{_sel(c.job_selector)} == 0",
            "5m",
            "warning",
            "Exporter {{ $labels.job }} at {{ $labels.instance }} is down",
            "Prometheus cannot scrape {{ $labels.instance }} (job {{ $labels.job }}).",
        ),
        Alert(
            "PowerplaneTargetDown",
            "powerplane_target_up == 0",
            "5m",
            "warning",
            "{{ $labels.exporter }} target {{ $labels.instance }} does not answer",
            "The {{ $labels.exporter }} exporter cannot reach {{ $labels.instance }}"
            "{{ with $labels.node }} (node {{ . }}){{ end }}.",
        ),
        Alert(
            "PowerplaneCollectorFailing",
            "powerplane_scrape_collector_success == 0",
            "15m",
            "warning",
            "Collector {{ $labels.collector }} of {{ $labels.exporter }} fails on {{ $labels.instance }}",
            "The {{ $labels.collector }} collector of the {{ $labels.exporter }} exporter has failed "
            "for 15 minutes; its log names the cause.",
        ),
        Alert(
            "PowerplaneNodePowerDataMissing",
            f"{NODE_INFO} unless on (node) node:powerplane_power_watts:best",
            "10m",
            "warning",
            "No power data for {{ $labels.node }}",
            "No source (BMC, PDU outlets, RAPL or GPU) has reported the power of {{ $labels.node }} "
            "for 10 minutes.",
        ),
    ]


def _for(c: RulesConfig, alert: Alert) -> str:
    return c.for_overrides.get(alert.name, c.for_overrides.get("*", alert.for_))


def render(c: RulesConfig | None = None) -> dict[str, dict[str, Any]]:
    """The rule files' documents by file name."""
    c = c or RulesConfig()
    extra = {"interval": c.interval} if c.interval else {}
    recording = {
        "groups": [
            {
                "name": "powerplane.recording",
                **extra,
                "rules": [{"record": r, "expr": e} for r, e in recording_rules(c)],
            }
        ]
    }
    alert_rules = [
        {
            "alert": a.name,
            "expr": a.expr,
            "for": _for(c, a),
            "labels": {"severity": a.severity},
            "annotations": {
                "summary": a.summary,
                "description": a.description,
                "runbook_url": c.runbook_url.format(anchor=a.name.lower()),
            },
        }
        for a in alerts(c)
    ]
    return {
        RECORDING_FILE: recording,
        ALERTS_FILE: {"groups": [{"name": "powerplane.alerts", **extra, "rules": alert_rules}]},
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = "# Generated by `powerplane rules build` from powerplane/rulegen.py: do not edit.\n"


def render_text(c: RulesConfig | None = None) -> dict[str, str]:
    return {
        name: HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
        for name, doc in render(c).items()
    }


def write(out: Path, c: RulesConfig | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_text(c).items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def recorded_names(c: RulesConfig | None = None) -> list[str]:
    return [r for r, _ in recording_rules(c or RulesConfig())]


def alert_names(c: RulesConfig | None = None) -> list[str]:
    return [a.name for a in alerts(c or RulesConfig())]


def default_rules_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "rules"


@click.group("rules")
def group() -> None:
    """Generate the Prometheus recording and alerting rules."""


@group.command("build")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML overrides of thresholds, selectors, runbook URL and `for` durations.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (default: the source tree's rules/).",
)
def build_command(config_path: str | None, out: Path | None) -> None:
    """Render the rule files."""
    from powerplane.exporters.runtime.cli import load_or_exit

    config = load_or_exit(KIND, config_path) if config_path else RulesConfig()
    for path in write(out or default_rules_dir(), config):
        click.echo(f"wrote {path}")


def iter_rules(docs: Mapping[str, Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for doc in docs.values():
        for group_doc in doc["groups"]:
            yield from group_doc["rules"]


COMPONENT = Component(
    name="rules",
    order=90,
    commands=(("rules", "powerplane.rulegen:group"),),
    config_kinds=(("rules", "powerplane.rulegen:KIND"),),
)
