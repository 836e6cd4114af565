"""Node power, power limits, PSUs, thermals, health and identity from BMCs through Redfish.

A multi-target exporter: Prometheus asks ``/probe?target=idrac-01&module=default&auth=idrac``
and the exporter reads that BMC, with a session that lives across probes, paths discovered from
the service root and cached, and each collector succeeding or failing on its own.  Both the
legacy ``Power``/``Thermal`` resources and the newer ``PowerSubsystem``/``ThermalSubsystem``/
``EnvironmentMetrics`` are read (``schema: auto`` prefers the newer where the chassis links it).

Node input power, ``powerplane_redfish_power_watts``, comes from the first of:
``EnvironmentMetrics.PowerWatts.Reading`` → ``Power.PowerControl[].PowerConsumedWatts`` →
telemetry report ``PowerMetrics`` ``SystemInputPower``; ``powerplane_redfish_power_source_info``
says which.  PSU input watts are not consumption (some firmware reports the rating there).

Health is one series per resource and state: ``state`` is ``ok``, ``warning`` or ``critical``,
the value is 1 for the resource's current state and 0 for the other two (all 0 when the BMC
reports no health).

    powerplane_redfish_power_watts 412.0
    powerplane_redfish_power_source_info{source="environment_metrics"} 1.0
    powerplane_redfish_power_limit_watts 700.0
    powerplane_redfish_psu_output_watts{psu="PSU.Slot.1"} 193.6
    powerplane_redfish_temperature_celsius{context="Intake",sensor="System Board Inlet Temp"} 22.0
    powerplane_redfish_fan_speed_rpm{fan="System Board Fan1"} 8040.0
    powerplane_redfish_health{resource="system",state="ok"} 1.0
    powerplane_redfish_system_info{model="PowerEdge R760",serial="CNSIM0001",...} 1.0
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import click
from prometheus_client.core import Metric

from powerplane.components import Component

from ..runtime import (
    Collector,
    CollectorError,
    Deadline,
    ExporterServer,
    NoData,
    Partial,
    ProbeJob,
    Prober,
    ProbeRequestError,
    ResettableCounter,
    run,
)
from ..runtime.cli import WebOptions, config_option, web_options
from ..runtime.exposition import Family
from ..runtime.metrics import MetricSpec
from .client import Discovery, RedfishClient, RedfishError, Target
from .config import KIND, Module, RedfishConfig, parse_endpoint
from .parse import (
    PSU,
    Doc,
    Fan,
    PowerSnapshot,
    SystemSnapshot,
    ThermalSnapshot,
    environment_power,
    legacy_power,
    legacy_psus,
    legacy_thermal,
    new_fan,
    new_psu,
    new_thermal_metrics,
    newest_samples,
    summarise,
    system_info,
)

__all__ = ["KIND", "METRICS", "RedfishProber", "command", "make_server"]

logger = logging.getLogger("powerplane.redfish")
DEFAULT_PORT = 9873
T = TypeVar("T")

POWER = MetricSpec(
    "powerplane_redfish_power_watts",
    "gauge",
    "Node input power reported by the BMC (EnvironmentMetrics.PowerWatts, else "
    "PowerControl.PowerConsumedWatts, else telemetry SystemInputPower).",
)
POWER_SOURCE = MetricSpec(
    "powerplane_redfish_power_source_info",
    "info",
    "Which Redfish resource powerplane_redfish_power_watts came from.",
    ("source",),
)
POWER_INTERVAL = MetricSpec(
    "powerplane_redfish_power_interval_watts",
    "gauge",
    "Average, minimum and maximum node input power over the BMC's own interval.",
    ("stat",),
)
POWER_INTERVAL_SECONDS = MetricSpec(
    "powerplane_redfish_power_interval_seconds", "gauge", "Length of the BMC's power statistics interval."
)
POWER_LIMIT = MetricSpec(
    "powerplane_redfish_power_limit_watts", "gauge", "Active node power cap (absent when none is set)."
)
POWER_CAPACITY = MetricSpec(
    "powerplane_redfish_power_capacity_watts", "gauge", "Power the node's supplies can deliver."
)
ENERGY = MetricSpec(
    "powerplane_redfish_energy_joules_total",
    "counter",
    "Node energy from the BMC's meter (EnergykWh), reset-safe.",
)
PSU_INPUT = MetricSpec(
    "powerplane_redfish_psu_input_watts",
    "gauge",
    "PSU input power as reported (some firmware reports the rating here: never sum it as consumption).",
    ("psu",),
)
PSU_OUTPUT = MetricSpec("powerplane_redfish_psu_output_watts", "gauge", "PSU output power.", ("psu",))
PSU_CAPACITY = MetricSpec("powerplane_redfish_psu_capacity_watts", "gauge", "PSU rated capacity.", ("psu",))
PSU_EFFICIENCY = MetricSpec(
    "powerplane_redfish_psu_efficiency_ratio", "gauge", "PSU rated efficiency (0..1).", ("psu",)
)
PSU_VOLTAGE = MetricSpec(
    "powerplane_redfish_psu_input_voltage_volts", "gauge", "PSU line input voltage.", ("psu",)
)
TEMPERATURE = MetricSpec(
    "powerplane_redfish_temperature_celsius",
    "gauge",
    "Temperature sensor reading, with the sensor's PhysicalContext.",
    ("sensor", "context"),
)
TEMPERATURE_SUMMARY = MetricSpec(
    "powerplane_redfish_temperature_summary_celsius",
    "gauge",
    "Chassis intake/exhaust temperature (the BMC's summary, else coolest intake / hottest exhaust).",
    ("context",),
)
FAN_RPM = MetricSpec(
    "powerplane_redfish_fan_speed_rpm", "gauge", "Fan speed in revolutions per minute.", ("fan",)
)
FAN_RATIO = MetricSpec(
    "powerplane_redfish_fan_speed_ratio", "gauge", "Fan speed as a fraction of its maximum.", ("fan",)
)
HEALTH = MetricSpec(
    "powerplane_redfish_health",
    "gauge",
    "Health of the resource: 1 for its current state (ok, warning, critical), 0 for the other two.",
    ("resource", "state"),
)
SYSTEM_INFO = MetricSpec(
    "powerplane_redfish_system_info",
    "info",
    "Identity of the system and its BMC, constant 1.",
    ("manufacturer", "model", "serial", "sku", "bios_version", "bmc_model", "bmc_firmware_version"),
)
POWERED_ON = MetricSpec(
    "powerplane_redfish_system_powered_on", "gauge", "Whether the system is powered on (1) or not (0)."
)
TELEMETRY = MetricSpec(
    "powerplane_redfish_telemetry_value",
    "gauge",
    "Newest sample of a telemetry MetricReport metric (units as the BMC defines them).",
    ("report", "metric", "context"),
)
SESSIONS = MetricSpec(
    "powerplane_redfish_sessions", "gauge", "Redfish sessions this exporter holds, over all BMCs."
)
SESSIONS_CREATED = MetricSpec(
    "powerplane_redfish_sessions_created_total", "counter", "Redfish sessions this exporter created."
)
LOGIN_FAILURES = MetricSpec(
    "powerplane_redfish_login_failures_total",
    "counter",
    "Failed logins, by reason (session_limit: the BMC's sessions were used up, RAC0218).",
    ("reason",),
)
REQUESTS = MetricSpec("powerplane_redfish_requests_total", "counter", "HTTP requests made to BMCs.")

METRICS = (
    POWER,
    POWER_SOURCE,
    POWER_INTERVAL,
    POWER_INTERVAL_SECONDS,
    POWER_LIMIT,
    POWER_CAPACITY,
    ENERGY,
    PSU_INPUT,
    PSU_OUTPUT,
    PSU_CAPACITY,
    PSU_EFFICIENCY,
    PSU_VOLTAGE,
    TEMPERATURE,
    TEMPERATURE_SUMMARY,
    FAN_RPM,
    FAN_RATIO,
    HEALTH,
    SYSTEM_INFO,
    POWERED_ON,
    TELEMETRY,
    SESSIONS,
    SESSIONS_CREATED,
    LOGIN_FAILURES,
    REQUESTS,
)
HEALTH_STATES = ("ok", "warning", "critical")
EXPAND_REFUSED = (400, 403, 404, 405, 406, 501)


class ProbeContext:
    """One probe of one target: requests shared between its collectors, made at most once."""

    def __init__(self, client: RedfishClient, target: Target, module: Module) -> None:
        self.client = client
        self.target = target
        self.module = module
        self.deadline = Deadline.after(module.timeout)
        self._discovery: Discovery | None = None
        self._memo: dict[str, asyncio.Future[Any]] = {}

    async def connect(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self._discovery = await self.client.discover(self.target, deadline, self.module)

    @property
    def discovery(self) -> Discovery:
        if self._discovery is None:
            raise CollectorError("not connected")
        return self._discovery

    def once(self, key: str, factory: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        future = self._memo.get(key)
        if future is None:
            future = asyncio.ensure_future(factory())
            # Retrieve the result of a fetch whose collectors all gave up, so it is not logged.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._memo[key] = future
        # shield: one collector giving up must not cancel a request another collector awaits.
        return asyncio.shield(future)

    async def get(self, path: str) -> dict[str, Any]:
        return await self.once(path, lambda: self.client.get(self.target, path, self.deadline, self.module))

    async def members(self, path: str, levels: int = 1) -> list[dict[str, Any]]:
        """A collection's members, expanded in one request where the service allows it."""
        doc: dict[str, Any] | None = None
        levels = min(levels, self.discovery.expand_levels)
        if levels and not self.target.expand_refused:
            try:
                doc = await self.get(f"{path}?$expand=.($levels={levels})")
            except RedfishError as exc:
                if exc.status not in EXPAND_REFUSED:
                    raise
                self.target.expand_refused = True  # remembered per target: fall back from now on
        if doc is None:
            doc = await self.get(path)
        members = doc.get("Members")
        if not isinstance(members, list):
            raise RedfishError(f"{path}: Members: missing or not an array")
        out: list[dict[str, Any] | None] = []
        pending: dict[int, str] = {}
        for i, member in enumerate(members):
            if isinstance(member, dict) and set(member) - {"@odata.id"}:
                out.append(member)
            elif isinstance(member, dict) and isinstance(member.get("@odata.id"), str):
                pending[i] = member["@odata.id"]
                out.append(None)
        fetched = await asyncio.gather(*(self.get(p) for p in pending.values()))
        for i, member_doc in zip(pending, fetched, strict=True):
            out[i] = member_doc
        return [m for m in out if m is not None]

    def use_new(self, link: str | None) -> bool:
        return link is not None and self.module.schema != "legacy"

    def use_legacy(self, link: str | None) -> bool:
        return link is not None and self.module.schema != "new"

    async def psus(self) -> tuple[list[PSU], list[str]]:
        return await self.once("#psus", self._psus)

    async def _psus(self) -> tuple[list[PSU], list[str]]:
        d = self.discovery
        errors: list[str] = []
        if self.use_new(d.power_subsystem):
            assert d.power_subsystem is not None
            subsystem = await self.get(d.power_subsystem)
            collection = Doc(subsystem, "PowerSubsystem", errors).obj("PowerSupplies")
            link = collection.text("@odata.id") if collection is not None else None
            if link is None:
                return [], errors
            items = await self.members(link, levels=2)
            psus: list[PSU] = []
            for i, item in enumerate(items):
                doc = Doc(item, f"PowerSupplies[{i}]", errors)
                if doc.absent():
                    continue
                metrics = doc.obj("Metrics")
                if metrics is not None and set(metrics.data) == {"@odata.id"}:
                    try:
                        metrics = Doc(
                            await self.get(metrics.data["@odata.id"]),
                            f"{name_of_item(doc, i)}/Metrics",
                            errors,
                        )
                    except RedfishError as exc:
                        errors.append(str(exc))
                        metrics = None
                psus.append(new_psu(doc, metrics, f"psu{i}"))
            return psus, errors
        if self.use_legacy(d.power):
            assert d.power is not None
            return legacy_psus(Doc(await self.get(d.power), "Power", errors)), errors
        raise NoData("the chassis links neither PowerSubsystem nor Power")

    async def thermal(self) -> tuple[ThermalSnapshot, list[str]]:
        return await self.once("#thermal", self._thermal)

    async def _thermal(self) -> tuple[ThermalSnapshot, list[str]]:
        d = self.discovery
        errors: list[str] = []
        if self.use_new(d.thermal_subsystem):
            assert d.thermal_subsystem is not None
            subsystem = Doc(await self.get(d.thermal_subsystem), "ThermalSubsystem", errors)
            snap = ThermalSnapshot()
            metrics_link = subsystem.text("ThermalMetrics", "@odata.id")
            fans_link = subsystem.text("Fans", "@odata.id")

            async def nothing() -> Any:
                return None

            results: tuple[Any, Any] = await asyncio.gather(
                self.get(metrics_link) if metrics_link else nothing(),
                self.members(fans_link) if fans_link else nothing(),
                return_exceptions=True,
            )
            metrics_doc, fan_docs = results
            if isinstance(metrics_doc, BaseException):
                errors.append(str(metrics_doc))
            elif metrics_doc is not None:
                new_thermal_metrics(Doc(metrics_doc, "ThermalMetrics", errors), snap)
            if isinstance(fan_docs, BaseException):
                errors.append(str(fan_docs))
            elif fan_docs is not None:
                for i, fan in enumerate(fan_docs):
                    doc = Doc(fan, f"Fans[{i}]", errors)
                    if not doc.absent():
                        snap.fans.append(new_fan(doc, f"fan{i}"))
            summarise(snap)
            if not snap.temperatures and not snap.fans and errors:
                raise CollectorError("; ".join(errors))
            return snap, errors
        if self.use_legacy(d.thermal):
            assert d.thermal is not None
            return legacy_thermal(Doc(await self.get(d.thermal), "Thermal", errors)), errors
        raise NoData("the chassis links neither ThermalSubsystem nor Thermal")


def name_of_item(doc: Doc, i: int) -> str:
    return doc.text("Id") or doc.text("MemberId") or f"PowerSupplies[{i}]"


def _partial(snapshot: T, errors: list[str]) -> T | Partial[T]:
    return Partial(snapshot, errors) if errors else snapshot


class PowerCollector(Collector[PowerSnapshot]):
    name = "power"

    def __init__(self, ctx: ProbeContext, energy: ResettableCounter) -> None:
        self.ctx = ctx
        self.energy = energy

    async def fetch(self, deadline: Deadline) -> PowerSnapshot | Partial[PowerSnapshot]:
        ctx = self.ctx
        d = ctx.discovery
        snap = PowerSnapshot()
        errors: list[str] = []
        new = ctx.use_new(d.environment_metrics)
        if new:
            assert d.environment_metrics is not None
            try:
                environment_power(
                    Doc(await ctx.get(d.environment_metrics), "EnvironmentMetrics", errors), snap
                )
            except RedfishError as exc:
                errors.append(str(exc))
            if d.power_subsystem:
                try:
                    subsystem = Doc(await ctx.get(d.power_subsystem), "PowerSubsystem", errors)
                    snap.capacity_watts = subsystem.number("CapacityWatts")
                except RedfishError as exc:
                    errors.append(str(exc))
        if ctx.use_legacy(d.power) and (snap.watts is None or not new):
            assert d.power is not None
            try:
                legacy_power(Doc(await ctx.get(d.power), "Power", errors), snap)
            except RedfishError as exc:
                errors.append(str(exc))
        if snap.watts is None and d.reports:
            try:
                samples = newest_samples(
                    Doc(await ctx.get(f"{d.reports}/PowerMetrics"), "PowerMetrics", errors)
                )
                watts = [v for (metric, _c), v in samples.items() if metric == "SystemInputPower"]
                if watts:
                    snap.watts, snap.source = watts[0], "telemetry"
            except RedfishError as exc:
                errors.append(str(exc))
        if snap.watts is None:
            if not errors and not (d.environment_metrics or d.power):
                raise NoData("the chassis links neither EnvironmentMetrics nor Power")
            raise CollectorError("no node power reading: " + ("; ".join(errors) or "no source has a value"))
        if snap.energy_joules is not None:
            snap.energy_joules = self.energy.update(ctx.target.device, snap.energy_joules)
        return _partial(snap, errors)

    def render(self, snapshot: PowerSnapshot) -> Iterable[Metric]:
        power = POWER.family()
        power.add_metric([], snapshot.watts or 0.0)
        source = POWER_SOURCE.family()
        source.add_metric([snapshot.source], 1.0)
        yield power
        yield source
        if snapshot.stats:
            stats = POWER_INTERVAL.family()
            for stat, value in snapshot.stats.items():
                stats.add_metric([stat], value)
            yield stats
        scalars: list[tuple[MetricSpec, float | None]] = [
            (POWER_INTERVAL_SECONDS, snapshot.interval_seconds),
            (POWER_LIMIT, snapshot.limit_watts),
            (POWER_CAPACITY, snapshot.capacity_watts),
            (ENERGY, snapshot.energy_joules),
        ]
        for spec, reading in scalars:
            if reading is not None:
                family = spec.family()
                family.add_metric([], reading)
                yield family


class PSUCollector(Collector[list[PSU]]):
    name = "psu"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> list[PSU] | Partial[list[PSU]]:
        psus, errors = await self.ctx.psus()
        return _partial(psus, errors)

    def render(self, snapshot: list[PSU]) -> Iterable[Metric]:
        fields = (
            (PSU_INPUT, "input_watts"),
            (PSU_OUTPUT, "output_watts"),
            (PSU_CAPACITY, "capacity_watts"),
            (PSU_EFFICIENCY, "efficiency_ratio"),
            (PSU_VOLTAGE, "input_volts"),
        )
        for spec, attr in fields:
            family = spec.family()
            for psu in snapshot:
                value = getattr(psu, attr)
                if value is not None:
                    family.add_metric([psu.id], value)
            yield family


class ThermalCollector(Collector[ThermalSnapshot]):
    name = "thermal"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> ThermalSnapshot | Partial[ThermalSnapshot]:
        snap, errors = await self.ctx.thermal()
        return _partial(snap, errors)

    def render(self, snapshot: ThermalSnapshot) -> Iterable[Metric]:
        temps = TEMPERATURE.family()
        for t in _unique(snapshot.temperatures, lambda t: (t.sensor, t.context)):
            temps.add_metric([t.sensor, t.context], t.celsius)
        summary = TEMPERATURE_SUMMARY.family()
        for context, value in snapshot.summary.items():
            summary.add_metric([context], value)
        rpm = FAN_RPM.family()
        ratio = FAN_RATIO.family()
        for fan in _unique(snapshot.fans, lambda f: f.id):
            if fan.rpm is not None:
                rpm.add_metric([fan.id], fan.rpm)
            if fan.ratio is not None:
                ratio.add_metric([fan.id], fan.ratio)
        return [temps, summary, rpm, ratio]


def _unique(items: Iterable[T], key: Callable[[T], Any]) -> Iterator[T]:
    # Duplicate label sets make the whole exposition invalid; keep the first of each.
    seen: set[Any] = set()
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            yield item


HealthSnapshot = list[tuple[str, str | None]]


class HealthCollector(Collector[HealthSnapshot]):
    name = "health"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> HealthSnapshot | Partial[HealthSnapshot]:
        ctx = self.ctx
        d = ctx.discovery
        errors: list[str] = []
        out: HealthSnapshot = []
        for resource, path in (("system", d.system), ("chassis", d.chassis)):
            try:
                doc = Doc(await ctx.get(path), resource, errors)
                out.append((resource, doc.text("Status", "HealthRollup") or doc.text("Status", "Health")))
            except RedfishError as exc:
                errors.append(str(exc))
        parts: list[Awaitable[Any]] = [ctx.psus(), ctx.thermal()]
        psus, thermal = await asyncio.gather(*parts, return_exceptions=True)
        if isinstance(psus, tuple):
            out += [(f"psu/{p.id}", p.health) for p in psus[0]]
        elif not isinstance(psus, NoData):
            errors.append(f"PSUs: {psus}")
        if isinstance(thermal, tuple):
            fans: list[Fan] = thermal[0].fans
            out += [(f"fan/{f.id}", f.health) for f in fans]
        elif not isinstance(thermal, NoData):
            errors.append(f"fans: {thermal}")
        if not out:
            raise CollectorError("; ".join(errors) or "no health reported")
        return _partial(out, errors)

    def render(self, snapshot: HealthSnapshot) -> Iterable[Metric]:
        family = HEALTH.family()
        for resource, health in _unique(snapshot, lambda r: r[0]):
            current = (health or "").lower()
            for state in HEALTH_STATES:
                family.add_metric([resource, state], 1.0 if state == current else 0.0)
        yield family


class SystemCollector(Collector[SystemSnapshot]):
    name = "system"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> SystemSnapshot | Partial[SystemSnapshot]:
        d = self.ctx.discovery
        errors: list[str] = []
        snap = system_info(Doc(await self.ctx.get(d.system), "System", errors), d.bmc_firmware, d.bmc_model)
        return _partial(snap, errors)

    def render(self, snapshot: SystemSnapshot) -> Iterable[Metric]:
        info = SYSTEM_INFO.family()
        info.add_metric([snapshot.labels[label] for label in SYSTEM_INFO.labels], 1.0)
        yield info
        if snapshot.powered_on is not None:
            on = POWERED_ON.family()
            on.add_metric([], snapshot.powered_on)
            yield on


TelemetrySnapshot = list[tuple[str, str, str, float]]
REPORTS = ("PowerMetrics", "ThermalSensor")


class TelemetryCollector(Collector[TelemetrySnapshot]):
    name = "telemetry"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> TelemetrySnapshot | Partial[TelemetrySnapshot]:
        reports = self.ctx.discovery.reports
        if not reports:
            raise NoData("the BMC has no telemetry service")
        errors: list[str] = []
        out: TelemetrySnapshot = []
        docs = await asyncio.gather(
            *(self.ctx.get(f"{reports}/{r}") for r in REPORTS), return_exceptions=True
        )
        for report, doc in zip(REPORTS, docs, strict=True):
            if isinstance(doc, BaseException):
                errors.append(str(doc))
                continue
            for (metric, context), value in newest_samples(Doc(doc, report, errors)).items():
                out.append((report, metric, context, value))
        if not out and errors:
            raise CollectorError("; ".join(errors))
        return _partial(out, errors)

    def render(self, snapshot: TelemetrySnapshot) -> Iterable[Metric]:
        family = TELEMETRY.family()
        for report, metric, context, value in snapshot:
            family.add_metric([report, metric, context], value)
        yield family


class RedfishProber(Prober):
    """Resolves ``/probe`` parameters against the config; owns the sessions and the HTTP pool."""

    exporter = "redfish"

    def __init__(self, config: RedfishConfig) -> None:
        self.config = config
        self.client = RedfishClient()
        self.energy = ResettableCounter()

    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        raw = params.get("target", "")
        if not raw:
            raise ProbeRequestError("missing 'target' parameter")
        try:
            endpoint = parse_endpoint(raw)
        except ValueError as exc:
            raise ProbeRequestError(f"target {raw[:100]!r}: {exc}") from None
        config = self.config
        entry = config.targets.get(endpoint.hostport)
        if entry is None and not any(a.matches(endpoint) for a in config.allow):
            raise ProbeRequestError(f"target {endpoint.hostport!r} is neither configured nor allowed")
        module_name = (
            params.get("module") or (entry.module if entry else None) or config.defaults.module or "default"
        )
        module = config.modules.get(module_name)
        if module is None:
            raise ProbeRequestError(f"unknown module {module_name[:64]!r}")
        auth_name = params.get("auth") or (entry.auth if entry else None) or config.defaults.auth
        if auth_name is None and len(config.auths) == 1:
            auth_name = next(iter(config.auths))
        auth = config.auths.get(auth_name or "")
        if auth is None:
            raise ProbeRequestError(f"unknown auth {str(auth_name)[:64]!r}")
        scheme = (entry.scheme if entry else None) or config.defaults.scheme or "https"
        # A request may not downgrade to plain HTTP (credentials in clear) where the config says HTTPS.
        if endpoint.scheme and endpoint.scheme != scheme:
            raise ProbeRequestError(
                f"target {endpoint.hostport!r} is configured for {scheme}, not {endpoint.scheme}"
            )
        target = self.client.target(f"{scheme}://{endpoint.hostport}", endpoint.hostport, auth, module)
        ctx = ProbeContext(self.client, target, module)
        builders: dict[str, Callable[[], Collector[Any]]] = {
            "power": lambda: PowerCollector(ctx, self.energy),
            "psu": lambda: PSUCollector(ctx),
            "thermal": lambda: ThermalCollector(ctx),
            "health": lambda: HealthCollector(ctx),
            "system": lambda: SystemCollector(ctx),
            "telemetry": lambda: TelemetryCollector(ctx),
        }
        return ProbeJob(
            target=endpoint.hostport,
            module=module.name,
            timeout=module.timeout,
            collectors=[builders[name]() for name in module.collectors],
            device=endpoint.hostport,
            key=(target.base, module.name, auth.name),
            connect=ctx.connect,
        )

    async def close(self) -> None:
        await self.client.close()

    def collect(self) -> Iterator[Metric]:
        """The exporter's own session and request counters, for ``/metrics``."""
        stats = self.client.stats
        sessions = SESSIONS.family()
        sessions.add_metric([], float(sum(v for v in self.client.held.values() if v > 0)))
        created = SESSIONS_CREATED.family()
        created.add_metric([], stats["sessions_created"])
        failures = LOGIN_FAILURES.family()
        failures.add_metric(["session_limit"], stats["login_session_limit"])
        failures.add_metric(["other"], stats["login_failed"])
        requests = REQUESTS.family()
        requests.add_metric([], stats["requests"])
        families: list[Family] = [sessions, created, failures, requests]
        yield from families


def make_server(config: RedfishConfig, **kwargs: Any) -> ExporterServer:
    prober = RedfishProber(config)
    timeout = max((m.timeout for m in config.modules.values()), default=30.0)
    server = ExporterServer(
        "redfish",
        prober=prober,
        timeout=timeout,
        description="Node power, limits, thermals and health from BMCs through Redfish",
        **kwargs,
    )
    server.registry.register(prober)
    return server


@click.command("redfish")
@config_option(KIND, help="Redfish exporter config (YAML).")
@web_options(DEFAULT_PORT)
def command(web: WebOptions, config: RedfishConfig) -> None:
    """Multi-target Redfish exporter (Dell iDRAC and other BMCs): /probe?target=&module=&auth=."""
    run(make_server(config, web_config=web.web_config), web.listen_address)


COMPONENT = Component(
    name="redfish",
    order=30,
    exporter="powerplane.exporters.redfish:command",
    config_kinds=(("redfish", "powerplane.exporters.redfish.config:KIND"),),
    metrics=("powerplane.exporters.redfish:METRICS",),
    demo="powerplane.lab.redfish:redfish_component",
)
