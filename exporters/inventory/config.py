"""inventory.yaml: the frozen dataclasses it becomes, which also give its schema and defaults.

Every field is a ``setting`` (docs/ARCHITECTURE.md, "Defaults said once"): the schema, its
defaults, the docs' tables (docs/rules.md) and the builder all read them from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from powerplane.exporters.runtime.config import from_document, setting, settings_schema

from ..runtime import ConfigError, ConfigKind, strict_object

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$"}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": r"^[^\s\"\\]+$"}
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}


@dataclass(frozen=True)
class Probe:
    """How a multi-target exporter reaches a device: its address and the module/auth names."""

    address: str = setting(schema=_TEXT, doc="The probe's target (host, IP or URL).")
    module: str = setting("", schema=_NAME, doc="The probe's `module` (the exporter's default when empty).")
    auth: str = setting("", schema=_NAME, doc="The probe's `auth` (the exporter's default when empty).")


@dataclass(frozen=True)
class Cluster:
    name: str = setting(schema=_NAME, doc="The cluster's name (label `cluster`).")
    market_area: str = setting(
        "", schema=_NAME, doc="Bidding zone of its electricity price (`area`); empty: no cost rules."
    )


@dataclass(frozen=True)
class Row:
    name: str = setting(schema=_NAME, doc="The row's name (label `row`).")
    cluster: str = setting(schema=_NAME, doc="The cluster it belongs to.")


@dataclass(frozen=True)
class Rack:
    name: str = setting(schema=_NAME, doc="The rack's name (label `rack`).")
    row: str = setting(schema=_NAME, doc="The row it stands in.")
    power_budget_watts: float | None = setting(
        None, schema=_POSITIVE, doc="What the rack may draw (`powerplane_rack_power_budget_watts`)."
    )
    #: The row's cluster (derived).
    cluster: str = ""


#: The probe fields written inline in a PDU or cooler entry (a device without an address is not probed).
_INLINE_PROBE = settings_schema(Probe)["properties"]


@dataclass(frozen=True)
class Pdu:
    name: str = setting(schema=_NAME, doc="The PDU's name (label `pdu`).")
    rack: str = setting(schema=_NAME, doc="The rack it is in.")
    rated_power_watts: float | None = setting(None, schema=_POSITIVE, doc="Its rated power.")
    phase_rated_current_amperes: float | None = setting(
        None, schema=_POSITIVE, doc="The rated current of each of its phases."
    )
    #: From the inline ``address``, ``module`` and ``auth`` (None without an address).
    probe: Probe | None = None


@dataclass(frozen=True)
class Cooler:
    name: str = setting(schema=_NAME, doc="The in-row cooler's name (label `cooler`).")
    racks: tuple[str, ...] = setting(
        schema={"type": "array", "items": _NAME, "minItems": 1}, doc="The racks it serves."
    )
    probe: Probe | None = None


@dataclass(frozen=True)
class Outlet:
    pdu: str = setting(schema=_NAME, doc="The PDU.")
    outlet: str = setting(
        schema={"type": ["string", "integer"], "pattern": r"^\S{1,32}$"}, doc="Its outlet (number or name)."
    )


@dataclass(frozen=True)
class Gpus:
    count: int = setting(schema={"minimum": 0, "maximum": 1024}, doc="GPUs the node should have.")
    model: str = setting("", schema=_TEXT, doc="Their model (label `model`).")


@dataclass(frozen=True)
class Node:
    name: str = setting(schema=_NAME, doc="The node's name (label `node`), as Prometheus targets name it.")
    rack: str = setting(schema=_NAME, doc="The rack it is in.")
    partition: str = setting("", schema=_NAME, doc="Its scheduler partition (label `partition`).")
    bmc: Probe | None = setting(None, of=Probe, doc="Its BMC, probed by the Redfish exporter.")
    pdu_outlets: tuple[tuple[str, str], ...] = setting(
        (),
        schema={"type": "array", "items": settings_schema(Outlet)},
        doc="The PDU outlets that feed it.",
    )
    gpus: Gpus | None = setting(None, of=Gpus, doc="The GPUs it should have (`powerplane_node_gpus`).")


def _items(cls: type, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "array", "items": settings_schema(cls, extra)}


SCHEMA: dict[str, Any] = strict_object(
    {
        "clusters": {**_items(Cluster), "minItems": 1},
        "rows": _items(Row),
        "racks": _items(Rack),
        "pdus": _items(Pdu, _INLINE_PROBE),
        "coolers": _items(Cooler, _INLINE_PROBE),
        "nodes": _items(Node),
    },
    required=("clusters",),
)


@dataclass(frozen=True)
class Inventory:
    clusters: tuple[Cluster, ...]
    rows: Mapping[str, str]  # row → cluster
    racks: Mapping[str, Rack]
    pdus: tuple[Pdu, ...]
    coolers: tuple[Cooler, ...]
    nodes: tuple[Node, ...]


def _probe(doc: Mapping[str, Any]) -> Probe | None:
    return from_document(Probe, doc) if "address" in doc else None


def _duplicates(kind: str, names: Iterable[str], errors: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            errors.append(f"{kind}: {name!r} is defined twice")
        seen.add(name)


class _Refs:
    """Cross references checked while building: every name used must be defined, once."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.errors: list[str] = []

    def entries(self, kind: str) -> list[Mapping[str, Any]]:
        entries: list[Mapping[str, Any]] = self.doc.get(kind, [])
        _duplicates(kind, (e["name"] for e in entries), self.errors)
        return entries

    def check(self, where: str, what: str, name: str, known: Iterable[str]) -> None:
        if name not in known:
            self.errors.append(f"{where}: unknown {what} {name!r}")


def _outlets(
    refs: _Refs, i: int, n: Mapping[str, Any], pdus: set[str], fed: dict[tuple[str, str], str]
) -> tuple[tuple[str, str], ...]:
    outlets = []
    for j, o in enumerate(n.get("pdu_outlets", [])):
        key = (o["pdu"], str(o["outlet"]))
        if o["pdu"] not in pdus:
            refs.check(f"nodes.{i}.pdu_outlets.{j}.pdu", "pdu", o["pdu"], pdus)
        elif key in fed:
            refs.errors.append(
                f"nodes.{i}.pdu_outlets.{j}: outlet {key[1]} of {key[0]} already feeds {fed[key]!r}"
            )
        fed[key] = n["name"]
        outlets.append(key)
    return tuple(outlets)


def build(doc: Mapping[str, Any]) -> Inventory:
    """Check the cross references (every rack's row exists, ...) and build the inventory."""
    refs = _Refs(doc)
    clusters = tuple(from_document(Cluster, c) for c in refs.entries("clusters"))
    rows: dict[str, str] = {}
    for i, r in enumerate(refs.entries("rows")):
        refs.check(f"rows.{i}.cluster", "cluster", r["cluster"], {c.name for c in clusters})
        rows[r["name"]] = r["cluster"]
    racks: dict[str, Rack] = {}
    for i, r in enumerate(refs.entries("racks")):
        refs.check(f"racks.{i}.row", "row", r["row"], rows)
        racks[r["name"]] = from_document(Rack, r, cluster=rows.get(r["row"], ""))
    pdus = []
    for i, p in enumerate(refs.entries("pdus")):
        refs.check(f"pdus.{i}.rack", "rack", p["rack"], racks)
        pdus.append(from_document(Pdu, p, probe=_probe(p)))
    coolers = []
    for i, c in enumerate(refs.entries("coolers")):
        for j, rack in enumerate(c["racks"]):
            refs.check(f"coolers.{i}.racks.{j}", "rack", rack, racks)
        coolers.append(from_document(Cooler, c, probe=_probe(c)))
    nodes = []
    fed: dict[tuple[str, str], str] = {}
    pdu_names = {p.name for p in pdus}
    for i, n in enumerate(refs.entries("nodes")):
        refs.check(f"nodes.{i}.rack", "rack", n["rack"], racks)
        nodes.append(from_document(Node, n, pdu_outlets=_outlets(refs, i, n, pdu_names, fed)))
    if refs.errors:
        raise ConfigError(refs.errors)
    return Inventory(clusters, rows, racks, tuple(pdus), tuple(coolers), tuple(nodes))


KIND: ConfigKind[Inventory] = ConfigKind("inventory", SCHEMA, build)
