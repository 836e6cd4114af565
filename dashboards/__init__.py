"""Grafana dashboards defined with grafanalib; the generated JSON is committed under json/."""
