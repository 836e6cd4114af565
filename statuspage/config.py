"""The status page's configuration file (``powerplane status-page --config FILE``).

.. code-block:: yaml

    title: HPC system status
    timezone: Europe/Berlin            # shown without JavaScript; the script shows the viewer's own
    prometheus:
      url: https://prometheus.example:9090
      basic_auth: {username: status-page, password: {file: /etc/powerplane/prometheus-password}}
    alertmanager:
      url: https://alertmanager.example:9093
      bearer_token: {env: ALERTMANAGER_TOKEN}
      public_label: {name: public, value: "true"}
    outages_file: /etc/powerplane/outages.yaml
    refresh: {data_seconds: 60, page_seconds: 300}
    power: {enabled: true}
    systems:
      - name: alpha
        title: Alpha (H100)
        cluster: alpha                 # the value of the `cluster` label; the name when omitted
        partitions: [gpu, cpu]         # shown in this order; every partition seen when omitted
        login_nodes: ["login1.alpha:9100", "login2.alpha:9100"]    # `instance` label values
        filesystems:
          - {name: home, instance: "nfs1.alpha:9100", mountpoint: /home}
          - {name: scratch, check: 'probe_success{target="scratch"}'}

Every PromQL the page runs is in this file or in ``queries.DEFAULTS`` (``queries:`` overrides a
default by name): nothing from a request ever reaches Prometheus.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from powerplane.exporters.runtime import ConfigError, ConfigKind, Secret, resolve_secret, strict_object
from powerplane.exporters.runtime.config import SECRET_SCHEMA

from .queries import DEFAULTS, POWER_QUERIES, NodeClasses, default_node_classes

_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
_LABEL_VALUE = {"type": "string", "maxLength": 200}
_QUERY = {"type": "string", "minLength": 1, "maxLength": 4000}
_URL = {"type": "string", "pattern": "^https?://[^\\s]+$", "maxLength": 500}
_LABEL_NAME = {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]{0,99}$"}


def _upstream(extra: Mapping[str, Any]) -> dict[str, Any]:
    return strict_object(
        {
            "url": _URL,
            "timeout_seconds": {"type": "number", "minimum": 0.5, "maximum": 120},
            "basic_auth": strict_object(
                {"username": {"type": "string", "minLength": 1}, "password": SECRET_SCHEMA},
                required=("username", "password"),
            ),
            "bearer_token": SECRET_SCHEMA,
            "tls": strict_object(
                {"ca_file": {"type": "string", "minLength": 1}, "insecure_skip_verify": {"type": "boolean"}}
            ),
            "max_response_bytes": {"type": "integer", "minimum": 1024, "maximum": 256 << 20},
            **extra,
        },
        required=("url",),
    )


_FILESYSTEM = strict_object(
    {
        "name": _TEXT,
        "instance": _LABEL_VALUE,
        "mountpoint": {"type": "string", "minLength": 1, "maxLength": 500},
        "check": _QUERY,
        "used_ratio": _QUERY,
    },
    required=("name",),
)

SCHEMA: dict[str, Any] = strict_object(
    {
        "title": _TEXT,
        "timezone": {"type": "string", "minLength": 1, "maxLength": 64},
        "prometheus": _upstream(
            {"max_series": {"type": "integer", "minimum": 1, "maximum": 1_000_000}},
        ),
        "alertmanager": _upstream(
            {
                "public_label": strict_object(
                    {"name": _LABEL_NAME, "value": _LABEL_VALUE}, required=("name", "value")
                ),
                "system_label": _LABEL_NAME,
                "summary_annotation": _LABEL_NAME,
                "max_alerts": {"type": "integer", "minimum": 1, "maximum": 10_000},
            }
        ),
        "outages_file": {"type": "string", "minLength": 1},
        "refresh": strict_object(
            {
                "data_seconds": {"type": "number", "minimum": 1, "maximum": 3600},
                "page_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
            }
        ),
        "staleness": strict_object(
            {
                "warning_seconds": {"type": "number", "minimum": 1},
                "critical_seconds": {"type": "number", "minimum": 1},
            }
        ),
        "utilisation": strict_object(
            {
                "warning_ratio": {"type": "number", "minimum": 0, "maximum": 1},
                "critical_ratio": {"type": "number", "minimum": 0, "maximum": 1},
            }
        ),
        "power": strict_object({"enabled": {"type": "boolean"}, "currency": {"enum": ["EUR"]}}),
        "reservations": strict_object({"show_names": {"type": "boolean"}}),
        "node_states": strict_object(
            {
                key: {"type": "array", "items": {"type": "string", "pattern": "^[a-z_]{1,40}$"}}
                for key in ("down", "drained", "reserved", "available")
            }
        ),
        "queries": {
            "type": "object",
            "propertyNames": {"enum": sorted(DEFAULTS)},
            "additionalProperties": _QUERY,
        },
        "systems": {
            "type": "array",
            "minItems": 1,
            "maxItems": 64,
            "items": strict_object(
                {
                    "name": _NAME,
                    "title": _TEXT,
                    "description": {"type": "string", "maxLength": 1000},
                    "cluster": _LABEL_VALUE,
                    "partitions": {"type": "array", "maxItems": 200, "items": _LABEL_VALUE},
                    "login_nodes": {"type": "array", "maxItems": 200, "items": _LABEL_VALUE},
                    "filesystems": {"type": "array", "maxItems": 100, "items": _FILESYSTEM},
                    "power": {"type": "boolean"},
                },
                required=("name",),
            ),
        },
    },
    required=("prometheus", "systems"),
)


@dataclass(frozen=True)
class Upstream:
    """How to reach Prometheus or Alertmanager: URL, credentials, TLS, limits."""

    url: str
    timeout_seconds: float = 10.0
    username: str | None = None
    password: Secret | None = None
    bearer_token: Secret | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    max_response_bytes: int = 8 << 20

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verification on unless this upstream opts out explicitly; None for plain HTTP."""
        if not self.url.startswith("https://"):
            return None
        if self.insecure_skip_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


@dataclass(frozen=True)
class AlertmanagerConfig:
    upstream: Upstream
    public_label: str = "public"
    public_value: str = "true"
    system_label: str = "cluster"
    summary_annotation: str = "summary"
    max_alerts: int = 200


@dataclass(frozen=True)
class Filesystem:
    """A filesystem shown for a system: node_exporter's series of ``instance``/``mountpoint``,
    or a configured ``check`` (1 available, 0 not) and ``used_ratio``."""

    name: str
    instance: str | None = None
    mountpoint: str | None = None
    check: str | None = None
    used_ratio: str | None = None


@dataclass(frozen=True)
class System:
    name: str
    title: str
    cluster: str
    description: str = ""
    partitions: tuple[str, ...] = ()
    login_nodes: tuple[str, ...] = ()
    filesystems: tuple[Filesystem, ...] = ()
    power: bool = True


@dataclass(frozen=True)
class StatusPageConfig:
    prometheus: Upstream
    systems: tuple[System, ...]
    title: str = "System status"
    timezone: str = "UTC"
    alertmanager: AlertmanagerConfig | None = None
    outages_file: Path | None = None
    data_seconds: float = 60.0
    page_seconds: int = 300
    warning_seconds: float = 600.0
    critical_seconds: float = 1800.0
    warning_ratio: float = 0.75
    critical_ratio: float = 0.9
    power: bool = False
    currency: str = "EUR"
    show_reservation_names: bool = False
    max_series: int = 10_000
    node_classes: NodeClasses = field(default_factory=default_node_classes)
    queries: tuple[tuple[str, str], ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def system(self, name: str) -> System | None:
        return next((s for s in self.systems if s.name == name), None)


def _secret(spec: Mapping[str, str] | None, where: str, errors: list[str]) -> Secret | None:
    if spec is None:
        return None
    try:
        return resolve_secret(spec, where)
    except ConfigError as exc:
        errors.extend(exc.errors)
        return None


def _build_upstream(doc: Mapping[str, Any], where: str, errors: list[str]) -> Upstream:
    basic = doc.get("basic_auth") or {}
    tls = doc.get("tls") or {}
    if basic and "bearer_token" in doc:
        errors.append(f"{where}: basic_auth and bearer_token exclude each other")
    if tls.get("insecure_skip_verify") and tls.get("ca_file"):
        errors.append(f"{where}.tls: insecure_skip_verify and ca_file exclude each other")
    ca_file = Path(tls["ca_file"]) if tls.get("ca_file") else None
    if ca_file is not None and not ca_file.is_file():
        errors.append(f"{where}.tls.ca_file: {ca_file} is not a readable file")
    return Upstream(
        url=str(doc["url"]).rstrip("/"),
        timeout_seconds=float(doc.get("timeout_seconds", 10.0)),
        username=basic.get("username"),
        password=_secret(basic.get("password"), f"{where}.basic_auth.password", errors),
        bearer_token=_secret(doc.get("bearer_token"), f"{where}.bearer_token", errors),
        ca_file=ca_file,
        insecure_skip_verify=bool(tls.get("insecure_skip_verify", False)),
        max_response_bytes=int(doc.get("max_response_bytes", 8 << 20)),
    )


_PROMQL_STRING_UNSAFE = re.compile(r'["\\\n]')


def _build_systems(doc: list[Mapping[str, Any]], errors: list[str]) -> tuple[System, ...]:
    systems = []
    for i, item in enumerate(doc):
        where = f"systems.{i}"
        filesystems = []
        for j, fs in enumerate(item.get("filesystems") or []):
            node_series = "instance" in fs or "mountpoint" in fs
            if node_series and not ("instance" in fs and "mountpoint" in fs):
                errors.append(f"{where}.filesystems.{j}: instance and mountpoint go together")
            if not node_series and "check" not in fs:
                errors.append(f"{where}.filesystems.{j}: give instance and mountpoint, or a check query")
            if node_series and ("check" in fs or "used_ratio" in fs):
                errors.append(
                    f"{where}.filesystems.{j}: check/used_ratio replace instance and mountpoint; give one"
                )
            filesystems.append(
                Filesystem(
                    fs["name"],
                    fs.get("instance"),
                    fs.get("mountpoint"),
                    fs.get("check"),
                    fs.get("used_ratio"),
                )
            )
        names = [f.name for f in filesystems]
        for name in sorted({n for n in names if names.count(n) > 1}):
            errors.append(f"{where}.filesystems: {name!r} is listed twice")
        systems.append(
            System(
                name=item["name"],
                title=item.get("title", item["name"]),
                cluster=item.get("cluster", item["name"]),
                description=item.get("description", ""),
                partitions=tuple(item.get("partitions") or ()),
                login_nodes=tuple(item.get("login_nodes") or ()),
                filesystems=tuple(filesystems),
                power=bool(item.get("power", True)),
            )
        )
    names = [s.name for s in systems]
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"systems: {name!r} is listed twice")
    return tuple(systems)


def build(doc: Mapping[str, Any]) -> StatusPageConfig:
    errors: list[str] = []
    prometheus = _build_upstream(doc["prometheus"], "prometheus", errors)
    alertmanager = None
    if "alertmanager" in doc:
        am = doc["alertmanager"]
        public = am.get("public_label") or {"name": "public", "value": "true"}
        if _PROMQL_STRING_UNSAFE.search(public["value"]):
            errors.append('alertmanager.public_label.value: may not contain ", \\ or a line break')
        alertmanager = AlertmanagerConfig(
            _build_upstream(am, "alertmanager", errors),
            public_label=public["name"],
            public_value=public["value"],
            system_label=am.get("system_label", "cluster"),
            summary_annotation=am.get("summary_annotation", "summary"),
            max_alerts=int(am.get("max_alerts", 200)),
        )
    timezone = doc.get("timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(f"timezone: unknown time zone {timezone!r}")
    refresh = doc.get("refresh") or {}
    staleness = doc.get("staleness") or {}
    warning, critical = (
        float(staleness.get("warning_seconds", 600)),
        float(staleness.get("critical_seconds", 1800)),
    )
    if critical < warning:
        errors.append("staleness.critical_seconds: must not be less than warning_seconds")
    util = doc.get("utilisation") or {}
    warning_ratio, critical_ratio = (
        float(util.get("warning_ratio", 0.75)),
        float(util.get("critical_ratio", 0.9)),
    )
    if critical_ratio < warning_ratio:
        errors.append("utilisation.critical_ratio: must not be less than warning_ratio")
    classes = default_node_classes()
    overrides = doc.get("node_states") or {}
    classes = NodeClasses(
        **{k: frozenset(overrides.get(k, getattr(classes, k))) for k in NodeClasses.names()}
    )
    systems = _build_systems(doc["systems"], errors)
    queries = dict(doc.get("queries") or {})
    power = bool((doc.get("power") or {}).get("enabled", False))
    if not power and any(name in queries for name in POWER_QUERIES):
        errors.append("queries: power queries are set but power.enabled is false")
    if errors:
        raise ConfigError(errors)
    return StatusPageConfig(
        prometheus=prometheus,
        systems=systems,
        title=doc.get("title", "System status"),
        timezone=timezone,
        alertmanager=alertmanager,
        outages_file=Path(doc["outages_file"]) if "outages_file" in doc else None,
        data_seconds=float(refresh.get("data_seconds", 60)),
        page_seconds=int(refresh.get("page_seconds", 300)),
        warning_seconds=warning,
        critical_seconds=critical,
        warning_ratio=warning_ratio,
        critical_ratio=critical_ratio,
        power=power,
        currency=(doc.get("power") or {}).get("currency", "EUR"),
        show_reservation_names=bool((doc.get("reservations") or {}).get("show_names", False)),
        max_series=int(doc["prometheus"].get("max_series", 10_000)),
        node_classes=classes,
        queries=tuple(sorted(queries.items())),
    )


KIND: ConfigKind[StatusPageConfig] = ConfigKind("statuspage", SCHEMA, build)
