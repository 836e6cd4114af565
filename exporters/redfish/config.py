"""The Redfish exporter's configuration: modules, auths, targets and an allow-list.

```yaml
modules:
  default:
    timeout: 30                 # seconds, capped further by Prometheus's scrape timeout
    collectors: {telemetry: true}   # switches over the defaults, or a list: [power, psu, thermal]
    schema: auto                # auto | legacy | new
    expand: true                # use $expand where the service root announces it
auths:
  idrac:
    method: session             # session (X-Auth-Token) | basic
    username: {env: IDRAC_USER}
    password: {file: /run/secrets/idrac_password}
    tls: {ca_file: /etc/ssl/bmc-ca.pem}      # or {insecure_skip_verify: true}
    max_sessions: 2             # sessions this exporter may hold on one BMC (iDRAC allows ~8 in all)
defaults: {module: default, auth: idrac, scheme: https}
targets:
  idrac-r01-n01.example.net: {}
  10.20.0.5: {auth: idrac, module: default}
allow: ["10.20.0.0/16", "*.bmc.example.net"]
```
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.config import SECRET_SCHEMA, ConfigError, ConfigKind, Secret, resolve_secret, strict_object

COLLECTORS = ("power", "psu", "thermal", "health", "system", "telemetry")
DEFAULT_COLLECTORS = {name: name != "telemetry" for name in COLLECTORS}
SCHEMES = ("https", "http")

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}
MODULE_SCHEMA = strict_object(
    {
        "timeout": {"type": "number", "minimum": 0.1, "maximum": 600},
        # Either switches ({power: true, telemetry: false}) or the list of collectors to run.
        "collectors": {
            "oneOf": [
                strict_object({name: {"type": "boolean"} for name in COLLECTORS}),
                {"type": "array", "items": {"enum": list(COLLECTORS)}, "uniqueItems": True},
            ]
        },
        "schema": {"enum": ["auto", "legacy", "new"]},
        "expand": {"type": "boolean"},
        "max_response_bytes": {"type": "integer", "minimum": 1024},
        "max_concurrent_requests": {"type": "integer", "minimum": 1, "maximum": 64},
        "discovery_ttl": {"type": "number", "minimum": 0},
    }
)
AUTH_SCHEMA = strict_object(
    {
        "method": {"enum": ["session", "basic"]},
        "username": {"oneOf": [{"type": "string", "minLength": 1}, SECRET_SCHEMA]},
        "password": SECRET_SCHEMA,
        "tls": strict_object(
            {"insecure_skip_verify": {"type": "boolean"}, "ca_file": {"type": "string", "minLength": 1}}
        ),
        "max_sessions": {"type": "integer", "minimum": 1, "maximum": 16},
    },
    required=("username", "password"),
)
TARGET_SCHEMA = strict_object({"module": _NAME, "auth": _NAME, "scheme": {"enum": list(SCHEMES)}})
SCHEMA: dict[str, Any] = strict_object(
    {
        "modules": {"type": "object", "additionalProperties": MODULE_SCHEMA, "propertyNames": _NAME},
        "auths": {"type": "object", "additionalProperties": AUTH_SCHEMA, "propertyNames": _NAME},
        "defaults": TARGET_SCHEMA,
        "targets": {"type": "object", "additionalProperties": {"oneOf": [TARGET_SCHEMA, {"type": "null"}]}},
        "allow": {"type": "array", "items": {"type": "string", "minLength": 1}},
    },
    required=("auths",),
)


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


@dataclass(frozen=True)
class TargetDefaults:
    module: str | None = None
    auth: str | None = None
    scheme: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """A parsed ``target=`` value."""

    scheme: str | None
    host: str
    port: int | None

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port else host

    def base_url(self, scheme: str) -> str:
        return f"{self.scheme or scheme}://{self.hostport}"


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_TARGET = re.compile(
    r"^(?:(?P<scheme>https?)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^/:\[\]@?#\s]+)(?::(?P<port>\d{1,5}))?/?$",
    re.IGNORECASE,
)


def parse_endpoint(target: str) -> Endpoint:
    """``host``, ``host:port`` or ``scheme://host[:port]``; anything else raises ValueError."""
    match = _TARGET.match(target.strip())
    if not match:
        raise ValueError("not [http(s)://]host[:port]")
    host = match.group("host").strip("[]")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ValueError("invalid host name") from None
        host = host.lower()
    port = int(match.group("port")) if match.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise ValueError("port out of range")
    scheme = match.group("scheme")
    return Endpoint(scheme.lower() if scheme else None, host, port)


@dataclass(frozen=True)
class Allow:
    """A CIDR (matches literal addresses only: no name is resolved to decide) or a host glob."""

    pattern: str
    # Leading underscore: check-config shows the pattern, not the parsed network object.
    _network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def matches(self, endpoint: Endpoint) -> bool:
        if self._network is not None:
            try:
                return ipaddress.ip_address(endpoint.host) in self._network
            except ValueError:
                return False
        return fnmatch.fnmatchcase(endpoint.host, self.pattern.lower())


@dataclass(frozen=True)
class RedfishConfig:
    modules: Mapping[str, Module]
    auths: Mapping[str, Auth]
    targets: Mapping[str, TargetDefaults] = field(default_factory=dict)
    allow: tuple[Allow, ...] = ()
    defaults: TargetDefaults = TargetDefaults()


def _build(doc: Any) -> RedfishConfig:
    errors: list[str] = []
    modules = {"default": Module("default")}
    for name, spec in (doc.get("modules") or {}).items():
        chosen = spec.get("collectors", {})
        if isinstance(chosen, list):
            chosen = {name: name in chosen for name in COLLECTORS}
        switches = {**DEFAULT_COLLECTORS, **chosen}
        modules[name] = Module(
            name,
            timeout=float(spec.get("timeout", 30.0)),
            collectors=tuple(n for n in COLLECTORS if switches[n]),
            schema=spec.get("schema", "auto"),
            expand=spec.get("expand", True),
            max_response_bytes=spec.get("max_response_bytes", 4 * 1024 * 1024),
            max_concurrent_requests=spec.get("max_concurrent_requests", 4),
            discovery_ttl=float(spec.get("discovery_ttl", 3600.0)),
        )
    auths: dict[str, Auth] = {}
    for name, spec in doc["auths"].items():
        where = f"auths.{name}"
        try:
            user = spec["username"]
            username: Secret | str = (
                resolve_secret(user, f"{where}.username") if isinstance(user, dict) else user
            )
            password = resolve_secret(spec["password"], f"{where}.password")
        except ConfigError as exc:
            errors += exc.errors
            continue
        tls = spec.get("tls", {})
        if tls.get("insecure_skip_verify") and tls.get("ca_file"):
            errors.append(f"{where}.tls: insecure_skip_verify and ca_file exclude each other")
        ca_file = Path(tls["ca_file"]) if tls.get("ca_file") else None
        if ca_file is not None and not ca_file.is_file():
            errors.append(f"{where}.tls.ca_file: {ca_file} is not a readable file")
        auths[name] = Auth(
            name,
            username,
            password,
            method=spec.get("method", "session"),
            insecure_skip_verify=bool(tls.get("insecure_skip_verify", False)),
            ca_file=ca_file,
            max_sessions=spec.get("max_sessions", 2),
        )
    defaults = TargetDefaults(**(doc.get("defaults") or {}))
    targets: dict[str, TargetDefaults] = {}
    for raw, spec in (doc.get("targets") or {}).items():
        try:
            endpoint = parse_endpoint(str(raw))
        except ValueError as exc:
            errors.append(f"targets.{raw}: {exc}")
            continue
        targets[endpoint.hostport] = TargetDefaults(scheme=endpoint.scheme, **(spec or {}))
    allow: list[Allow] = []
    for i, pattern in enumerate(doc.get("allow") or []):
        if "/" in pattern:
            try:
                allow.append(Allow(pattern, ipaddress.ip_network(pattern, strict=False)))
            except ValueError as exc:
                errors.append(f"allow[{i}]: {exc}")
        else:
            allow.append(Allow(pattern))
    for where, ref in [("defaults", defaults), *((f"targets.{k}", v) for k, v in targets.items())]:
        if ref.module and ref.module not in modules:
            errors.append(f"{where}.module: unknown module {ref.module!r}")
        if ref.auth and ref.auth not in doc["auths"]:
            errors.append(f"{where}.auth: unknown auth {ref.auth!r}")
    if errors:
        raise ConfigError(errors)
    return RedfishConfig(modules, auths, targets, tuple(allow), defaults)


KIND: ConfigKind[RedfishConfig] = ConfigKind("redfish", SCHEMA, _build)
