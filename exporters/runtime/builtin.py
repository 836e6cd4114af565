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
    PROBES_IN_FLIGHT,
    BUILD_INFO,
)
