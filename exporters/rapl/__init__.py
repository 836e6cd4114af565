"""CPU energy and power limits from the Linux powercap sysfs (Intel RAPL and AMD Zen).

Zones are discovered under ``<sysfs>/class/powercap``: packages ``intel-rapl:N`` (N may be
hexadecimal, ``intel-rapl:a``), their subzones ``intel-rapl:N:M`` (core, uncore, dram), psys,
and AMD Zen zones, which have an energy counter but no constraint files.  The ``zone`` label
is the zone's name without its socket suffix and ``index`` is the top-level zone number, so
``sum by (zone)`` adds sockets up.  Limits are labelled by the constraint's *name*
(``long_term``, ``short_term``, ``peak_power``), never by its position.

``energy_uj`` wraps at ``max_energy_range_uj``; the counter exported here adds the energy
across a wrap instead of dropping to zero (Prometheus would count the drop as a reset and lose
up to a whole range).  Since Linux 5.10 ``energy_uj`` is readable by root only; without it the
limits are still exported and the cause is logged once.

    powerplane_rapl_energy_joules_total{index="0",zone="package"} 123456.789
    powerplane_rapl_energy_joules_total{index="0",zone="dram"} 2345.6
    powerplane_rapl_power_limit_watts{constraint="long_term",index="0",zone="package"} 250.0
    powerplane_rapl_time_window_seconds{constraint="long_term",index="0",zone="package"} 0.999424
    powerplane_rapl_max_power_watts{constraint="long_term",index="0",zone="package"} 350.0
    powerplane_rapl_zone_enabled{index="0",zone="package"} 1.0
"""

from powerplane.components import Component

COMPONENT = Component(
    name="rapl",
    order=10,
    exporter="powerplane.exporters.rapl.exporter:command",
    metrics=("powerplane.exporters.rapl.metrics:METRICS",),
    demo="powerplane.lab.demo:rapl_component",
)
