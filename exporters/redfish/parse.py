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


def name_of(doc: Doc, fallback: str) -> str:
    return doc.text("MemberId") or doc.text("Id") or doc.text("Name") or doc.text("DeviceName") or fallback


# --- power ---------------------------------------------------------------------------------


@dataclass
class PowerSnapshot:
    watts: float | None = None
    source: str = ""
    interval_seconds: float | None = None
    stats: dict[str, float] = field(default_factory=dict)  # average/min/max over the interval
    limit_watts: float | None = None
    capacity_watts: float | None = None
    energy_joules: float | None = None

    def has_readings(self) -> bool:
        """Whether anything besides node power was read."""
        scalars = (self.interval_seconds, self.limit_watts, self.capacity_watts, self.energy_joules)
        return bool(self.stats) or any(v is not None for v in scalars)


def environment_power(doc: Doc, snap: PowerSnapshot) -> None:
    """EnvironmentMetrics: PowerWatts.Reading, EnergykWh.Reading, PowerLimitWatts.SetPoint."""
    watts = doc.number("PowerWatts", "Reading")
    if watts is not None and snap.watts is None:
        snap.watts, snap.source = watts, "environment_metrics"
    kwh = doc.number("EnergykWh", "Reading")
    if kwh is not None:
        snap.energy_joules = kwh * 3.6e6
    limit = doc.obj("PowerLimitWatts")
    if limit is not None and limit.text("ControlMode") != "Disabled":
        snap.limit_watts = limit.number("SetPoint")


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
        if snap.capacity_watts is None:
            snap.capacity_watts = control.number("PowerCapacityWatts")
        break
    else:
        if controls:
            # No control carries a reading: report the field that should have had it.
            controls[0].error((*controls[0].path, "PowerConsumedWatts"), "missing")


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


def legacy_psus(doc: Doc) -> list[PSU]:
    psus = []
    for i, item in enumerate(doc.items("PowerSupplies", required=True)):
        if item.absent():
            continue
        efficiency = item.number("EfficiencyPercent")
        psus.append(
            PSU(
                id=name_of(item, f"psu{i}"),
                input_watts=item.number("PowerInputWatts"),
                output_watts=item.number("PowerOutputWatts")
                if item.has("PowerOutputWatts")
                else item.number("LastPowerOutputWatts"),
                capacity_watts=item.number("PowerCapacityWatts"),
                efficiency_ratio=efficiency / 100 if efficiency is not None else None,
                input_volts=item.number("LineInputVoltage"),
                health=item.text("Status", "Health"),
            )
        )
    return psus


def new_psu(item: Doc, metrics: Doc | None, fallback: str) -> PSU:
    efficiency = None
    for rating in item.items("EfficiencyRatings"):
        efficiency = rating.number("EfficiencyPercent")
        if efficiency is not None:
            break
    psu = PSU(
        id=name_of(item, fallback),
        capacity_watts=item.number("PowerCapacityWatts"),
        efficiency_ratio=efficiency / 100 if efficiency is not None else None,
        health=item.text("Status", "Health"),
    )
    if metrics is not None:
        psu.input_watts = metrics.number("InputPowerWatts", "Reading")
        psu.output_watts = metrics.number("OutputPowerWatts", "Reading")
        psu.input_volts = metrics.number("InputVoltage", "Reading")
    return psu


# --- thermal ---------------------------------------------------------------------------------


@dataclass
class Temperature:
    sensor: str
    context: str
    celsius: float


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


def legacy_thermal(doc: Doc) -> ThermalSnapshot:
    snap = ThermalSnapshot()
    for i, item in enumerate(doc.items("Temperatures", required=True)):
        celsius = item.number("ReadingCelsius")
        if celsius is None:
            if (
                item.enabled()
                and not item.has("ReadingCelsius")
                and item.text("Status", "State") == "Enabled"
            ):
                item.error((*item.path, "ReadingCelsius"), "missing on an enabled sensor")
            continue
        snap.temperatures.append(
            Temperature(
                item.text("Name") or name_of(item, f"temp{i}"), item.text("PhysicalContext") or "", celsius
            )
        )
    for i, item in enumerate(doc.items("Fans")):
        if item.absent():
            continue
        reading = item.number("Reading")
        units = item.text("ReadingUnits") or "RPM"
        fan = Fan(
            item.text("Name") or item.text("FanName") or name_of(item, f"fan{i}"),
            health=item.text("Status", "Health"),
        )
        if reading is not None:
            if units.lower() == "percent":
                fan.ratio = reading / 100
            else:
                fan.rpm = reading
        snap.fans.append(fan)
    summarise(snap)
    return snap


def new_thermal_metrics(doc: Doc, snap: ThermalSnapshot) -> None:
    for i, item in enumerate(doc.items("TemperatureReadingsCelsius", required=True)):
        celsius = item.number("Reading")
        if celsius is None:
            continue
        sensor = item.text("DeviceName") or (item.text("DataSourceUri") or f"temp{i}").rsplit("/", 1)[-1]
        snap.temperatures.append(Temperature(sensor, item.text("PhysicalContext") or "", celsius))
    summary = doc.obj("TemperatureSummaryCelsius")
    if summary is not None and isinstance(summary.data, dict):
        for context in summary.data:
            value = summary.number(context, "Reading")
            if value is not None:
                snap.summary[summary.clean(context).lower()] = value


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


# --- telemetry -------------------------------------------------------------------------------


def newest_samples(doc: Doc) -> dict[tuple[str, str], float]:
    """Newest value per (MetricId, context) of a MetricReport; values arrive as strings."""
    newest: dict[tuple[str, str], tuple[str, float]] = {}
    for item in doc.items("MetricValues", required=True):
        metric = item.text("MetricId") or item.text("MetricProperty")
        raw = item.data.get("MetricValue")
        if metric is None or raw is None:
            continue
        try:
            value = float(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value):
            item.error((*item.path, "MetricValue"), "not a number")
            continue
        context = (
            item.text("Oem", "Dell", "ContextID") or (item.text("MetricProperty") or "").rsplit("/", 1)[-1]
        )
        stamp = item.text("Timestamp") or ""
        key = (metric, context)
        # ISO 8601 stamps of one report share a format, so they order as strings.
        if key not in newest or stamp >= newest[key][0]:
            newest[key] = (stamp, value)
    return {k: v for k, (_s, v) in newest.items()}
