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
from .signals import SignalError, signal_from_spec


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


def _lenient_urls(schema: Any) -> Any:
    """The schema with every ``url`` checked for its scheme only.

    The CRD's URL pattern also refuses credentials (userinfo) at the API server; for a file the
    builder refuses them instead, because a pattern error would echo the URL, password included.
    """
    if isinstance(schema, list):
        return [_lenient_urls(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _lenient_urls(v) for k, v in schema.items()}
    url = out.get("properties", {}).get("url")
    if isinstance(url, dict) and "pattern" in url:
        out["properties"]["url"] = {**url, "pattern": "^https?://"}
    return out


def _schema() -> dict[str, Any]:
    spec = _lenient_urls(strict(copy.deepcopy(spec_schema())))
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
    errors = []
    try:
        policy_from_spec(name, doc["spec"])
    except PolicyError as exc:
        errors += [f"spec.{e}" for e in exc.errors]
    try:
        signal_from_spec(doc["spec"].get("signal"))
    except SignalError as exc:
        errors.append(f"spec.{exc}")
    if errors:
        raise ConfigError(errors)
    return PolicyFile(name, doc, spec_only)


KIND: ConfigKind[PolicyFile] = ConfigKind("powercappolicy", _schema(), build)
