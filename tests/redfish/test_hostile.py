"""A hostile BMC: strings that break expositions, links elsewhere, redirects, 401 loops, floods."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from powerplane.exporters.redfish.exporter import make_server
from powerplane.lab.hostile import Canary, HostileBMC, HostileLab, replace_links
from powerplane.lab.redfish import CHASSIS, IDRAC_XE9680
from tests.conftest import Serve, Served
from tests.helpers import FakeClock, parse, value

from .conftest import PASSWORD, constant

#: A BMC without $expand, so that every member and link is fetched on its own.
PLAIN = dataclasses.replace(IDRAC_XE9680, name="plain-xe9680", expand=False)
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


@pytest.fixture
async def hostile_lab() -> AsyncIterator[HostileLab]:
    async with HostileLab() as running:
        yield running


async def hostile(lab: HostileLab, **kwargs: Any) -> HostileBMC:
    kwargs.setdefault("password", PASSWORD)
    kwargs.setdefault("load", constant(0.5))
    name = kwargs.pop("name", "hostile")
    return await lab.start_bmc(HostileBMC(name, kwargs.pop("model", PLAIN), **kwargs))  # type: ignore[return-value]


# --- device strings (issue 14, item 15) ---------------------------------------------------------


def evil_strings(path: str, doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    if path == f"{CHASSIS}/ThermalSubsystem/ThermalMetrics":
        summary = doc["TemperatureSummaryCelsius"]
        doc["TemperatureSummaryCelsius"] = {
            "\ud800Intake": summary["Intake"],
            "Exhaust\r\n#": summary["Exhaust"],
        }
    if "/ThermalSubsystem/Fans/" in path:
        doc["Name"] = "Fan\x00\x07\x1b[31m" + "F" * 5000
    if path.endswith("/Systems/System.Embedded.1"):
        doc["Model"] = "R760\r\n# TYPE evil counter\ud83d"
    return doc


async def test_hostile_strings_never_break_the_exposition(hostile_lab: HostileLab, exporter: Served) -> None:
    device = await hostile(hostile_lab, mutate=evil_strings)
    status, text = await exporter.probe(device.address)
    assert status == 200  # a lone surrogate gave HTTP 500
    status, om = await exporter.probe(device.address, headers=OPENMETRICS)
    assert status == 200
    families = {f.name: f for f in parse_openmetrics(om)}  # raises on a broken exposition
    labels = [v for f in families.values() for s in f.samples for v in s.labels.values()]
    # 128 characters at most, and the health resource's "fan/" prefix.
    assert labels and all(len(v) <= len("fan/") + 128 and v.isprintable() for v in labels)
    samples = parse(text)
    assert value(samples, "powerplane_redfish_temperature_summary_celsius", context="\ufffdintake") == 22.0
    assert value(samples, "powerplane_redfish_temperature_summary_celsius", context="exhaust  #") > 0
    fans = {dict(k)["fan"] for k in samples["powerplane_redfish_fan_speed_rpm"]}
    assert all(f.startswith("Fan[31mFFF") and f.endswith("…") and len(f) == 128 for f in fans)
    assert value(samples, "powerplane_redfish_system_info", model="R760  # TYPE evil counter\ufffd")
    own = parse((await exporter.get("/metrics"))[1])
    truncated = value(own, "powerplane_device_strings_sanitised_total", reason="truncated")
    assert truncated >= 2 * len(fans)  # once per probe and fan
    assert value(own, "powerplane_device_strings_sanitised_total", reason="invalid") > 0


# --- links, redirects and session locations (issue 14, item 6) -----------------------------------


@pytest.fixture
async def canaries() -> AsyncIterator[tuple[Canary, Canary]]:
    """Two servers nothing may reach: one on another loopback address, one on the BMC's host."""
    elsewhere, beside = await Canary("127.0.0.2").start(), await Canary("127.0.0.1").start()
    yield elsewhere, beside
    await elsewhere.stop()
    await beside.stop()


def hostile_links(bmc_address: str, elsewhere: str, beside: str) -> list[str]:
    """Every form of a link that leads away from the BMC (or hides where it leads)."""
    return [
        f"@{elsewhere}/redfish/v1/x",  # appended to http://host:port: user info, then another host
        f"0:{elsewhere.rsplit(':', 1)[1]}/x",  # appended to a host without a port: another address
        f"//{elsewhere}/redfish/v1/x",  # scheme-relative
        f"http://{elsewhere}/redfish/v1/x",  # absolute, another host
        f"http://root:pw@{bmc_address}/redfish/v1/x",  # user info
        f"http://{beside}/redfish/v1/x",  # the BMC's host, another port
        f"https://{bmc_address}/redfish/v1/x",  # the BMC's host and port, another scheme
        f"\\\\{elsewhere}\\redfish\\v1",  # backslashes
        f"/\\{elsewhere}/x",
        f"/%2F%2F{elsewhere}/x",  # encoded slashes
        "/redfish/v1/%2e%2e/%2e%2e/x",  # encoded dots
        "/redfish/v1/../../x",
        "redfish/v1/x",  # not absolute
        f"/redfish/v1/\r\nHost: {elsewhere}",  # header injection
    ]


LINKED = {
    "member": (f"{CHASSIS}/PowerSubsystem/PowerSupplies$", "PSU.Slot.1$"),
    "metrics": (f"{CHASSIS}/ThermalSubsystem$", "ThermalMetrics$"),
}


@pytest.mark.parametrize("where", list(LINKED))
async def test_links_never_lead_away_from_the_bmc(
    hostile_lab: HostileLab, exporter: Served, canaries: tuple[Canary, Canary], where: str
) -> None:
    elsewhere, beside = canaries
    doc_path, link_pattern = LINKED[where]
    device = await hostile(hostile_lab, name=f"links-{where}")
    links = hostile_links(device.address, elsewhere.address, beside.address)
    current = {"link": ""}

    def mutate(path: str, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        return replace_links(doc, link_pattern, current["link"]) if re.search(doc_path, path) else doc

    device.mutate = mutate
    for link in links:
        current["link"] = link
        status, text = await exporter.probe(device.address)
        assert status == 200
        assert value(parse(text), "powerplane_target_up") == 1.0, link
    assert elsewhere.seen == [] and beside.seen == []
    own = parse((await exporter.get("/metrics"))[1])
    assert value(own, "powerplane_redfish_links_refused_total") >= len(links) - 1


async def test_sessions_end_on_the_bmc_whatever_it_answers(
    hostile_lab: HostileLab, config: Any, serve: Serve, canaries: tuple[Canary, Canary]
) -> None:
    elsewhere, _beside = canaries
    moved = await hostile(hostile_lab, name="moved", login_location=f"@{elsewhere.address}/redfish/v1/s/1")
    away = await hostile(
        hostile_lab, name="away", login_location=f"http://{elsewhere.address}/redfish/v1/s/1"
    )
    redirects = await hostile(hostile_lab, name="redirects", logout_redirect=f"http://{elsewhere.address}/x")
    served = await serve(make_server(config))
    for device in (moved, away, redirects):
        assert value(parse((await served.probe(device.address))[1]), "powerplane_target_up") == 1.0
    await served.server.stop()
    assert elsewhere.seen == []  # no DELETE followed a Location or a redirect elsewhere
    # The session's own @odata.id names it on the BMC, so it is still deleted there.
    assert moved.open_sessions() == 0 and away.open_sessions() == 0
    assert redirects.open_sessions() == 1  # the BMC would not delete it: nothing else was tried


# --- logins: coalesced, within the budget, backed off (issue 14, item 7) ---------------------------


async def test_refused_logins_back_off(hostile_lab: HostileLab, config: Any, serve: Serve) -> None:
    clock = FakeClock()
    device = await hostile(hostile_lab, name="refuses", refuse_logins=True)
    served = await serve(make_server(config, clock=clock))
    modules = ("default", "quick", "legacy", "small")  # four fetches, one (BMC, auth)
    results = await asyncio.gather(*(served.probe(device.address, module=modules[i % 4]) for i in range(100)))
    assert {value(parse(text), "powerplane_target_up") for _status, text in results} == {0.0}
    assert len(device.logins) == 1  # coalesced, then deferred: no account lockout
    own = parse((await served.get("/metrics"))[1])
    assert value(own, "powerplane_redfish_login_backoff_targets") == 1.0
    assert value(own, "powerplane_redfish_logins_deferred_total") >= 1.0
    attempts = []
    for _step in range(12):  # a minute, in 5 s steps
        clock.now += 5.0
        await served.probe(device.address)
        attempts.append(len(device.logins))
    # Retries after 1, 2, 4, 8 and 16 s of backoff; each probe comes 5 s after the last.
    assert attempts == [2, 3, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6]


async def test_a_bmc_that_rejects_its_sessions_keeps_none(
    hostile_lab: HostileLab, config: Any, serve: Serve
) -> None:
    clock = FakeClock()
    device = await hostile(hostile_lab, name="rejects", reject_sessions=True, max_sessions=8)
    served = await serve(make_server(config, clock=clock))
    for _ in range(10):
        results = await asyncio.gather(*(served.probe(device.address) for _ in range(10)))
        assert {value(parse(text), "powerplane_target_up") for _status, text in results} == {0.0}
        clock.now += 0.5
    # 100 probes over 5 s: logins at 0 s, then after 1 s and 2 s of backoff (each session is
    # refused at once, so a login that made it does not end the backoff).
    assert device.sessions_created == 3
    assert device.peak_sessions <= 1  # the old session is deleted before the next login
    assert device.open_sessions() == 0
    own = parse((await served.get("/metrics"))[1])
    assert value(own, "powerplane_redfish_sessions") == device.open_sessions()
    assert value(own, "powerplane_redfish_login_failures_total", reason="session_rejected") >= 1.0


# --- floods and impossible numbers (issue 14, item 17) ---------------------------------------------

PSUS = f"{CHASSIS}/PowerSubsystem/PowerSupplies"


def psu_flood(count: int) -> Any:
    """A PSU collection of ``count`` members, every one of them served."""

    def mutate(path: str, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        if path == PSUS and doc is not None:
            doc["Members"] = [{"@odata.id": f"{PSUS}/PSU.Slot.{i}"} for i in range(1, count + 1)]
            doc["Members@odata.count"] = count
        elif path.startswith(f"{PSUS}/PSU.Slot.") and doc is None and path.count("/") == PSUS.count("/") + 1:
            slot = path.rsplit(".", 1)[1]
            return {"@odata.id": path, "Id": f"PSU.Slot.{slot}", "PowerCapacityWatts": 2800.0}
        return doc

    return mutate


async def test_a_huge_collection_is_capped_and_counted(hostile_lab: HostileLab, exporter: Served) -> None:
    device = await hostile(hostile_lab, name="flood", mutate=psu_flood(5000))
    status, text = await exporter.probe(device.address)
    assert status == 200
    samples = parse(text)
    assert len(samples["powerplane_redfish_psu_capacity_watts"]) == 256  # max_members, by default
    assert value(samples, "powerplane_scrape_collector_success", collector="psu") == 0.0  # partial
    member_gets = sum(n for p, n in device.requests.items() if p.startswith(f"{PSUS}/PSU.Slot."))
    assert member_gets <= 256 * 2  # each member and its Metrics link, for the first 256 only
    own = parse((await exporter.get("/metrics"))[1])
    assert value(own, "powerplane_redfish_members_dropped_total") == 5000 - 256
    assert value(samples, "powerplane_target_up") == 1.0


def impossible_numbers(path: str, doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if path == f"{CHASSIS}/EnvironmentMetrics" and doc is not None:
        doc["PowerWatts"]["Reading"] = 10**400  # as a JSON integer of 401 digits
    if path.endswith("/PSU.Slot.1/Metrics") and doc is not None:
        doc["OutputPowerWatts"]["Reading"] = float("inf")  # sent as Infinity
    return doc


async def test_a_reading_of_ten_to_the_400_drops_that_value(
    hostile_lab: HostileLab, exporter: Served
) -> None:
    device = await hostile(hostile_lab, name="huge-reading", mutate=impossible_numbers)
    samples = parse((await exporter.probe(device.address))[1])
    assert "powerplane_redfish_power_watts" not in samples
    assert value(samples, "powerplane_redfish_power_limit_watts") == device.power_limit_watts
    assert value(samples, "powerplane_redfish_power_capacity_watts") > 0
    assert "powerplane_redfish_energy_joules_total" in samples
    outputs = samples["powerplane_redfish_psu_output_watts"]
    assert len(outputs) == PLAIN.psus - 1 and (("psu", "PSU.Slot.1"),) not in outputs
    assert value(samples, "powerplane_redfish_psu_input_watts", psu="PSU.Slot.1") > 0
