"""The inventory's metrics: facts declared in inventory.yaml, not measurements.

Joins whose names the design fixes (``powerplane_node_info``, ``powerplane_pdu_outlet_info``)
keep them; declared facts about devices that an exporter also measures carry the
``powerplane_inventory_`` prefix, so ``powerplane_pdu_*`` is always the PDU's own reading.
"""

from __future__ import annotations

from ..runtime.metrics import MetricSpec

#: What docs/METRICS.md's "source" column says of every inventory metric.
SOURCE = "inventory (declared)"

NODE_INFO = MetricSpec(
    "powerplane_node_info",
    "info",
    "Where a node sits and how its BMC is reached (constant 1; join on node).",
    ("node", "rack", "row", "cluster", "bmc", "partition"),
    source=SOURCE,
)
NODE_GPUS = MetricSpec(
    "powerplane_node_gpus",
    "gauge",
    "GPUs the node is expected to have, by model.",
    ("node", "model"),
    source=SOURCE,
)
PDU_OUTLET_INFO = MetricSpec(
    "powerplane_pdu_outlet_info",
    "info",
    "Which node a PDU outlet feeds (constant 1; join on pdu and outlet).",
    ("pdu", "outlet", "node"),
    source=SOURCE,
)
PDU_INFO = MetricSpec(
    "powerplane_inventory_pdu_info",
    "info",
    "Which rack a PDU is in (constant 1; join on pdu).",
    ("pdu", "rack", "row", "cluster"),
    source=SOURCE,
)
PDU_RATED_POWER = MetricSpec(
    "powerplane_inventory_pdu_rated_power_watts",
    "gauge",
    "Rated power of the PDU, as the inventory declares it.",
    ("pdu",),
    source=SOURCE,
)
PDU_PHASE_RATED_CURRENT = MetricSpec(
    "powerplane_inventory_pdu_phase_rated_current_amperes",
    "gauge",
    "Rated current of each phase of the PDU, as the inventory declares it.",
    ("pdu",),
    source=SOURCE,
)
RACK_BUDGET = MetricSpec(
    "powerplane_rack_power_budget_watts",
    "gauge",
    "Power budget of the rack (from the inventory).",
    ("rack", "row", "cluster"),
    source=SOURCE,
)
COOLER_RACK_INFO = MetricSpec(
    "powerplane_cooler_rack_info",
    "info",
    "A rack the in-row cooler serves (constant 1).",
    ("cooler", "rack"),
    source=SOURCE,
)
CLUSTER_INFO = MetricSpec(
    "powerplane_cluster_info",
    "info",
    "The cluster's electricity market area, for cost (constant 1; join on area).",
    ("cluster", "area"),
    source=SOURCE,
)
METRICS = (
    NODE_INFO,
    NODE_GPUS,
    PDU_OUTLET_INFO,
    PDU_INFO,
    PDU_RATED_POWER,
    PDU_PHASE_RATED_CURRENT,
    RACK_BUDGET,
    COOLER_RACK_INFO,
    CLUSTER_INFO,
)
