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

Every system and chassis of the BMC is read (up to the module's ``max_systems`` and
``max_chassis``), each with its Redfish ``Id`` as the ``system`` or ``chassis`` label, also on a
rack server's one system and chassis.  A chassis holding other chassis that report power (a blade
enclosure) reports its power as ``powerplane_redfish_enclosure_power_watts``, so summing
``powerplane_redfish_power_watts`` over chassis never counts a blade twice.

    powerplane_redfish_power_watts{chassis="System.Embedded.1"} 412.0
    powerplane_redfish_power_source_info{chassis="System.Embedded.1",source="environment_metrics"} 1.0
    powerplane_redfish_power_limit_watts{chassis="System.Embedded.1"} 700.0
    powerplane_redfish_psu_output_watts{chassis="System.Embedded.1",psu="PSU.Slot.1"} 193.6
    powerplane_redfish_temperature_celsius{chassis="System.Embedded.1",sensor="Inlet",context="Intake"} 22.0
    powerplane_redfish_fan_speed_rpm{chassis="System.Embedded.1",fan="System Board Fan1"} 8040.0
    powerplane_redfish_health{resource="system",state="ok",system="System.Embedded.1",chassis=""} 1.0
    powerplane_redfish_system_info{system="System.Embedded.1",model="PowerEdge R760",...} 1.0
    powerplane_redfish_enclosure_power_watts{chassis="Enclosure.1"} 1580.0
    powerplane_redfish_chassis_info{chassis="Sled.1",system="Sled.1",contained_by="Enclosure.1",...} 1.0
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
