"""The Prometheus rules suite, generated: recording rules and alerts from thresholds and selectors.

The committed files under ``rules/`` are rendered from ``RulesConfig()`` by
``powerplane rules build``; a test fails when they drift.  Sites that need other thresholds,
selectors (job names) or runbook locations write a small YAML of overrides and render their own
copy (``powerplane rules build --config site.yaml --out DIR``), the monitoring-mixin way.

The rules come in families, one module each, listed in ``render.FAMILIES``: ``recording``
(recording rules), ``gpu_node``, ``facility`` and ``platform`` (alerts).  Each family's promtool
tests are ``rules/tests/<its tests file>``.  A new family is a module declaring
``FAMILY = Family(...)`` and its line in ``FAMILIES``.

Recording rules follow ``level:metric:operation`` and their names are a contract shared with
the dashboards, the controller and the chart (see docs/rules.md).
"""

from powerplane.components import Component

COMPONENT = Component(
    name="rules",
    order=90,
    commands=(("rules", "powerplane.rulegen.cli:group"),),
    config_kinds=(("rules", "powerplane.rulegen.config:KIND"),),
    metrics=("powerplane.rulegen.render:RECORDED",),
)
