"""Every metric the SNMP exporter emits: the catalogue that profiles map device columns onto."""

from __future__ import annotations

from ..runtime.metrics import MetricSpec

_OUTLET = ("outlet", "outlet_name")
METRICS = (
    MetricSpec("powerplane_pdu_power_watts", "gauge", "Active power drawn through the PDU (all inputs)."),
    MetricSpec(
        "powerplane_pdu_energy_joules_total",
        "counter",
        "Energy delivered by the PDU; a reset of the device meter does not decrease it.",
    ),
    MetricSpec(
        "powerplane_pdu_phase_current_amperes", "gauge", "RMS current of the input phase.", ("phase",)
    ),
    MetricSpec("powerplane_pdu_phase_voltage_volts", "gauge", "RMS voltage of the input phase.", ("phase",)),
    MetricSpec("powerplane_pdu_phase_power_watts", "gauge", "Active power of the input phase.", ("phase",)),
    MetricSpec("powerplane_pdu_bank_current_amperes", "gauge", "Current of the outlet bank.", ("bank",)),
    MetricSpec("powerplane_pdu_outlet_current_amperes", "gauge", "RMS current of the outlet.", _OUTLET),
    MetricSpec("powerplane_pdu_outlet_power_watts", "gauge", "Active power of the outlet.", _OUTLET),
    MetricSpec(
        "powerplane_pdu_outlet_energy_joules_total",
        "counter",
        "Energy delivered by the outlet; a reset of the device meter does not decrease it.",
        _OUTLET,
    ),
    MetricSpec(
        "powerplane_pdu_sensor_temperature_celsius", "gauge", "Temperature at the PDU's sensor.", ("sensor",)
    ),
    MetricSpec(
        "powerplane_pdu_sensor_humidity_ratio",
        "gauge",
        "Relative humidity at the PDU's sensor (0..1).",
        ("sensor",),
    ),
    MetricSpec(
        "powerplane_cooling_temperature_celsius",
        "gauge",
        "Temperature at a point of the cooler: rack_inlet, supply, return, fluid_in, fluid_out.",
        ("point",),
    ),
    MetricSpec("powerplane_cooling_output_watts", "gauge", "Heat the cooler removes now."),
    MetricSpec("powerplane_cooling_demand_watts", "gauge", "Heat the cooler is asked to remove."),
    MetricSpec("powerplane_cooling_group_output_watts", "gauge", "Heat the cooler's group removes now."),
    MetricSpec(
        "powerplane_cooling_group_demand_watts", "gauge", "Heat the cooler's group is asked to remove."
    ),
    MetricSpec("powerplane_cooling_airflow_cubic_meters_per_second", "gauge", "Air moved by the cooler."),
    MetricSpec("powerplane_cooling_fan_speed_ratio", "gauge", "Fan speed as a fraction of the maximum."),
    MetricSpec("powerplane_cooling_humidity_ratio", "gauge", "Relative humidity of the supply air (0..1)."),
    MetricSpec(
        "powerplane_cooling_leak_detected", "gauge", "Whether the cooler's leak sensor reports a leak."
    ),
    MetricSpec(
        "powerplane_cooling_operating_mode",
        "gauge",
        "The cooler's operating mode: 1 for the current one, 0 for the other modes its MIB defines.",
        ("mode",),
        values={"mode": ("standby", "on", "idle", "prestart", "service", "backup", "assist")},
    ),
    MetricSpec(
        "powerplane_cooling_active_alarms", "gauge", "Number of alarm conditions the cooler reports active."
    ),
    MetricSpec(
        "powerplane_cooling_run_seconds_total",
        "counter",
        "Run time of a part of the cooler (air_filter, fan_N, compressor); a reset of the device's hour "
        "meter does not decrease it.",
        ("part",),
        values={"part": ("air_filter", "compressor", *(f"fan_{n}" for n in range(1, 9)))},
    ),
    MetricSpec(
        "powerplane_cooling_filter_run_seconds",
        "gauge",
        "Run time of the air filter since its hour meter was last reset (at the filter's service).",
    ),
    MetricSpec(
        "powerplane_cooling_filter_service_interval_seconds",
        "gauge",
        "Air filter service interval set on the cooler.",
    ),
    MetricSpec("powerplane_cooling_compressor_running", "gauge", "Whether the DX cooler's compressor runs."),
    MetricSpec("powerplane_cooling_compressor_speed_hertz", "gauge", "Speed of the compressor drive."),
    MetricSpec(
        "powerplane_cooling_refrigerant_pressure_pascals",
        "gauge",
        "Refrigerant pressure of a DX cooler as the unit reports it: suction, discharge.",
        ("point",),
        values={"point": ("suction", "discharge")},
    ),
)
CATALOGUE = {spec.name: spec for spec in METRICS}
