"""Metrics every powerplane exporter emits about itself."""

from __future__ import annotations

from .metrics import MetricSpec

COLLECTOR_SUCCESS = MetricSpec(
    "powerplane_scrape_collector_success",
    "gauge",
    "Whether the collector succeeded (1) or failed (0) in this scrape.",
    ("exporter", "collector"),
)
COLLECTOR_DURATION = MetricSpec(
    "powerplane_scrape_collector_duration_seconds",
    "gauge",
    "Time the collector took in this scrape.",
    ("exporter", "collector"),
)
TARGET_UP = MetricSpec(
    "powerplane_target_up", "gauge", "Whether the target answered the probe (1) or not (0).", ("exporter",)
)
PROBE_DURATION = MetricSpec(
    "powerplane_probe_duration_seconds", "gauge", "How long the probe took.", ("exporter",)
)
PROBES = MetricSpec(
    "powerplane_probes_total", "counter", "Probes answered, by result.", ("exporter", "result")
)
PROBES_COALESCED = MetricSpec(
    "powerplane_probes_coalesced_total",
    "counter",
    "Probes answered by joining a probe already in flight.",
    ("exporter",),
)
PROBES_NOT_STARTED = MetricSpec(
    "powerplane_probes_not_started_total",
    "counter",
    "Probes answered target_up 0 without a fetch: no slot of the device (device_busy) or of the "
    "process (process_busy) was free by half their deadline.",
    ("exporter", "reason"),
)
DEVICE_STRINGS = MetricSpec(
    "powerplane_device_strings_sanitised_total",
    "counter",
    "Strings from devices changed before use as label values: cut to the length cap (truncated) "
    "or stripped of control characters and invalid UTF-8 (invalid).",
    ("exporter", "reason"),
)
PROBE_STATE = MetricSpec(
    "powerplane_probe_state_entries",
    "gauge",
    "Entries of per-target state held now (sessions and paths, counters, detected modules, failure "
    "logs); each is evicted state_ttl after its target's last probe.",
    ("exporter",),
)
PROBES_IN_FLIGHT = MetricSpec(
    "powerplane_probes_in_flight", "gauge", "Probes being fetched now.", ("exporter",)
)
BUILD_INFO = MetricSpec(
    "powerplane_build_info", "info", "Version of powerplane, constant 1.", ("exporter", "version")
)

METRICS = (
    COLLECTOR_SUCCESS,
    COLLECTOR_DURATION,
    TARGET_UP,
    PROBE_DURATION,
    PROBES,
    PROBES_COALESCED,
    PROBES_NOT_STARTED,
    DEVICE_STRINGS,
    PROBE_STATE,
    PROBES_IN_FLIGHT,
    BUILD_INFO,
)
