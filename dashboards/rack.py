"""Rack and cooling: rack power against its budget, PDUs, phases and outlets, and the in-row coolers."""

from __future__ import annotations

import grafanalib.core as g

from .common import (
    THRESHOLDS,
    Layout,
    band,
    bargauge,
    dashboard,
    drilldown,
    stat,
    steps,
    timeseries,
    value_map,
)

UID = "powerplane-rack"
R = 'rack=~"$rack"'
#: PDU series carry only ``pdu``: the inventory's PDU info puts them in a rack.
IN_RACK = f"* on(pdu) group_left(rack) powerplane_inventory_pdu_info{{{R}}}"
#: A cooler serves several racks: keep the coolers serving a selected rack.
COOLS_RACK = f"and on(cooler) powerplane_cooler_rack_info{{{R}}}"


def _rack_power(layout: Layout) -> None:
    layout.row("Rack power").add(
        timeseries(
            "Rack power and budget",
            [
                (f"rack:powerplane_power_watts:sum{{{R}}}", "{{rack}} IT power"),
                (f"rack:powerplane_pdu_power_watts:sum{{{R}}}", "{{rack}} PDUs"),
                (f"powerplane_rack_power_budget_watts{{{R}}}", "{{rack}} budget"),
            ],
            "watt",
            w=16,
        ),
        bargauge(
            "Share of budget",
            [(f"rack:powerplane_power_budget_ratio{{{R}}}", "{{rack}}")],
            "percentunit",
            thresholds=steps(*THRESHOLDS["rack_budget_ratio"]),
            max_value=1.2,
            w=8,
        ),
    )


def _pdus(layout: Layout) -> None:
    layout.row("PDUs").add(
        timeseries(
            "PDU power and rating",
            [
                (f"powerplane_pdu_power_watts {IN_RACK}", "{{pdu}}"),
                (f"powerplane_inventory_pdu_rated_power_watts {IN_RACK}", "{{pdu}} rating"),
            ],
            "watt",
        ),
        timeseries(
            "Phase current against rating",
            [
                (
                    f"powerplane_pdu_phase_current_amperes / on(pdu) group_left() "
                    f"powerplane_inventory_pdu_phase_rated_current_amperes {IN_RACK}",
                    "{{pdu}} phase {{phase}}",
                ),
            ],
            "percentunit",
            thresholds=steps(*THRESHOLDS["pdu_load_ratio"]),
            description="Phase current as a share of the phase's rated current.",
        ),
    )
    layout.add(
        timeseries(
            "Outlet power",
            [
                (
                    f"powerplane_pdu_outlet_power_watts {IN_RACK}",
                    "{{pdu}} {{outlet_name}}",
                )
            ],
            "watt",
            links=[
                drilldown(
                    "powerplane-node", "Nodes in rack ${__field.labels.rack}", rack="${__field.labels.rack}"
                )
            ],
        ),
        timeseries(
            "PDU sensors",
            [(f"powerplane_pdu_sensor_temperature_celsius {IN_RACK}", "{{pdu}} {{sensor}}")],
            "celsius",
            thresholds=band(*THRESHOLDS["inlet_temperature_celsius"]),
        ),
    )


def _cooling(layout: Layout) -> None:
    layout.row("Cooling").add(
        timeseries(
            "Cooler supply and rack inlet",
            [
                (
                    f'powerplane_cooling_temperature_celsius{{point=~"supply|rack_inlet"}} {COOLS_RACK}',
                    "{{cooler}} {{point}}",
                )
            ],
            "celsius",
            thresholds=steps(*THRESHOLDS["cooler_supply_celsius"]),
            description="Supply air above 27 °C raises an alert.",
            w=8,
        ),
        timeseries(
            "Cooler return air and fluid",
            [
                (
                    f'powerplane_cooling_temperature_celsius{{point!~"supply|rack_inlet"}} {COOLS_RACK}',
                    "{{cooler}} {{point}}",
                )
            ],
            "celsius",
            thresholds=steps(*THRESHOLDS["cooler_return_celsius"]),
            description="Return air above 45 °C raises an alert.",
            w=8,
        ),
        timeseries(
            "Cooling output over IT power",
            [(f"cooler:powerplane_cooling_output_over_it_power:ratio {COOLS_RACK}", "{{cooler}}")],
            "percentunit",
            description="Heat the cooler removes per watt the racks it serves draw (near 1 when balanced).",
            w=8,
        ),
    )
    layout.add(
        timeseries(
            "Cooling output and demand",
            [
                (f"powerplane_cooling_output_watts {COOLS_RACK}", "{{cooler}} output"),
                (f"powerplane_cooling_demand_watts {COOLS_RACK}", "{{cooler}} demand"),
            ],
            "watt",
            w=8,
        ),
        timeseries(
            "Humidity",
            [(f"powerplane_cooling_humidity_ratio {COOLS_RACK}", "{{cooler}}")],
            "percentunit",
            thresholds=band(*THRESHOLDS["cooler_humidity_ratio"]),
            w=8,
        ),
        timeseries(
            "Airflow",
            [(f"powerplane_cooling_airflow_cubic_meters_per_second {COOLS_RACK}", "{{cooler}}")],
            "flowcms",
            w=8,
        ),
    )
    layout.add(
        timeseries(
            "Cooler fan speed",
            [(f"powerplane_cooling_fan_speed_ratio {COOLS_RACK}", "{{cooler}}")],
            "percentunit",
            max_value=1,
            w=16,
        ),
        stat(
            "Leak",
            [(f"max by (cooler) (powerplane_cooling_leak_detected {COOLS_RACK})", "{{cooler}}")],
            "none",
            mappings=value_map((0, "dry", "green"), (1, "LEAK", "red")),
            thresholds=steps(1, colors=("red",)),
            w=8,
            h=8,
        ),
    )


def build() -> g.Dashboard:
    layout = Layout()
    _rack_power(layout)
    _pdus(layout)
    _cooling(layout)
    return dashboard(
        UID,
        "Racks against their power budget; PDU, phase and outlet power; the in-row coolers serving them.",
        layout,
        ["cluster", "row", "rack"],
    )
