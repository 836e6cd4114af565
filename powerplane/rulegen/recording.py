"""Recording rules: node power from the best source, its sums per rack/row/cluster, cost,
attribution to pods and jobs, and each node's status.

Node input power comes from the best source available per node: the BMC (Redfish), else the sum
of the PDU outlets that feed the node (via ``powerplane_pdu_outlet_info``), else RAPL plus GPU
power.
"""

from __future__ import annotations

from .config import RulesConfig
from .model import NODE_INFO, Family, Recording, sel

_BEST = (
    # Precedence: the BMC measures the node's input; PDU outlets measure the same feed but may be
    # shared or miswired; RAPL + GPU misses fans, disks, NICs and PSU losses.
    'label_replace(max by (node) (powerplane_redfish_power_watts), "source", "bmc", "", "")\n'
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


def _node_power(c: RulesConfig) -> list[Recording]:
    return [
        Recording(
            "node:powerplane_rapl_power_watts:sum",
            "sum by (node) (rate(powerplane_rapl_energy_joules_total"
            f"{sel(c.rapl_zone_selector)}[{c.rate_window}]))",
        ),
        Recording("node:powerplane_gpu_power_watts:sum", "sum by (node) (powerplane_gpu_power_watts)"),
        Recording(
            "node:powerplane_pdu_power_watts:sum",
            "sum by (node) (\n  powerplane_pdu_outlet_power_watts\n"
            "  * on (pdu, outlet) group_left (node)"
            " max by (pdu, outlet, node) (powerplane_pdu_outlet_info)\n)",
        ),
        Recording("node:powerplane_power_watts:best", _BEST),
    ]


def _site_power(_c: RulesConfig) -> list[Recording]:
    return [
        Recording(
            "rack:powerplane_power_watts:sum",
            "sum by (rack, row, cluster) (\n  node:powerplane_power_watts:best\n"
            f"  * on (node) group_left (rack, row, cluster) {NODE_INFO}\n)",
        ),
        Recording(
            "row:powerplane_power_watts:sum", "sum by (row, cluster) (rack:powerplane_power_watts:sum)"
        ),
        Recording("cluster:powerplane_power_watts:sum", "sum by (cluster) (row:powerplane_power_watts:sum)"),
        Recording(
            "rack:powerplane_pdu_power_watts:sum",
            "sum by (rack) (\n  powerplane_pdu_power_watts\n"
            "  * on (pdu) group_left (rack) max by (pdu, rack) (powerplane_pdu_info)\n)",
        ),
        Recording(
            "rack:powerplane_power_budget_ratio",
            # The PDUs meter what the rack's feed carries; without them the nodes' sum stands in.
            "(\n  rack:powerplane_pdu_power_watts:sum\n"
            "  or on (rack) sum by (rack) (rack:powerplane_power_watts:sum)\n)\n"
            "/ on (rack) (max by (rack) (powerplane_rack_power_budget_watts) > 0)",
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
        ),
        Recording(
            "cluster:powerplane_energy_cost_eur_per_hour:sum",
            "sum by (cluster) (\n  node:powerplane_energy_cost_eur_per_hour:sum\n"
            "  * on (node) group_left (cluster) max by (node, cluster) (powerplane_node_info)\n)",
        ),
        Recording(
            "cluster:powerplane_gpu_utilization_ratio:avg",
            f"avg by (cluster) (\n  {util}\n"
            "  * on (node) group_left (cluster) max by (node, cluster) (powerplane_node_info)\n)",
        ),
        Recording(
            "cooler:powerplane_cooling_output_over_it_power:ratio",
            "max by (cooler) (powerplane_cooling_output_watts)\n/ on (cooler) (\n"
            "  sum by (cooler) (\n    max by (cooler, rack) (powerplane_cooler_rack_info)\n"
            "    * on (rack) group_left () sum by (rack) (rack:powerplane_power_watts:sum)\n  ) > 0\n)",
        ),
    ]


def _attribution(level: str, labels: str, info: str) -> list[Recording]:
    # A GPU shared by several pods or jobs counts fully for each of them.
    owners = f"max by (node, gpu, {labels}) ({info})"
    return [
        Recording(
            f"{level}:powerplane_gpu_power_watts:sum",
            f"sum by ({labels}) (\n  {owners}\n"
            "  * on (node, gpu) group_left () max by (node, gpu) (powerplane_gpu_power_watts)\n)",
        ),
        Recording(
            f"{level}:powerplane_gpu_energy_joules:increase1h",
            f"sum by ({labels}) (\n  {owners}\n"
            "  * on (node, gpu) group_left ()"
            " sum by (node, gpu) (increase(powerplane_gpu_energy_joules_total[1h]))\n)",
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
)


def recording_rules(c: RulesConfig) -> list[Recording]:
    return [
        *_node_power(c),
        *_site_power(c),
        *_cost_and_use(c),
        *_attribution("pod", "namespace, pod", "powerplane_gpu_pod_info"),
        *_attribution("hpc_job", "hpc_job", "powerplane_gpu_job_info"),
        _STATUS,
    ]


FAMILY = Family("recording", tests="recording.yaml", recording=recording_rules)
