"""Pure parsers: Redfish documents (legacy and new schema) → snapshots, errors naming the field.

Every reader takes what it can and reports what it cannot: a reading of the wrong type is an
error naming the resource and the field (``Power: PowerControl[0].PowerConsumedWatts: expected
a number, got str``); a reading that is null or absent on a sensor that is not enabled is not
an error (Redfish uses null for sensors without a value); a number no float can hold (``1e400``,
a 400-digit integer) is dropped with an error, and the rest of the document is still read.
Values from the device are never echoed into errors beyond their type.  Every string read
passes through the probe's ``DeviceText`` (valid UTF-8, no control characters, a length cap).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..runtime.collector import DeviceText

Path = tuple[str | int, ...]
#: For parsers used outside a probe (tests, tools); a probe passes its exporter's own.
DEFAULT_TEXT = DeviceText()


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class Doc:
    """A view of part of a JSON document that records type errors into a shared list."""

    def __init__(
        self, data: Any, where: str, errors: list[str], path: Path = (), clean: DeviceText = DEFAULT_TEXT
    ) -> None:
        self.data = data
        self.where = where
        self.errors = errors
        self.path = path
        self.clean = clean

    def _get(self, keys: Path) -> tuple[Any, Path]:
        node = self.data
        path = self.path
        for key in keys:
            path = (*path, key)
            if isinstance(key, int):
                node = node[key] if isinstance(node, list) and len(node) > key else None
            else:
                node = node.get(key) if isinstance(node, dict) else None
            if node is None:
                return None, path
        return node, path

    def error(self, path: Path, message: str) -> None:
        self.errors.append(f"{self.where}: {_dotted(path)}: {message}")

    def has(self, *keys: str | int) -> bool:
        return self._get(keys)[0] is not None

    def number(self, *keys: str | int) -> float | None:
        value, path = self._get(keys)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"expected a number, got {type(value).__name__}")
            return None
        try:
            number = float(value)  # a huge JSON integer is an int no float can hold
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.error(path, "not a finite number")
            return None
        return number

    def text(self, *keys: str | int) -> str | None:
        value, path = self._get(keys)
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.error(path, f"expected a string, got {type(value).__name__}")
            return None
        return self.clean(value)

    def obj(self, *keys: str | int) -> Doc | None:
        value, path = self._get(keys)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(path, f"expected an object, got {type(value).__name__}")
            return None
        return Doc(value, self.where, self.errors, path, self.clean)

    def items(self, *keys: str | int, required: bool = False) -> Iterator[Doc]:
        value, path = self._get(keys)
        if value is None:
            if required:
                self.error(path, "missing")
            return
        if not isinstance(value, list):
            self.error(path, f"expected an array, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield Doc(item, self.where, self.errors, (*path, i), self.clean)
            else:
                self.error((*path, i), f"expected an object, got {type(item).__name__}")

    def enabled(self) -> bool:
        """Whether the resource is present and on (Status.State absent counts as enabled)."""
        state = self.text("Status", "State")
        return state in (None, "Enabled", "StandbyOffline", "StandbySpare", "Deferring", "Quiesced")

    def absent(self) -> bool:
        return self.text("Status", "State") in ("Absent", "Disabled", "UnavailableOffline")


def ratio(doc: Doc, *keys: str | int) -> float | None:
    """A PSU efficiency as 0..1: BMCs send percent (91) or, like iDRAC9, a fraction (0.91).

    No supply runs at 1 % efficiency, so a value up to 1 is taken as the fraction itself."""
    value = doc.number(*keys)
    if value is None:
        return None
    if not 0 <= value <= 100:
        doc.error((*doc.path, *keys), "not a percentage (0..100) or a fraction (0..1)")
        return None
    return value if value <= 1 else value / 100


def name_of(doc: Doc, fallback: str) -> str:
    return doc.text("MemberId") or doc.text("Id") or doc.text("Name") or doc.text("DeviceName") or fallback


# --- power ---------------------------------------------------------------------------------


@dataclass
class PowerSnapshot:
    watts: float | None = None
    source: str = ""
    interval_seconds: float | None = None
    stats: dict[str, float] = field(default_factory=dict)  # average/min/max over the interval
    #: The limit configured on the BMC, and whether it is enforced (None: nothing says it is not).
    limit_watts: float | None = None
    limit_enforced: bool | None = None
    capacity_watts: float | None = None
    energy_joules: float | None = None
    #: PowerControl's budget figures: allocated, requested, available.
    budget: dict[str, float] = field(default_factory=dict)
    #: Power.Voltages[]: (sensor, volts).
    voltages: list[tuple[str, float]] = field(default_factory=list)

    def has_readings(self) -> bool:
        """Whether anything besides node power was read."""
        scalars = (self.interval_seconds, self.limit_watts, self.capacity_watts, self.energy_joules)
        return bool(self.stats or self.budget) or any(v is not None for v in scalars)

    def enforced_limit(self) -> float | None:
        """The limit when it is enforced: a configured but disabled cap is not a limit."""
        return self.limit_watts if self.limit_enforced is not False else None


#: Legacy ``PowerLimit.LimitException`` values under which exceeding the limit changes nothing.
NOT_ENFORCING = ("NoAction", "LogEventOnly")


def environment_power(doc: Doc, snap: PowerSnapshot) -> None:
    """EnvironmentMetrics: PowerWatts.Reading, EnergykWh.Reading, PowerLimitWatts (a Control)."""
    watts = doc.number("PowerWatts", "Reading")
    if watts is not None and snap.watts is None:
        snap.watts, snap.source = watts, "environment_metrics"
    kwh = doc.number("EnergykWh", "Reading")
    if kwh is not None:
        snap.energy_joules = kwh * 3.6e6
    limit = doc.obj("PowerLimitWatts")
    if limit is not None:
        snap.limit_watts = limit.number("SetPoint")
        if snap.limit_watts is not None:
            snap.limit_enforced = limit.text("ControlMode") != "Disabled"
        allocated = limit.number("AllocatedWatts")
        if allocated is not None:
            snap.budget.setdefault("allocated", allocated)


def legacy_power(doc: Doc, snap: PowerSnapshot) -> None:
    """Power.PowerControl[]: the first control with a consumed reading is the node's input.

    A reading that is there but unusable (a string, 10^400) is dropped with an error; that
    control's limit, capacity and statistics are still read."""
    controls = list(doc.items("PowerControl", required=True))
    for control in controls:
        if not control.has("PowerConsumedWatts"):
            continue
        watts = control.number("PowerConsumedWatts")
        if snap.watts is None and watts is not None:
            snap.watts, snap.source = watts, "power_control"
        metrics = control.obj("PowerMetrics")
        if metrics is not None and not snap.stats:
            minutes = metrics.number("IntervalInMin")
            snap.interval_seconds = minutes * 60 if minutes is not None else None
            for stat, key in (
                ("average", "AverageConsumedWatts"),
                ("min", "MinConsumedWatts"),
                ("max", "MaxConsumedWatts"),
            ):
                value = metrics.number(key)
                if value is not None:
                    snap.stats[stat] = value
        if snap.limit_watts is None:
            snap.limit_watts = control.number("PowerLimit", "LimitInWatts")
            if snap.limit_watts is not None:
                snap.limit_enforced = control.text("PowerLimit", "LimitException") not in NOT_ENFORCING
        if snap.capacity_watts is None:
            snap.capacity_watts = control.number("PowerCapacityWatts")
        for kind in ("allocated", "requested", "available"):
            value = control.number(f"Power{kind.capitalize()}Watts")
            if value is not None:
                snap.budget.setdefault(kind, value)
        break
    else:
        if controls:
            # No control carries a reading: report the field that should have had it.
            controls[0].error((*controls[0].path, "PowerConsumedWatts"), "missing")


def dell_power_cap(doc: Doc, snap: PowerSnapshot) -> None:
    """iDRAC's own switch, ``Oem.Dell.DellSystem.PowerCapEnabledState`` of the system.

    iDRAC keeps ``LimitInWatts`` (and ``LimitException: HardPowerOff``) when the cap is switched
    off, so the OEM state decides whether the limit is enforced."""
    state = doc.text("Oem", "Dell", "DellSystem", "PowerCapEnabledState")
    if state in ("Enabled", "Disabled") and snap.limit_watts is not None:
        snap.limit_enforced = state == "Enabled"


def voltages(doc: Doc) -> list[tuple[str, float]]:
    """Power.Voltages[]: (sensor name, volts) of the sensors with a reading."""
    out = []
    for i, item in enumerate(doc.items("Voltages")):
        volts = item.number("ReadingVolts")
        if volts is not None:
            out.append((item.text("Name") or name_of(item, f"voltage{i}"), volts))
    return out


# --- PSUs ------------------------------------------------------------------------------------


@dataclass
class PSU:
    id: str
    input_watts: float | None = None
    output_watts: float | None = None
    capacity_watts: float | None = None
    efficiency_ratio: float | None = None
    input_volts: float | None = None
    health: str | None = None
    #: The supply's own meter (PSU Metrics EnergykWh), made a counter by the collector.
    energy_joules: float | None = None
    temperature_celsius: float | None = None


def legacy_psus(doc: Doc) -> list[PSU]:
    psus = []
    for i, item in enumerate(doc.items("PowerSupplies", required=True)):
        if item.absent():
            continue
        psus.append(
            PSU(
                id=name_of(item, f"psu{i}"),
                input_watts=item.number("PowerInputWatts"),
                output_watts=item.number("PowerOutputWatts")
                if item.has("PowerOutputWatts")
                else item.number("LastPowerOutputWatts"),
                capacity_watts=item.number("PowerCapacityWatts"),
                efficiency_ratio=ratio(item, "EfficiencyPercent"),
                input_volts=item.number("LineInputVoltage"),
                health=item.text("Status", "Health"),
            )
        )
    return psus


def new_psu(item: Doc, metrics: Doc | None, fallback: str) -> PSU:
    efficiency = None
    for rating in item.items("EfficiencyRatings"):
        efficiency = ratio(rating, "EfficiencyPercent")
        if efficiency is not None:
            break
    psu = PSU(
        id=name_of(item, fallback),
        capacity_watts=item.number("PowerCapacityWatts"),
        efficiency_ratio=efficiency,
        health=item.text("Status", "Health"),
    )
    if metrics is not None:
        psu.input_watts = metrics.number("InputPowerWatts", "Reading")
        psu.output_watts = metrics.number("OutputPowerWatts", "Reading")
        psu.input_volts = metrics.number("InputVoltage", "Reading")
        psu.temperature_celsius = metrics.number("TemperatureCelsius", "Reading")
        kwh = metrics.number("EnergykWh", "Reading")
        psu.energy_joules = kwh * 3.6e6 if kwh is not None else None
    return psu


@dataclass
class Redundancy:
    group: str
    mode: str
    redundant: bool


def psu_redundancy(doc: Doc, key: str) -> list[Redundancy]:
    """PSU redundancy groups: ``Power.Redundancy[]`` or ``PowerSubsystem.PowerSupplyRedundancy[]``.

    A group is redundant while its Status is Enabled (or absent) and its Health OK (or absent);
    ``UnavailableOffline``, ``StandbyOffline`` or a Warning/Critical health mean redundancy is
    lost.  A group that is ``Disabled`` or ``Absent`` (a non-redundant configuration) is skipped."""
    out = []
    for i, item in enumerate(doc.items(key)):
        state = item.text("Status", "State")
        if state in ("Disabled", "Absent"):
            continue
        health = item.text("Status", "Health")
        out.append(
            Redundancy(
                name_of(item, str(i)),
                item.text("Mode") or item.text("RedundancyType") or "",
                state in (None, "Enabled") and health in (None, "OK"),
            )
        )
    return out


# --- thermal ---------------------------------------------------------------------------------


@dataclass
class Temperature:
    sensor: str
    context: str
    celsius: float
    #: The Sensor resource behind a ThermalMetrics reading (its DataSourceUri), if given.
    source: str = ""


@dataclass
class Fan:
    id: str
    rpm: float | None = None
    ratio: float | None = None
    health: str | None = None


@dataclass
class ThermalSnapshot:
    temperatures: list[Temperature] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)  # context → °C
    fans: list[Fan] = field(default_factory=list)
    #: EnvironmentMetrics.TemperatureCelsius: the chassis' own temperature.
    chassis_celsius: float | None = None
    #: Leak detectors of ThermalSubsystem.LeakDetection: (name, leak detected).
    leaks: list[tuple[str, bool]] = field(default_factory=list)


def legacy_thermal(doc: Doc) -> ThermalSnapshot:
    """Thermal: ``Temperatures`` and ``Fans`` of either generation.

    Older firmware (iLO 4) names a reading ``CurrentReading`` with ``Units`` and a temperature's
    place ``Context``; newer firmware ``ReadingCelsius``/``PhysicalContext`` and a fan's
    ``Reading``/``ReadingUnits``.  Both are read, the newer name first."""
    snap = ThermalSnapshot()
    for i, item in enumerate(doc.items("Temperatures", required=True)):
        if item.absent():
            continue  # iLO 4 reports an absent sensor's CurrentReading as 0
        key = "ReadingCelsius" if item.has("ReadingCelsius") or not item.has("CurrentReading") else ""
        celsius = item.number(key) if key else _in_units(item, "CurrentReading", "Units", "celsius")
        if celsius is None:
            if (
                item.enabled()
                and key
                and not item.has("ReadingCelsius")
                and item.text("Status", "State") == "Enabled"
            ):
                item.error((*item.path, "ReadingCelsius"), "missing on an enabled sensor")
            continue
        context = item.text("PhysicalContext") or item.text("Context") or ""
        snap.temperatures.append(
            Temperature(item.text("Name") or name_of(item, f"temp{i}"), context, celsius)
        )
    for i, item in enumerate(doc.items("Fans")):
        if item.absent():
            continue
        fan = Fan(
            item.text("Name") or item.text("FanName") or name_of(item, f"fan{i}"),
            health=item.text("Status", "Health"),
        )
        new = item.has("Reading") or not item.has("CurrentReading")
        reading = item.number("Reading" if new else "CurrentReading")
        units = (item.text("ReadingUnits" if new else "Units") or "RPM").lower()
        if reading is not None:
            if units == "percent":
                fan.ratio = reading / 100
            else:
                fan.rpm = reading
        snap.fans.append(fan)
    summarise(snap)
    return snap


def _in_units(item: Doc, key: str, units_key: str, expected: str) -> float | None:
    """``key`` when ``units_key`` is absent or names ``expected`` (case-insensitive)."""
    units = item.text(units_key)
    if units is not None and units.lower() != expected:
        item.error((*item.path, units_key), f"expected {expected.capitalize()}")
        return None
    return item.number(key)


def new_thermal_metrics(doc: Doc, snap: ThermalSnapshot) -> None:
    for i, item in enumerate(doc.items("TemperatureReadingsCelsius", required=True)):
        celsius = item.number("Reading")
        if celsius is None:
            continue
        uri = item.data.get("DataSourceUri")
        uri = uri if isinstance(uri, str) else ""  # a link, checked when followed, never a label
        sensor = item.text("DeviceName") or (item.text("DataSourceUri") or f"temp{i}").rsplit("/", 1)[-1]
        snap.temperatures.append(Temperature(sensor, item.text("PhysicalContext") or "", celsius, uri))
    summary = doc.obj("TemperatureSummaryCelsius")
    if summary is not None and isinstance(summary.data, dict):
        for context in summary.data:
            value = summary.number(context, "Reading")
            if value is not None:
                snap.summary[summary.clean(context).lower()] = value


def sensor_temperature(doc: Doc) -> Temperature | None:
    """A Sensor resource that reads a temperature (ReadingType, else UCUM units ``Cel``)."""
    kind = doc.text("ReadingType")
    if (kind or "").lower() != "temperature" and (kind is not None or doc.text("ReadingUnits") != "Cel"):
        return None
    celsius = doc.number("Reading")
    if celsius is None:
        return None
    uri = doc.data.get("@odata.id")
    return Temperature(
        doc.text("Name") or name_of(doc, "sensor"),
        doc.text("PhysicalContext") or "",
        celsius,
        uri if isinstance(uri, str) else "",
    )


def leak_detectors(doc: Doc) -> list[tuple[str, bool]]:
    """LeakDetection: (detector, leaking) from ``LeakDetectorGroups[].Detectors[]`` excerpts, or
    from a LeakDetector resource itself; ``DetectorState`` other than ``OK`` is a leak."""
    if doc.has("DetectorState"):
        state = doc.text("DetectorState")
        return [(doc.text("Name") or name_of(doc, "detector"), state != "OK")] if state is not None else []
    out = []
    for group in doc.items("LeakDetectorGroups"):
        for i, item in enumerate(group.items("Detectors")):
            state = item.text("DetectorState")
            if state is None:
                continue
            fallback = (item.text("DataSourceUri") or f"detector{i}").rstrip("/").rsplit("/", 1)[-1]
            out.append((item.text("DeviceName") or fallback, state != "OK"))
    return out


def environment_thermal(doc: Doc, snap: ThermalSnapshot) -> None:
    """EnvironmentMetrics: the chassis temperature, and fan speeds where no fan resource has one."""
    snap.chassis_celsius = doc.number("TemperatureCelsius", "Reading")
    if any(f.ratio is not None or f.rpm is not None for f in snap.fans):
        return
    for i, item in enumerate(doc.items("FanSpeedsPercent")):
        fan = Fan(item.text("DeviceName") or name_of(item, f"fan{i}"))
        percent = item.number("Reading")
        fan.ratio = percent / 100 if percent is not None else None
        fan.rpm = item.number("SpeedRPM")
        snap.fans.append(fan)


def new_fan(item: Doc, fallback: str) -> Fan:
    fan = Fan(item.text("Name") or name_of(item, fallback), health=item.text("Status", "Health"))
    percent = item.number("SpeedPercent", "Reading")
    fan.ratio = percent / 100 if percent is not None else None
    fan.rpm = item.number("SpeedPercent", "SpeedRPM")
    return fan


def summarise(snap: ThermalSnapshot) -> None:
    """Intake/exhaust summary from the sensors' PhysicalContext when the BMC gives none."""
    for context in ("Intake", "Exhaust"):
        if context.lower() in snap.summary:
            continue
        values = [t.celsius for t in snap.temperatures if t.context == context]
        if values:
            snap.summary[context.lower()] = max(values) if context == "Exhaust" else min(values)


# --- system ----------------------------------------------------------------------------------


@dataclass
class SystemSnapshot:
    labels: dict[str, str]
    powered_on: float | None


def system_info(doc: Doc, bmc_firmware: str, bmc_model: str) -> SystemSnapshot:
    labels = {
        "manufacturer": doc.text("Manufacturer") or "",
        "model": doc.text("Model") or "",
        "serial": doc.text("SerialNumber") or "",
        "sku": doc.text("SKU") or "",
        "bios_version": doc.text("BiosVersion") or "",
        "bmc_model": bmc_model,
        "bmc_firmware_version": bmc_firmware,
    }
    state = doc.text("PowerState")
    return SystemSnapshot(labels, None if state is None else float(state == "On"))


# --- event logs ------------------------------------------------------------------------------

#: Redfish ``Severity`` of a log entry, as the label value (anything else is ``other``).
SEVERITIES = {"ok": "ok", "warning": "warning", "critical": "critical"}


@dataclass
class LogSnapshot:
    """One log service (SEL, iDRAC Lifecycle log, iLO IML): entries by severity, the newest."""

    log: str
    entries: int = 0  # all entries, from Members@odata.count where given
    by_severity: dict[str, int] = field(default_factory=dict)  # of the entries read
    newest: dict[str, float] = field(default_factory=dict)  # severity → newest Created (Unix s)
    system: str = ""  # the system's label for a system's log, empty for the manager's


def log_entries(doc: Doc, log: str) -> LogSnapshot:
    """A LogEntry collection: counts by ``Severity`` and the newest ``Created`` per severity.

    Only the entries of the page read are counted (the collector caps it at ``max_members``);
    an entry with an unknown severity counts as ``other``, never as a label of its own."""
    snap = LogSnapshot(log)
    members = list(doc.items("Members"))
    total = doc.number("Members@odata.count")
    snap.entries = int(total) if total is not None and total >= 0 else len(members)
    for item in members:
        severity = SEVERITIES.get((item.text("Severity") or "").lower(), "other")
        snap.by_severity[severity] = snap.by_severity.get(severity, 0) + 1
        created = _timestamp(item, "Created")
        if created is not None and created > snap.newest.get(severity, -math.inf):
            snap.newest[severity] = created
    return snap


def _timestamp(item: Doc, key: str) -> float | None:
    text = item.text(key)
    if text is None:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        item.error((*item.path, key), "not an ISO 8601 time")
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)  # Redfish requires an offset; some firmware omits it
    return stamp.timestamp()


# --- telemetry -------------------------------------------------------------------------------


def metric_names(item: Doc) -> tuple[str, str] | None:
    """(metric, context) of a MetricValue.

    ``MetricId`` names the metric where the report gives one, else the last segment of
    ``MetricProperty`` (``…/Power#/PowerControl/0/PowerMetrics/MaxConsumedWatts`` →
    ``MaxConsumedWatts``).  The context is iDRAC's ``Oem.Dell.ContextID``; else, with a
    ``MetricId``, the property's last segment; else the property's resource and fragment
    without the metric (``Chassis/1/Power#/PowerControl/0/PowerMetrics``), so two controls'
    readings stay apart."""
    prop = item.text("MetricProperty") or ""
    short = prop.rstrip("/").rsplit("/", 1)[-1]
    metric = item.text("MetricId") or short
    if not metric:
        return None
    context = item.text("Oem", "Dell", "ContextID")
    if context is None and item.text("MetricId"):
        context = short
    if context is None:
        context = prop.rstrip("/").rsplit("/", 1)[0].removeprefix("/redfish/v1/") if "/" in prop else ""
    return metric, context


def newest_samples(doc: Doc) -> dict[tuple[str, str], float]:
    """Newest value per (metric, context) of a MetricReport; values arrive as strings."""
    newest: dict[tuple[str, str], tuple[str, float]] = {}
    for item in doc.items("MetricValues", required=True):
        key = metric_names(item)
        raw = item.data.get("MetricValue")
        if key is None or raw is None:
            continue
        try:
            value = float(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value):
            item.error((*item.path, "MetricValue"), "not a number")
            continue
        stamp = item.text("Timestamp") or ""
        # ISO 8601 stamps of one report share a format, so they order as strings.
        if key not in newest or stamp >= newest[key][0]:
            newest[key] = (stamp, value)
    return {k: v for k, (_s, v) in newest.items()}
