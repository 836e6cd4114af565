"""Alerts on GPUs (temperature, power, memory, XID and ECC errors) and on nodes as their BMC sees
them (inlet air, power limit, node power reading, power supplies and their redundancy, fans)."""

from __future__ import annotations

from .config import RulesConfig
from .model import Alert, Family, fmt, new_errors, sel

_GPU = "GPU {{ $labels.gpu }} on {{ $labels.node }}"
_CRITICAL = 'powerplane_redfish_log_newest_entry_timestamp_seconds{severity="critical"}'


#: GPUs powerplane's controller holds at a cap: its desired caps carry the GPU exporter's ``gpu``
#: label (empty for the CPU packages' caps, which match no GPU).
CONTROLLER_GPU_CAPS = "powerplane_controller_cap_desired_watts"


def _gpu_power(c: RulesConfig) -> Alert:
    if c.gpu_power_watts is not None:
        expr = f"powerplane_gpu_power_watts > {fmt(c.gpu_power_watts)}"
        text = f"above {fmt(c.gpu_power_watts)} W"
    else:
        # A GPU held at a cap powerplane's controller set is doing what it was told: that is not
        # an alert.  One at a limit someone else lowered, or at its own limit, still alerts.
        expr = (
            "powerplane_gpu_power_watts\n>= on (node, gpu) group_left ()\n"
            f"  {fmt(c.gpu_power_limit_ratio)} * max by (node, gpu) "
            f"(powerplane_gpu_power_limit_watts{sel(c.gpu_power_limit_selector)})\n"
            f"unless on (node, gpu) {CONTROLLER_GPU_CAPS}"
        )
        text = f"at {fmt(c.gpu_power_limit_ratio * 100)} % or more of its power limit"
    return Alert(
        "PowerplaneGpuPowerNearLimit",
        expr,
        "15m",
        "warning",
        f"{_GPU} runs {text}",
        f"{_GPU} has drawn {{{{ $value | humanize }}}}W, {text}, for 15 minutes; it is power-throttled.",
    )


def _gpu(c: RulesConfig) -> list[Alert]:
    temp = "powerplane_gpu_temperature_celsius" + sel(c.gpu_temperature_selector)
    ecc = "powerplane_gpu_ecc_errors_total" + sel(c.gpu_ecc_uncorrected_selector)
    return [
        Alert(
            "PowerplaneGpuTemperatureHigh",
            f"{temp} > {fmt(c.gpu_temperature_warning_celsius)}",
            "5m",
            "warning",
            f"{_GPU} is above {fmt(c.gpu_temperature_warning_celsius)} °C",
            f"{_GPU} has been at {{{{ $value }}}} °C for 5 minutes; it will throttle its clocks soon.",
        ),
        Alert(
            "PowerplaneGpuTemperatureCritical",
            f"{temp} > {fmt(c.gpu_temperature_critical_celsius)}",
            "1m",
            "critical",
            f"{_GPU} is above {fmt(c.gpu_temperature_critical_celsius)} °C",
            f"{_GPU} is at {{{{ $value }}}} °C, close to its slowdown/shutdown temperature.",
        ),
        _gpu_power(c),
        Alert(
            "PowerplaneGpuMemoryNearlyFull",
            "powerplane_gpu_memory_used_bytes / powerplane_gpu_memory_total_bytes"
            f" > {fmt(c.gpu_memory_ratio)}",
            "15m",
            "warning",
            f"{_GPU} has more than {fmt(c.gpu_memory_ratio * 100)} % of its memory in use",
            f"{_GPU} uses {{{{ $value | humanizePercentage }}}} of its memory; jobs may fail to allocate.",
        ),
        Alert(
            "PowerplaneGpuXidErrors",
            new_errors("powerplane_gpu_xid_errors_total", c.error_window),
            "0s",
            "warning",
            f"{_GPU} reported XID {{{{ $labels.xid }}}} errors",
            f"{_GPU} reported XID {{{{ $labels.xid }}}} in the last {c.error_window}.",
        ),
        Alert(
            "PowerplaneGpuEccUncorrectedErrors",
            new_errors(ecc, c.error_window),
            "0s",
            "critical",
            f"{_GPU} reported uncorrected ECC errors",
            f"{_GPU} reported uncorrected ECC errors ({{{{ $labels.type }}}}) in the last {c.error_window}.",
        ),
    ]


def _node(c: RulesConfig) -> list[Alert]:
    inlet = "powerplane_redfish_temperature_celsius" + sel(c.inlet_selector)
    health = "powerplane_redfish_health"
    return [
        Alert(
            "PowerplaneNodeInletTemperatureOutOfRange",
            f"{inlet} > {fmt(c.inlet_max_celsius)}\nor\n{inlet} < {fmt(c.inlet_min_celsius)}",
            "15m",
            "warning",
            "Inlet air of {{ $labels.node }} is outside the ASHRAE recommended range",
            "Sensor {{ $labels.sensor }} of {{ $labels.node }} reads {{ $value }} °C, outside "
            f"{fmt(c.inlet_min_celsius)}-{fmt(c.inlet_max_celsius)} °C, for 15 minutes.",
        ),
        Alert(
            "PowerplaneNodePowerAboveLimit",
            # Each chassis against its own cap (a blade's, not its enclosure's).
            "powerplane_redfish_power_watts\n> on (instance, chassis) group_left ()\n"
            "  (max by (instance, chassis) (powerplane_redfish_power_limit_watts) > 0)",
            "10m",
            "warning",
            "{{ $labels.node }} draws more than its BMC's enforced power cap",
            "{{ $labels.node }} draws {{ $value | humanize }}W, above the power cap its BMC enforces, "
            "for 10 minutes.",
        ),
        Alert(
            # A BMC still answering but without node power (firmware update, a chassis that lost
            # its power resource): the probe is up, so no target-down alert says it.
            "PowerplaneBmcPowerReadingLost",
            "max by (instance, node, chassis) (max_over_time(powerplane_redfish_power_watts[1d]))\n"
            "unless on (instance, chassis) powerplane_redfish_power_watts\n"
            "and on (instance) powerplane_target_up == 1",
            "15m",
            "warning",
            "The BMC of {{ $labels.node }} no longer reports node power",
            "The BMC {{ $labels.instance }} of {{ $labels.node }} answers probes but has reported no node "
            "power for 15 minutes, after reporting it in the last day; its power collector fails.",
        ),
        Alert(
            # A new newest critical entry; a log seen for the first time alerts only on an entry
            # under an hour old, so starting the exporter does not replay a BMC's history.
            "PowerplaneBmcCriticalLogEntry",
            f"changes({_CRITICAL}[15m]) > 0\nor\n({_CRITICAL} unless {_CRITICAL} offset 15m) > time() - 3600",
            "0s",
            "warning",
            "The BMC of {{ $labels.node }} logged a critical event",
            "The BMC {{ $labels.instance }} of {{ $labels.node }} has a new critical entry in its "
            "{{ $labels.log }} log; read it on the BMC.",
        ),
        Alert(
            "PowerplanePsuUnhealthy",
            f"{health}{sel(c.psu_health_selector, c.unhealthy_state_selector)} == 1",
            "5m",
            "warning",
            "Power supply {{ $labels.resource }} of {{ $labels.node }} is {{ $labels.state }}",
            "The BMC of {{ $labels.node }} reports {{ $labels.resource }} as {{ $labels.state }}; "
            "the node may have lost power redundancy.",
        ),
        Alert(
            "PowerplanePsuRedundancyLost",
            "powerplane_redfish_psu_redundancy == 0",
            "5m",
            "warning",
            "{{ $labels.node }} has lost power supply redundancy",
            "The BMC of {{ $labels.node }} reports its PSU redundancy group {{ $labels.group }} "
            "({{ $labels.mode }}) without redundancy for 5 minutes: one more PSU or feed failure "
            "powers the node off.",
        ),
        Alert(
            "PowerplaneFanUnhealthy",
            f"{health}{sel(c.fan_health_selector, c.unhealthy_state_selector)} == 1",
            "5m",
            "warning",
            "Fan {{ $labels.resource }} of {{ $labels.node }} is {{ $labels.state }}",
            "The BMC of {{ $labels.node }} reports {{ $labels.resource }} as {{ $labels.state }}.",
        ),
    ]


def alerts(c: RulesConfig) -> list[Alert]:
    return [*_gpu(c), *_node(c)]


FAMILY = Family("gpu-node", tests="alerts-gpu-node.yaml", alerts=alerts)
