"""Device profiles: which columns to walk and how each becomes a metric, as YAML data.

A profile (``profiles/*.yaml`` in the package, or a file named in the exporter's config) lists
the sysObjectID prefixes it recognises and its tables.  A table names the columns to walk
(nothing else is walked) and the metrics built from them.  A row's index is the OID suffix after
the column; labels come from a column, from an index component or from a constant.  Values are
converted to base units at the edge: ``scale`` multiplies, ``digits`` divides by ten to the power
of another column's value (Raritan's per-sensor decimal digits), ``sentinels`` are dropped.
Resettable device meters (``counter: resettable``) become monotonic counters.

Profiles are validated by ``PROFILE_SCHEMA`` (a JSON Schema) and then against the metric
catalogue: every metric must be a declared ``powerplane_pdu_*`` or ``powerplane_cooling_*``
metric with exactly its declared labels.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..runtime.config import ConfigError, ConfigKind, strict_object
from ..runtime.metrics import MetricSpec

_OID = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)+$"}
_NAME = {"type": "string", "pattern": r"^[a-z][a-z0-9_]*$"}
_LABEL_SOURCE = {
    "type": "object",
    "properties": {
        "column": _NAME,
        "index": {"type": "integer"},
        "value": {"type": "string", "minLength": 1},
        # With ``column``: look the label up by the first ``parts`` components of the row index
        # (Raritan names outlets per pdu.outlet while their sensor rows are pdu.outlet.type).
        "parts": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 2,
}
_METRIC = strict_object(
    {
        "metric": {"type": "string", "pattern": r"^powerplane_(pdu|cooling)_[a-z0-9_]+$"},
        "column": {"oneOf": [_NAME, {"type": "array", "items": _NAME, "minItems": 1}]},
        "scale": {"type": "number", "exclusiveMinimum": 0},
        "digits": _NAME,
        "where": strict_object(
            {"index": {"type": "integer"}, "equals": {"type": "integer"}}, ("index", "equals")
        ),
        "labels": {"type": "object", "additionalProperties": _LABEL_SOURCE},
        "counter": {"enum": ["resettable"]},
        "map": {"type": "object", "additionalProperties": {"type": "number"}},
    },
    ("metric", "column"),
)
PROFILE_SCHEMA: dict[str, Any] = strict_object(
    {
        "name": _NAME,
        "kind": {"enum": ["pdu", "cooler"]},
        "description": {"type": "string"},
        "sys_object_ids": {"type": "array", "items": _OID, "minItems": 1},
        "sentinels": {"type": "array", "items": {"type": "integer"}},
        "max_repetitions": {"type": "integer", "minimum": 1, "maximum": 100},
        "tables": {
            "type": "array",
            "minItems": 1,
            "items": strict_object(
                {
                    "name": _NAME,
                    "columns": {"type": "object", "additionalProperties": _OID, "minProperties": 1},
                    "labels": {"type": "object", "additionalProperties": _LABEL_SOURCE},
                    "metrics": {"type": "array", "items": _METRIC, "minItems": 1},
                },
                ("name", "columns", "metrics"),
            ),
        },
    },
    ("name", "kind", "sys_object_ids", "tables"),
)


@dataclass(frozen=True)
class LabelSource:
    column: str | None = None
    index: int | None = None
    value: str | None = None
    parts: int | None = None


@dataclass(frozen=True)
class MetricRule:
    metric: str
    columns: tuple[str, ...]
    scale: float = 1.0
    digits: str | None = None
    where: tuple[int, int] | None = None
    labels: tuple[tuple[str, LabelSource], ...] = ()
    resettable: bool = False
    value_map: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, OID)
    rules: tuple[MetricRule, ...]

    @functools.cached_property
    def walked(self) -> tuple[tuple[str, str], ...]:
        """The columns a rule reads (values, digits, labels): a column nothing reads is not walked."""
        used = {c for rule in self.rules for c in (*rule.columns, *([rule.digits] if rule.digits else []))}
        used.update(source.column for rule in self.rules for _n, source in rule.labels if source.column)
        return tuple((name, oid) for name, oid in self.columns if name in used)


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str
    description: str
    sys_object_ids: tuple[str, ...]
    tables: tuple[Table, ...]
    sentinels: frozenset[int] = frozenset()
    max_repetitions: int = 25

    def matches(self, sys_object_id: str) -> int:
        """Length of the longest recognised prefix of ``sys_object_id`` (0: no match)."""
        best = 0
        for prefix in self.sys_object_ids:
            if sys_object_id == prefix or sys_object_id.startswith(prefix + "."):
                best = max(best, len(prefix))
        return best


def _label_source(spec: Mapping[str, Any]) -> LabelSource:
    return LabelSource(spec.get("column"), spec.get("index"), spec.get("value"), spec.get("parts"))


def build_profile(doc: Mapping[str, Any], catalogue: Mapping[str, MetricSpec]) -> Profile:
    errors: list[str] = []
    tables = []
    for t, table in enumerate(doc["tables"]):
        where = f"tables[{t}] ({table['name']})"
        columns = dict(table["columns"])
        table_labels = {k: _label_source(v) for k, v in table.get("labels", {}).items()}
        rules = []
        for m, metric in enumerate(table["metrics"]):
            at = f"{where}.metrics[{m}]"
            spec = catalogue.get(metric["metric"])
            if spec is None:
                errors.append(f"{at}: unknown metric {metric['metric']!r}")
                continue
            names = metric["column"] if isinstance(metric["column"], list) else [metric["column"]]
            labels = {**table_labels, **{k: _label_source(v) for k, v in metric.get("labels", {}).items()}}
            if set(labels) != set(spec.labels):
                errors.append(
                    f"{at}: {spec.name} needs labels {sorted(spec.labels)}, "
                    f"the profile gives {sorted(labels)}"
                )
            for ref in [*names, *([metric["digits"]] if "digits" in metric else [])]:
                if ref not in columns:
                    errors.append(f"{at}: column {ref!r} is not among the table's columns")
            for label, source in labels.items():
                if source.column is not None and source.column not in columns:
                    errors.append(f"{at}: label {label} reads column {source.column!r}, not in the table")
            rules.append(
                MetricRule(
                    metric=spec.name,
                    columns=tuple(names),
                    scale=float(metric.get("scale", 1.0)),
                    digits=metric.get("digits"),
                    where=(metric["where"]["index"], metric["where"]["equals"])
                    if "where" in metric
                    else None,
                    labels=tuple(sorted(labels.items())),
                    resettable=metric.get("counter") == "resettable",
                    value_map=tuple((int(k), float(v)) for k, v in metric.get("map", {}).items()),
                )
            )
            if rules[-1].resettable != (spec.kind == "counter"):
                errors.append(f"{at}: {spec.name} is a {spec.kind}; counters need 'counter: resettable'")
        tables.append(Table(table["name"], tuple(columns.items()), tuple(rules)))
    if errors:
        raise ConfigError(errors)
    return Profile(
        name=doc["name"],
        kind=doc["kind"],
        description=doc.get("description", ""),
        sys_object_ids=tuple(doc["sys_object_ids"]),
        tables=tuple(tables),
        sentinels=frozenset(doc.get("sentinels", ())),
        max_repetitions=doc.get("max_repetitions", 25),
    )


def profile_kind(catalogue: Mapping[str, MetricSpec]) -> ConfigKind[Profile]:
    return ConfigKind("snmp-profile", PROFILE_SCHEMA, lambda doc: build_profile(doc, catalogue))


def builtin_profile_files() -> list[tuple[str, str]]:
    """(file name, text) of every profile shipped in the package."""
    folder = resources.files(__package__) / "profiles"
    return sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_profiles(
    catalogue: Mapping[str, MetricSpec], extra_files: Sequence[Path] = ()
) -> dict[str, Profile]:
    """The built-in profiles plus ``extra_files`` (a later profile replaces one of the same name)."""
    kind = profile_kind(catalogue)
    profiles: dict[str, Profile] = {}
    errors: list[str] = []
    for name, text in builtin_profile_files():
        try:
            profile = kind.load_text(text, f"profiles/{name}")
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        profiles[profile.name] = profile
    for path in extra_files:
        try:
            profile = kind.load(path)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        profiles[profile.name] = profile
    if errors:
        raise ConfigError(errors)
    return profiles
