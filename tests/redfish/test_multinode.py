"""BMCs with several systems and chassis: a blade enclosure, a 2U four-node chassis, a flood.

The fixtures under ``fixtures/devices/`` are written in the shape of real multi-node hardware:
``blade-enclosure`` is an enclosure chassis (``ChassisType: Enclosure``, its six PSUs and fans,
metering its whole feed) that ``Links.Contains`` four blade chassis, each ``ContainedBy`` it
with its own power reading and one computer system; ``multinode-2u4n`` is one chassis whose
``Links.ComputerSystems`` names four nodes sharing its PSUs, fans and power reading.  Both are
served by sushy-static, a third-party Redfish server; the flood (500 systems, 500 chassis) is
made from the 2U4N fixture here.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from powerplane.exporters.redfish.client import ChassisPaths, Discovery, SystemPaths, _enclosures
from powerplane.exporters.redfish.config import KIND
from powerplane.exporters.runtime import ConfigError
from tests.conftest import Serve
from tests.helpers import logged, value

from .conftest import StartDevice, SushyDevice, device, success, sushy_devices

CONFIG = """
auths: {{static: {{method: basic, username: admin, password: {{env: RF_PW}}}}}}
modules:
  default: {{collectors: {{eventlog: false}}}}
  few: {{max_systems: 2, max_chassis: 3}}
targets: {{"http://{address}": {{}}}}
"""
V1 = "/redfish/v1"
AUTHS = "auths: {a: {username: u, password: {env: RF_PW}}}\n"
BLADES = {"Sled.1": 412.0, "Sled.2": 388.0, "Sled.3": 405.0, "Sled.4": 0.0}


Device = SushyDevice
Start = StartDevice


@pytest.fixture
async def start(tmp_path: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Start]:
    monkeypatch.setenv("RF_PW", "unused-by-sushy-static")
    async with sushy_devices(tmp_path, serve, CONFIG) as run:
        yield run


def labelled(samples: dict[str, Any], name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in samples.get(name, {}).items()}


# --- a blade enclosure ------------------------------------------------------------------------


async def test_blade_enclosure_reads_every_blade_and_never_counts_them_twice(start: Start) -> None:
    samples = await (await start(device("blade-enclosure"))).probe()
    # Each blade's power is node power under its chassis Id; the enclosure's 1580 W (the blades'
    # 1205 W and its fans) is its own metric, so a sum over node power never counts a blade twice.
    assert labelled(samples, "powerplane_redfish_power_watts", "chassis") == BLADES
    assert value(samples, "powerplane_redfish_enclosure_power_watts", chassis="Enclosure.1") == 1580.0
    assert sum(samples["powerplane_redfish_power_watts"].values()) == 1205.0
    # The enclosure's limit, PSUs and fans are read with its chassis label.
    assert value(samples, "powerplane_redfish_power_limit_watts", chassis="Enclosure.1") == 6000.0
    psus = labelled(samples, "powerplane_redfish_psu_output_watts", "chassis")
    assert set(psus) == {"Enclosure.1"} and len(samples["powerplane_redfish_psu_output_watts"]) == 6
    assert value(samples, "powerplane_redfish_fan_speed_rpm", chassis="Enclosure.1", fan="Fan.Slot.3") == 6320
    assert (
        value(samples, "powerplane_redfish_temperature_celsius", chassis="Sled.3", sensor="CPU1 Temp") == 57
    )
    # Every blade's system, by its Id; the chassis' places say which blade powers which system.
    on = labelled(samples, "powerplane_redfish_system_powered_on", "system")
    assert on == {"Sled.1": 1.0, "Sled.2": 1.0, "Sled.3": 1.0, "Sled.4": 0.0}
    assert value(samples, "powerplane_redfish_system_info", system="Sled.2", serial="SLD002") == 1.0
    places = {
        (labels["chassis"], labels["system"], labels["contained_by"], labels["role"])
        for labels in map(dict, samples["powerplane_redfish_chassis_info"])
    }
    assert places == {("Enclosure.1", "", "", "enclosure")} | {
        (sled, sled, "Enclosure.1", "node") for sled in BLADES
    }
    health = {
        (dict(k)["resource"], dict(k)["system"], dict(k)["chassis"])
        for k in samples["powerplane_redfish_health"]
    }
    assert {("system", sled, "") for sled in BLADES} <= health
    assert {("chassis", "", chassis) for chassis in [*BLADES, "Enclosure.1"]} <= health
    assert all(v == 1.0 for v in samples["powerplane_scrape_collector_success"].values())


async def test_a_pulled_blade_drops_only_itself(start: Start) -> None:
    """A 404 on one chassis' path reads that chassis again, only it; the other blades stay."""
    bmc = await start(device("blade-enclosure"))
    await bmc.probe()
    before = await bmc.requests()
    await bmc.probe()
    steady = await bmc.requests() - before
    bmc.remove(f"{V1}/Chassis/Sled.2/Power")
    samples = await bmc.probe()
    assert set(labelled(samples, "powerplane_redfish_power_watts", "chassis")) == {
        "Sled.1",
        "Sled.3",
        "Sled.4",
    }
    assert success(samples, "power") == 0.0
    assert (
        value(samples, "powerplane_redfish_temperature_celsius", chassis="Sled.2", sensor="Inlet Temp") == 25
    )
    before = await bmc.requests()
    await bmc.probe()
    # Only Sled.2's chassis document is read again: no service root, no systems, no other chassis.
    assert await bmc.requests() - before == steady + 1
    bmc.remove(f"{V1}/Chassis/Sled.2")
    await bmc.probe()  # Sled.2's Power answers 404 again: its chassis is read at the next probe
    samples = await bmc.probe()  # … and is gone
    assert "Sled.2" not in labelled(samples, "powerplane_redfish_temperature_summary_celsius", "chassis")
    assert set(labelled(samples, "powerplane_redfish_power_watts", "chassis")) == {
        "Sled.1",
        "Sled.3",
        "Sled.4",
    }
    assert success(samples, "power") == 1.0


# --- a 2U four-node chassis -------------------------------------------------------------------


async def test_multinode_chassis_powers_four_systems(start: Start) -> None:
    samples = await (await start(device("multinode-2u4n"))).probe()
    # One chassis, one reading for the four nodes it powers: node power once, not four times.
    assert samples["powerplane_redfish_power_watts"] == {(("chassis", "1"),): 1730.0}
    assert "powerplane_redfish_enclosure_power_watts" not in samples
    assert set(labelled(samples, "powerplane_redfish_system_info", "system")) == {
        "Node1",
        "Node2",
        "Node3",
        "Node4",
    }
    places = {
        (dict(k)["chassis"], dict(k)["system"], dict(k)["role"])
        for k in samples["powerplane_redfish_chassis_info"]
    }
    assert places == {("1", f"Node{i}", "node") for i in range(1, 5)}
    assert (
        value(samples, "powerplane_redfish_health", resource="system", system="Node3", state="warning") == 1.0
    )
    assert (
        value(samples, "powerplane_redfish_temperature_celsius", chassis="1", sensor="Node4 CPU1 Temp") == 63
    )
    assert all(v == 1.0 for v in samples["powerplane_scrape_collector_success"].values())


async def test_single_system_bmcs_keep_a_stable_label(start: Start) -> None:
    """A rack server (almost every BMC) has one system and one chassis: both labels are there,
    their Redfish Ids, the same at every probe."""
    bmc = await start(device("idrac9-r640"))
    first, second = await bmc.probe(), await bmc.probe()
    for samples in (first, second):
        assert samples["powerplane_redfish_power_watts"] == {(("chassis", "System.Embedded.1"),): 429.0}
        assert labelled(samples, "powerplane_redfish_system_powered_on", "system") == {
            "System.Embedded.1": 1.0
        }
    ilo = await (await start(device("ilo4-dl360-gen9"))).probe()  # trailing-slash URIs
    assert set(labelled(ilo, "powerplane_redfish_fan_speed_ratio", "chassis")) == {"1"}
    assert set(labelled(ilo, "powerplane_redfish_system_info", "system")) == {"1"}


# --- bounds -----------------------------------------------------------------------------------


def flood(systems: int) -> dict[str, Any]:
    """The 2U4N fixture grown to ``systems`` systems and as many chassis, each linked both ways."""
    docs = copy.deepcopy(device("multinode-2u4n"))
    template_system, template_chassis = docs[f"{V1}/Systems/Node1"], docs[f"{V1}/Chassis/1"]
    names = [f"Node{i}" for i in range(1, systems + 1)]
    for i, name in enumerate(names):
        s = copy.deepcopy(template_system)
        s.update({"@odata.id": f"{V1}/Systems/{name}", "Id": name})
        s["Links"]["Chassis"] = [{"@odata.id": f"{V1}/Chassis/C{i}"}]
        docs[f"{V1}/Systems/{name}"] = s
        c = copy.deepcopy(template_chassis)
        c.update({"@odata.id": f"{V1}/Chassis/C{i}", "Id": f"C{i}"})
        c["Links"]["ComputerSystems"] = [{"@odata.id": f"{V1}/Systems/{name}"}]
        for part in ("Power", "Thermal"):
            c[part] = {"@odata.id": f"{V1}/Chassis/1/{part}"}
        docs[f"{V1}/Chassis/C{i}"] = c
    docs[f"{V1}/Systems"]["Members"] = [{"@odata.id": f"{V1}/Systems/{n}"} for n in names]
    docs[f"{V1}/Chassis"]["Members"] = [{"@odata.id": f"{V1}/Chassis/C{i}"} for i in range(systems)]
    return docs


async def test_a_flood_of_systems_is_bounded_counted_and_logged_once(start: Start, caplog: Any) -> None:
    bmc = await start(flood(500))
    with caplog.at_level(logging.WARNING):
        samples = await bmc.probe()
        await bmc.probe()
    assert len(samples["powerplane_redfish_system_info"]) == 16  # max_systems' default
    assert len(samples["powerplane_redfish_power_watts"]) == 16  # the chassis of those 16 systems
    own = await bmc.own()
    assert value(own, "powerplane_redfish_discovery_dropped_total", kind="systems") == 484
    # 500 chassis listed, the 16 the systems link read first: 484 dropped.
    assert value(own, "powerplane_redfish_discovery_dropped_total", kind="chassis") == 484
    # Nothing is read of the dropped ones. Discovery: the root, both collections, 16 systems, 16
    # chassis, the manager (36); each probe: the Power and Thermal they all link, once (2); the
    # systems' and chassis' documents of discovery serve health and identity (inventory_refresh).
    assert value(own, "powerplane_redfish_requests_total") == 36 + 2 * 2
    lines = [r for r in caplog.records if "max_systems" in r.getMessage()]
    assert len(lines) == 1 and bmc.address in logged(caplog)


async def test_module_caps_apply(start: Start) -> None:
    samples = await (await start(device("blade-enclosure"))).probe("few")
    assert set(labelled(samples, "powerplane_redfish_system_info", "system")) == {"Sled.1", "Sled.2"}
    # The systems' own chassis come first, then the collection's: the enclosure is the third.
    assert set(labelled(samples, "powerplane_redfish_power_watts", "chassis")) == {"Sled.1", "Sled.2"}
    assert set(labelled(samples, "powerplane_redfish_enclosure_power_watts", "chassis")) == {"Enclosure.1"}


@pytest.mark.parametrize("bad", [0, -1, 1025, "16", 2.5, None])
def test_caps_are_validated(bad: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_PW", "x")
    for key in ("max_systems", "max_chassis"):
        with pytest.raises(ConfigError) as info:
            KIND.load_text(f"{AUTHS}modules: {{m: {{{key}: {json.dumps(bad)}}}}}\n")
        assert f"modules.m.{key}" in str(info.value)


# --- which chassis is an enclosure ------------------------------------------------------------


def test_enclosure_needs_a_powered_chassis_inside() -> None:
    """A chassis holding only unpowered chassis (a storage backplane on a rack server) keeps its
    power as node power; holding a powered one by ContainedBy or by Contains, it is an enclosure."""
    server = ChassisPaths("/c/System.Embedded.1", "System.Embedded.1", power="/p", contains=("/c/Bay",))
    bay = ChassisPaths("/c/Bay", "Bay", contained_by="/c/System.Embedded.1")
    assert [c.enclosure for c in _enclosures([server, bay])] == [False, False]
    frame = ChassisPaths("/c/Frame/", "Frame", power="/fp")
    blade = ChassisPaths("/c/Blade", "Blade", power="/bp", contained_by="/c/Frame")
    assert [c.enclosure for c in _enclosures([frame, blade])] == [True, False]
    holder = ChassisPaths("/c/Frame", "Frame", power="/fp", contains=("/c/Blade/",))
    assert [c.enclosure for c in _enclosures([holder, ChassisPaths("/c/Blade", "Blade", power="/x")])] == [
        True,
        False,
    ]
    unpowered = ChassisPaths("/c/Frame", "Frame", thermal="/t", contains=("/c/Blade",))
    assert _enclosures([unpowered, blade])[0].enclosure is False  # no power of its own to set apart


def test_the_system_a_chassis_powers() -> None:
    one = Discovery("/s", [SystemPaths("/s/1", "1")], [], None, 0)
    assert one.system_of(ChassisPaths("/c/1", "1")) is one.systems[0]  # the only system
    many = Discovery(
        "/s", [SystemPaths("/s/A", "A", chassis=("/c/A/",)), SystemPaths("/s/B", "B")], [], None, 0
    )
    assert many.system_of(ChassisPaths("/c/A", "A")) is many.systems[0]  # by the system's link
    assert many.system_of(ChassisPaths("/c/B", "B", systems=("/s/B",))) is many.systems[1]
    assert many.system_of(ChassisPaths("/c/X", "X")) is None  # an enclosure powers no one system


def test_the_chassis_bmc_wide_figures_belong_to() -> None:
    """Telemetry's SystemInputPower: the one system's first chassis (not its drive bay), the only
    chassis, or none on a BMC of several systems."""
    server, bay = ChassisPaths("/c/1/", "1"), ChassisPaths("/c/Bay", "Bay")
    system = SystemPaths("/s/1", "1", chassis=("/c/1",))
    assert Discovery("/s", [system], [bay, server], None, 0).main_chassis() is server
    assert Discovery("/s", [SystemPaths("/s/1", "1")], [bay], None, 0).main_chassis() is bay
    two = [system, SystemPaths("/s/2", "2", chassis=("/c/1",))]
    assert Discovery("/s", two, [server], None, 0).main_chassis() is server
    assert Discovery("/s", two, [server, bay], None, 0).main_chassis() is None


async def test_hostile_ids_keep_the_exposition_valid(start: Start) -> None:
    """Duplicate, missing, non-string and oversized Ids: label values stay valid and unique."""
    docs = device("multinode-2u4n")
    docs[f"{V1}/Systems/Node1"]["Id"] = "Node2"  # a duplicate: the first one is kept
    docs[f"{V1}/Systems/Node3"]["Id"] = {"not": "a string"}  # the path's last segment instead
    docs[f"{V1}/Systems/Node4"]["Id"] = "N\r\n# TYPE x counter" + "4" * 500
    bmc = await start(docs)
    samples = await bmc.probe()
    systems = set(labelled(samples, "powerplane_redfish_system_powered_on", "system"))
    assert "Node2" in systems and "Node3" in systems and len(systems) == 3
    assert all(len(s) <= 128 and "\n" not in s for s in systems)
    # The bad Id is cleaned once per probe, however many collectors label that system.
    sanitised = "powerplane_device_strings_sanitised_total"
    counts = [value(await bmc.own(), sanitised, reason=r) for r in ("invalid", "truncated")]
    await bmc.probe()
    again = [value(await bmc.own(), sanitised, reason=r) for r in ("invalid", "truncated")]
    assert [b - a for a, b in zip(counts, again, strict=True)] == counts == [1.0, 1.0]
