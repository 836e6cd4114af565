"""The site-override config kind of the rules: every threshold, selector and window a site may tune.

Each field's default is written once, here: it feeds the dataclass, the JSON Schema (with its
``default``), the settings table of docs/rules.md and the dashboards' thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from powerplane.exporters.runtime.config import (
    ConfigError,
    ConfigKind,
    from_document,
    setting,
    settings_schema,
)

_DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
DURATION: dict[str, Any] = {"type": "string", "pattern": _DURATION}
_POSITIVE = {"exclusiveMinimum": 0}
_RATIO = {"minimum": 0, "maximum": 1}


@dataclass(frozen=True)
class RulesConfig:
    """Everything a site may tune.  Selectors are PromQL label matchers without braces."""

    job_selector: str = setting(
        'job=~"powerplane.*"', doc="Jobs whose `up` is watched by PowerplaneExporterDown."
    )
    runbook_url: str = setting(
        "https://github.com/powerplane/powerplane/blob/main/docs/rules.md#{anchor}",
        doc="Runbook link of every alert; `{anchor}` is the lower-cased alert name.",
    )
    rate_window: str = setting(
        "5m", schema=DURATION, doc="Window of rate() over energy counters; at least 4 scrape intervals."
    )
    error_window: str = setting("10m", schema=DURATION, doc="Window in which new XID or ECC errors alert.")
    rapl_zone_selector: str = setting(
        'zone=~"package|dram"', doc="RAPL zones summed into a node's CPU power (not nested subzones)."
    )
    gpu_temperature_selector: str = setting('sensor="gpu"', doc="GPU temperature sensors that alert.")
    gpu_temperature_warning_celsius: float = setting(90.0, doc="PowerplaneGpuTemperatureHigh above this.")
    gpu_temperature_critical_celsius: float = setting(
        95.0, doc="PowerplaneGpuTemperatureCritical above this."
    )
    gpu_power_limit_selector: str = setting(
        'kind="enforced"', doc="Power limit series the GPU's power is compared with."
    )
    gpu_power_limit_ratio: float = setting(
        0.95, schema=_POSITIVE, doc="PowerplaneGpuPowerNearLimit at this share of the limit or more."
    )
    gpu_power_watts: float | None = setting(
        None,
        schema={"type": ["number", "null"], **_POSITIVE},
        doc="A fixed threshold in watts instead of the ratio (the original design alerted above 330 W).",
    )
    gpu_memory_ratio: float = setting(
        0.95, schema=_RATIO, doc="PowerplaneGpuMemoryNearlyFull above this share of memory used."
    )
    gpu_ecc_uncorrected_selector: str = setting(
        'type=~"(?i).*uncorrected.*"', doc="ECC counters whose increase is critical."
    )
    gpu_utilization_selector: str = setting("", doc="GPU utilisation series averaged per cluster.")
    inlet_selector: str = setting(
        'context="Intake"', doc="BMC temperature sensors measuring the node's air inlet."
    )
    inlet_min_celsius: float = setting(
        18.0, doc="Lower end of the inlet range (ASHRAE recommended envelope, classes A1-A4)."
    )
    inlet_max_celsius: float = setting(27.0, doc="Upper end of the inlet range.")
    psu_health_selector: str = setting(
        'resource=~"(?i)(psu|powersupply).*"', doc="Redfish health resources that are power supplies."
    )
    fan_health_selector: str = setting('resource=~"(?i)fan.*"', doc="Redfish health resources that are fans.")
    unhealthy_state_selector: str = setting(
        'state=~"warning|critical"', doc="Redfish health states that alert."
    )
    pdu_load_ratio: float = setting(
        0.8,
        schema=_POSITIVE,
        doc="PDU and phase load alert above this share of the rating (the 80 % rule for branch circuits).",
    )
    phase_imbalance_ratio: float = setting(
        0.2, schema=_RATIO, doc="Phase imbalance alerts above this (busiest - lightest) / busiest."
    )
    phase_imbalance_min_amperes: float = setting(
        2.0, doc="Phase imbalance is ignored below this current on the busiest phase."
    )
    rack_budget_warning_ratio: float = setting(
        0.9, schema=_POSITIVE, doc="PowerplaneRackNearPowerBudget above this share of the rack budget."
    )
    cooler_supply_max_celsius: float = setting(27.0, doc="Highest cooler supply air temperature.")
    cooler_return_max_celsius: float = setting(45.0, doc="Highest cooler return air temperature.")
    humidity_min_ratio: float = setting(0.2, schema=_RATIO, doc="Lowest relative humidity at a cooler.")
    humidity_max_ratio: float = setting(0.8, schema=_RATIO, doc="Highest relative humidity at a cooler.")
    cooler_standby_selector: str = setting(
        'cooler!=""',
        doc="Coolers whose standby alerts (PowerplaneCoolerInStandby); leave out units that stand by "
        'by design, e.g. `cooler!~"inrow-0[78]"` for two backup units.',
    )
    market_tomorrow_hour_utc: int = setting(
        14,
        schema={"minimum": 0, "maximum": 23},
        doc="From this hour (UTC) on, tomorrow's day-ahead prices should be published (~13:00 CET).",
    )
    market_data_max_age_seconds: float = setting(
        86400.0, schema=_POSITIVE, doc="PowerplaneMarketDataStale when the data is older."
    )
    controller_failure_selector: str = setting(
        'result="failure"', doc="Controller reconcile results that count as failures."
    )
    controller_max_silence_seconds: float = setting(
        2700.0,
        schema=_POSITIVE,
        doc="Longest time between two reconciles (three 15-minute market periods).",
    )
    cap_tolerance_watts: float = setting(
        5.0, doc="PowerplaneCapNotApplied when applied and desired caps differ by more."
    )
    slurm_saturated_ratio: float = setting(
        0.95,
        schema=_RATIO,
        doc="PowerplaneSlurmPartitionSaturated when a partition's allocated CPU or GPU share is above this "
        "while jobs wait.",
    )
    slurm_nodes_unavailable_ratio: float = setting(
        0.1, schema=_RATIO, doc="PowerplaneSlurmNodesUnavailable above this share of a cluster's nodes."
    )
    slurm_drained_max_seconds: float = setting(
        259200.0,
        schema=_POSITIVE,
        doc="PowerplaneSlurmNodeDrainedLong after a node is drained or down this long.",
    )
    slurm_maintenance_notice_seconds: float = setting(
        86400.0,
        schema=_POSITIVE,
        doc="PowerplaneSlurmMaintenanceSoon when a MAINT reservation starts within this.",
    )
    slurm_data_max_age_seconds: float = setting(
        600.0, schema=_POSITIVE, doc="PowerplaneSlurmDataStale when Slurm's data is older than this."
    )
    accounting_slurm_gpu_label: str = setting(
        "minor_number",
        schema={"enum": ["minor_number", "gpu"]},
        doc="The GPU exporter's label that Slurm's GPU index (IDX) equals: minor_number (/dev/nvidiaN, "
        "what Slurm allocates) or gpu (NVML's index, where the two agree).",
    )
    accounting_pod_cpu_selector: str = setting(
        'container!="", container!="POD"',
        doc="cAdvisor container_cpu_usage_seconds_total series summed into a pod's CPU usage.",
    )
    accounting_user_series: bool = setting(
        True,
        doc="Record power, cost and CO2 per Slurm user (off where users are many; the Slurm exporter's "
        "privacy.users applies either way).",
    )
    accounting_pue: float | None = setting(
        None,
        schema={"type": ["number", "null"], "minimum": 1},
        doc="Facility overhead as a configured PUE: overhead = IT power x (PUE - 1), recorded apart from IT "
        "power.",
    )
    accounting_facility_power_query: str = setting(
        "",
        doc="Facility overhead measured instead: a PromQL expression of the overhead power (W) by cluster "
        "(cooling, distribution losses), shared among the cluster's nodes by their power.",
    )
    accounting_overattributed_ratio: float = setting(
        0.02,
        schema=_RATIO,
        doc="PowerplaneAccountingOverAttributed when a node's unattributed power is below -this share of it.",
    )
    for_overrides: Mapping[str, str] = setting(
        {},
        schema={"type": "object", "additionalProperties": DURATION},
        doc='`for` durations by alert name; the key `"*"` overrides every alert.',
    )
    scope_labels: tuple[str, ...] = setting(
        (),
        schema={
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
            "uniqueItems": True,
        },
        doc="Labels that keep sites apart where rules see several at once (`[cluster]` for rules "
        "evaluated globally over shards that add a `cluster` label): added to every `by` and `on`.",
    )
    interval: str = setting(
        "",
        schema={"type": "string", "pattern": f"^$|{_DURATION}"},
        doc='Evaluation interval of the rule groups ("" leaves Prometheus\'s global interval).',
    )
    accounting_allocation_interval: str = setting(
        "",
        schema={"type": "string", "pattern": f"^$|{_DURATION}"},
        doc="Evaluation interval of the accounting's allocation joins (GPU holders and shares, CPU shares, "
        "job owners) in a group of their own, for large fleets: a job's share then starts and ends up to "
        'this late ("" evaluates them with the rest, in step).',
    )


def _build(doc: Mapping[str, Any]) -> RulesConfig:
    config = from_document(RulesConfig, doc)
    errors = []
    if "{anchor}" not in config.runbook_url:
        errors.append("runbook_url: must contain {anchor}")
    if config.accounting_pue is not None and config.accounting_facility_power_query:
        errors.append(
            "accounting_facility_power_query: a measured facility overhead and accounting_pue exclude each "
            "other (set one)"
        )
    if errors:
        raise ConfigError(errors)
    return config


KIND: ConfigKind[RulesConfig] = ConfigKind("rules", settings_schema(RulesConfig), _build)
