"""inventory.yaml: its schema and the frozen dataclasses it becomes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..runtime import (
    ConfigError,
    ConfigKind,
    strict_object,
)

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
