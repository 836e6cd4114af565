"""The site inventory: which node sits in which rack, row and cluster, fed by which PDU outlets.

Exporters never attach site labels; rules and dashboards join their series on the info
metrics served here.  One ``inventory.yaml`` drives both the joins (``powerplane exporter
inventory --file``) and the probe targets (``powerplane inventory sd --file --out DIR``
writes Prometheus file_sd JSON for the Redfish and SNMP probes, labelled with the same names).

    powerplane_node_info{bmc="10.0.1.1",cluster="demo",node="n01",partition="gpu",rack="r1",row="a"} 1
    powerplane_node_gpus{model="H100-SXM5",node="node-01"} 8
    powerplane_pdu_outlet_info{node="node-01",outlet="1",pdu="pdu-r1-a"} 1
    powerplane_pdu_info{cluster="demo",pdu="pdu-r1-a",rack="r1",row="a"} 1
    powerplane_pdu_rated_power_watts{pdu="pdu-r1-a"} 17300
    powerplane_pdu_phase_rated_current_amperes{pdu="pdu-r1-a"} 32
    powerplane_rack_power_budget_watts{cluster="demo",rack="r1",row="a"} 12000
    powerplane_cooler_rack_info{cooler="irc-1",rack="r1"} 1
    powerplane_cluster_info{area="DE-LU",cluster="demo"} 1

The file is re-read when it changes; a change that does not validate keeps the last good
inventory in service and marks the ``inventory`` collector failed until it is fixed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from prometheus_client.core import Metric

from .runtime import (
    Collector,
    CollectorError,
    ConfigError,
    ConfigKind,
    Deadline,
    ExporterServer,
    Partial,
    run,
    strict_object,
)
from .runtime.cli import WebOptions, load_or_exit, web_options
from .runtime.metrics import MetricSpec

logger = logging.getLogger("powerplane.inventory")

DEFAULT_PORT = 9876

# --- schema -------------------------------------------------------------------------------------

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$"}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": r"^[^\s\"\\]+$"}
_PROBE = {
    "address": _TEXT,
    "module": _NAME,
    "auth": _NAME,
}

SCHEMA: dict[str, Any] = strict_object(
    {
        "clusters": {
            "type": "array",
            "minItems": 1,
            "items": strict_object({"name": _NAME, "market_area": _NAME}, required=("name",)),
        },
        "rows": {
            "type": "array",
            "items": strict_object({"name": _NAME, "cluster": _NAME}, required=("name", "cluster")),
        },
        "racks": {
            "type": "array",
            "items": strict_object(
                {
                    "name": _NAME,
                    "row": _NAME,
                    "power_budget_watts": {"type": "number", "exclusiveMinimum": 0},
                },
                required=("name", "row"),
            ),
        },
        "pdus": {
            "type": "array",
            "items": strict_object(
                {
                    "name": _NAME,
                    "rack": _NAME,
                    **_PROBE,
                    "rated_power_watts": {"type": "number", "exclusiveMinimum": 0},
                    "phase_rated_current_amperes": {"type": "number", "exclusiveMinimum": 0},
                },
                required=("name", "rack"),
            ),
        },
        "coolers": {
            "type": "array",
            "items": strict_object(
                {"name": _NAME, "racks": {"type": "array", "items": _NAME, "minItems": 1}, **_PROBE},
                required=("name", "racks"),
            ),
        },
        "nodes": {
            "type": "array",
            "items": strict_object(
                {
                    "name": _NAME,
                    "rack": _NAME,
                    "partition": _NAME,
                    "bmc": strict_object(_PROBE, required=("address",)),
                    "pdu_outlets": {
                        "type": "array",
                        "items": strict_object(
                            {
                                "pdu": _NAME,
                                "outlet": {"type": ["string", "integer"], "pattern": r"^\S{1,32}$"},
                            },
                            required=("pdu", "outlet"),
                        ),
                    },
                    "gpus": strict_object(
                        {"count": {"type": "integer", "minimum": 0, "maximum": 1024}, "model": _TEXT},
                        required=("count",),
                    ),
                },
                required=("name", "rack"),
            ),
        },
    },
    required=("clusters",),
)


@dataclass(frozen=True)
class Probe:
    """How a multi-target exporter reaches a device: its address and the module/auth names."""

    address: str
    module: str = ""
    auth: str = ""


@dataclass(frozen=True)
class Cluster:
    name: str
    market_area: str = ""


@dataclass(frozen=True)
class Rack:
    name: str
    row: str
    cluster: str
    power_budget_watts: float | None = None


@dataclass(frozen=True)
class Pdu:
    name: str
    rack: str
    probe: Probe | None = None
    rated_power_watts: float | None = None
    phase_rated_current_amperes: float | None = None


@dataclass(frozen=True)
class Cooler:
    name: str
    racks: tuple[str, ...]
    probe: Probe | None = None


@dataclass(frozen=True)
class Node:
    name: str
    rack: str
    partition: str = ""
    bmc: Probe | None = None
    pdu_outlets: tuple[tuple[str, str], ...] = ()
    gpu_count: int = 0
    gpu_model: str = ""


@dataclass(frozen=True)
class Inventory:
    clusters: tuple[Cluster, ...]
    rows: Mapping[str, str]  # row → cluster
    racks: Mapping[str, Rack]
    pdus: tuple[Pdu, ...]
    coolers: tuple[Cooler, ...]
    nodes: tuple[Node, ...]

    def rack_of(self, name: str) -> Rack:
        return self.racks[name]


def _probe(doc: Mapping[str, Any] | None) -> Probe | None:
    if not doc or "address" not in doc:
        return None
    return Probe(doc["address"], doc.get("module", ""), doc.get("auth", ""))


def _duplicates(kind: str, names: Iterable[str], errors: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            errors.append(f"{kind}: {name!r} is defined twice")
        seen.add(name)


def build(doc: Mapping[str, Any]) -> Inventory:
    """Check the cross references (every rack's row exists, ...) and build the inventory."""
    errors: list[str] = []
    clusters = tuple(Cluster(c["name"], c.get("market_area", "")) for c in doc["clusters"])
    _duplicates("clusters", (c.name for c in clusters), errors)
    cluster_names = {c.name for c in clusters}
    rows: dict[str, str] = {}
    _duplicates("rows", (r["name"] for r in doc.get("rows", [])), errors)
    for i, r in enumerate(doc.get("rows", [])):
        if r["cluster"] not in cluster_names:
            errors.append(f"rows.{i}.cluster: unknown cluster {r['cluster']!r}")
        rows[r["name"]] = r["cluster"]
    racks: dict[str, Rack] = {}
    _duplicates("racks", (r["name"] for r in doc.get("racks", [])), errors)
    for i, r in enumerate(doc.get("racks", [])):
        if r["row"] not in rows:
            errors.append(f"racks.{i}.row: unknown row {r['row']!r}")
        racks[r["name"]] = Rack(r["name"], r["row"], rows.get(r["row"], ""), r.get("power_budget_watts"))
    pdus = []
    _duplicates("pdus", (p["name"] for p in doc.get("pdus", [])), errors)
    for i, p in enumerate(doc.get("pdus", [])):
        if p["rack"] not in racks:
            errors.append(f"pdus.{i}.rack: unknown rack {p['rack']!r}")
        pdus.append(
            Pdu(
                p["name"],
                p["rack"],
                _probe(p),
                p.get("rated_power_watts"),
                p.get("phase_rated_current_amperes"),
            )
        )
    pdu_names = {p.name for p in pdus}
    coolers = []
    _duplicates("coolers", (c["name"] for c in doc.get("coolers", [])), errors)
    for i, c in enumerate(doc.get("coolers", [])):
        for j, rack in enumerate(c["racks"]):
            if rack not in racks:
                errors.append(f"coolers.{i}.racks.{j}: unknown rack {rack!r}")
        coolers.append(Cooler(c["name"], tuple(c["racks"]), _probe(c)))
    nodes = []
    _duplicates("nodes", (n["name"] for n in doc.get("nodes", [])), errors)
    fed: dict[tuple[str, str], str] = {}
    for i, n in enumerate(doc.get("nodes", [])):
        if n["rack"] not in racks:
            errors.append(f"nodes.{i}.rack: unknown rack {n['rack']!r}")
        outlets = []
        for j, o in enumerate(n.get("pdu_outlets", [])):
            key = (o["pdu"], str(o["outlet"]))
            if o["pdu"] not in pdu_names:
                errors.append(f"nodes.{i}.pdu_outlets.{j}.pdu: unknown pdu {o['pdu']!r}")
            elif key in fed:
                errors.append(
                    f"nodes.{i}.pdu_outlets.{j}: outlet {key[1]} of {key[0]} already feeds {fed[key]!r}"
                )
            fed[key] = n["name"]
            outlets.append(key)
        gpus = n.get("gpus", {})
        nodes.append(
            Node(
                n["name"],
                n["rack"],
                n.get("partition", ""),
                _probe(n.get("bmc")),
                tuple(outlets),
                gpus.get("count", 0),
                gpus.get("model", ""),
            )
        )
    if errors:
        raise ConfigError(errors)
    return Inventory(clusters, rows, racks, tuple(pdus), tuple(coolers), tuple(nodes))


KIND: ConfigKind[Inventory] = ConfigKind("inventory", SCHEMA, build)

# --- metrics ------------------------------------------------------------------------------------

NODE_INFO = MetricSpec(
    "powerplane_node_info",
    "info",
    "Where a node sits and how its BMC is reached (constant 1; join on node).",
    ("node", "rack", "row", "cluster", "bmc", "partition"),
)
NODE_GPUS = MetricSpec(
    "powerplane_node_gpus", "gauge", "GPUs the node is expected to have, by model.", ("node", "model")
)
PDU_OUTLET_INFO = MetricSpec(
    "powerplane_pdu_outlet_info",
    "info",
    "Which node a PDU outlet feeds (constant 1; join on pdu and outlet).",
    ("pdu", "outlet", "node"),
)
PDU_INFO = MetricSpec(
    "powerplane_pdu_info", "info", "Which rack a PDU is in (constant 1).", ("pdu", "rack", "row", "cluster")
)
PDU_RATED_POWER = MetricSpec(
    "powerplane_pdu_rated_power_watts", "gauge", "Rated power of the PDU (from the inventory).", ("pdu",)
)
PDU_PHASE_RATED_CURRENT = MetricSpec(
    "powerplane_pdu_phase_rated_current_amperes",
    "gauge",
    "Rated current of each phase of the PDU (from the inventory).",
    ("pdu",),
)
RACK_BUDGET = MetricSpec(
    "powerplane_rack_power_budget_watts",
    "gauge",
    "Power budget of the rack (from the inventory).",
    ("rack", "row", "cluster"),
)
COOLER_RACK_INFO = MetricSpec(
    "powerplane_cooler_rack_info", "info", "A rack the in-row cooler serves (constant 1).", ("cooler", "rack")
)
CLUSTER_INFO = MetricSpec(
    "powerplane_cluster_info",
    "info",
    "The cluster's electricity market area, for cost (constant 1; join on area).",
    ("cluster", "area"),
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


def render(inv: Inventory) -> list[Metric]:
    """The info metrics of an inventory (pure: also used by the tests and the rules benchmark)."""
    node_info, gpus, outlet, pdu_info, rated, phase_rated, budget, cooler, cluster = (
        spec.family() for spec in METRICS
    )
    for n in inv.nodes:
        rack = inv.racks[n.rack]
        node_info.add_metric(
            [n.name, rack.name, rack.row, rack.cluster, n.bmc.address if n.bmc else "", n.partition], 1.0
        )
        if n.gpu_count:
            gpus.add_metric([n.name, n.gpu_model], float(n.gpu_count))
        for pdu, number in n.pdu_outlets:
            outlet.add_metric([pdu, number, n.name], 1.0)
    for p in inv.pdus:
        rack = inv.racks[p.rack]
        pdu_info.add_metric([p.name, rack.name, rack.row, rack.cluster], 1.0)
        if p.rated_power_watts is not None:
            rated.add_metric([p.name], p.rated_power_watts)
        if p.phase_rated_current_amperes is not None:
            phase_rated.add_metric([p.name], p.phase_rated_current_amperes)
    for r in inv.racks.values():
        if r.power_budget_watts is not None:
            budget.add_metric([r.name, r.row, r.cluster], r.power_budget_watts)
    for c in inv.coolers:
        for rack_name in c.racks:
            cooler.add_metric([c.name, rack_name], 1.0)
    for cl in inv.clusters:
        if cl.market_area:
            cluster.add_metric([cl.name, cl.market_area], 1.0)
    return [node_info, gpus, outlet, pdu_info, rated, phase_rated, budget, cooler, cluster]


class InventoryFile:
    """An inventory file re-read when its modification time or size changes."""

    def __init__(self, path: Path, initial: Inventory | None = None) -> None:
        self.path = Path(path)
        self.current = initial
        self._stamp: tuple[int, int] | None = self._stat() if initial is not None else None
        self.error = ""

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> None:
        stamp = self._stat()
        if stamp is not None and stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.current = KIND.load(self.path)
            self.error = ""
        except ConfigError as exc:
            # Keep serving the last good inventory: a typo must not blank every join.
            self.error = "; ".join(f"{exc.source}: {e}" for e in exc.errors)


class InventoryCollector(Collector[Inventory]):
    name = "inventory"

    def __init__(self, source: InventoryFile) -> None:
        self.source = source

    async def fetch(self, deadline: Deadline) -> Inventory | Partial[Inventory]:
        self.source.refresh()
        if self.source.current is None:
            raise CollectorError(self.source.error or f"{self.source.path}: no inventory")
        if self.source.error:
            return Partial(self.source.current, [f"{self.source.error} (serving the last good inventory)"])
        return self.source.current

    def render(self, snapshot: Inventory) -> Iterable[Metric]:
        return render(snapshot)


def make_server(path: Path, inventory: Inventory | None = None, **kwargs: Any) -> ExporterServer:
    """The inventory exporter serving ``path`` (``inventory``: the already-loaded contents)."""
    return ExporterServer(
        "inventory",
        collectors=[InventoryCollector(InventoryFile(path, inventory))],
        description=f"Site inventory from {path}",
        **kwargs,
    )


# --- file_sd ------------------------------------------------------------------------------------


def _probe_group(probe: Probe, labels: dict[str, str]) -> dict[str, Any]:
    # __param_* labels become the probe's query parameters; relabelling moves the target.
    params = {f"__param_{k}": v for k, v in (("module", probe.module), ("auth", probe.auth)) if v}
    return {"targets": [probe.address], "labels": {**labels, **params}}


def file_sd(inv: Inventory) -> dict[str, list[dict[str, Any]]]:
    """file_sd target groups by file name: Redfish BMCs, PDUs and coolers with their site labels."""
    redfish, pdus, coolers = [], [], []
    for n in inv.nodes:
        if n.bmc is None:
            continue
        rack = inv.racks[n.rack]
        labels = {"node": n.name, "rack": rack.name, "row": rack.row, "cluster": rack.cluster}
        if n.partition:
            labels["partition"] = n.partition
        redfish.append(_probe_group(n.bmc, labels))
    for p in inv.pdus:
        if p.probe is None:
            continue
        rack = inv.racks[p.rack]
        pdus.append(
            _probe_group(
                p.probe, {"pdu": p.name, "rack": rack.name, "row": rack.row, "cluster": rack.cluster}
            )
        )
    for c in inv.coolers:
        if c.probe is None:
            continue
        rack = inv.racks[c.racks[0]]
        coolers.append(_probe_group(c.probe, {"cooler": c.name, "row": rack.row, "cluster": rack.cluster}))
    return {"redfish.json": redfish, "snmp-pdu.json": pdus, "snmp-cooler.json": coolers}


def write_file_sd(inv: Inventory, out: Path) -> list[Path]:
    """Write the file_sd files into ``out`` atomically; unchanged files are left untouched."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, groups in file_sd(inv).items():
        path = out / name
        text = json.dumps(groups, indent=2, sort_keys=True) + "\n"
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except OSError:
            pass
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # Prometheus must never read half a file
        written.append(path)
    return written


# --- command line -------------------------------------------------------------------------------

_FILE = click.option(
    "--file",
    "file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The inventory (YAML).",
)


@click.command("inventory")
@_FILE
@web_options(DEFAULT_PORT)
def command(web: WebOptions, file: Path) -> None:
    """Serve the inventory as info metrics (node → rack/row/cluster, PDU outlets, rack budgets)."""
    inventory = load_or_exit(KIND, str(file))
    run(make_server(file, inventory, web_config=web.web_config), web.listen_address)


@click.group("inventory")
def group() -> None:
    """Work with the site inventory."""


@group.command("sd")
@_FILE
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the file_sd JSON files.",
)
def sd_command(file: Path, out: Path) -> None:
    """Write Prometheus file_sd JSON for the Redfish and SNMP probes (redfish, snmp-pdu, snmp-cooler)."""
    inventory = load_or_exit(KIND, str(file))
    for path in write_file_sd(inventory, out):
        click.echo(f"wrote {path}")
