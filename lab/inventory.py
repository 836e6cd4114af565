"""The demo cluster's inventory, and the demo component serving it.

``demo_inventory`` lays the demo's nodes out two per rack (one row, one cluster), each rack with
a metered PDU feeding its nodes' outlets and a power budget; components that start simulated
BMCs, PDUs or coolers publish their addresses in ``ctx.shared`` (``bmc_addresses``,
``pdu_addresses``, ``cooler_addresses``, and ``snmp_auths`` naming each device's SNMP auth)
before this component runs, and the inventory names
them so ``powerplane inventory sd`` yields their probe targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .demo import DemoContext

NODES_PER_RACK = 2


def rack_of(index: int) -> str:
    return f"rack-{index // NODES_PER_RACK + 1:02d}"


def demo_inventory(
    nodes: Sequence[str],
    budget_watts: float = 4000.0,
    bmc_addresses: Mapping[str, str] | None = None,
    pdu_addresses: Mapping[str, str] | None = None,
    cooler_addresses: Mapping[str, str] | None = None,
    market_area: str = "DE-LU",
    snmp_auths: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An inventory document (as loaded from YAML) for ``nodes``."""
    racks = sorted({rack_of(i) for i in range(len(nodes))})
    doc: dict[str, Any] = {
        "clusters": [{"name": "demo", "market_area": market_area}],
        "rows": [{"name": "row-a", "cluster": "demo"}],
        "racks": [{"name": r, "row": "row-a", "power_budget_watts": budget_watts} for r in racks],
        "pdus": [],
        "coolers": [],
        "nodes": [],
    }
    for rack in racks:
        pdu: dict[str, Any] = {
            "name": f"pdu-{rack}",
            "rack": rack,
            "rated_power_watts": 7360.0,
            "phase_rated_current_amperes": 32.0,
        }
        if pdu_addresses and pdu["name"] in pdu_addresses:
            pdu.update(address=pdu_addresses[pdu["name"]], auth=(snmp_auths or {}).get(pdu["name"], "public"))
        doc["pdus"].append(pdu)
    for name, address in (cooler_addresses or {}).items():
        auth = (snmp_auths or {}).get(name, "public")
        doc["coolers"].append({"name": name, "racks": racks, "address": address, "auth": auth})
    for i, node in enumerate(nodes):
        entry: dict[str, Any] = {
            "name": node,
            "rack": rack_of(i),
            "partition": "cpu",
            "pdu_outlets": [{"pdu": f"pdu-{rack_of(i)}", "outlet": str(i % NODES_PER_RACK + 1)}],
        }
        if bmc_addresses and node in bmc_addresses:
            entry["bmc"] = {"address": bmc_addresses[node], "auth": "demo"}
        doc["nodes"].append(entry)
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
