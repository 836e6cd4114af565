"""The Redfish collectors and the per-probe request memo they share.

One probe of one BMC builds a ``ProbeContext`` and one collector per enabled part (power, PSUs,
thermal, health, system, telemetry).  The collectors' fetches run concurrently; a request two
collectors need (the PSU collection, the thermal subsystem) is made once per probe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client.core import Metric

from ..runtime import Collector, CollectorError, Deadline, NoData, Partial
from ..runtime.collector import DeviceText
from ..runtime.metrics import MetricSpec
from .client import ChassisPaths, Discovery, RedfishClient, RedfishError, SystemPaths, Target
from .config import Module
from .metrics import (
    CHASSIS_INFO,
    CHASSIS_TEMPERATURE,
    ENCLOSURE_ENERGY,
    ENCLOSURE_POWER,
    ENERGY,
    FAN_RATIO,
    FAN_RPM,
    HEALTH,
    HEALTH_STATES,
    LEAK,
    LOG_ENTRIES,
    LOG_ENTRIES_READ,
    LOG_NEWEST,
    POWER,
    POWER_BUDGET,
    POWER_CAPACITY,
    POWER_INTERVAL,
    POWER_INTERVAL_SECONDS,
    POWER_LIMIT,
    POWER_LIMIT_CONFIGURED,
    POWER_LIMIT_ENFORCED,
    POWER_SOURCE,
    POWERED_ON,
    PSU_CAPACITY,
    PSU_EFFICIENCY,
    PSU_ENERGY,
    PSU_INPUT,
    PSU_OUTPUT,
    PSU_REDUNDANCY,
    PSU_TEMPERATURE,
    PSU_VOLTAGE,
    SYSTEM_INFO,
    TELEMETRY,
    TEMPERATURE,
    TEMPERATURE_SUMMARY,
    VOLTAGE,
)
from .parse import (
    PSU,
    Doc,
    Fan,
    LogSnapshot,
    PowerSnapshot,
    Redundancy,
    SystemSnapshot,
    Temperature,
    ThermalSnapshot,
    dell_power_cap,
    environment_power,
    environment_thermal,
    leak_detectors,
    legacy_power,
    legacy_psus,
    legacy_thermal,
    log_entries,
    new_fan,
    new_psu,
    new_thermal_metrics,
    newest_samples,
    psu_redundancy,
    sensor_temperature,
    summarise,
    system_info,
    voltages,
)

T = TypeVar("T")
EXPAND_REFUSED = (400, 403, 404, 405, 406, 501)
#: Resources whose subordinates every probe reads (ThermalMetrics, the Fans and each fan, leak
#: detection): requested with ``$expand`` where the BMC supports it, so that one answer brings
#: them all (on an iDRAC 9 with the new schema, three requests of eight become one).
EXPANDED_WHOLE = ("/ThermalSubsystem",)


class ProbeContext:
    """One probe of one target: requests shared between its collectors, made at most once."""

    def __init__(self, client: RedfishClient, target: Target, module: Module, text: DeviceText) -> None:
        self.client = client
        self.target = target
        self.module = module
        self.text = text
        self.deadline = Deadline.after(module.timeout)
        self._discovery: Discovery | None = None
        self._memo: dict[str, asyncio.Future[Any]] = {}
        self._labels: dict[str, str] = {}
        #: The systems', chassis' and PowerSubsystems' own paths: documents of health, identity
        #: and ratings, read through the client's inventory cache.
        self._inventory: set[str] = set()
        #: Whether a reused document served this probe, whether the BMC answered any of its
        #: requests, and the first request it left unanswered (a timeout, a refused connection).
        self._reused = False
        self._answered = False
        self._unanswered: str | None = None

    async def connect(self, deadline: Deadline) -> None:
        self.deadline = deadline
        found = self._discovery = await self.client.discover(self.target, deadline, self.module)
        self._inventory = {s.path for s in found.systems} | {c.path for c in found.chassis}
        self._inventory.update(c.power_subsystem for c in found.chassis if c.power_subsystem)

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
        if future.done():
            return future  # nothing left to cancel: no shield to build
        # shield: one collector giving up must not cancel a request another collector awaits.
        return asyncio.shield(future)

    def doc(self, data: Any, where: str, errors: list[str]) -> Doc:
        """A view of a document whose strings pass through the exporter's ``DeviceText``."""
        return Doc(data, where, errors, clean=self.text)

    def get(self, path: str) -> Awaitable[dict[str, Any]]:
        """The document at ``path``, as a future: gathered, an answer already there (memoised or
        reused) costs no task."""
        if path in self._inventory:
            kept = self.client.kept(self.target, path, self.module)
            if kept is not None:
                self._reused = True
                done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                done.set_result(kept)
                return done
            return self.once(
                path, lambda: self._live(self.client.inventory(self.target, path, self.deadline, self.module))
            )
        if path.endswith(EXPANDED_WHOLE) and self.discovery.expand_levels and not self.target.expand_refused:
            return self.once(path, lambda: self._live(self._expanded(path)))
        return self.once(
            path, lambda: self._live(self.client.get(self.target, path, self.deadline, self.module))
        )

    async def _live(self, request: Awaitable[T]) -> T:
        """A request to the BMC, noted: whether the BMC answered (an HTTP error is an answer)."""
        try:
            answer = await request
        except RedfishError as exc:
            if exc.status:
                self._answered = True
            elif self._unanswered is None:
                self._unanswered = str(exc)
            raise
        self._answered = True
        return answer

    def check_reused(self) -> None:
        """Refuse to report reused documents when the BMC answered none of this probe's
        requests: a BMC that went dead is down, not healthy from a copy."""
        if self._reused and not self._answered and self._unanswered is not None:
            raise CollectorError(f"the BMC answered no request of this probe ({self._unanswered})")

    async def _expanded(self, path: str) -> dict[str, Any]:
        """``path`` with its subordinates expanded, each of them this probe's answer for its own path."""
        levels = self.discovery.expand_levels
        try:
            doc = await self.client.get(
                self.target, f"{path}?$expand=.($levels={levels})", self.deadline, self.module
            )
        except RedfishError as exc:
            if exc.status not in EXPAND_REFUSED:
                raise
            self.target.expand_refused = True  # remembered per target: fall back from now on
            return await self.client.get(self.target, path, self.deadline, self.module)
        self._harvest(doc)
        return doc

    def _harvest(self, doc: dict[str, Any]) -> None:
        """Memoise the expanded resources inside ``doc`` (objects with an ``@odata.id`` and more).

        At most ``max_members`` of them, plus as many again for their own subordinates: the
        rest are requested as usual."""
        budget = 2 * self.module.max_members
        loop = asyncio.get_running_loop()
        stack: list[Any] = list(doc.values())
        while stack and budget:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(v for v in node if isinstance(v, dict | list))
                continue
            if not isinstance(node, dict):
                continue
            link = node.get("@odata.id")
            if isinstance(link, str) and "#" not in link and len(node) > 1 and link not in self._memo:
                future: asyncio.Future[Any] = loop.create_future()
                future.set_result(node)
                self._memo[link] = future
                budget -= 1
            stack.extend(v for k, v in node.items() if k != "Links" and isinstance(v, dict | list))

    async def leaf(self, path: str) -> dict[str, Any] | None:
        """A resource a document links to; None when the link dangles (HTTP 404).

        A dangling leaf is logged once and not requested again until the next discovery; only
        a 404 on a discovered path makes the client discover again."""
        if path in self.target.dangling:
            return None
        try:
            return await self.get(path)
        except RedfishError as exc:
            if exc.status != 404:
                raise
            self.client.dangling(self.target, path)
            return None

    async def members(self, path: str, errors: list[str], levels: int = 1) -> list[dict[str, Any]]:
        """A collection's members, expanded in one request where the service allows it.

        At most the module's ``max_members`` are read (the rest are dropped, counted and
        reported); a member that cannot be read is reported and the others are kept."""
        doc: dict[str, Any] | None = None
        levels = min(levels, self.discovery.expand_levels)
        harvested = self._memo.get(path)
        if harvested is not None and harvested.done() and not harvested.exception():
            # Arrived inside its parent's expanded answer, members and all: nothing to request.
            doc = harvested.result() if _expanded_members(harvested.result()) else None
        if doc is None and levels and not self.target.expand_refused:
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
        cap = self.module.max_members
        if len(members) > cap:
            self.client.stats["members_dropped"] += len(members) - cap
            errors.append(f"{path}: {len(members)} members, the first {cap} read (max_members)")
            members = members[:cap]
        out: list[dict[str, Any] | None] = []
        pending: dict[int, str] = {}
        for i, member in enumerate(members):
            if isinstance(member, dict) and set(member) - {"@odata.id"}:
                out.append(member)
            elif isinstance(member, dict) and isinstance(member.get("@odata.id"), str):
                pending[i] = member["@odata.id"]
                out.append(None)
        fetched = await asyncio.gather(*(self.get(p) for p in pending.values()), return_exceptions=True)
        for i, member_doc in zip(pending, fetched, strict=True):
            if isinstance(member_doc, BaseException):
                errors.append(str(member_doc))
            else:
                out[i] = member_doc
        return [m for m in out if m is not None]

    def use_new(self, link: str | None) -> bool:
        return link is not None and self.module.schema != "legacy"

    def use_legacy(self, link: str | None) -> bool:
        return link is not None and self.module.schema != "new"

    def chassis_label(self, chassis: ChassisPaths) -> str:
        return self._label(chassis.path, chassis.id)

    def system_label(self, system: SystemPaths) -> str:
        return self._label(system.path, system.id)

    def _label(self, path: str, resource_id: str) -> str:
        # Cleaned once per probe: several collectors label the same resource, and the exporter
        # counts each string it had to clean.
        label = self._labels.get(path)
        if label is None:
            label = self._labels[path] = self.text(resource_id)
        return label

    def psus(self, d: ChassisPaths) -> Awaitable[tuple[list[PSU], list[Redundancy], list[str]]]:
        """The chassis' PSUs and redundancy groups, read once per probe (power, psu, health)."""
        return self.once(f"#psus {d.path}", lambda: self._psus(d))

    async def _psus(self, d: ChassisPaths) -> tuple[list[PSU], list[Redundancy], list[str]]:
        errors: list[str] = []
        if self.use_new(d.power_subsystem):
            assert d.power_subsystem is not None
            subsystem = self.doc(await self.get(d.power_subsystem), "PowerSubsystem", errors)
            redundancy = psu_redundancy(subsystem, "PowerSupplyRedundancy")
            collection = subsystem.obj("PowerSupplies")
            link = collection.text("@odata.id") if collection is not None else None
            if link is None:
                return [], redundancy, errors
            items = await self.members(link, errors, levels=2)
            psus: list[PSU] = []
            for i, item in enumerate(items):
                doc = self.doc(item, f"PowerSupplies[{i}]", errors)
                if doc.absent():
                    continue
                metrics = doc.obj("Metrics")
                if metrics is not None and set(metrics.data) == {"@odata.id"}:
                    try:
                        linked = await self.leaf(metrics.data["@odata.id"])
                    except RedfishError as exc:
                        errors.append(str(exc))
                        linked = None
                    where = f"{name_of_item(doc, i)}/Metrics"
                    metrics = self.doc(linked, where, errors) if linked is not None else None
                psu = new_psu(doc, metrics, f"psu{i}")
                if psu.energy_joules is not None:
                    key = f"{d.path} psu/{psu.id}"
                    psu.energy_joules = self.target.energy.update(key, psu.energy_joules)
                psus.append(psu)
            return psus, redundancy, errors
        if self.use_legacy(d.power):
            assert d.power is not None
            power = self.doc(await self.get(d.power), "Power", errors)
            return legacy_psus(power), psu_redundancy(power, "Redundancy"), errors
        raise NoData("the chassis links neither PowerSubsystem nor Power")

    def thermal(self, d: ChassisPaths) -> Awaitable[tuple[ThermalSnapshot, list[str]]]:
        return self.once(f"#thermal {d.path}", lambda: self._thermal(d))

    async def _thermal(self, d: ChassisPaths) -> tuple[ThermalSnapshot, list[str]]:
        errors: list[str] = []
        if self.use_new(d.thermal_subsystem):
            snap = await self._new_thermal(d, errors)
        elif self.use_legacy(d.thermal):
            assert d.thermal is not None
            snap = legacy_thermal(self.doc(await self.get(d.thermal), "Thermal", errors))
        else:
            raise NoData("the chassis links neither ThermalSubsystem nor Thermal")
        if self.use_new(d.environment_metrics):
            assert d.environment_metrics is not None
            try:
                doc = self.doc(await self.get(d.environment_metrics), "EnvironmentMetrics", errors)
                environment_thermal(doc, snap)
            except RedfishError as exc:
                errors.append(str(exc))
        return snap, errors

    async def _new_thermal(self, d: ChassisPaths, errors: list[str]) -> ThermalSnapshot:
        assert d.thermal_subsystem is not None
        subsystem = self.doc(await self.get(d.thermal_subsystem), "ThermalSubsystem", errors)
        snap = ThermalSnapshot()
        metrics_link = subsystem.text("ThermalMetrics", "@odata.id")
        fans_link = subsystem.text("Fans", "@odata.id")

        async def nothing() -> Any:
            return None

        results: tuple[Any, Any] = await asyncio.gather(
            self.get(metrics_link) if metrics_link else nothing(),
            self.members(fans_link, errors) if fans_link else nothing(),
            return_exceptions=True,
        )
        metrics_doc, fan_docs = results
        if isinstance(metrics_doc, BaseException):
            errors.append(str(metrics_doc))
        elif metrics_doc is not None:
            new_thermal_metrics(self.doc(metrics_doc, "ThermalMetrics", errors), snap)
        try:
            sensors = await self._sensor_temperatures(d, errors)
        except RedfishError as exc:
            errors.append(str(exc))
            sensors = []
        if sensors:
            # ThermalMetrics readings backed by one of these sensors would be duplicates.
            covered = {t.source for t in sensors}
            snap.temperatures = sensors + [t for t in snap.temperatures if t.source not in covered]
        if isinstance(fan_docs, BaseException):
            errors.append(str(fan_docs))
        elif fan_docs is not None:
            for i, fan in enumerate(fan_docs):
                doc = self.doc(fan, f"Fans[{i}]", errors)
                if not doc.absent():
                    snap.fans.append(new_fan(doc, f"fan{i}"))
        leak_link = subsystem.text("LeakDetection", "@odata.id")
        if leak_link:
            snap.leaks = await self._leaks(leak_link, errors)
        summarise(snap)
        if not snap.temperatures and not snap.fans and errors:
            raise CollectorError("; ".join(errors))
        return snap

    async def _leaks(self, link: str, errors: list[str]) -> list[tuple[str, bool]]:
        """Leak detectors: the LeakDetection's groups in one request, else its LeakDetectors."""
        try:
            found = await self.leaf(link)
            if found is None:
                return []
            detection = self.doc(found, "LeakDetection", errors)
            leaks = leak_detectors(detection)
            collection = detection.text("LeakDetectors", "@odata.id")
            if not leaks and collection:
                for i, member in enumerate(await self.members(collection, errors)):
                    leaks += leak_detectors(self.doc(member, f"LeakDetectors[{i}]", errors))
            return leaks
        except RedfishError as exc:
            errors.append(str(exc))
            return []

    async def _sensor_temperatures(self, d: ChassisPaths, errors: list[str]) -> list[Temperature]:
        """Every temperature Sensor of the chassis, with its Name and PhysicalContext.

        ThermalMetrics may carry summary readings only (intake, exhaust) and no CPU or DIMM
        temperature: the chassis' Sensors collection has them, named and placed as legacy
        Thermal shows them, so both schemas give the same sensors.  Expanded, it is one
        request; otherwise every member is read once per discovery and from then on only the
        temperature sensors (at most ``max_members``)."""
        collection = d.sensors
        if not collection:
            return []
        known = (self.target.temperature_sensors or {}).get(d.path)
        if known is not None and not (self.discovery.expand_levels and not self.target.expand_refused):
            fetched = await asyncio.gather(*(self.leaf(uri) for uri in known), return_exceptions=True)
            docs = [doc for doc in fetched if isinstance(doc, dict)]
            errors += [str(doc) for doc in fetched if isinstance(doc, BaseException)]
        else:
            docs = await self.members(collection, errors)
        temperatures: list[Temperature] = []
        for i, doc in enumerate(docs):
            temperature = sensor_temperature(self.doc(doc, f"Sensors[{i}]", errors))
            if temperature is not None:
                temperatures.append(temperature)
        learned = self.target.temperature_sensors
        if learned is None:
            learned = self.target.temperature_sensors = {}
        learned[d.path] = [t.source for t in temperatures if t.source]
        return temperatures


def _expanded_members(doc: Any) -> bool:
    members = doc.get("Members") if isinstance(doc, dict) else None
    return isinstance(members, list) and all(isinstance(m, dict) and len(m) > 1 for m in members)


def name_of_item(doc: Doc, i: int) -> str:
    return doc.text("Id") or doc.text("MemberId") or f"PowerSupplies[{i}]"


def _partial(snapshot: T, errors: list[str]) -> T | Partial[T]:
    return Partial(snapshot, errors) if errors else snapshot


async def settle(awaitables: list[Awaitable[T]]) -> list[T | BaseException]:
    """``asyncio.gather(..., return_exceptions=True)``, with one awaitable awaited in place:
    a rack server's one chassis costs no task."""
    if len(awaitables) != 1:
        return await asyncio.gather(*awaitables, return_exceptions=True)
    try:
        return [await awaitables[0]]
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return [exc]


#: One part of each chassis that has it: (the chassis' label, the chassis, what was read).
Each = list[tuple[str, ChassisPaths, T]]


async def each_chassis(
    ctx: ProbeContext, read: Callable[[ChassisPaths], Awaitable[tuple[T, list[str]]]]
) -> Each[T] | Partial[Each[T]]:
    """``read`` of every discovered chassis, concurrently; one failing keeps the others.

    A chassis without the resource (``NoData``) is skipped; the collector has no data only when
    none has it.  With several chassis each error names the chassis by its Id."""
    chassis = ctx.discovery.chassis
    results = await settle([read(c) for c in chassis])
    out: Each[T] = []
    errors: list[str] = []
    failures: list[str] = []
    absent = "no chassis has it"
    for c, result in zip(chassis, results, strict=True):
        label = ctx.chassis_label(c)
        named = f"chassis {label}: " if len(chassis) > 1 else ""
        if isinstance(result, NoData):
            absent = str(result)
        elif isinstance(result, CollectorError):
            failures.append(named + str(result))
        elif isinstance(result, BaseException):
            raise result
        else:
            snapshot, found = result
            out.append((label, c, snapshot))
            errors += [named + e for e in found]
    if not out and failures:
        raise CollectorError("; ".join(failures))
    if not out:
        raise NoData(absent)
    return _partial(out, errors + failures)


class PowerCollector(Collector[Each[PowerSnapshot]]):
    """Node power by the documented precedence, the limit and whether it is enforced, budgets;
    per chassis, an enclosure's power under its own names (it includes its blades')."""

    name = "power"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> Each[PowerSnapshot] | Partial[Each[PowerSnapshot]]:
        return await each_chassis(self.ctx, self._chassis)

    async def _chassis(self, d: ChassisPaths) -> tuple[PowerSnapshot, list[str]]:
        ctx = self.ctx
        snap = PowerSnapshot()
        errors: list[str] = []
        new = ctx.use_new(d.environment_metrics)
        if new:
            assert d.environment_metrics is not None
            await self._read(d.environment_metrics, "EnvironmentMetrics", errors, environment_power, snap)
        if ctx.use_new(d.power_subsystem):
            assert d.power_subsystem is not None
            await self._read(d.power_subsystem, "PowerSubsystem", errors, _capacity, snap)
        if ctx.use_legacy(d.power) and (snap.watts is None or not new):
            assert d.power is not None
            await self._read(d.power, "Power", errors, _legacy, snap)
        reports = ctx.discovery.reports
        if snap.watts is None and reports and ctx.discovery.main_chassis() is d:
            # SystemInputPower is the BMC's one figure: the one system's chassis', nobody's on a
            # BMC of several systems.
            await self._telemetry(reports, snap, errors)
        if snap.watts is None and ctx.use_new(d.power_subsystem) and not (new or ctx.use_legacy(d.power)):
            await self._psu_sum(d, snap, errors)
        system = ctx.discovery.system_of(d)
        if snap.limit_watts is not None and system is not None:
            await self._read(system.path, "System", errors, dell_power_cap, snap)
        if snap.watts is None:
            if not errors and not d.powered():
                raise NoData("the chassis links neither EnvironmentMetrics, PowerSubsystem nor Power")
            missing = "no node power reading: " + ("; ".join(errors) or "no source has a value")
            if not snap.has_readings():
                raise CollectorError(missing)
            errors = [missing]  # what else was read (limit, capacity, energy) is still exported
        if snap.energy_joules is not None:
            snap.energy_joules = ctx.target.energy.update(f"{d.path} node", snap.energy_joules)
        return snap, errors

    async def _read(
        self,
        path: str,
        where: str,
        errors: list[str],
        read: Callable[[Doc, PowerSnapshot], None],
        snap: PowerSnapshot,
    ) -> None:
        try:
            read(self.ctx.doc(await self.ctx.get(path), where, errors), snap)
        except RedfishError as exc:
            errors.append(str(exc))

    async def _telemetry(self, reports: str, snap: PowerSnapshot, errors: list[str]) -> None:
        try:
            doc = await self.ctx.leaf(f"{reports}/PowerMetrics")
        except RedfishError as exc:
            errors.append(str(exc))
            return
        if doc is None:
            return  # no such report on this BMC: not a failure
        samples = newest_samples(self.ctx.doc(doc, "PowerMetrics", errors))
        watts = [v for (metric, _c), v in samples.items() if metric == "SystemInputPower"]
        if watts:
            snap.watts, snap.source = watts[0], "telemetry"

    async def _psu_sum(self, d: ChassisPaths, snap: PowerSnapshot, errors: list[str]) -> None:
        """The last resort: the sum of the supplies' metered input, for a chassis that links
        PowerSubsystem but neither EnvironmentMetrics nor Power (a failing reading of those is
        an error, not a reason to switch sources).

        Only from PSU Metrics readings, never legacy ``PowerInputWatts``, which some firmware
        fills with the rating; only when every supply present has a reading."""
        try:
            psus, _redundancy, _errors = await self.ctx.psus(d)  # the PSU collector reports their errors
        except (RedfishError, NoData) as exc:
            errors.append(str(exc))
            return
        inputs = [p.input_watts for p in psus]
        if inputs and all(w is not None for w in inputs):
            snap.watts, snap.source = sum(w for w in inputs if w is not None), "psu_input_sum"

    def render(self, snapshot: Each[PowerSnapshot]) -> Iterable[Metric]:
        power, source = POWER.family(), POWER_SOURCE.family()
        enclosure, enclosure_energy = ENCLOSURE_POWER.family(), ENCLOSURE_ENERGY.family()
        stats, budget, volts = POWER_INTERVAL.family(), POWER_BUDGET.family(), VOLTAGE.family()
        scalars = {
            spec: spec.family() for spec in (POWER_INTERVAL_SECONDS, POWER_LIMIT, POWER_LIMIT_CONFIGURED)
        }
        scalars.update({spec: spec.family() for spec in (POWER_LIMIT_ENFORCED, POWER_CAPACITY, ENERGY)})
        for chassis, c, snap in _unique(snapshot, lambda each: each[0]):
            if snap.watts is not None:
                (enclosure if c.enclosure else power).add_metric([chassis], snap.watts)
                source.add_metric([chassis, snap.source], 1.0)
            for stat, value in snap.stats.items():
                stats.add_metric([chassis, stat], value)
            for kind, value in snap.budget.items():
                budget.add_metric([chassis, kind], value)
            enforced = None if snap.limit_watts is None else float(snap.enforced_limit() is not None)
            readings: list[tuple[MetricSpec, float | None]] = [
                (POWER_INTERVAL_SECONDS, snap.interval_seconds),
                (POWER_LIMIT, snap.enforced_limit()),
                (POWER_LIMIT_CONFIGURED, snap.limit_watts),
                (POWER_LIMIT_ENFORCED, enforced),
                (POWER_CAPACITY, snap.capacity_watts),
            ]
            for spec, reading in readings:
                if reading is not None:
                    scalars[spec].add_metric([chassis], reading)
            if snap.energy_joules is not None:
                (enclosure_energy if c.enclosure else scalars[ENERGY]).add_metric(
                    [chassis], snap.energy_joules
                )
            for sensor, value in _unique(snap.voltages, lambda v: v[0]):
                volts.add_metric([chassis, sensor], value)
        families = [power, source, enclosure, stats, budget, *scalars.values(), enclosure_energy, volts]
        return [family for family in families if len(family)]


def _capacity(doc: Doc, snap: PowerSnapshot) -> None:
    """PowerSubsystem: CapacityWatts, and the Allocation's requested and allocated watts."""
    capacity = doc.number("CapacityWatts")
    if capacity is not None:
        snap.capacity_watts = capacity
    for kind, key in (("allocated", "AllocatedWatts"), ("requested", "RequestedWatts")):
        value = doc.number("Allocation", key)
        if value is not None:
            snap.budget.setdefault(kind, value)


def _legacy(doc: Doc, snap: PowerSnapshot) -> None:
    legacy_power(doc, snap)
    snap.voltages = voltages(doc)


PSUSnapshot = Each[tuple[list[PSU], list[Redundancy]]]


class PSUCollector(Collector[PSUSnapshot]):
    name = "psu"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> PSUSnapshot | Partial[PSUSnapshot]:
        async def read(d: ChassisPaths) -> tuple[tuple[list[PSU], list[Redundancy]], list[str]]:
            psus, redundancy, errors = await self.ctx.psus(d)
            return (psus, redundancy), errors

        return await each_chassis(self.ctx, read)

    def render(self, snapshot: PSUSnapshot) -> Iterable[Metric]:
        redundancy = PSU_REDUNDANCY.family()
        for chassis, group in _unique(
            ((chassis, g) for chassis, _c, (_p, groups) in snapshot for g in groups),
            lambda g: (g[0], g[1].group),
        ):
            redundancy.add_metric([chassis, group.group, group.mode], float(group.redundant))
        families = [redundancy]
        psus = list(
            _unique(
                ((chassis, p) for chassis, _c, (ps, _g) in snapshot for p in ps), lambda p: (p[0], p[1].id)
            )
        )
        fields = (
            (PSU_INPUT, "input_watts"),
            (PSU_OUTPUT, "output_watts"),
            (PSU_CAPACITY, "capacity_watts"),
            (PSU_EFFICIENCY, "efficiency_ratio"),
            (PSU_VOLTAGE, "input_volts"),
            (PSU_TEMPERATURE, "temperature_celsius"),
            (PSU_ENERGY, "energy_joules"),
        )
        for spec, attr in fields:
            family = spec.family()
            for chassis, psu in psus:
                value = getattr(psu, attr)
                if value is not None:
                    family.add_metric([chassis, psu.id], value)
            families.append(family)
        return [family for family in families if len(family)]


class ThermalCollector(Collector[Each[ThermalSnapshot]]):
    name = "thermal"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> Each[ThermalSnapshot] | Partial[Each[ThermalSnapshot]]:
        return await each_chassis(self.ctx, self.ctx.thermal)

    def render(self, snapshot: Each[ThermalSnapshot]) -> Iterable[Metric]:
        temps, summary, chassis_temps = (
            TEMPERATURE.family(),
            TEMPERATURE_SUMMARY.family(),
            CHASSIS_TEMPERATURE.family(),
        )
        rpm, ratio, leaks = FAN_RPM.family(), FAN_RATIO.family(), LEAK.family()
        for chassis, _c, snap in _unique(snapshot, lambda each: each[0]):
            for t in _unique(snap.temperatures, lambda t: (t.sensor, t.context)):
                temps.add_metric([chassis, t.sensor, t.context], t.celsius)
            for context, value in snap.summary.items():
                summary.add_metric([chassis, context], value)
            for fan in _unique(snap.fans, lambda f: f.id):
                if fan.rpm is not None:
                    rpm.add_metric([chassis, fan.id], fan.rpm)
                if fan.ratio is not None:
                    ratio.add_metric([chassis, fan.id], fan.ratio)
            for name, leaking in _unique(snap.leaks, lambda leak: leak[0]):
                leaks.add_metric([chassis, name], float(leaking))
            if snap.chassis_celsius is not None:
                chassis_temps.add_metric([chassis], snap.chassis_celsius)
        # The four families every thermal probe shows, even empty; the others where read.
        return [temps, summary, rpm, ratio] + [f for f in (leaks, chassis_temps) if len(f)]


def _unique(items: Iterable[T], key: Callable[[T], Any]) -> Iterator[T]:
    # Duplicate label sets make the whole exposition invalid; keep the first of each.
    seen: set[Any] = set()
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            yield item


#: (resource, system label, chassis label, health): one of the two labels is empty.
HealthSnapshot = list[tuple[str, str, str, str | None]]


def _health(doc: Doc) -> str | None:
    return doc.text("Status", "HealthRollup") or doc.text("Status", "Health")


class HealthCollector(Collector[HealthSnapshot]):
    name = "health"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> HealthSnapshot | Partial[HealthSnapshot]:
        ctx = self.ctx
        d = ctx.discovery
        errors: list[str] = []
        out: HealthSnapshot = []
        resources = [("system", ctx.system_label(s), "", s.path) for s in d.systems]
        resources += [("chassis", "", ctx.chassis_label(c), c.path) for c in d.chassis]
        docs = await asyncio.gather(*(ctx.get(r[3]) for r in resources), return_exceptions=True)
        for (resource, system, chassis, _path), doc in zip(resources, docs, strict=True):
            if isinstance(doc, RedfishError):
                errors.append(str(doc))
            elif isinstance(doc, BaseException):
                raise doc
            else:
                out.append((resource, system, chassis, _health(ctx.doc(doc, resource, errors))))
        for c in d.chassis:
            chassis = ctx.chassis_label(c)
            named = f"chassis {chassis} " if len(d.chassis) > 1 else ""
            parts: list[Awaitable[Any]] = [ctx.psus(c), ctx.thermal(c)]
            psus, thermal = await asyncio.gather(*parts, return_exceptions=True)
            if isinstance(psus, tuple):
                out += [(f"psu/{p.id}", "", chassis, p.health) for p in psus[0]]
            elif not isinstance(psus, NoData):
                errors.append(f"{named}PSUs: {psus}")
            if isinstance(thermal, tuple):
                fans: list[Fan] = thermal[0].fans
                out += [(f"fan/{f.id}", "", chassis, f.health) for f in fans]
            elif not isinstance(thermal, NoData):
                errors.append(f"{named}fans: {thermal}")
        if not out:
            raise CollectorError("; ".join(errors) or "no health reported")
        return _partial(out, errors)

    def render(self, snapshot: HealthSnapshot) -> Iterable[Metric]:
        self.ctx.check_reused()
        family = HEALTH.family()
        for resource, system, chassis, health in _unique(snapshot, lambda r: r[:3]):
            current = (health or "").lower()
            for state in HEALTH_STATES:
                family.add_metric([resource, state, system, chassis], 1.0 if state == current else 0.0)
        yield family


#: Each system's (label, identity), and each chassis' (label, system, contained_by, role).
SystemsSnapshot = tuple[list[tuple[str, SystemSnapshot]], list[tuple[str, str, str, str]]]


class SystemCollector(Collector[SystemsSnapshot]):
    """Every system's identity and power state, and the chassis' place (from discovery)."""

    name = "system"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> SystemsSnapshot | Partial[SystemsSnapshot]:
        ctx = self.ctx
        d = ctx.discovery
        errors: list[str] = []
        firmware, model = ctx.text(d.bmc_firmware), ctx.text(d.bmc_model)
        docs = await asyncio.gather(*(ctx.get(s.path) for s in d.systems), return_exceptions=True)
        out: list[tuple[str, SystemSnapshot]] = []
        for system, doc in zip(d.systems, docs, strict=True):
            if isinstance(doc, RedfishError):
                errors.append(str(doc))
            elif isinstance(doc, BaseException):
                raise doc
            else:
                out.append(
                    (ctx.system_label(system), system_info(ctx.doc(doc, "System", errors), firmware, model))
                )
        if not out:
            raise CollectorError("; ".join(errors))
        return _partial((out, _chassis_places(ctx)), errors)

    def render(self, snapshot: SystemsSnapshot) -> Iterable[Metric]:
        self.ctx.check_reused()
        systems, places = snapshot
        info, on, chassis = SYSTEM_INFO.family(), POWERED_ON.family(), CHASSIS_INFO.family()
        for system, snap in _unique(systems, lambda s: s[0]):
            info.add_metric([system] + [snap.labels[label] for label in SYSTEM_INFO.labels[1:]], 1.0)
            if snap.powered_on is not None:
                on.add_metric([system], snap.powered_on)
        for labels in _unique(places, lambda c: c[:2]):
            chassis.add_metric(list(labels), 1.0)
        return [f for f in (info, on, chassis) if len(f)]


def _chassis_places(ctx: ProbeContext) -> list[tuple[str, str, str, str]]:
    """(chassis, system it powers, chassis that holds it, role) of every chassis: one row per
    system it links, one with no system where it links none (an enclosure, a storage bay)."""
    d = ctx.discovery
    labels = {_key(c.path): ctx.chassis_label(c) for c in d.chassis}
    places = []
    for c in d.chassis:
        powered = [ctx.system_label(s) for s in d.systems if _links_to(c, s)]
        if not powered and len(d.systems) == 1:
            powered = [ctx.system_label(d.systems[0])]
        holder = labels.get(_key(c.contained_by or ""), "")
        role = "enclosure" if c.enclosure else "node"
        places += [(labels[_key(c.path)], system, holder, role) for system in powered or [""]]
    return places


def _key(path: str) -> str:
    return path.rstrip("/")


def _links_to(chassis: ChassisPaths, system: SystemPaths) -> bool:
    return _key(system.path) in {_key(p) for p in chassis.systems} or _key(chassis.path) in {
        _key(p) for p in system.chassis
    }


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
        # A report this BMC lacks (ThermalSensor is Dell's) answers 404: absent, not a failure.
        docs = await asyncio.gather(
            *(self.ctx.leaf(f"{reports}/{r}") for r in REPORTS), return_exceptions=True
        )
        for report, doc in zip(REPORTS, docs, strict=True):
            if isinstance(doc, BaseException):
                errors.append(str(doc))
                continue
            if doc is None:
                continue
            for (metric, context), value in newest_samples(self.ctx.doc(doc, report, errors)).items():
                out.append((report, metric, context, value))
        if not out and errors:
            raise CollectorError("; ".join(errors))
        if not out and all(doc is None for doc in docs):
            raise NoData(f"the BMC serves none of the reports {', '.join(REPORTS)}")
        return _partial(out, errors)

    def render(self, snapshot: TelemetrySnapshot) -> Iterable[Metric]:
        family = TELEMETRY.family()
        for report, metric, context, value in snapshot:
            family.add_metric([report, metric, context], value)
        yield family


class EventLogCollector(Collector[list[LogSnapshot]]):
    """The BMC's event logs (SEL, iDRAC Lifecycle log, iLO IML) through ``LogServices``.

    Entries are counted, never exported one by one: per log the number of entries, and of the
    page read (the BMC's first page, at most ``max_members`` entries) the count and the newest
    ``Created`` per severity."""

    name = "eventlog"

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    async def fetch(self, deadline: Deadline) -> list[LogSnapshot] | Partial[list[LogSnapshot]]:
        ctx = self.ctx
        errors: list[str] = []
        logs: list[LogSnapshot] = []
        owners: list[tuple[str, str, str | None]] = [
            ("system", ctx.system_label(s), s.path) for s in ctx.discovery.systems
        ]
        owners.append(("manager", "", ctx.discovery.manager))
        for owner, system, path in owners:
            if path is None:
                continue
            try:
                services = _link_of(await ctx.get(path), "LogServices")
                for service in await ctx.members(services, errors) if services else []:
                    logs += await self._log(owner, system, service, errors)
            except RedfishError as exc:
                errors.append(str(exc))
        if not logs and not errors:
            raise NoData("the BMC has no log services")
        if not logs:
            raise CollectorError("; ".join(errors))
        return _partial(logs, errors)

    async def _log(
        self, owner: str, system: str, service: dict[str, Any], errors: list[str]
    ) -> list[LogSnapshot]:
        doc = self.ctx.doc(service, "LogService", errors)
        entries = _link_of(service, "Entries")
        if entries is None or doc.text("Status", "State") in ("Disabled", "Absent"):
            return []
        name = f"{owner}/{doc.text('Id') or entries.rstrip('/').rsplit('/', 2)[-2]}"
        page = await self.ctx.leaf(entries)
        if page is None:
            return []
        members = page.get("Members")
        if isinstance(members, list) and len(members) > self.ctx.module.max_members:
            page = {**page, "Members": members[: self.ctx.module.max_members]}
        snap = log_entries(self.ctx.doc(page, f"{name} Entries", errors), name)
        snap.system = system
        return [snap]

    def render(self, snapshot: list[LogSnapshot]) -> Iterable[Metric]:
        entries, read, newest = LOG_ENTRIES.family(), LOG_ENTRIES_READ.family(), LOG_NEWEST.family()
        for log in _unique(snapshot, lambda s: (s.system, s.log)):
            entries.add_metric([log.system, log.log], float(log.entries))
            for severity, count in log.by_severity.items():
                read.add_metric([log.system, log.log, severity], float(count))
            for severity, stamp in log.newest.items():
                newest.add_metric([log.system, log.log, severity], stamp)
        return [entries, read, newest]


def _link_of(doc: Any, key: str) -> str | None:
    node = doc.get(key) if isinstance(doc, dict) else None
    link = node.get("@odata.id") if isinstance(node, dict) else None
    return link if isinstance(link, str) else None


#: The collectors a module can switch on, by name.
COLLECTORS: dict[str, Callable[[ProbeContext], Collector[Any]]] = {
    "power": PowerCollector,
    "psu": PSUCollector,
    "thermal": ThermalCollector,
    "health": HealthCollector,
    "system": SystemCollector,
    "telemetry": TelemetryCollector,
    "eventlog": EventLogCollector,
}
