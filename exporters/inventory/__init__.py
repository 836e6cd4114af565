"""The site inventory: which node sits in which rack, row and cluster, fed by which PDU outlets.

Exporters never attach site labels; rules and dashboards join their series on the info
metrics served here.  One ``inventory.yaml`` drives both the joins (``powerplane exporter
inventory --config``) and the probe targets (``powerplane inventory sd --config --out DIR``
writes Prometheus file_sd JSON for the Redfish and SNMP probes, labelled with the same names).

    powerplane_node_info{bmc="10.0.1.1",cluster="demo",node="n01",partition="gpu",rack="r1",row="a"} 1
    powerplane_node_gpus{model="H100-SXM5",node="node-01"} 8
    powerplane_pdu_outlet_info{node="node-01",outlet="1",pdu="pdu-r1-a"} 1
    powerplane_inventory_pdu_info{cluster="demo",pdu="pdu-r1-a",rack="r1",row="a"} 1
    powerplane_inventory_pdu_rated_power_watts{pdu="pdu-r1-a"} 17300
    powerplane_inventory_pdu_phase_rated_current_amperes{pdu="pdu-r1-a"} 32
    powerplane_rack_power_budget_watts{cluster="demo",rack="r1",row="a"} 12000
    powerplane_cooler_rack_info{cooler="irc-1",rack="r1"} 1
    powerplane_cluster_info{area="DE-LU",cluster="demo"} 1

The file is re-read when it changes; a change that does not validate keeps the last good
inventory in service and marks the ``inventory`` collector failed until it is fixed.
"""

from powerplane.components import Component

COMPONENT = Component(
    name="inventory",
    order=60,
    exporter="powerplane.exporters.inventory.exporter:command",
    commands=(("inventory", "powerplane.exporters.inventory.exporter:group"),),
    config_kinds=(("inventory", "powerplane.exporters.inventory.config:KIND"),),
    metrics=("powerplane.exporters.inventory.metrics:METRICS",),
    demo="powerplane.lab.inventory:inventory_component",
)
