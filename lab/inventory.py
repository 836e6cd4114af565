"""The demo cluster's inventory, and the demo component serving it.

``demo_inventory`` writes down the lab's layout (``powerplane.lab.model.demo_layout``): one row,
two nodes a rack, each rack with an A- and a B-feed PDU (a node's supplies alternate between
them, one outlet each), its power budget and the in-row cooler serving it, and each node's GPUs.
Components that start simulated BMCs, PDUs or coolers publish their addresses in ``ctx.shared``
(``bmc_addresses``, ``pdu_addresses``, ``cooler_addresses``, and ``snmp_auths`` naming each
device's SNMP auth) before this component runs, and the inventory names them so ``powerplane
inventory sd`` yields their probe targets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .demo import DemoContext
from .fakenvml import PROFILES
from .model import NODES_PER_RACK, Layout, demo_layout, rack_of

__all__ = ["NODES_PER_RACK", "demo_inventory", "inventory_component", "rack_of"]


def _probe(name: str, addresses: Mapping[str, str] | None, auths: Mapping[str, str] | None) -> dict[str, str]:
    if not addresses or name not in addresses:
        return {}
    return {"address": addresses[name], "auth": (auths or {}).get(name, "public")}


def demo_inventory(
    nodes: Sequence[str],
    budget_watts: float | None = None,
    bmc_addresses: Mapping[str, str] | None = None,
    pdu_addresses: Mapping[str, str] | None = None,
    cooler_addresses: Mapping[str, str] | None = None,
    market_area: str = "DE-LU",
    snmp_auths: Mapping[str, str] | None = None,
    layout: Layout | None = None,
) -> dict[str, Any]:
    """An inventory document (as loaded from YAML) for ``nodes`` laid out as the lab lays them.

    ``budget_watts`` gives every rack that budget instead of the layout's.
    """
    layout = layout or demo_layout(nodes)
    doc: dict[str, Any] = {
        "clusters": [{"name": "demo", "market_area": market_area}],
        "rows": [{"name": "row-a", "cluster": "demo"}],
        "racks": [
            {"name": r.name, "row": r.row, "power_budget_watts": budget_watts or r.budget_w}
            for r in layout.racks
        ],
        "pdus": [],
        "coolers": [],
        "nodes": [],
    }
    for pdu in layout.pdus:
        entry: dict[str, Any] = {
            "name": pdu.name,
            "rack": pdu.rack,
            "rated_power_watts": pdu.rated_w,
            "phase_rated_current_amperes": pdu.rated_a,
        }
        doc["pdus"].append({**entry, **_probe(pdu.name, pdu_addresses, snmp_auths)})
    for cooler in layout.coolers:
        entry = {"name": cooler.name, "racks": list(cooler.racks)}
        doc["coolers"].append({**entry, **_probe(cooler.name, cooler_addresses, snmp_auths)})
    for spec in layout.nodes:
        node: dict[str, Any] = {
            "name": spec.name,
            "rack": spec.rack,
            "partition": "gpu" if spec.gpus else "cpu",
            "pdu_outlets": [{"pdu": pdu, "outlet": str(o.number)} for pdu, o in layout.outlets_of(spec.name)],
        }
        if spec.gpus:
            ((profile, _count),) = Counter(g.profile for g in spec.gpus).most_common(1)
            node["gpus"] = {"count": len(spec.gpus), "model": PROFILES[profile].name.replace(" ", "-")}
        if bmc_addresses and spec.name in bmc_addresses:
            node["bmc"] = {"address": bmc_addresses[spec.name], "auth": "demo"}
        doc["nodes"].append(node)
    return doc


async def inventory_component(ctx: DemoContext) -> None:
    """Write the demo's inventory.yaml and serve it with the inventory exporter."""
    from powerplane.exporters.inventory.config import KIND
    from powerplane.exporters.inventory.exporter import make_server

    doc = demo_inventory(
        ctx.nodes,
        bmc_addresses=ctx.shared.get("bmc_addresses"),
        pdu_addresses=ctx.shared.get("pdu_addresses"),
        cooler_addresses=ctx.shared.get("cooler_addresses"),
        snmp_auths=ctx.shared.get("snmp_auths"),
        layout=ctx.cluster().layout,
    )
    path = ctx.workdir / "inventory.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    inventory = KIND.load(path)
    ctx.shared["inventory"] = inventory
    ctx.shared["inventory_path"] = path
    address = await ctx.serve(make_server(path, inventory), "inventory exporter")
    ctx.scrape_configs.append(
        {"job_name": "powerplane-inventory", "static_configs": [{"targets": [address]}]}
    )
