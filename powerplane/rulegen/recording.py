"""Recording rules: node power from the best source, its sums per rack/row/cluster, cost and each
node's status (attribution to jobs and pods is the accounting family's).

Node input power comes from the best source available per node: the BMC (Redfish), else the sum
of the PDU outlets that feed the node (via ``powerplane_pdu_outlet_info``), else RAPL plus GPU
power.
"""

from __future__ import annotations

from .config import RulesConfig
from .model import NODE_INFO, Family, Recording, sel

_BEST = (
    # Precedence: the BMC measures the node's input; PDU outlets measure the same feed but may be
    # shared or miswired; RAPL + GPU misses fans, disks, NICs and PSU losses.  A BMC with several
    # chassis (blades) reports node power per chassis: summed per scrape (an enclosure's own
    # reading is another metric), then the max over replicas scraping the same BMC.
    "label_replace(\n  max by (node) (sum without (chassis) (powerplane_redfish_power_watts)),\n"
    '  "source", "bmc", "", ""\n)\n'
    "or\nlabel_replace(\n"
    "  node:powerplane_pdu_power_watts:sum unless on (node) powerplane_redfish_power_watts,\n"
    '  "source", "pdu", "", ""\n)\n'
    "or\nlabel_replace(\n"
    "  (\n"
    "    (node:powerplane_rapl_power_watts:sum + on (node) node:powerplane_gpu_power_watts:sum)\n"
    "    or node:powerplane_rapl_power_watts:sum\n"
    "    or node:powerplane_gpu_power_watts:sum\n"
    "  )\n"
    "  unless on (node) powerplane_redfish_power_watts\n"
    "  unless on (node) node:powerplane_pdu_power_watts:sum,\n"
    '  "source", "rapl_gpu", "", ""\n)'
)
_NODE = ("node",)


def _node_power(c: RulesConfig) -> list[Recording]:
    return [
        Recording(
            "node:powerplane_rapl_power_watts:sum",
            "sum by (node) (rate(powerplane_rapl_energy_joules_total"
            f"{sel(c.rapl_zone_selector)}[{c.rate_window}]))",
            _NODE,
            "CPU package and DRAM power of the node from RAPL energy counters (rate over rate_window).",
        ),
        Recording(
            "node:powerplane_gpu_power_watts:sum",
            "sum by (node) (powerplane_gpu_power_watts)",
            _NODE,
            "Sum of the node's GPU power.",
        ),
        Recording(
            "node:powerplane_pdu_power_watts:sum",
            "sum by (node) (\n  powerplane_pdu_outlet_power_watts\n"
            "  * on (pdu, outlet) group_left (node)"
            " max by (pdu, outlet, node) (powerplane_pdu_outlet_info)\n)",
            _NODE,
            "Sum of the PDU outlets feeding the node (through powerplane_pdu_outlet_info).",
        ),
        Recording(
            "node:powerplane_power_watts:best",
            _BEST,
            ("node", "source"),
            "Node input power from the best source: bmc (Redfish), else pdu (its outlets), else "
            "rapl_gpu (RAPL + GPU, which misses fans, disks, NICs and PSU losses).",
            {"source": ("bmc", "pdu", "rapl_gpu")},
        ),
    ]


def _site_power(_c: RulesConfig) -> list[Recording]:
    return [
        Recording(
            "rack:powerplane_power_watts:sum",
            "sum by (rack, row, cluster) (\n  node:powerplane_power_watts:best\n"
            f"  * on (node) group_left (rack, row, cluster) {NODE_INFO}\n)",
            ("rack", "row", "cluster"),
            "Sum of the best power of the rack's nodes.",
        ),
        Recording(
            "row:powerplane_power_watts:sum",
            "sum by (row, cluster) (rack:powerplane_power_watts:sum)",
            ("row", "cluster"),
            "Sum of the row's racks.",
        ),
        Recording(
            "cluster:powerplane_power_watts:sum",
            "sum by (cluster) (row:powerplane_power_watts:sum)",
            ("cluster",),
            "Sum of the cluster's rows.",
        ),
        Recording(
            "rack:powerplane_pdu_power_watts:sum",
            "sum by (rack) (\n  powerplane_pdu_power_watts\n"
            "  * on (pdu) group_left (rack) max by (pdu, rack) (powerplane_inventory_pdu_info)\n)",
            ("rack",),
            "Sum of the input power of the rack's PDUs.",
        ),
        Recording(
            "rack:powerplane_power_budget_ratio",
            # The PDUs meter what the rack's feed carries; without them the nodes' sum stands in.
            "(\n  rack:powerplane_pdu_power_watts:sum\n"
            "  or on (rack) sum by (rack) (rack:powerplane_power_watts:sum)\n)\n"
            "/ on (rack) (max by (rack) (powerplane_rack_power_budget_watts) > 0)",
            ("rack",),
            "Rack power (its PDUs, else its nodes' sum) over the inventory's budget.",
        ),
    ]


def _cost_and_use(c: RulesConfig) -> list[Recording]:
    util = "powerplane_gpu_utilization_ratio" + sel(c.gpu_utilization_selector)
    price_by_node = (
        "max by (node, area) (powerplane_node_info"
        " * on (cluster) group_left (area) max by (cluster, area) (powerplane_cluster_info))"
    )
    return [
        Recording(
            "node:powerplane_energy_cost_eur_per_hour:sum",
            "sum by (node) (\n  node:powerplane_power_watts:best\n"
            f"  * on (node) group_left (area) {price_by_node}\n"
            "  * on (area) group_left () max by (area) (powerplane_market_price_eur_per_mwh)\n) / 1e6",
            _NODE,
            "Best node power at the current price of its cluster's market area, in EUR per hour.",
        ),
        Recording(
            "cluster:powerplane_energy_cost_eur_per_hour:sum",
            "sum by (cluster) (\n  node:powerplane_energy_cost_eur_per_hour:sum\n"
            "  * on (node) group_left (cluster) max by (node, cluster) (powerplane_node_info)\n)",
            ("cluster",),
            "Energy cost of the cluster's nodes, in EUR per hour.",
        ),
        Recording(
            "cluster:powerplane_gpu_utilization_ratio:avg",
            f"avg by (cluster) (\n  {util}\n"
            "  * on (node) group_left (cluster) max by (node, cluster) (powerplane_node_info)\n)",
            ("cluster",),
            "Mean GPU utilisation of the cluster.",
        ),
        Recording(
            "cooler:powerplane_cooling_output_over_it_power:ratio",
            "max by (cooler) (powerplane_cooling_output_watts)\n/ on (cooler) (\n"
            "  sum by (cooler) (\n    max by (cooler, rack) (powerplane_cooler_rack_info)\n"
            "    * on (rack) group_left () sum by (rack) (rack:powerplane_power_watts:sum)\n  ) > 0\n)",
            ("cooler",),
            "Cooling output over the IT power of the racks the cooler serves (a rack served by two "
            "coolers counts for both).",
        ),
    ]


_STATUS = Recording(
    "node:powerplane_status:state",
    # 2 offline: in the inventory but no power from any source; 1 degraded: a warning or critical
    # alert names the node; 0 healthy.  `or` keeps the first match per node.
    "2 * (max by (node) (powerplane_node_info) unless on (node) node:powerplane_power_watts:best)\n"
    "or\n(\n  max by (node) (powerplane_node_info)"
    " or max by (node) (node:powerplane_power_watts:best) * 0 + 1\n)\n"
    '  and on (node) ALERTS{alertstate="firing", severity=~"warning|critical", node!=""}\n'
    "or\n(max by (node) (powerplane_node_info)"
    " or max by (node) (node:powerplane_power_watts:best)) * 0",
    _NODE,
    "2 offline (in the inventory, no power from any source), 1 degraded (a firing warning or "
    "critical alert names the node), 0 healthy.",
)


def recording_rules(c: RulesConfig) -> list[Recording]:
    return [
        *_node_power(c),
        *_site_power(c),
        *_cost_and_use(c),
        _STATUS,
    ]


FAMILY = Family("recording", tests="recording.yaml", recording=recording_rules)
