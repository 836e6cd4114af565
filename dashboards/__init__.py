"""Grafana dashboards defined with grafanalib; the generated JSON is committed under json/."""

from powerplane.components import Component

COMPONENT = Component(
    name="dashboards",
    order=91,
    commands=(("dashboards", "powerplane.dashboards.build:command"),),
)
