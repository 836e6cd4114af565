"""Every metric the Redfish exporter emits: per probe, and about itself on ``/metrics``."""

from __future__ import annotations

from ..runtime.metrics import MetricSpec

POWER = MetricSpec(
    "powerplane_redfish_power_watts",
    "gauge",
    "Node input power reported by the BMC (EnvironmentMetrics.PowerWatts, else "
    "PowerControl.PowerConsumedWatts, else telemetry SystemInputPower).",
    ("chassis",),
)
POWER_SOURCE = MetricSpec(
    "powerplane_redfish_power_source_info",
    "info",
    "Which Redfish resource powerplane_redfish_power_watts came from.",
    ("chassis", "source"),
)
POWER_INTERVAL = MetricSpec(
    "powerplane_redfish_power_interval_watts",
    "gauge",
    "Average, minimum and maximum node input power over the BMC's own interval.",
    ("chassis", "stat"),
)
POWER_INTERVAL_SECONDS = MetricSpec(
    "powerplane_redfish_power_interval_seconds",
    "gauge",
    "Length of the BMC's power statistics interval.",
    ("chassis",),
)
POWER_LIMIT = MetricSpec(
    "powerplane_redfish_power_limit_watts",
    "gauge",
    "Node power cap the BMC enforces (absent when none is set or the cap is disabled).",
    ("chassis",),
)
POWER_LIMIT_CONFIGURED = MetricSpec(
    "powerplane_redfish_power_limit_configured_watts",
    "gauge",
    "Node power cap configured on the BMC, enforced or not.",
    ("chassis",),
)
POWER_LIMIT_ENFORCED = MetricSpec(
    "powerplane_redfish_power_limit_enforced",
    "gauge",
    "Whether the configured cap is enforced (1) or not (0: Dell PowerCapEnabledState Disabled, "
    "ControlMode Disabled, LimitException NoAction or LogEventOnly); absent without a cap.",
    ("chassis",),
)
POWER_BUDGET = MetricSpec(
    "powerplane_redfish_power_budget_watts",
    "gauge",
    "Power budget of the node: allocated, requested and available watts (PowerControl's "
    "Power{Allocated,Requested,Available}Watts; PowerSubsystem.Allocation; PowerLimitWatts.AllocatedWatts).",
    ("chassis", "kind"),
)
VOLTAGE = MetricSpec(
    "powerplane_redfish_voltage_volts",
    "gauge",
    "Voltage sensor reading (legacy Power.Voltages).",
    ("chassis", "sensor"),
)
POWER_CAPACITY = MetricSpec(
    "powerplane_redfish_power_capacity_watts", "gauge", "Power the node's supplies can deliver.", ("chassis",)
)
ENERGY = MetricSpec(
    "powerplane_redfish_energy_joules_total",
    "counter",
    "Node energy from the BMC's meter (EnergykWh), reset-safe.",
    ("chassis",),
)
ENCLOSURE_POWER = MetricSpec(
    "powerplane_redfish_enclosure_power_watts",
    "gauge",
    "Input power of a chassis that holds other chassis reporting power (a blade enclosure): "
    "its blades' power and the enclosure's own, so never summed with powerplane_redfish_power_watts.",
    ("chassis",),
)
ENCLOSURE_ENERGY = MetricSpec(
    "powerplane_redfish_enclosure_energy_joules_total",
    "counter",
    "Energy of a blade enclosure's chassis from its meter (EnergykWh), reset-safe.",
    ("chassis",),
)
CHASSIS_INFO = MetricSpec(
    "powerplane_redfish_chassis_info",
    "info",
    "Each chassis of the BMC: the system it powers (one series per system it links; empty for none), "
    "the chassis that holds it (ContainedBy), and its role: node (its power is node power) or "
    "enclosure (it holds chassis reporting power).",
    ("chassis", "system", "contained_by", "role"),
    values={"role": ("node", "enclosure")},
)
PSU_INPUT = MetricSpec(
    "powerplane_redfish_psu_input_watts",
    "gauge",
    "PSU input power as reported (some firmware reports the rating here: never sum it as consumption).",
    ("chassis", "psu"),
)
PSU_OUTPUT = MetricSpec(
    "powerplane_redfish_psu_output_watts", "gauge", "PSU output power.", ("chassis", "psu")
)
PSU_CAPACITY = MetricSpec(
    "powerplane_redfish_psu_capacity_watts", "gauge", "PSU rated capacity.", ("chassis", "psu")
)
PSU_EFFICIENCY = MetricSpec(
    "powerplane_redfish_psu_efficiency_ratio", "gauge", "PSU rated efficiency (0..1).", ("chassis", "psu")
)
PSU_VOLTAGE = MetricSpec(
    "powerplane_redfish_psu_input_voltage_volts", "gauge", "PSU line input voltage.", ("chassis", "psu")
)
PSU_REDUNDANCY = MetricSpec(
    "powerplane_redfish_psu_redundancy",
    "gauge",
    "Whether a PSU redundancy group is redundant (1) or has lost redundancy (0), from legacy "
    "Power.Redundancy or PowerSubsystem.PowerSupplyRedundancy; groups that are Disabled are absent.",
    ("chassis", "group", "mode"),
)
PSU_ENERGY = MetricSpec(
    "powerplane_redfish_psu_energy_joules_total",
    "counter",
    "PSU energy from the supply's meter (PSU Metrics EnergykWh), reset-safe.",
    ("chassis", "psu"),
)
PSU_TEMPERATURE = MetricSpec(
    "powerplane_redfish_psu_temperature_celsius",
    "gauge",
    "PSU temperature (PSU Metrics TemperatureCelsius).",
    ("chassis", "psu"),
)
TEMPERATURE = MetricSpec(
    "powerplane_redfish_temperature_celsius",
    "gauge",
    "Temperature sensor reading, with the sensor's PhysicalContext.",
    ("chassis", "sensor", "context"),
)
TEMPERATURE_SUMMARY = MetricSpec(
    "powerplane_redfish_temperature_summary_celsius",
    "gauge",
    "Chassis intake/exhaust temperature (the BMC's summary, else coolest intake / hottest exhaust).",
    ("chassis", "context"),
)
CHASSIS_TEMPERATURE = MetricSpec(
    "powerplane_redfish_chassis_temperature_celsius",
    "gauge",
    "The chassis temperature the BMC reports (EnvironmentMetrics.TemperatureCelsius).",
    ("chassis",),
)
LEAK = MetricSpec(
    "powerplane_redfish_leak_detected",
    "gauge",
    "Whether a leak detector of the chassis (ThermalSubsystem.LeakDetection) reports a leak (1: "
    "DetectorState Warning or Critical) or not (0).",
    ("chassis", "detector"),
)
FAN_RPM = MetricSpec(
    "powerplane_redfish_fan_speed_rpm", "gauge", "Fan speed in revolutions per minute.", ("chassis", "fan")
)
FAN_RATIO = MetricSpec(
    "powerplane_redfish_fan_speed_ratio",
    "gauge",
    "Fan speed as a fraction of its maximum.",
    ("chassis", "fan"),
)
HEALTH = MetricSpec(
    "powerplane_redfish_health",
    "gauge",
    "Health of the resource: 1 for its current state (ok, warning, critical), 0 for the other two; "
    "a system's health has its system label, a chassis' (and its PSUs' and fans') its chassis label.",
    ("resource", "state", "system", "chassis"),
)
SYSTEM_INFO = MetricSpec(
    "powerplane_redfish_system_info",
    "info",
    "Identity of the system and its BMC, constant 1.",
    ("system", "manufacturer", "model", "serial", "sku", "bios_version", "bmc_model", "bmc_firmware_version"),
)
POWERED_ON = MetricSpec(
    "powerplane_redfish_system_powered_on",
    "gauge",
    "Whether the system is powered on (1) or not (0).",
    ("system",),
)
TELEMETRY = MetricSpec(
    "powerplane_redfish_telemetry_value",
    "gauge",
    "Newest sample of a telemetry MetricReport metric (units as the BMC defines them).",
    ("report", "metric", "context"),
)
#: Log entry severities as label values: Redfish's three, and ``other`` for anything else.
LOG_SEVERITIES = ("ok", "warning", "critical", "other")
LOG_ENTRIES = MetricSpec(
    "powerplane_redfish_log_entries",
    "gauge",
    "Entries in a BMC event log (SEL, Lifecycle log, IML; log is owner/LogService Id).",
    (
        "system",
        "log",
    ),
)
LOG_ENTRIES_READ = MetricSpec(
    "powerplane_redfish_log_entries_read",
    "gauge",
    "Entries of the log's first page read (at most max_members), by Severity (ok, warning, critical, other).",
    ("system", "log", "severity"),
    values={"severity": LOG_SEVERITIES},
)
LOG_NEWEST = MetricSpec(
    "powerplane_redfish_log_newest_entry_timestamp_seconds",
    "gauge",
    "Created time of the newest entry of each severity in the page read (the BMC's clock).",
    ("system", "log", "severity"),
    values={"severity": LOG_SEVERITIES},
)
SESSIONS = MetricSpec(
    "powerplane_redfish_sessions", "gauge", "Redfish sessions this exporter holds, over all BMCs."
)
SESSIONS_CREATED = MetricSpec(
    "powerplane_redfish_sessions_created_total", "counter", "Redfish sessions this exporter created."
)
LOGIN_FAILURES = MetricSpec(
    "powerplane_redfish_login_failures_total",
    "counter",
    "Failed logins, by reason (session_limit: the BMC's sessions were used up, RAC0218; "
    "session_rejected: the BMC answered 401 to a session it had just created; other).",
    ("reason",),
)
LOGIN_BACKOFF = MetricSpec(
    "powerplane_redfish_login_backoff_targets",
    "gauge",
    "BMCs (per auth) whose next login is deferred after failed logins (1 s, doubling to 5 min).",
)
LOGINS_DEFERRED = MetricSpec(
    "powerplane_redfish_logins_deferred_total",
    "counter",
    "Logins not attempted because the BMC's logins are backing off.",
)
LINKS_REFUSED = MetricSpec(
    "powerplane_redfish_links_refused_total",
    "counter",
    "Links from BMC documents and headers refused: not a path on the BMC's own origin.",
)
MEMBERS_DROPPED = MetricSpec(
    "powerplane_redfish_members_dropped_total",
    "counter",
    "Collection members not read because the collection has more than the module's max_members.",
)
DISCOVERY_DROPPED = MetricSpec(
    "powerplane_redfish_discovery_dropped_total",
    "counter",
    "Systems and chassis a BMC lists beyond the module's max_systems / max_chassis, not read "
    "(counted at each discovery).",
    ("kind",),
    values={"kind": ("systems", "chassis")},
)
REQUESTS = MetricSpec("powerplane_redfish_requests_total", "counter", "HTTP requests made to BMCs.")

METRICS = (
    POWER,
    POWER_SOURCE,
    POWER_INTERVAL,
    POWER_INTERVAL_SECONDS,
    POWER_LIMIT,
    POWER_LIMIT_CONFIGURED,
    POWER_LIMIT_ENFORCED,
    POWER_BUDGET,
    POWER_CAPACITY,
    ENERGY,
    ENCLOSURE_POWER,
    ENCLOSURE_ENERGY,
    VOLTAGE,
    PSU_INPUT,
    PSU_OUTPUT,
    PSU_CAPACITY,
    PSU_EFFICIENCY,
    PSU_VOLTAGE,
    PSU_REDUNDANCY,
    PSU_ENERGY,
    PSU_TEMPERATURE,
    TEMPERATURE,
    TEMPERATURE_SUMMARY,
    CHASSIS_TEMPERATURE,
    LEAK,
    FAN_RPM,
    FAN_RATIO,
    HEALTH,
    SYSTEM_INFO,
    POWERED_ON,
    CHASSIS_INFO,
    TELEMETRY,
    LOG_ENTRIES,
    LOG_ENTRIES_READ,
    LOG_NEWEST,
    SESSIONS,
    SESSIONS_CREATED,
    LOGIN_FAILURES,
    LOGIN_BACKOFF,
    LOGINS_DEFERRED,
    LINKS_REFUSED,
    MEMBERS_DROPPED,
    DISCOVERY_DROPPED,
    REQUESTS,
)
HEALTH_STATES = ("ok", "warning", "critical")
