"""PowerCapPolicy files: ``reconcile-once --policy``, ``run --local-policy`` and ``check-config``.

A file holds a whole ``PowerCapPolicy`` object (``apiVersion``, ``kind``, ``metadata.name``,
``spec``) or just its spec.  It is validated by the CRD's own schema made strict: unknown keys,
which the API server would silently prune, are errors here.  Semantic errors (an unknown time
zone, unsorted bands) are reported by the policy builder, all at once with the schema's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from powerplane.exporters.runtime import ConfigError, ConfigKind

from .kube import GROUP, VERSION, spec_schema
from .policy import PolicyError, policy_from_spec


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _schema() -> dict[str, Any]:
    spec = strict(copy.deepcopy(spec_schema()))
    whole = {
        "type": "object",
        "required": ["kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": f"{GROUP}/{VERSION}"},
            "kind": {"const": "PowerCapPolicy"},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {
                        "type": "string",
                        "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                        "maxLength": 253,
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "spec": spec,
        },
    }
    return {"if": {"type": "object", "required": ["kind"]}, "then": whole, "else": spec}


@dataclass(frozen=True)
class PolicyFile:
    name: str
    document: dict[str, Any]
    #: The file held only a spec (the object is then named after the file by its reader).
    spec_only: bool = False


def build(doc: Any) -> PolicyFile:
    spec_only = "kind" not in doc
    if spec_only:
        doc = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PowerCapPolicy",
            "metadata": {"name": "policy"},
            "spec": doc,
        }
    name = str(doc["metadata"]["name"])
    try:
        policy_from_spec(name, doc["spec"])
    except PolicyError as exc:
        raise ConfigError([f"spec: {exc}"]) from None
    return PolicyFile(name, doc, spec_only)


KIND: ConfigKind[PolicyFile] = ConfigKind("powercappolicy", _schema(), build)
