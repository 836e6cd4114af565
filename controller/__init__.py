"""The power-cap node agent: pure policy, actuators (RAPL, NVML), Kubernetes I/O, the loop."""

from powerplane.components import Component

COMPONENT = Component(
    name="controller",
    order=70,
    commands=(
        ("controller", "powerplane.controller.cli:command"),
        ("simulate", "powerplane.controller.simulate:command"),
    ),
    config_kinds=(
        ("powercappolicy", "powerplane.controller.config:KIND"),
        ("capping-model", "powerplane.controller.perfmodel:KIND"),
    ),
    metrics=("powerplane.controller.agent:METRICS",),
    demo="powerplane.lab.controller:controller_component",
)
