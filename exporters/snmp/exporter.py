"""The SNMP exporter: config, metric catalogue, per-table collectors and the prober."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from prometheus_client.core import Metric

from ..runtime import (
    Collector,
    CollectorError,
    ConfigError,
    ConfigKind,
    Deadline,
    ExporterServer,
    Partial,
    ProbeJob,
    Prober,
    ProbeRequestError,
    ResettableCounter,
    Secret,
    resolve_secret,
    run,
    strict_object,
)
from ..runtime.cli import WebOptions, config_option, web_options
from ..runtime.config import SECRET_SCHEMA
from ..runtime.exposition import Family
from ..runtime.metrics import MetricSpec
from .engine import AUTH_PROTOCOLS, PRIV_PROTOCOLS, Credentials, GufoSession, Session, SnmpEngineError, Value
from .profiles import MetricRule, Profile, Table, load_profiles

logger = logging.getLogger("powerplane.snmp")

DEFAULT_PORT = 9874
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
#: How long an auto-detected module is trusted before sysObjectID is read again.
DETECT_TTL = 600.0

_OUTLET = ("outlet", "outlet_name")
METRICS = (
    MetricSpec("powerplane_pdu_power_watts", "gauge", "Active power drawn through the PDU (all inputs)."),
    MetricSpec(
        "powerplane_pdu_energy_joules_total",
        "counter",
        "Energy delivered by the PDU; a reset of the device meter does not decrease it.",
    ),
    MetricSpec(
        "powerplane_pdu_phase_current_amperes", "gauge", "RMS current of the input phase.", ("phase",)
    ),
    MetricSpec("powerplane_pdu_phase_voltage_volts", "gauge", "RMS voltage of the input phase.", ("phase",)),
    MetricSpec("powerplane_pdu_phase_power_watts", "gauge", "Active power of the input phase.", ("phase",)),
    MetricSpec("powerplane_pdu_bank_current_amperes", "gauge", "Current of the outlet bank.", ("bank",)),
    MetricSpec("powerplane_pdu_outlet_current_amperes", "gauge", "RMS current of the outlet.", _OUTLET),
    MetricSpec("powerplane_pdu_outlet_power_watts", "gauge", "Active power of the outlet.", _OUTLET),
    MetricSpec(
        "powerplane_pdu_outlet_energy_joules_total",
        "counter",
        "Energy delivered by the outlet; a reset of the device meter does not decrease it.",
        _OUTLET,
    ),
    MetricSpec(
        "powerplane_pdu_sensor_temperature_celsius", "gauge", "Temperature at the PDU's sensor.", ("sensor",)
    ),
    MetricSpec(
        "powerplane_pdu_sensor_humidity_ratio",
        "gauge",
        "Relative humidity at the PDU's sensor (0..1).",
        ("sensor",),
    ),
    MetricSpec(
        "powerplane_cooling_temperature_celsius",
        "gauge",
        "Temperature at a point of the cooler: rack_inlet, supply, return, fluid_in, fluid_out.",
        ("point",),
    ),
    MetricSpec("powerplane_cooling_output_watts", "gauge", "Heat the cooler removes now."),
    MetricSpec("powerplane_cooling_demand_watts", "gauge", "Heat the cooler is asked to remove."),
    MetricSpec("powerplane_cooling_group_output_watts", "gauge", "Heat the cooler's group removes now."),
    MetricSpec(
        "powerplane_cooling_group_demand_watts", "gauge", "Heat the cooler's group is asked to remove."
    ),
    MetricSpec("powerplane_cooling_airflow_cubic_meters_per_second", "gauge", "Air moved by the cooler."),
    MetricSpec("powerplane_cooling_fan_speed_ratio", "gauge", "Fan speed as a fraction of the maximum."),
    MetricSpec("powerplane_cooling_humidity_ratio", "gauge", "Relative humidity of the supply air (0..1)."),
    MetricSpec(
        "powerplane_cooling_leak_detected", "gauge", "Whether the cooler's leak sensor reports a leak."
    ),
)
CATALOGUE = {spec.name: spec for spec in METRICS}


# --- configuration ---------------------------------------------------------------------------

_AUTH_SCHEMA = strict_object(
    {
        "version": {"enum": [1, 2, 3]},
        "community": SECRET_SCHEMA,
        "username": {"type": "string", "minLength": 1},
        "security_level": {"enum": ["noAuthNoPriv", "authNoPriv", "authPriv"]},
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
        "targets": {
            "type": "object",
            "additionalProperties": strict_object(
                {
                    "address": {"type": "string", "minLength": 1},
                    "module": {"type": "string"},
                    "auth": {"type": "string"},
                },
                ("address",),
            ),
        },
        "allow": {"type": "array", "items": {"type": "string"}},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
        "max_rows": {"type": "integer", "minimum": 1},
        "per_device_concurrency": {"type": "integer", "minimum": 1, "maximum": 64},
    },
    ("auths",),
)


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
class Target:
    name: str
    host: str
    port: int
    module: str | None = None
    auth: str | None = None


@dataclass(frozen=True)
class SnmpConfig:
    auths: Mapping[str, Auth]
    default_auth: str
    targets: Mapping[str, Target]
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    profiles: Mapping[str, Profile] = field(repr=False)
    timeout: float = 10.0
    max_rows: int = 4096
    #: Probes of one device (distinct module/auth; identical ones are merged) walking at once.
    per_device_concurrency: int = 2


def split_address(address: str, where: str = "target") -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` → (host, port); port 161 by default."""
    host, port = address, 161
    if address.startswith("["):
        inner, _, rest = address[1:].partition("]")
        host = inner
        if rest.startswith(":"):
            port = _port(rest[1:], where)
    elif address.count(":") == 1:
        host, _, text = address.partition(":")
        port = _port(text, where)
    if not host:
        raise ValueError(f"{where}: empty host in {address!r}")
    return host, port


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{where}: invalid port {text!r}")
    return int(text)


def _build_auth(name: str, doc: Mapping[str, Any], errors: list[str]) -> Auth | None:
    where = f"auths.{name}"
    try:
        if doc["version"] in (1, 2):
            if "community" not in doc:
                errors.append(f"{where}: v{doc['version']} needs a community")
                return None
            extra = sorted(set(doc) - {"version", "community"})
            if extra:
                errors.append(f"{where}: {', '.join(extra)} only apply to version 3")
            return Auth(
                name, doc["version"], community=resolve_secret(doc["community"], f"{where}.community")
            )
        if "username" not in doc:
            errors.append(f"{where}: version 3 needs a username")
            return None
        level = doc.get("security_level", "authPriv")
        needs_auth, needs_priv = level != "noAuthNoPriv", level == "authPriv"
        for key, needed in (
            ("auth_protocol", needs_auth),
            ("auth_password", needs_auth),
            ("priv_protocol", needs_priv),
            ("priv_password", needs_priv),
        ):
            if needed and key not in doc:
                errors.append(f"{where}: {level} needs {key}")
            if not needed and key in doc:
                errors.append(f"{where}: {key} is not used with {level}")
        if any(e.startswith(where) for e in errors):
            return None
        return Auth(
            name,
            3,
            username=doc["username"],
            auth_protocol=doc.get("auth_protocol", "") if needs_auth else "",
            auth_password=resolve_secret(doc["auth_password"], f"{where}.auth_password")
            if needs_auth
            else None,
            priv_protocol=doc.get("priv_protocol", "") if needs_priv else "",
            priv_password=resolve_secret(doc["priv_password"], f"{where}.priv_password")
            if needs_priv
            else None,
        )
    except ConfigError as exc:
        errors.extend(exc.errors)
        return None


def build_config(doc: Mapping[str, Any]) -> SnmpConfig:
    errors: list[str] = []
    auths = {}
    for name, spec in doc["auths"].items():
        auth = _build_auth(name, spec, errors)
        if auth is not None:
            auths[name] = auth
    default_auth = doc.get("default_auth") or (next(iter(doc["auths"])) if len(doc["auths"]) == 1 else "")
    if default_auth and default_auth not in doc["auths"]:
        errors.append(f"default_auth: unknown auth {default_auth!r}")
    profiles: dict[str, Profile] = {}
    try:
        profiles = load_profiles(CATALOGUE, [Path(p) for p in doc.get("profile_files", [])])
    except ConfigError as exc:
        errors.extend(exc.errors)
    targets = {}
    for name, spec in doc.get("targets", {}).items():
        if spec.get("auth") and spec["auth"] not in doc["auths"]:
            errors.append(f"targets.{name}.auth: unknown auth {spec['auth']!r}")
        if spec.get("module") and profiles and spec["module"] not in profiles:
            errors.append(f"targets.{name}.module: unknown module {spec['module']!r}")
        try:
            host, port = split_address(spec["address"], f"targets.{name}.address")
        except ValueError as exc:
            errors.append(str(exc))
            continue
        targets[name] = Target(name, host, port, spec.get("module"), spec.get("auth"))
    allow = []
    for i, text in enumerate(doc.get("allow", [])):
        try:
            allow.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            errors.append(f"allow[{i}]: {text!r} is not an IP network (CIDR)")
    if errors:
        raise ConfigError(errors)
    return SnmpConfig(
        auths=auths,
        default_auth=default_auth,
        targets=targets,
        allow=tuple(allow),
        profiles=profiles,
        timeout=float(doc.get("timeout", 10.0)),
        max_rows=int(doc.get("max_rows", 4096)),
        per_device_concurrency=int(doc.get("per_device_concurrency", 2)),
    )


KIND: ConfigKind[SnmpConfig] = ConfigKind("snmp", CONFIG_SCHEMA, build_config)


# --- collection ------------------------------------------------------------------------------


@dataclass
class Connection:
    """One probe's session, shared by its table collectors (requests go out one at a time)."""

    session: Session
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class TableSnapshot:
    # column name → {index: value}
    columns: Mapping[str, Mapping[str, Value]]


def _number(value: Value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = value[:16] if isinstance(value, bytes | str) else value
        raise CollectorError(f"{where}: expected a number, got {type(value).__name__} {shown!r}")
    return float(value)


def _text(value: Value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\x00 ")
    return "" if value is None else str(value)


class TableCollector(Collector[TableSnapshot]):
    """Walks one table's columns and renders its metrics."""

    def __init__(
        self,
        target: str,
        profile: Profile,
        table: Table,
        connection: Connection,
        counters: ResettableCounter,
        max_rows: int,
    ) -> None:
        self.name = table.name
        self.target = target
        self.profile = profile
        self.table = table
        self.connection = connection
        self.counters = counters
        self.max_rows = max_rows

    async def fetch(self, deadline: Deadline) -> TableSnapshot | Partial[TableSnapshot]:
        deadline = _inner(deadline)
        columns: dict[str, dict[str, Value]] = {}
        errors: list[str] = []
        async with self.connection.lock:
            for name, oid in self.table.columns:
                try:
                    rows = await self.connection.session.walk(
                        oid, deadline, self.max_rows, self.profile.max_repetitions
                    )
                except SnmpEngineError as exc:
                    if deadline.expired() or "timeout" in str(exc):
                        # Nothing more will come in time: name what is missing and stop.
                        errors.append(f"{self.table.name}.{name}: {exc}")
                        break
                    errors.append(f"{self.table.name}.{name}: {exc}")
                    continue
                cut = len(oid) + 1
                columns[name] = {row_oid[cut:]: value for row_oid, value in rows}
        if not any(columns.values()):
            if errors:
                raise CollectorError("; ".join(errors))
            raise CollectorError(f"{self.table.name}: the device has none of the table's columns")
        errors.extend(self._type_errors(columns))
        snapshot = TableSnapshot(columns)
        return Partial(snapshot, errors) if errors else snapshot

    def _type_errors(self, columns: Mapping[str, Mapping[str, Value]]) -> list[str]:
        numeric = {
            c for rule in self.table.rules for c in (*rule.columns, *([rule.digits] if rule.digits else []))
        }
        found = []
        for name in sorted(numeric):
            bad = [
                i
                for i, v in columns.get(name, {}).items()
                if isinstance(v, bool) or not isinstance(v, int | float)
            ]
            if bad:
                found.append(
                    f"{self.table.name}.{name}: {len(bad)} value(s) of the wrong type (not a number), "
                    f"e.g. index {bad[0]}"
                )
        return found

    def render(self, snapshot: TableSnapshot) -> Iterable[Metric]:
        families: dict[str, Family] = {}
        errors: list[str] = []
        # Shared by the rules of one render: rows in index order and split indexes.
        orders: dict[tuple[str, ...], list[str]] = {}
        parts_of: dict[str, list[str]] = {}
        for rule in self.table.rules:
            family = families.get(rule.metric)
            spec = CATALOGUE[rule.metric]
            if family is None:
                family = families[rule.metric] = spec.family()
            add = family.add_metric
            for labels, value in self._samples(rule, spec.labels, snapshot, errors, orders, parts_of):
                add(labels, value)
        # Wrongly typed cells were reported by fetch (Partial); here they are only skipped.
        return [f for f in families.values() if f.samples]

    def _samples(
        self,
        rule: MetricRule,
        label_names: Sequence[str],
        snapshot: TableSnapshot,
        errors: list[str],
        orders: dict[tuple[str, ...], list[str]],
        parts_of: dict[str, list[str]],
    ) -> list[tuple[list[str], float]]:
        columns = snapshot.columns
        primary = [columns.get(c, {}) for c in rule.columns]
        order = orders.get(rule.columns)
        if order is None:
            indexes: set[str] = set().union(*(set(p) for p in primary))
            order = orders[rule.columns] = sorted(indexes, key=_index_key)
        sources = dict(rule.labels)
        label_sources = [sources[n] for n in label_names]
        sentinels = self.profile.sentinels
        value_map = dict(rule.value_map) if rule.value_map else None
        digits_column = columns.get(rule.digits, {}) if rule.digits is not None else None
        scale = rule.scale
        samples: list[tuple[list[str], float]] = []
        for index in order:
            parts = parts_of.get(index)
            if parts is None:
                parts = parts_of[index] = index.split(".")
            if rule.where is not None:
                position, wanted = rule.where
                if not -len(parts) <= position < len(parts) or parts[position] != str(wanted):
                    continue
            raw: Value = None
            for column in primary:
                cell = column.get(index)
                if cell is not None:
                    raw = cell
                    break
            if raw is None:
                continue
            try:
                if type(raw) is int or type(raw) is float:  # the common case, without the checks
                    value = float(raw)
                else:
                    value = _number(raw, f"{self.table.name}.{rule.columns[0]}.{index}")
                if sentinels and value == int(value) and int(value) in sentinels:
                    continue
                if value_map is not None:
                    mapped = value_map.get(int(value))
                    if mapped is None:
                        continue
                    value = mapped
                if digits_column is not None:
                    where = f"{self.table.name}.{rule.columns[0]}.{index}"
                    digits = _number(digits_column.get(index), f"{where} digits")
                    value = value / (10 ** int(digits))
                if scale != 1.0:
                    value = _scaled(value, scale)
            except CollectorError as exc:
                errors.append(str(exc))
                continue
            labels = []
            for source in label_sources:
                if source.value is not None:
                    labels.append(source.value)
                elif source.index is not None:
                    labels.append(parts[source.index] if -len(parts) <= source.index < len(parts) else "")
                else:
                    key = ".".join(parts[: source.parts]) if source.parts else index
                    labels.append(_text(columns.get(source.column or "", {}).get(key)))
            if rule.resettable:
                value = self.counters.update((self.target, rule.metric, index), value)
            samples.append((labels, value))
        return samples


def _inner(deadline: Deadline) -> Deadline:
    """A deadline a little before the probe's, so a slow table ends as a partial result
    instead of the probe runner cancelling every table at the same instant."""
    return Deadline(deadline.at - min(0.2, 0.05 + 0.02 * deadline.remaining()))


def _scaled(value: float, scale: float) -> float:
    # Dividing by 10 rather than multiplying by 0.1 keeps 38 * 0.1 from showing as 3.8000000000000003.
    if scale < 1:
        inverse = round(1 / scale)
        if abs(inverse * scale - 1) < 1e-12:
            return value / inverse
    return value * scale


def _index_key(index: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in index.split("."))
    except ValueError:
        return ()


# --- probing ---------------------------------------------------------------------------------


class SnmpProber(Prober):
    exporter = "snmp"

    def __init__(self, config: SnmpConfig, session_factory: Any = GufoSession) -> None:
        self.config = config
        self.session_factory = session_factory
        self.counters = ResettableCounter()
        self._detected: dict[tuple[str, int, str], tuple[str, float]] = {}

    def _target(self, text: str) -> tuple[str, str, int, Target | None]:
        named = self.config.targets.get(text)
        if named is not None:
            return named.name, named.host, named.port, named
        try:
            host, port = split_address(text)
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ProbeRequestError(
                f"target {text[:64]!r} is not configured and not an allowed IP address"
            ) from None
        if not any(address in network for network in self.config.allow):
            raise ProbeRequestError(f"target {text[:64]!r} is not configured and not in the allow-list")
        return text, host, port, None

    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        text = params.get("target", "")
        if not text:
            raise ProbeRequestError("missing target parameter")
        name, host, port, named = self._target(text)
        auth_name = params.get("auth") or (named.auth if named else None) or self.config.default_auth
        auth = self.config.auths.get(auth_name)
        if auth is None:
            raise ProbeRequestError(
                f"unknown auth {auth_name[:64]!r}" if auth_name else "missing auth parameter"
            )
        module = params.get("module") or (named.module if named else None) or ""
        if module and module not in self.config.profiles:
            raise ProbeRequestError(f"unknown module {module[:64]!r}")
        timeout = self.config.timeout
        session = self.session_factory(host, port, auth.credentials(), timeout)
        connection = Connection(session)
        job_collectors: list[Collector[Any]] = []
        detect_key = (host, port, auth.name)

        profile = self.config.profiles.get(module) if module else self._cached_profile(detect_key)
        if profile is not None:
            job_collectors = self._collectors(name, profile, connection)
            connect = None
        else:
            job_collectors = [_Pending()]

            async def connect(deadline: Deadline) -> None:
                detected = await self._detect(connection, deadline, detect_key)
                job_collectors[:] = self._collectors(name, detected, connection)

        async def close_after(deadline: Deadline) -> None:
            if connect is not None:
                await connect(deadline)

        return ProbeJob(
            target=name,
            module=module or "auto",
            timeout=timeout,
            collectors=job_collectors,
            device=f"{host}:{port}",
            key=(host, port, module, auth.name),
            connect=close_after if connect is not None else _noop,
        )

    def _cached_profile(self, key: tuple[str, int, str]) -> Profile | None:
        cached = self._detected.get(key)
        if cached and time.monotonic() - cached[1] < DETECT_TTL:
            return self.config.profiles.get(cached[0])
        return None

    async def _detect(self, connection: Connection, deadline: Deadline, key: tuple[str, int, str]) -> Profile:
        try:
            async with connection.lock:
                values = await connection.session.get([SYS_OBJECT_ID], _inner(deadline))
        except SnmpEngineError as exc:
            raise CollectorError(f"reading sysObjectID: {exc}") from None
        oid = _text(values.get(SYS_OBJECT_ID)).lstrip(".")
        best = max(self.config.profiles.values(), key=lambda p: p.matches(oid), default=None)
        if best is None or best.matches(oid) == 0:
            raise CollectorError(
                f"no module recognises sysObjectID {oid[:64] or '(none)'}; name one with module="
            )
        self._detected[key] = (best.name, time.monotonic())
        return best

    def _collectors(self, name: str, profile: Profile, connection: Connection) -> list[Collector[Any]]:
        return [
            TableCollector(name, profile, table, connection, self.counters, self.config.max_rows)
            for table in profile.tables
        ]


async def _noop(_deadline: Deadline) -> None:
    return None


class _Pending(Collector[None]):
    """Placeholder until auto-detection has chosen the tables (replaced in ``connect``)."""

    name = "detect"

    async def fetch(self, deadline: Deadline) -> None:
        raise CollectorError("module detection did not run")

    def render(self, snapshot: None) -> Iterable[Metric]:
        return []


def make_server(config: SnmpConfig, **kwargs: Any) -> ExporterServer:
    """The SNMP exporter for ``config``."""
    return ExporterServer(
        "snmp",
        prober=SnmpProber(config),
        timeout=config.timeout,
        per_device_concurrency=config.per_device_concurrency,
        description="Metered PDUs and in-row coolers over SNMP (profiles: "
        + ", ".join(sorted(config.profiles))
        + ")",
        **kwargs,
    )


@click.command("snmp")
@config_option(KIND, help="SNMP exporter config (auths, targets, allow-list, extra profiles).")
@web_options(DEFAULT_PORT)
def command(web: WebOptions, config: SnmpConfig) -> None:
    """Metered PDUs and in-row coolers over SNMP (multi-target /probe)."""
    run(make_server(config, web_config=web.web_config), web.listen_address)
