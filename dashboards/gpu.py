"""GPU: per node and GPU power, energy, temperatures, utilisation, memory, clocks, throttling, errors."""

from __future__ import annotations

import grafanalib.core as g

from .common import THRESHOLDS, Layout, bargauge, dashboard, state_timeline, steps, table, timeseries

UID = "powerplane-gpu"
S = 'node=~"$node", gpu=~"$gpu"'
NAME = "{{node}} GPU {{gpu}}"


def _power_and_energy(layout: Layout) -> None:
    layout.row("Power and energy").add(
        timeseries(
            "GPU power",
            [(f"powerplane_gpu_power_watts{{{S}}}", NAME)],
            "watt",
            description="Instantaneous board power reported by NVML.",
        ),
        timeseries(
            "GPU power over enforced limit",
            [
                (
                    f"powerplane_gpu_power_watts{{{S}}} / on(node, gpu) "
                    f'powerplane_gpu_power_limit_watts{{{S}, kind="enforced"}}',
                    NAME,
                )
            ],
            "percentunit",
            thresholds=steps(*THRESHOLDS["gpu_power_over_limit_ratio"]),
            description="Power as a share of the limit the driver enforces (caps included).",
        ),
    )
    layout.add(
        timeseries(
            "GPU power limits",
            [(f"powerplane_gpu_power_limit_watts{{{S}}}", NAME + " {{kind}}")],
            "watt",
            description="Current, enforced, default, minimum and maximum power limits.",
        ),
        bargauge(
            "GPU energy in range",
            [(f"increase(powerplane_gpu_energy_joules_total{{{S}}}[$__range]) / 3.6e6", NAME)],
            "kwatth",
            description="Energy each GPU used over the dashboard's time range.",
        ),
    )


def _thermals_and_load(layout: Layout) -> None:
    layout.row("Thermals and load").add(
        timeseries(
            "GPU temperature",
            [(f"powerplane_gpu_temperature_celsius{{{S}}}", NAME + " {{sensor}}")],
            "celsius",
            thresholds=steps(*THRESHOLDS["gpu_temperature_celsius"]),
            description="Alerts: warning above 90 °C, critical above 95 °C.",
        ),
        timeseries(
            "GPU utilisation",
            [(f"powerplane_gpu_utilization_ratio{{{S}}}", NAME)],
            "percentunit",
            max_value=1,
        ),
    )
    layout.add(
        timeseries(
            "GPU memory used",
            [
                (
                    f"powerplane_gpu_memory_used_bytes{{{S}}} / on(node, gpu) "
                    f"powerplane_gpu_memory_total_bytes{{{S}}}",
                    NAME,
                )
            ],
            "percentunit",
            max_value=1,
            thresholds=steps(*THRESHOLDS["gpu_memory_ratio"]),
            description="Used over total framebuffer memory; the alert fires above 95 %.",
        ),
        timeseries(
            "SM clock",
            [(f"powerplane_gpu_sm_clock_hertz{{{S}}}", NAME)],
            "hertz",
        ),
    )


def _throttling_and_errors(layout: Layout) -> None:
    layout.row("Throttling and errors").add(
        state_timeline(
            "Clock event (throttle) reasons",
            [(f"powerplane_gpu_clock_event_active{{{S}}}", NAME + " {{reason}}")],
            "bool_on_off",
            thresholds=steps(1, colors=("orange",)),
            description="Which reasons hold the clocks down (power cap, thermal, ...).",
        ),
    )
    layout.add(
        timeseries(
            "XID errors",
            [(f"increase(powerplane_gpu_xid_errors_total{{{S}}}[$__rate_interval])", NAME + " XID {{xid}}")],
            "short",
            bars=True,
            description="XID events reported by the driver (counted, never a sticky gauge).",
        ),
        timeseries(
            "ECC errors",
            [(f"increase(powerplane_gpu_ecc_errors_total{{{S}}}[$__rate_interval])", NAME + " {{type}}")],
            "short",
            bars=True,
        ),
    )


def _inventory(layout: Layout) -> None:
    layout.row("Inventory").add(
        table(
            "GPUs",
            [(f"powerplane_gpu_info{{{S}}}", NAME)],
            "none",
            hide=("Time", "__name__", "instance", "job", "Value"),
            w=24,
        ),
    )


def build() -> g.Dashboard:
    layout = Layout()
    _power_and_energy(layout)
    _thermals_and_load(layout)
    _throttling_and_errors(layout)
    _inventory(layout)
    return dashboard(
        UID,
        "Per-GPU power, energy, temperatures, utilisation, memory, clocks, throttle reasons and errors.",
        layout,
        ["cluster", "row", "rack", "node", "gpu"],
    )
