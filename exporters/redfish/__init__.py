"""Node power, power limits, PSUs, thermals, health and identity from BMCs through Redfish.

A multi-target exporter: Prometheus asks ``/probe?target=idrac-01&module=default&auth=idrac``
and the exporter reads that BMC, with a session that lives across probes, paths discovered from
the service root and cached, and each collector succeeding or failing on its own.  Both the
legacy ``Power``/``Thermal`` resources and the newer ``PowerSubsystem``/``ThermalSubsystem``/
``EnvironmentMetrics`` are read (``schema: auto`` prefers the newer where the chassis links it).

Node input power, ``powerplane_redfish_power_watts``, comes from the first of:
``EnvironmentMetrics.PowerWatts.Reading`` → ``Power.PowerControl[].PowerConsumedWatts`` →
telemetry report ``PowerMetrics`` ``SystemInputPower`` → (a chassis with ``PowerSubsystem``
alone) the sum of the supplies' metered input; ``powerplane_redfish_power_source_info`` says
which.  Legacy PSU input watts are not consumption (some firmware reports the rating there).
A power cap is ``powerplane_redfish_power_limit_watts`` only while the BMC enforces it.

Health is one series per resource and state: ``state`` is ``ok``, ``warning`` or ``critical``,
the value is 1 for the resource's current state and 0 for the other two (all 0 when the BMC
reports no health).

    powerplane_redfish_power_watts 412.0
    powerplane_redfish_power_source_info{source="environment_metrics"} 1.0
    powerplane_redfish_power_limit_watts 700.0
    powerplane_redfish_power_limit_enforced 1.0
    powerplane_redfish_psu_output_watts{psu="PSU.Slot.1"} 193.6
    powerplane_redfish_temperature_celsius{context="Intake",sensor="System Board Inlet Temp"} 22.0
    powerplane_redfish_fan_speed_rpm{fan="System Board Fan1"} 8040.0
    powerplane_redfish_health{resource="system",state="ok"} 1.0
    powerplane_redfish_system_info{model="PowerEdge R760",serial="CNSIM0001",...} 1.0
"""

from powerplane.components import Component

COMPONENT = Component(
    name="redfish",
    order=30,
    exporter="powerplane.exporters.redfish.exporter:command",
    config_kinds=(("redfish", "powerplane.exporters.redfish.config:KIND"),),
    metrics=("powerplane.exporters.redfish.metrics:METRICS",),
    demo="powerplane.lab.redfish:redfish_component",
)
