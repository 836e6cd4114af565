"""The Redfish exporter's configuration: modules and auths, and the runtime's targets and allow rules.

Every default is said once, by the dataclasses below; the schema's ``default`` annotations and
the builder read them from there.  docs/redfish.md shows a full file.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..runtime.config import SECRET_SCHEMA, ConfigError, ConfigKind, Secret, resolve_secret, strict_object
from ..runtime.targets import Protocol, TargetPolicy, build_policy, schema_properties

COLLECTORS = ("power", "psu", "thermal", "health", "system", "telemetry", "eventlog")
#: Off unless a module switches them on: each costs requests that not every site wants.
OPTIONAL = ("telemetry", "eventlog")
DEFAULT_COLLECTORS = {name: name not in OPTIONAL for name in COLLECTORS}
#: Redfish is HTTPS unless a target or the defaults say HTTP.
PROTOCOL = Protocol({"https": 443, "http": 80}, default_scheme="https")


@dataclass(frozen=True)
class Module:
    name: str
    timeout: float = 30.0
    collectors: tuple[str, ...] = tuple(n for n, on in DEFAULT_COLLECTORS.items() if on)
    schema: str = "auto"
    expand: bool = True
    max_response_bytes: int = 4 * 1024 * 1024
    max_concurrent_requests: int = 4
    discovery_ttl: float = 3600.0
    #: Seconds a system's, chassis' or PowerSubsystem's own document (health, identity, power
    #: state, ratings) is reused before it is read again; 0 reads it at every probe.
    inventory_refresh: float = 300.0
    #: Members read from one collection at most (PSUs, fans); the rest are dropped and counted.
    max_members: int = 256
    #: Computer systems and chassis read from one BMC at most (a blade enclosure lists one per
    #: blade); the rest are dropped, counted and logged once.
    max_systems: int = 16
    max_chassis: int = 16


@dataclass(frozen=True)
class Auth:
    name: str
    username: Secret | str
    password: Secret
    method: str = "session"
    insecure_skip_verify: bool = False
    ca_file: Path | None = None
    max_sessions: int = 2

    def user(self) -> str:
        return self.username.reveal() if isinstance(self.username, Secret) else self.username

    def ssl_context(self) -> ssl.SSLContext:
        """Verification on unless this auth opts out explicitly."""
        if self.insecure_skip_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


DEFAULT_MODULE = Module("default")
_SCALARS = tuple(f.name for f in fields(Module) if f.name not in ("name", "collectors"))


def _default(schema: dict[str, Any], value: Any) -> dict[str, Any]:
    return {**schema, "default": value}


_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}
MODULE_SCHEMA = strict_object(
    {
        "timeout": _default({"type": "number", "minimum": 0.1, "maximum": 600}, DEFAULT_MODULE.timeout),
        # Either switches ({power: true, telemetry: false}) or the list of collectors to run.
        "collectors": {
            "oneOf": [
                strict_object({name: {"type": "boolean"} for name in COLLECTORS}),
                {"type": "array", "items": {"enum": list(COLLECTORS)}, "uniqueItems": True},
            ]
        },
        "schema": _default({"enum": ["auto", "legacy", "new"]}, DEFAULT_MODULE.schema),
        "expand": _default({"type": "boolean"}, DEFAULT_MODULE.expand),
        "max_response_bytes": _default(
            {"type": "integer", "minimum": 1024}, DEFAULT_MODULE.max_response_bytes
        ),
        "max_concurrent_requests": _default(
            {"type": "integer", "minimum": 1, "maximum": 64}, DEFAULT_MODULE.max_concurrent_requests
        ),
        "discovery_ttl": _default({"type": "number", "minimum": 0}, DEFAULT_MODULE.discovery_ttl),
        "inventory_refresh": _default({"type": "number", "minimum": 0}, DEFAULT_MODULE.inventory_refresh),
        "max_members": _default(
            {"type": "integer", "minimum": 1, "maximum": 65536}, DEFAULT_MODULE.max_members
        ),
        "max_systems": _default(
            {"type": "integer", "minimum": 1, "maximum": 1024}, DEFAULT_MODULE.max_systems
        ),
        "max_chassis": _default(
            {"type": "integer", "minimum": 1, "maximum": 1024}, DEFAULT_MODULE.max_chassis
        ),
    }
)
AUTH_SCHEMA = strict_object(
    {
        "method": _default({"enum": ["session", "basic"]}, Auth.method),
        "username": {"oneOf": [{"type": "string", "minLength": 1}, SECRET_SCHEMA]},
        "password": SECRET_SCHEMA,
        "tls": strict_object(
            {"insecure_skip_verify": {"type": "boolean"}, "ca_file": {"type": "string", "minLength": 1}}
        ),
        "max_sessions": _default({"type": "integer", "minimum": 1, "maximum": 16}, Auth.max_sessions),
    },
    required=("username", "password"),
)
SCHEMA: dict[str, Any] = strict_object(
    {
        "modules": {"type": "object", "additionalProperties": MODULE_SCHEMA, "propertyNames": _NAME},
        "auths": {"type": "object", "additionalProperties": AUTH_SCHEMA, "propertyNames": _NAME},
        **schema_properties(PROTOCOL),
    },
    required=("auths",),
)


@dataclass(frozen=True)
class RedfishConfig:
    """Modules, auths, targets and allow rules, resolved by the runtime's ``TargetPolicy``."""

    policy: TargetPolicy[Module, Auth]


def _module(name: str, spec: Mapping[str, Any]) -> Module:
    chosen = spec.get("collectors", {})
    if isinstance(chosen, list):
        chosen = {collector: collector in chosen for collector in COLLECTORS}
    switches = {**DEFAULT_COLLECTORS, **chosen}
    # Each value takes the type of its default (YAML's 30 is an int where the field is a float).
    given = {key: type(getattr(DEFAULT_MODULE, key))(spec[key]) for key in _SCALARS if key in spec}
    return Module(name, collectors=tuple(n for n in COLLECTORS if switches[n]), **given)


def _auth(name: str, spec: Mapping[str, Any], errors: list[str]) -> Auth | None:
    where = f"auths.{name}"
    try:
        user = spec["username"]
        username: Secret | str = resolve_secret(user, f"{where}.username") if isinstance(user, dict) else user
        password = resolve_secret(spec["password"], f"{where}.password")
    except ConfigError as exc:
        errors += exc.errors
        return None
    tls = spec.get("tls", {})
    if tls.get("insecure_skip_verify") and tls.get("ca_file"):
        errors.append(f"{where}.tls: insecure_skip_verify and ca_file exclude each other")
    ca_file = Path(tls["ca_file"]) if tls.get("ca_file") else None
    if ca_file is not None and not ca_file.is_file():
        errors.append(f"{where}.tls.ca_file: {ca_file} is not a readable file")
    given = {key: spec[key] for key in ("method", "max_sessions") if key in spec}
    return Auth(
        name,
        username,
        password,
        insecure_skip_verify=bool(tls.get("insecure_skip_verify", False)),
        ca_file=ca_file,
        **given,
    )


def _build(doc: Any) -> RedfishConfig:
    errors: list[str] = []
    modules = {"default": DEFAULT_MODULE}
    modules.update({name: _module(name, spec) for name, spec in (doc.get("modules") or {}).items()})
    auths = {}
    for name, spec in doc["auths"].items():
        auth = _auth(name, spec, errors)
        if auth is not None:
            auths[name] = auth
    policy = build_policy(
        doc,
        PROTOCOL,
        modules,
        auths,
        errors,
        fallback_module="default",
        known_auths=doc["auths"],
        longest_timeout=max(m.timeout for m in modules.values()),
    )
    if errors:
        raise ConfigError(errors)
    return RedfishConfig(policy)


KIND: ConfigKind[RedfishConfig] = ConfigKind("redfish", SCHEMA, _build)
