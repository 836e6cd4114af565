"""The SNMP exporter's configuration: auths, profile files, limits, and the runtime's targets.

Modules are the device profiles (built-in and ``profile_files``); ``defaults``, ``targets``,
``allow`` and ``state_ttl`` are the keys every multi-target exporter shares
(``runtime.targets``).  ``default_auth`` is the older spelling of ``defaults: {auth: …}`` and
is still read.  Every default is said once, by ``SnmpConfig``.  docs/snmp.md shows a full file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime import ConfigError, ConfigKind, Secret, resolve_secret, strict_object
from ..runtime.config import SECRET_SCHEMA
from ..runtime.targets import Protocol, TargetDefaults, TargetPolicy, build_policy, schema_properties
from .engine import AUTH_PROTOCOLS, PRIV_PROTOCOLS, Credentials
from .metrics import CATALOGUE
from .profiles import Profile, load_profiles

#: SNMP has no schemes; agents listen on UDP port 161.
PROTOCOL = Protocol({"": 161})


@dataclass(frozen=True)
class Auth:
    name: str
    version: int
    community: Secret | None = None
    username: str = ""
    auth_protocol: str = ""
    auth_password: Secret | None = None
    priv_protocol: str = ""
    priv_password: Secret | None = None

    def credentials(self) -> Credentials:
        return Credentials(
            version=self.version,
            community=self.community.reveal() if self.community else "",
            username=self.username,
            auth_protocol=self.auth_protocol,
            auth_password=self.auth_password.reveal() if self.auth_password else "",
            priv_protocol=self.priv_protocol,
            priv_password=self.priv_password.reveal() if self.priv_password else "",
        )


@dataclass(frozen=True)
class SnmpConfig:
    #: Targets, allow rules, modules (the profiles) and auths.
    policy: TargetPolicy[Profile, Auth]
    #: Seconds, the cap on a probe (the scrape timeout header lowers it).
    timeout: float = 10.0
    #: A column with more rows is cut off and reported.
    max_rows: int = 4096
    #: Probes of one device (distinct module/auth; identical ones are merged) walking at once.
    per_device_concurrency: int = 2

    @property
    def profiles(self) -> Mapping[str, Profile]:
        return self.policy.modules


_AUTH_SCHEMA = strict_object(
    {
        "version": {"enum": [1, 2, 3]},
        "community": SECRET_SCHEMA,
        "username": {"type": "string", "minLength": 1},
        "security_level": {"enum": ["noAuthNoPriv", "authNoPriv", "authPriv"], "default": "authPriv"},
        "auth_protocol": {"enum": list(AUTH_PROTOCOLS)},
        "auth_password": SECRET_SCHEMA,
        "priv_protocol": {"enum": list(PRIV_PROTOCOLS)},
        "priv_password": SECRET_SCHEMA,
    },
    ("version",),
)
CONFIG_SCHEMA: dict[str, Any] = strict_object(
    {
        "auths": {"type": "object", "additionalProperties": _AUTH_SCHEMA, "minProperties": 1},
        "default_auth": {"type": "string"},
        "profile_files": {"type": "array", "items": {"type": "string"}},
        **schema_properties(PROTOCOL),
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 120, "default": SnmpConfig.timeout},
        "max_rows": {"type": "integer", "minimum": 1, "default": SnmpConfig.max_rows},
        "per_device_concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 64,
            "default": SnmpConfig.per_device_concurrency,
        },
    },
    ("auths",),
)


def _v3_auth(name: str, doc: Mapping[str, Any], errors: list[str]) -> Auth | None:
    where = f"auths.{name}"
    if "username" not in doc:
        errors.append(f"{where}: version 3 needs a username")
        return None
    level = doc.get("security_level", "authPriv")
    needs_auth, needs_priv = level != "noAuthNoPriv", level == "authPriv"
    problems = []
    for key, needed in (
        ("auth_protocol", needs_auth),
        ("auth_password", needs_auth),
        ("priv_protocol", needs_priv),
        ("priv_password", needs_priv),
    ):
        if needed and key not in doc:
            problems.append(f"{where}: {level} needs {key}")
        if not needed and key in doc:
            problems.append(f"{where}: {key} is not used with {level}")
    if problems:
        errors.extend(problems)
        return None
    return Auth(
        name,
        3,
        username=doc["username"],
        auth_protocol=doc.get("auth_protocol", "") if needs_auth else "",
        auth_password=resolve_secret(doc["auth_password"], f"{where}.auth_password") if needs_auth else None,
        priv_protocol=doc.get("priv_protocol", "") if needs_priv else "",
        priv_password=resolve_secret(doc["priv_password"], f"{where}.priv_password") if needs_priv else None,
    )


def _build_auth(name: str, doc: Mapping[str, Any], errors: list[str]) -> Auth | None:
    where = f"auths.{name}"
    try:
        if doc["version"] == 3:
            return _v3_auth(name, doc, errors)
        if "community" not in doc:
            errors.append(f"{where}: v{doc['version']} needs a community")
            return None
        extra = sorted(set(doc) - {"version", "community"})
        if extra:
            errors.append(f"{where}: {', '.join(extra)} only apply to version 3")
        return Auth(name, doc["version"], community=resolve_secret(doc["community"], f"{where}.community"))
    except ConfigError as exc:
        errors.extend(exc.errors)
        return None


def _defaults(doc: Mapping[str, Any], errors: list[str]) -> TargetDefaults:
    defaults = TargetDefaults(**(doc.get("defaults") or {}))
    legacy = doc.get("default_auth")
    if legacy and defaults.auth and legacy != defaults.auth:
        errors.append("default_auth: contradicts defaults.auth (default_auth is its older spelling)")
    return TargetDefaults(defaults.module, defaults.auth or legacy or None)


def build_config(doc: Mapping[str, Any]) -> SnmpConfig:
    errors: list[str] = []
    auths = {}
    for name, spec in doc["auths"].items():
        auth = _build_auth(name, spec, errors)
        if auth is not None:
            auths[name] = auth
    profiles: dict[str, Profile] = {}
    try:
        profiles = load_profiles(CATALOGUE, [Path(p) for p in doc.get("profile_files", [])])
    except ConfigError as exc:
        errors.extend(exc.errors)
    timeout = float(doc.get("timeout", SnmpConfig.timeout))
    policy = build_policy(
        doc,
        PROTOCOL,
        profiles,
        auths,
        errors,
        defaults=_defaults(doc, errors),
        known_auths=doc["auths"],
        longest_timeout=timeout,
    )
    if errors:
        raise ConfigError(errors)
    return SnmpConfig(
        policy,
        timeout=timeout,
        max_rows=int(doc.get("max_rows", SnmpConfig.max_rows)),
        per_device_concurrency=int(doc.get("per_device_concurrency", SnmpConfig.per_device_concurrency)),
    )


KIND: ConfigKind[SnmpConfig] = ConfigKind("snmp", CONFIG_SCHEMA, build_config)
