"""Accounting: energy, cost and emissions per job, pod, user, node, rack and cluster.

The attribution model (shared by the rules generator and the commands), ``powerplane job``,
``powerplane report`` and ``powerplane measure``.
"""

from powerplane.components import Component

COMPONENT = Component(
    name="accounting",
    order=85,
    commands=(
        ("job", "powerplane.accounting.job:command"),
        ("report", "powerplane.accounting.report.cli:command"),
        ("measure", "powerplane.accounting.measure:command"),
    ),
    metrics=("powerplane.accounting.metrics:INPUTS",),
)
