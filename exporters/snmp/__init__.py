"""Metered PDUs and in-row coolers over SNMP, multi-target: ``/probe?target=&module=&auth=``.

Device profiles (``profiles/*.yaml``, see ``profiles.py``) say which columns to walk and how each
becomes a metric; only those columns are walked.  ``module`` names a profile; when it is omitted
the profile is chosen from the device's sysObjectID (cached per target).  ``auth`` names an
entry of the config's ``auths`` (v1, v2c or v3 authPriv), kept apart from modules; secrets come
from environment variables or files.  Only targets named in the config or inside its allow-list
are probed (anything else: HTTP 400).  Each table succeeds or fails on its own: a table that
times out or answers garbage fails its collector while the others are still exposed.

    powerplane_pdu_power_watts 1210.0
    powerplane_pdu_energy_joules_total 7.02576e+09
    powerplane_pdu_phase_current_amperes{phase="1"} 6.5
    powerplane_pdu_outlet_power_watts{outlet="1",outlet_name="CP-CM-SAN-01"} 163.0
    powerplane_cooling_temperature_celsius{point="rack_inlet"} 22.4
    powerplane_cooling_output_watts 11800.0
"""

from powerplane.components import Component

COMPONENT = Component(
    name="snmp",
    order=40,
    exporter="powerplane.exporters.snmp.exporter:command",
    config_kinds=(("snmp", "powerplane.exporters.snmp.config:KIND"),),
    metrics=("powerplane.exporters.snmp.metrics:METRICS",),
    demo="powerplane.lab.snmp:snmp_component",
)
