"""Node: BMC power with its limit and PSUs, temperatures, fans, RAPL, GPUs, and every power source."""

from __future__ import annotations

import grafanalib.core as g

from .common import (
    STATUS_MAPPINGS,
    THRESHOLDS,
    Layout,
    band,
    dashboard,
    stat,
    steps,
    table,
    timeseries,
)

UID = "powerplane-node"
N = 'node=~"$node"'


def _power(layout: Layout) -> None:
    layout.row("Power").add(
        stat(
            "Node status",
            [(f"node:powerplane_status:state{{{N}}}", "{{node}}")],
            "none",
            mappings=STATUS_MAPPINGS,
            thresholds=steps(1, 2),
            w=6,
            h=8,
        ),
        timeseries(
            "Node power by source",
            [
                (f"powerplane_redfish_power_watts{{{N}}}", "{{node}} BMC"),
                (f"node:powerplane_pdu_power_watts:sum{{{N}}}", "{{node}} PDU outlets"),
                (
                    f"node:powerplane_rapl_power_watts:sum{{{N}}} + on(node) "
                    f"(node:powerplane_gpu_power_watts:sum{{{N}}}"
                    f" or node:powerplane_rapl_power_watts:sum{{{N}}} * 0)",
                    "{{node}} RAPL + GPU",
                ),
            ],
            "watt",
            description="The same node measured three ways: BMC input power, its PDU outlets, and the"
            " sum of CPU packages, DRAM and GPUs (which leaves out fans, disks and PSU losses).",
            w=18,
            h=8,
        ),
    )
    layout.add(
        timeseries(
            "BMC power, limit and capacity",
            [
                (f"powerplane_redfish_power_watts{{{N}}}", "{{node}} input"),
                # Only an enforced cap: one set but switched off is no limit on the node's headroom.
                (f"powerplane_redfish_power_limit_watts{{{N}}}", "{{node}} limit (enforced)"),
                (f"powerplane_redfish_power_capacity_watts{{{N}}}", "{{node}} capacity"),
            ],
            "watt",
        ),
        timeseries(
            "PSUs",
            [
                (f"powerplane_redfish_psu_input_watts{{{N}}}", "{{node}} {{psu}} input"),
                (f"powerplane_redfish_psu_output_watts{{{N}}}", "{{node}} {{psu}} output"),
            ],
            "watt",
        ),
    )
    layout.add(
        timeseries(
            "RAPL packages and DRAM",
            [
                (
                    "sum by (node, zone, index) (rate(powerplane_rapl_energy_joules_total"
                    f'{{{N}, zone=~"package|dram"}}[$__rate_interval]))',
                    "{{node}} {{zone}} {{index}}",
                ),
                (
                    f'powerplane_rapl_power_limit_watts{{{N}, zone="package", constraint="long_term"}}',
                    "{{node}} package {{index}} long-term limit",
                ),
            ],
            "watt",
            description="CPU package and DRAM power from the RAPL energy counters, with the long-term"
            " limit the controller writes.",
        ),
        timeseries(
            "GPU power (sum per node)",
            [(f"node:powerplane_gpu_power_watts:sum{{{N}}}", "{{node}} GPUs")],
            "watt",
        ),
    )


def _thermals(layout: Layout) -> None:
    layout.row("Thermals").add(
        timeseries(
            "Inlet and exhaust",
            [(f"powerplane_redfish_temperature_summary_celsius{{{N}}}", "{{node}} {{context}}")],
            "celsius",
            thresholds=band(*THRESHOLDS["inlet_temperature_celsius"]),
            description="The chassis intake and exhaust summary. ASHRAE recommends an inlet between 18 and"
            " 27 °C; the alert fires outside.",
        ),
        timeseries(
            "Component temperatures",
            [
                (
                    f'powerplane_redfish_temperature_celsius{{{N}, context!~"Intake|Exhaust"}}',
                    "{{node}} {{sensor}} ({{context}})",
                )
            ],
            "celsius",
        ),
    )
    layout.add(
        timeseries("Fans", [(f"powerplane_redfish_fan_speed_rpm{{{N}}}", "{{node}} {{fan}}")], "rotrpm"),
        table(
            "Health",
            [(f"powerplane_redfish_health{{{N}}} == 1", "{{node}} {{resource}} {{state}}")],
            "none",
            description="Current health (ok, warning, critical) of system, chassis, PSUs and fans as the BMC"
            " reports it.",
            hide=("Time", "__name__", "instance", "job", "Value"),
        ),
    )


def build() -> g.Dashboard:
    layout = Layout()
    _power(layout)
    _thermals(layout)
    return dashboard(
        UID,
        "One node: BMC power with its limit and PSUs, thermals, fans, RAPL, GPUs, and each power source.",
        layout,
        ["cluster", "row", "rack", "node"],
    )
