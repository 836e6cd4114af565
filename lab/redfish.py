"""A simulated fleet of BMCs speaking Redfish like a Dell iDRAC 9, in one aiohttp process.

Each ``SimulatedBMC`` has a model (which schemas it serves: the legacy ``Power``/``Thermal``
resources, the newer ``PowerSubsystem``/``ThermalSubsystem``/``EnvironmentMetrics``, or both;
whether it honours ``$expand``; whether it has iDRAC telemetry reports), a session service
with a cap on concurrent sessions (iDRAC allows about 8 and answers RAC0218 beyond that), and
readings that follow the simulated node: a load curve of its own or, in the demo, the node's
physical model (``powerplane.lab.model``: input power, the PSUs' split, fans, temperatures and
energy all come from it).  ``Faults`` inject what real BMCs do wrong:
slow answers, answers that never come, expired sessions, ``GeneralError`` on ``/Thermal``,
malformed JSON, missing fields, wrong types and huge payloads.

``RedfishLab`` serves any number of BMCs from one event loop: one application, one listening
socket per BMC on a 127.0.0.0/8 address, the BMC chosen by the socket a request arrived on.
HTTPS is optional (pass an ``ssl.SSLContext``).

    lab = RedfishLab()
    bmc = lab.add(SimulatedBMC("node-01", IDRAC9_R760))
    await lab.start()
    print(bmc.address)            # 127.0.0.1:41234
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import functools
import json
import math
import random
import re
import secrets
import ssl
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .demo import DemoContext
    from .model import ClusterModel, NodeReading

Json = dict[str, Any]
ROOT = "/redfish/v1"
SYSTEM = f"{ROOT}/Systems/System.Embedded.1"
CHASSIS = f"{ROOT}/Chassis/System.Embedded.1"
MANAGER = f"{ROOT}/Managers/iDRAC.Embedded.1"
SESSIONS = f"{ROOT}/SessionService/Sessions"
REPORTS = f"{ROOT}/TelemetryService/MetricReports"


@dataclass(frozen=True)
class BMCModel:
    """What a simulated BMC serves."""

    name: str
    model: str
    firmware: str
    legacy: bool = True
    new: bool = False
    expand: bool = True
    #: Announce $expand in the service root even when ``expand`` is off (firmware that lies).
    announce_expand: bool = False
    telemetry: bool = False
    psus: int = 2
    fans: int = 6
    fan_max_rpm: float = 16000.0
    idle_watts: float = 180.0
    max_watts: float = 720.0
    psu_capacity_watts: float = 1400.0
    #: Some firmware reports a PSU's rating as its PowerInputWatts (never sum it as consumption).
    psu_input_is_rating: bool = False
    energy: bool = False


#: iDRAC 9 firmware 4.x on a 14th-generation server: legacy schema only.
IDRAC9_R640 = BMCModel("idrac9-r640", "PowerEdge R640", "4.40.00.00", psu_input_is_rating=True)
#: iDRAC 9 firmware 7.x on a 16th-generation server: both schemas, telemetry, energy counter.
IDRAC9_R760 = BMCModel(
    "idrac9-r760", "PowerEdge R760", "7.00.00.173", new=True, telemetry=True, energy=True, max_watts=950.0
)
#: A GPU server whose BMC no longer serves the deprecated Power/Thermal resources.
IDRAC_XE9680 = BMCModel(
    "idrac-xe9680",
    "PowerEdge XE9680",
    "7.10.30.00",
    legacy=False,
    new=True,
    energy=True,
    psus=6,
    fans=12,
    idle_watts=1200.0,
    max_watts=6500.0,
    psu_capacity_watts=2800.0,
)
#: The 4-GPU HGX server (H100 SXM) the demo's GPU nodes are: new schema only, four PSUs.
IDRAC_XE8640 = BMCModel(
    "idrac-xe8640",
    "PowerEdge XE8640",
    "7.10.30.00",
    legacy=False,
    new=True,
    energy=True,
    psus=4,
    fans=8,
    fan_max_rpm=14000.0,
    idle_watts=750.0,
    max_watts=4500.0,
    psu_capacity_watts=2800.0,
)
#: iDRAC 9 firmware 5.x on a GPU-dense 15th-generation server: legacy schema only.
IDRAC9_R750XA = BMCModel(
    "idrac9-r750xa",
    "PowerEdge R750xa",
    "5.10.50.00",
    idle_watts=350.0,
    max_watts=1750.0,
    psu_capacity_watts=2400.0,
)
#: A minimal legacy BMC that rejects ``$expand`` (400), as some other vendors' firmware does.
GENERIC_NOEXPAND = BMCModel("generic-noexpand", "Generic 1U", "1.0.0", expand=False, psus=1, fans=4)

MODELS = {
    m.name: m for m in (IDRAC9_R640, IDRAC9_R760, IDRAC_XE9680, IDRAC_XE8640, IDRAC9_R750XA, GENERIC_NOEXPAND)
}


def uniform_latency(low: float, high: float) -> Callable[[], float]:
    draw = random.Random()  # its own generator: BMC threads leave the shared state alone
    return lambda: draw.uniform(low, high)


@dataclass
class Faults:
    """Injectable misbehaviour; change the fields of a running BMC's ``faults`` at any time."""

    latency: Callable[[], float] | None = None
    #: Paths (regular expressions, searched) that never answer.
    hang: str | None = None
    #: Paths answering 500 Base.GeneralError (iDRAC does this on /Thermal now and then).
    general_error: str | None = None
    #: Paths answering text that is not JSON.
    malformed: str | None = None
    #: Paths answering 404 (a resource gone after a firmware update, a pulled blade).
    missing: str | None = None
    #: Drop the readings from power, thermal and PSU resources.
    missing_fields: bool = False
    #: Readings as strings and objects instead of numbers.
    wrong_types: bool = False
    #: Bytes of padding added to every resource matching ``huge_paths``.
    huge_bytes: int = 0
    huge_paths: str = "Power|Thermal"
    #: HTTP status for a login beyond the session cap (iDRAC: RAC0218).
    session_limit_status: int = 503


@dataclass
class _Session:
    id: str
    token: str
    user: str
    last_used: float


@dataclass
class SimulatedBMC:
    """One BMC: its model, credentials, session service, simulated node and faults."""

    name: str
    model: BMCModel = IDRAC9_R760
    username: str = "root"
    password: str = "calvin"
    max_sessions: int = 8
    session_timeout: float = 1800.0
    #: Node load (0..1) as a function of seconds since start.
    load: Callable[[float], float] = field(default=lambda _t: 0.5)
    #: When set, the node's physical state (the demo's model): every reading comes from it.
    node: Callable[[], NodeReading] | None = None
    #: Without a node model: the node's input power in watts as a function of nothing (a fleet
    #: whose truth a test computes itself).
    power_source: Callable[[], float] | None = None
    power_limit_watts: float | None = 700.0
    #: The system's and chassis' ``Status.Health`` and ``HealthRollup`` (change at any time).
    health: str = "OK"
    faults: Faults = field(default_factory=Faults)
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        self.sessions: dict[str, _Session] = {}
        self.started = time.monotonic()
        self.requests: Counter[str] = Counter()
        self.sessions_created = 0
        self.sessions_deleted = 0
        self.sessions_refused = 0
        self.peak_sessions = 0
        #: GETs answered 304 Not Modified (the client's If-None-Match matched the ETag).
        self.not_modified = 0
        self._energy_kwh = 1000.0 + self.seed
        self._energy_at = time.monotonic()
        self.serial = f"SIM{zlib.crc32(self.name.encode()) % 10_000_000:07d}"

    # --- the simulated node ----------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def utilisation(self) -> float:
        return max(0.0, min(1.0, self.load(time.monotonic() - self.started)))

    def power_watts(self) -> float:
        """The node's input power now (what the BMC reports), rounded as iDRAC does."""
        if self.node is not None:
            return float(round(self.node().input_w))
        if self.power_source is not None:
            return float(round(self.power_source()))
        m = self.model
        return float(round(m.idle_watts + (m.max_watts - m.idle_watts) * self.utilisation()))

    def energy_kwh(self) -> float:
        if self.node is not None:
            return round(1000.0 + self.seed + self.node().input_j / 3.6e6, 3)
        now = time.monotonic()
        self._energy_kwh += self.power_watts() * (now - self._energy_at) / 3.6e6
        self._energy_at = now
        return round(self._energy_kwh, 3)

    def temperatures(self) -> list[tuple[str, str, str, float]]:
        """(id, name, physical context, °C)."""
        if self.node is not None:
            r = self.node()
            return [
                (
                    "iDRAC.Embedded.1#SystemBoardInletTemp",
                    "System Board Inlet Temp",
                    "Intake",
                    round(r.inlet_c),
                ),
                (
                    "iDRAC.Embedded.1#SystemBoardExhaustTemp",
                    "System Board Exhaust Temp",
                    "Exhaust",
                    round(r.exhaust_c),
                ),
                *(
                    (f"iDRAC.Embedded.1#CPU{k}Temp", f"CPU{k} Temp", "CPU", round(c))
                    for k, c in enumerate(r.cpu_c, start=1)
                ),
            ]
        u = self.utilisation()
        inlet = 21.0 + 2.0 * u
        return [
            ("iDRAC.Embedded.1#SystemBoardInletTemp", "System Board Inlet Temp", "Intake", round(inlet)),
            (
                "iDRAC.Embedded.1#SystemBoardExhaustTemp",
                "System Board Exhaust Temp",
                "Exhaust",
                round(inlet + 6 + 18 * u),
            ),
            ("iDRAC.Embedded.1#CPU1Temp", "CPU1 Temp", "CPU", round(38 + 45 * u)),
            ("iDRAC.Embedded.1#CPU2Temp", "CPU2 Temp", "CPU", round(36 + 45 * u)),
        ]

    def fan_rpm(self, index: int) -> float:
        if self.node is not None:
            return float(round(self.model.fan_max_rpm * self.node().fan_ratio + 40 * index, -1))
        return float(round(3600 + 9000 * self.utilisation() + 40 * index, -1))

    def fan_percent(self, index: int) -> float:
        return round(100 * self.fan_rpm(index) / self.model.fan_max_rpm, 1)

    def _psu(self, index: int) -> tuple[float, float]:
        """(input, output) watts of PSU ``index`` (1-based)."""
        if self.node is not None:
            r = self.node()
            if 1 <= index <= len(r.psu_input):
                return r.psu_input[index - 1], r.psu_output[index - 1]
        share = self.power_watts() / max(1, self.model.psus)
        return share, share * 0.94

    def psu_output_watts(self, index: int = 1) -> float:
        return round(self._psu(index)[1], 1)

    def psu_input_watts(self, index: int = 1) -> float:
        return round(self._psu(index)[0], 1)

    def psu_efficiency_percent(self, index: int = 1) -> int:
        watts_in, watts_out = self._psu(index)
        return round(100 * watts_out / watts_in) if watts_in > 0 else 94

    def open_sessions(self) -> int:
        self._expire()
        return len(self.sessions)

    def expire_sessions(self) -> None:
        """Every session times out now (the next request with its token gets 401)."""
        self.sessions.clear()

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s.id for s in self.sessions.values() if now - s.last_used > self.session_timeout]:
            del self.sessions[sid]

    # --- resources -------------------------------------------------------------------------

    def _reading(self, value: float | None) -> Any:
        if self.faults.wrong_types and value is not None:
            return f"{value} W"
        return value

    def resource(self, path: str) -> Json | None:
        m = self.model
        f = self.faults
        if path == ROOT:
            root: Json = {
                "@odata.id": ROOT,
                "@odata.type": "#ServiceRoot.v1_11_0.ServiceRoot",
                "Id": "RootService",
                "Name": "Root Service",
                "RedfishVersion": "1.17.0",
                "Vendor": "Dell",
                "Product": "Integrated Dell Remote Access Controller",
                "Systems": {"@odata.id": f"{ROOT}/Systems"},
                "Chassis": {"@odata.id": f"{ROOT}/Chassis"},
                "Managers": {"@odata.id": f"{ROOT}/Managers"},
                "SessionService": {"@odata.id": f"{ROOT}/SessionService"},
                "Links": {"Sessions": {"@odata.id": SESSIONS}},
            }
            if m.expand or m.announce_expand:
                root["ProtocolFeaturesSupported"] = {
                    "ExpandQuery": {
                        "ExpandAll": True,
                        "Levels": True,
                        "Links": True,
                        "NoLinks": True,
                        "MaxLevels": 2,
                    }
                }
            if m.telemetry:
                root["TelemetryService"] = {"@odata.id": f"{ROOT}/TelemetryService"}
            return root
        if path == f"{ROOT}/Systems":
            return _collection(path, "Computer System Collection", [SYSTEM])
        if path == f"{ROOT}/Chassis":
            return _collection(path, "Chassis Collection", [CHASSIS])
        if path == f"{ROOT}/Managers":
            return _collection(path, "Manager Collection", [MANAGER])
        if path == f"{ROOT}/SessionService":
            return {
                "@odata.id": path,
                "Id": "SessionService",
                "SessionTimeout": int(self.session_timeout),
                "Sessions": {"@odata.id": SESSIONS},
            }
        if path == SESSIONS:
            return _collection(path, "Session Collection", [f"{SESSIONS}/{s}" for s in self.sessions])
        if path.startswith(SESSIONS + "/"):
            sid = path.rsplit("/", 1)[1]
            session = self.sessions.get(sid)
            return None if session is None else {"@odata.id": path, "Id": sid, "UserName": session.user}
        if path == SYSTEM:
            return {
                "@odata.id": SYSTEM,
                "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
                "Id": "System.Embedded.1",
                "Manufacturer": "Dell Inc.",
                "Model": m.model,
                "SKU": self.serial,
                "SerialNumber": f"CN{self.serial}",
                "BiosVersion": "2.3.5",
                "PowerState": "On",
                "HostName": self.name,
                "Status": {"Health": self.health, "HealthRollup": self.health, "State": "Enabled"},
                "Links": {
                    "Chassis": [{"@odata.id": CHASSIS}],
                    "ManagedBy": [{"@odata.id": MANAGER}],
                },
            }
        if path == MANAGER:
            return {
                "@odata.id": MANAGER,
                "Id": "iDRAC.Embedded.1",
                "Model": "16G Monolithic" if m.new else "14G Monolithic",
                "FirmwareVersion": m.firmware,
                "ManagerType": "BMC",
                "Status": {"Health": "OK", "State": "Enabled"},
            }
        if path == CHASSIS:
            chassis: Json = {
                "@odata.id": CHASSIS,
                "@odata.type": "#Chassis.v1_23_0.Chassis",
                "Id": "System.Embedded.1",
                "ChassisType": "RackMount",
                "Model": m.model,
                "Manufacturer": "Dell Inc.",
                "PowerState": "On",
                "Status": {"Health": self.health, "HealthRollup": self.health, "State": "Enabled"},
                "Links": {"ComputerSystems": [{"@odata.id": SYSTEM}], "ManagedBy": [{"@odata.id": MANAGER}]},
            }
            if m.legacy:
                chassis["Power"] = {"@odata.id": f"{CHASSIS}/Power"}
                chassis["Thermal"] = {"@odata.id": f"{CHASSIS}/Thermal"}
            if m.new:
                chassis["PowerSubsystem"] = {"@odata.id": f"{CHASSIS}/PowerSubsystem"}
                chassis["ThermalSubsystem"] = {"@odata.id": f"{CHASSIS}/ThermalSubsystem"}
                chassis["EnvironmentMetrics"] = {"@odata.id": f"{CHASSIS}/EnvironmentMetrics"}
            return chassis
        if m.legacy and path == f"{CHASSIS}/Power":
            return self._legacy_power()
        if m.legacy and path == f"{CHASSIS}/Thermal":
            return self._legacy_thermal()
        if m.new:
            doc = self._new_resource(path)
            if doc is not None:
                return doc
        if m.telemetry:
            if path == f"{ROOT}/TelemetryService":
                return {"@odata.id": path, "MetricReports": {"@odata.id": REPORTS}}
            if path == REPORTS:
                return _collection(
                    path, "Metric Reports", [f"{REPORTS}/PowerMetrics", f"{REPORTS}/ThermalSensor"]
                )
            if path == f"{REPORTS}/PowerMetrics":
                return self._report(
                    "PowerMetrics", [("SystemInputPower", "System.Embedded.1", self.power_watts())]
                )
            if path == f"{REPORTS}/ThermalSensor":
                return self._report(
                    "ThermalSensor",
                    [("TemperatureReading", sid, celsius) for sid, _n, _c, celsius in self.temperatures()],
                )
        del f
        return None

    def _report(self, name: str, values: list[tuple[str, str, float]]) -> Json:
        now = time.time()
        samples = []
        # Two samples per metric, the older first: a reader must take the newest.
        for age in (60, 0):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - age))
            for metric, context, value in values:
                shown = value if age == 0 else value * 0.9
                samples.append(
                    {
                        "MetricId": metric,
                        "MetricValue": f"{shown:g}",
                        "Timestamp": stamp,
                        "Oem": {"Dell": {"ContextID": context, "Label": f"{context} {metric}"}},
                    }
                )
        return {"@odata.id": f"{REPORTS}/{name}", "Id": name, "MetricValues": samples}

    def _legacy_power(self) -> Json:
        m = self.model
        watts = self.power_watts()
        control: Json = {
            "@odata.id": f"{CHASSIS}/Power#/PowerControl/0",
            "MemberId": "PowerControl",
            "Name": "System Power Control",
            "PowerConsumedWatts": self._reading(watts),
            "PowerCapacityWatts": m.psu_capacity_watts,
            "PowerRequestedWatts": round(m.max_watts * 0.8),
            "PowerLimit": {
                "LimitInWatts": self.power_limit_watts,
                "LimitException": "HardPowerOff" if self.power_limit_watts else "NoAction",
            },
            "PowerMetrics": {
                "IntervalInMin": 1,
                "AverageConsumedWatts": self._reading(round(watts * 0.98)),
                "MinConsumedWatts": round(watts * 0.9),
                "MaxConsumedWatts": round(watts * 1.1),
            },
        }
        supplies = []
        for i in range(1, m.psus + 1):
            psu: Json = {
                "@odata.id": f"{CHASSIS}/Power#/PowerSupplies/{i - 1}",
                "MemberId": f"PSU.Slot.{i}",
                "Name": f"PS{i} Status",
                "PowerCapacityWatts": m.psu_capacity_watts,
                "PowerInputWatts": self._reading(
                    m.psu_capacity_watts if m.psu_input_is_rating else self.psu_input_watts(i)
                ),
                "PowerOutputWatts": self._reading(self.psu_output_watts(i)),
                "LastPowerOutputWatts": self.psu_output_watts(i),
                "LineInputVoltage": 230,
                "EfficiencyPercent": self.psu_efficiency_percent(i),
                "Status": {"Health": "OK", "State": "Enabled"},
            }
            supplies.append(psu)
        doc: Json = {
            "@odata.id": f"{CHASSIS}/Power",
            "@odata.type": "#Power.v1_7_1.Power",
            "Id": "Power",
            "PowerControl": [control],
            "PowerSupplies": supplies,
        }
        if self.faults.missing_fields:
            del control["PowerConsumedWatts"]
            del doc["PowerSupplies"]
        return doc

    def _legacy_thermal(self) -> Json:
        temps = [
            {
                "@odata.id": f"{CHASSIS}/Sensors/{sid}",
                "MemberId": sid,
                "Name": name,
                "PhysicalContext": context,
                "ReadingCelsius": self._reading(celsius),
                "UpperThresholdCritical": 90 if context == "CPU" else 47,
                "Status": {"Health": "OK", "State": "Enabled"},
            }
            for sid, name, context, celsius in self.temperatures()
        ]
        fans = [
            {
                "@odata.id": f"{CHASSIS}/Sensors/Fans/Fan.Embedded.{i}",
                "MemberId": f"0x17||Fan.Embedded.{i}",
                "Name": f"System Board Fan{i}",
                "PhysicalContext": "SystemBoard",
                "Reading": self._reading(self.fan_rpm(i)),
                "ReadingUnits": "RPM",
                "Status": {"Health": "OK", "State": "Enabled"},
            }
            for i in range(1, self.model.fans + 1)
        ]
        doc: Json = {"@odata.id": f"{CHASSIS}/Thermal", "Id": "Thermal", "Temperatures": temps, "Fans": fans}
        if self.faults.missing_fields:
            del doc["Temperatures"]
        return doc

    def _new_resource(self, path: str) -> Json | None:
        m = self.model
        ps = f"{CHASSIS}/PowerSubsystem"
        ts = f"{CHASSIS}/ThermalSubsystem"
        if path == ps:
            return {
                "@odata.id": ps,
                "@odata.type": "#PowerSubsystem.v1_1_0.PowerSubsystem",
                "CapacityWatts": m.psu_capacity_watts * max(1, m.psus // 2),
                "Allocation": {
                    "AllocatedWatts": round(m.max_watts * 0.8),
                    "RequestedWatts": round(m.max_watts * 0.8),
                },
                "PowerSupplies": {"@odata.id": f"{ps}/PowerSupplies"},
                "Status": {"Health": "OK", "State": "Enabled"},
            }
        if path == f"{ps}/PowerSupplies":
            return _collection(
                path, "Power Supplies", [f"{ps}/PowerSupplies/PSU.Slot.{i}" for i in range(1, m.psus + 1)]
            )
        match = re.fullmatch(rf"{re.escape(ps)}/PowerSupplies/PSU\.Slot\.(\d+)(/Metrics)?", path)
        if match and 1 <= int(match.group(1)) <= m.psus:
            base = path.removesuffix("/Metrics")
            if match.group(2):
                metrics: Json = {
                    "@odata.id": path,
                    "InputPowerWatts": {"Reading": self._reading(self.psu_input_watts(int(match.group(1))))},
                    "OutputPowerWatts": {
                        "Reading": self._reading(self.psu_output_watts(int(match.group(1))))
                    },
                    "InputVoltage": {"Reading": 230},
                }
                if self.faults.missing_fields:
                    del metrics["InputPowerWatts"]
                return metrics
            return {
                "@odata.id": base,
                "Id": f"PSU.Slot.{match.group(1)}",
                "Name": f"PS{match.group(1)} Status",
                "PowerCapacityWatts": m.psu_capacity_watts,
                "EfficiencyRatings": [
                    {"EfficiencyPercent": self.psu_efficiency_percent(int(match.group(1)))}
                ],
                "Metrics": {"@odata.id": f"{base}/Metrics"},
                "Status": {"Health": "OK", "State": "Enabled"},
            }
        if path == ts:
            return {
                "@odata.id": ts,
                "Fans": {"@odata.id": f"{ts}/Fans"},
                "ThermalMetrics": {"@odata.id": f"{ts}/ThermalMetrics"},
                "Status": {"Health": "OK", "State": "Enabled"},
            }
        if path == f"{ts}/ThermalMetrics":
            temps = self.temperatures()
            readings = [
                {
                    "DataSourceUri": f"{CHASSIS}/Sensors/{sid}",
                    "DeviceName": name,
                    "PhysicalContext": ctx,
                    "Reading": self._reading(c),
                }
                for sid, name, ctx, c in temps
            ]
            doc: Json = {
                "@odata.id": path,
                "TemperatureReadingsCelsius": readings,
                "TemperatureSummaryCelsius": {
                    "Intake": {"Reading": temps[0][3]},
                    "Exhaust": {"Reading": temps[1][3]},
                },
            }
            if self.faults.missing_fields:
                del doc["TemperatureReadingsCelsius"]
            return doc
        if path == f"{ts}/Fans":
            return _collection(path, "Fans", [f"{ts}/Fans/Fan.Embedded.{i}" for i in range(1, m.fans + 1)])
        match = re.fullmatch(rf"{re.escape(ts)}/Fans/Fan\.Embedded\.(\d+)", path)
        if match and 1 <= int(match.group(1)) <= m.fans:
            i = int(match.group(1))
            rpm = self.fan_rpm(i)
            return {
                "@odata.id": path,
                "Id": f"Fan.Embedded.{i}",
                "Name": f"System Board Fan{i}",
                "PhysicalContext": "SystemBoard",
                "SpeedPercent": {"Reading": self._reading(self.fan_percent(i)), "SpeedRPM": rpm},
                "Status": {"Health": "OK", "State": "Enabled"},
            }
        if path == f"{CHASSIS}/EnvironmentMetrics":
            env: Json = {
                "@odata.id": path,
                "@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
                "PowerWatts": {
                    "Reading": self._reading(self.power_watts()),
                    "DataSourceUri": f"{CHASSIS}/Sensors/SystemPower",
                },
                "TemperatureCelsius": {"Reading": self.temperatures()[0][3]},
            }
            if m.energy:
                env["EnergykWh"] = {"Reading": self.energy_kwh()}
            if self.power_limit_watts is not None:
                env["PowerLimitWatts"] = {
                    "SetPoint": self.power_limit_watts,
                    "ControlMode": "Automatic",
                    "AllowableMax": m.max_watts,
                    "AllowableMin": m.idle_watts,
                }
            if self.faults.missing_fields:
                del env["PowerWatts"]
            return env
        return None


def _collection(path: str, name: str, members: list[str]) -> Json:
    return {
        "@odata.id": path,
        "Name": name,
        "Members": [{"@odata.id": p} for p in members],
        "Members@odata.count": len(members),
    }


def _error(status: int, code: str, message: str, message_id: str = "", resolution: str = "") -> web.Response:
    info = [
        {
            "MessageId": message_id or code,
            "Message": message,
            "Severity": "Critical",
            "Resolution": resolution,
        }
    ]
    body = {
        "error": {
            "code": code,
            "message": "A general error has occurred. See ExtendedInfo for more information.",
            "@Message.ExtendedInfo": info,
        }
    }
    return web.json_response(body, status=status)


_EXPAND = re.compile(r"^([.*~])(?:\(\$levels=(\d+)\))?$")


def _is_link(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"@odata.id"}


def expand(doc: Any, resolve: Callable[[str], Json | None], levels: int, links: bool, key: str = "") -> Any:
    """Replace reference objects by the resources they name, ``levels`` deep."""
    if levels <= 0:
        return doc
    if isinstance(doc, list):
        return [expand(v, resolve, levels, links, key) for v in doc]
    if not isinstance(doc, dict):
        return doc
    out: Json = {}
    for k, v in doc.items():
        if k == "Links" and not links:
            out[k] = v
        elif _is_link(v):
            target = resolve(v["@odata.id"])
            out[k] = expand(target, resolve, levels - 1, links) if target is not None else v
        elif isinstance(v, list) and v and all(_is_link(x) for x in v) and (k == "Members" or links):
            resolved = [resolve(x["@odata.id"]) for x in v]
            out[k] = [
                expand(r, resolve, levels - 1, links) if r is not None else x
                for r, x in zip(resolved, v, strict=True)
            ]
        elif isinstance(v, dict):
            out[k] = expand(v, resolve, levels, links, k)
        else:
            out[k] = v
    return out


class RedfishLab:
    """Serves many ``SimulatedBMC``s from one aiohttp application."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.bmcs: dict[tuple[str, int], SimulatedBMC] = {}
        self._sites: dict[tuple[str, int], web.TCPSite] = {}
        self._pending: list[SimulatedBMC] = []
        self._runner: web.AppRunner | None = None

    def add(self, bmc: SimulatedBMC) -> SimulatedBMC:
        self._pending.append(bmc)
        return bmc

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    async def start(self) -> RedfishLab:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await self._bind_pending()
        return self

    async def start_bmc(self, bmc: SimulatedBMC) -> SimulatedBMC:
        """Add a BMC to a running lab."""
        self._pending.append(bmc)
        await self._bind_pending()
        return bmc

    async def _bind_pending(self) -> None:
        assert self._runner is not None
        while self._pending:
            bmc = self._pending.pop(0)
            site = web.TCPSite(self._runner, bmc.host, bmc.port, ssl_context=self.ssl_context, backlog=512)
            await site.start()
            server = site._server
            assert server is not None
            sock = server.sockets[0]  # type: ignore[attr-defined]
            bmc.port = int(sock.getsockname()[1])
            self.bmcs[(bmc.host, bmc.port)] = bmc
            self._sites[(bmc.host, bmc.port)] = site

    async def kill(self, bmc: SimulatedBMC) -> None:
        """The BMC dies: its port closes, and connections to it are refused from now on."""
        site = self._sites.pop((bmc.host, bmc.port), None)
        self.bmcs.pop((bmc.host, bmc.port), None)
        if site is not None:
            await site.stop()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> RedfishLab:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        bmc = self.bmcs.get((sockname[0], sockname[1])) if sockname else None
        if bmc is None:
            return web.Response(status=404)
        return await _serve(bmc, request)


async def _serve(bmc: SimulatedBMC, request: web.Request) -> web.StreamResponse:
    faults = bmc.faults
    path = request.path.rstrip("/") or "/"
    bmc.requests[path] += 1
    if faults.latency is not None:
        await asyncio.sleep(faults.latency())
    if faults.hang and re.search(faults.hang, path):
        await asyncio.sleep(3600)
    if not path.startswith(ROOT):
        return _error(404, "Base.1.12.ResourceMissingAtURI", f"The resource at the URI {path} was not found.")
    bmc._expire()
    # The service root and session login are reachable without credentials, as the standard says.
    if request.method == "POST" and path == SESSIONS:
        return await _login(bmc, request)
    if path not in (ROOT, f"{ROOT}/odata", f"{ROOT}/$metadata"):
        session = _authenticate(bmc, request)
        if session is None:
            return _error(
                401,
                "Base.1.12.NoValidSession",
                "There is no valid session established with the implementation.",
            )
    if request.method == "DELETE" and path.startswith(SESSIONS + "/"):
        sid = path.rsplit("/", 1)[1]
        if bmc.sessions.pop(sid, None) is None:
            return _error(
                404, "Base.1.12.ResourceMissingAtURI", f"The resource at the URI {path} was not found."
            )
        bmc.sessions_deleted += 1
        return web.Response(status=204)
    if request.method != "GET":
        return _error(405, "Base.1.12.OperationNotAllowed", "The operation is not allowed.")
    if faults.general_error and re.search(faults.general_error, path):
        return _error(500, "Base.1.12.GeneralError", "A general error has occurred.", "IDRAC.2.8.SYS446")
    if faults.malformed and re.search(faults.malformed, path):
        return web.Response(
            text='{"@odata.id": "' + path + '", "PowerControl": [{"PowerCo', content_type="application/json"
        )
    doc = None if faults.missing and re.search(faults.missing, path) else bmc.resource(path)
    if doc is None:
        return _error(404, "Base.1.12.ResourceMissingAtURI", f"The resource at the URI {path} was not found.")
    query = request.query.get("$expand")
    if query is not None:
        bmc.requests["$expand"] += 1
        match = _EXPAND.match(query)
        if not bmc.model.expand or match is None:
            return _error(
                400, "Base.1.12.QueryNotSupported", "Querying is not supported by the implementation."
            )
        levels = min(int(match.group(2) or 1), 2)
        doc = expand(doc, bmc.resource, levels, links=match.group(1) != ".")
    if faults.huge_bytes and re.search(faults.huge_paths, path):
        doc = {**doc, "Oem": {"Padding": "x" * faults.huge_bytes}}
    body = json.dumps(doc).encode()
    # A strong validator of the representation, as iDRAC and iLO send: an unchanged resource
    # asked with its ETag answers 304 without a body.
    etag = f'"{zlib.crc32(body):08x}"'
    if request.headers.get("If-None-Match") == etag:
        bmc.not_modified += 1
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=body, content_type="application/json", headers={"ETag": etag})


def _authenticate(bmc: SimulatedBMC, request: web.Request) -> _Session | None:
    token = request.headers.get("X-Auth-Token")
    if token:
        for session in bmc.sessions.values():
            if secrets.compare_digest(session.token, token):
                session.last_used = time.monotonic()
                return session
        return None
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if user == bmc.username and secrets.compare_digest(password, bmc.password):
                return _Session("basic", "", user, time.monotonic())
    return None


async def _login(bmc: SimulatedBMC, request: web.Request) -> web.Response:
    try:
        body = await request.json()
        user, password = str(body["UserName"]), str(body["Password"])
    except (ValueError, KeyError, TypeError):
        return _error(400, "Base.1.12.MalformedJSON", "The request body submitted was malformed JSON.")
    if user != bmc.username or not secrets.compare_digest(password, bmc.password):
        return _error(401, "Base.1.12.ResourceAtUriUnauthorized", "Unauthorized: bad user name or password.")
    if len(bmc.sessions) >= bmc.max_sessions:
        bmc.sessions_refused += 1
        return _error(
            bmc.faults.session_limit_status,
            "Base.1.12.GeneralError",
            "The maximum number of user sessions is reached.",
            "IDRAC.2.8.RAC0218",
            "Close one or more sessions and retry the operation.",
        )
    sid = str(bmc.sessions_created + 1)
    session = _Session(sid, secrets.token_hex(16), user, time.monotonic())
    bmc.sessions[sid] = session
    bmc.sessions_created += 1
    bmc.peak_sessions = max(bmc.peak_sessions, len(bmc.sessions))
    uri = f"{SESSIONS}/{sid}"
    return web.json_response(
        {"@odata.id": uri, "Id": sid, "UserName": user},
        status=201,
        headers={"X-Auth-Token": session.token, "Location": uri},
    )


def wave(
    phase: float = 0.0, mean: float = 0.5, depth: float = 0.4, period_s: float = 1800.0
) -> Callable[[float], float]:
    """A load that swings ``depth`` around ``mean`` over ``period_s``."""
    return lambda t: mean + depth * math.sin(2 * math.pi * t / period_s + phase)


def fleet(
    count: int,
    model: BMCModel = IDRAC9_R760,
    faults: Callable[[int], Faults] | None = None,
    first: int = 0,
) -> list[SimulatedBMC]:
    """``count`` BMCs with loads spread over the day, one port each on 127.0.0.1, numbered from
    ``first`` (a fleet served by several processes keeps its names and serials distinct)."""
    return [
        SimulatedBMC(
            f"bmc-{i:04d}",
            model,
            load=wave(phase=float(i)),
            faults=faults(i) if faults else Faults(),
            seed=i,
        )
        for i in range(first, first + count)
    ]


async def redfish_component(ctx: DemoContext) -> None:
    """One simulated BMC per demo node, reading the node's physical model, and an exporter."""
    from powerplane.exporters.redfish.config import KIND
    from powerplane.exporters.redfish.exporter import make_server

    password_file = ctx.workdir / "redfish-password"
    password_file.write_text(secrets.token_urlsafe(16) + "\n")
    password_file.chmod(0o600)
    password = password_file.read_text().strip()
    lab = RedfishLab()
    model = ctx.cluster()
    bmcs: dict[str, SimulatedBMC] = {}
    for i, node in enumerate(ctx.nodes):
        spec = model.nodes[node].spec
        max_watts = spec.max_input_w()
        bmc_model = dataclasses.replace(
            MODELS[spec.bmc],
            psus=spec.psus,
            fans=spec.fans,
            fan_max_rpm=spec.fan_max_rpm,
            psu_capacity_watts=spec.psu_capacity_w,
            idle_watts=round(spec.idle_input_w()),
            max_watts=round(max_watts),
        )
        bmcs[node] = lab.add(
            SimulatedBMC(
                f"bmc-{node}",
                bmc_model,
                password=password,
                # The site's cap sits above what the node can draw: it never acts in the demo.
                power_limit_watts=math.ceil(max_watts * 1.1 / 100) * 100,
                node=functools.partial(_node_reading, model, node),
                port=ctx.port() if ctx.base_port is not None else 0,
                seed=i,
            )
        )
    await lab.start()
    ctx.stack.push_async_callback(lab.stop)
    targets = ", ".join(f'"{b.address}": {{}}' for b in bmcs.values())
    config = KIND.load_text(
        f"auths: {{idrac: {{username: root, password: {{file: {password_file}}}}}}}\n"
        f"defaults: {{scheme: http}}\ntargets: {{{targets}}}\n",
        "demo redfish config",
    )
    address = await ctx.serve(make_server(config), "Redfish exporter")
    ctx.scrape_configs.append(
        {
            "job_name": "powerplane-redfish-probe",
            "metrics_path": "/probe",
            "static_configs": [{"targets": [b.address], "labels": {"node": n}} for n, b in bmcs.items()],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": address},
            ],
        }
    )
    ctx.scrape_configs.append({"job_name": "powerplane-redfish", "static_configs": [{"targets": [address]}]})
    ctx.shared["redfish"] = bmcs
    ctx.shared["redfish_lab"] = lab
    ctx.shared["bmc_addresses"] = {node: bmc.address for node, bmc in bmcs.items()}


def _node_reading(model: ClusterModel, node: str) -> NodeReading:
    return model.snapshot.nodes[node]


def main() -> None:
    """``python -m powerplane.lab.redfish``: serve a fleet and print one address per line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--first", type=int, default=0, help="the first BMC's number")
    parser.add_argument("--model", choices=sorted(MODELS), default=IDRAC9_R760.name)
    parser.add_argument("--latency", type=float, nargs=2, metavar=("MIN", "MAX"), default=(0.0, 0.0))
    args = parser.parse_args()

    async def serve() -> None:
        faults = (lambda _i: Faults(latency=uniform_latency(*args.latency))) if args.latency[1] > 0 else None
        lab = RedfishLab()
        for bmc in fleet(args.count, MODELS[args.model], faults, args.first):
            lab.add(bmc)
        await lab.start()
        for bmc in lab.bmcs.values():
            print(f"{lab.scheme}://{bmc.address}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
