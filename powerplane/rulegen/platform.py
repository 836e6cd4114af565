"""Alerts on powerplane itself and its data: RAPL counters, the power-cap controller, exporters,
probe targets, collectors and nodes without any power source."""

from __future__ import annotations

from .config import RulesConfig
from .model import NODE_INFO, Alert, Family, fmt, sel


def _rapl(c: RulesConfig) -> list[Alert]:
    return [
        Alert(
            "PowerplaneRaplCountersStalled",
            f'rate(powerplane_rapl_energy_joules_total{{zone="package"}}[{c.rate_window}]) == 0',
            "10m",
            "warning",
            "RAPL energy counters of {{ $labels.node }} do not advance",
            "The package {{ $labels.index }} energy counter of {{ $labels.node }} has not moved for "
            f"{c.rate_window}; CPU power from RAPL is wrong for this node.",
        ),
    ]


def _controller(c: RulesConfig) -> list[Alert]:
    return [
        Alert(
            "PowerplaneControllerReconcileFailing",
            "sum without (result) (increase(powerplane_controller_reconcile_total"
            f"{sel(c.controller_failure_selector)}[30m])) > 0",
            "15m",
            "warning",
            "The power-cap controller on {{ $labels.node }} fails to reconcile",
            "The controller on {{ $labels.node }} failed {{ $value | humanize }} reconciles in 30 minutes.",
        ),
        Alert(
            "PowerplaneControllerStalled",
            "time() - powerplane_controller_last_reconcile_timestamp_seconds"
            f" > {fmt(c.controller_max_silence_seconds)}",
            "5m",
            "warning",
            "The power-cap controller on {{ $labels.node }} has stopped reconciling",
            "The controller on {{ $labels.node }} last reconciled {{ $value | humanizeDuration }} ago.",
        ),
        Alert(
            "PowerplaneCapNotApplied",
            "abs(powerplane_controller_cap_desired_watts - powerplane_controller_cap_applied_watts)"
            f" > {fmt(c.cap_tolerance_watts)}",
            "30m",
            "warning",
            "The {{ $labels.domain }} power cap of {{ $labels.node }} is not applied",
            "The applied {{ $labels.domain }} cap of {{ $labels.node }} differs from the desired one by "
            "{{ $value | humanize }}W.",
        ),
    ]


def _scraping(c: RulesConfig) -> list[Alert]:
    return [
        Alert(
            "PowerplaneExporterDown",
            f"up{sel(c.job_selector)} == 0",
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


def alerts(c: RulesConfig) -> list[Alert]:
    return [*_rapl(c), *_controller(c), *_scraping(c)]


FAMILY = Family("platform", tests="alerts-platform.yaml", alerts=alerts)
