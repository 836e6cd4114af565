"""The site-override config kind of the rules: every threshold, selector and window a site may tune."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from powerplane.exporters.runtime.config import ConfigError, ConfigKind, strict_object

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
