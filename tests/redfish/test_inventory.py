"""System and chassis documents are reused for the module's ``inventory_refresh``, then read again."""

from __future__ import annotations

import json
from typing import Any

import pytest

from powerplane.exporters.redfish.config import KIND
from powerplane.exporters.redfish.exporter import make_server
from powerplane.exporters.runtime import ConfigError
from powerplane.lab.redfish import RedfishLab, SimulatedBMC
from tests.conftest import Serve, Served
from tests.helpers import FakeClock, parse, value

from .conftest import PASSWORD, bmc, success

CONFIG = """
auths: {idrac: {username: root, password: {env: RF_PW}}}
defaults: {auth: idrac, scheme: http}
modules:
  default: {timeout: 5, inventory_refresh: 120}
  every: {timeout: 5, inventory_refresh: 0}
allow: ["127.0.0.0/8:*"]
"""
SYSTEM = "/redfish/v1/Systems/System.Embedded.1"
CHASSIS = "/redfish/v1/Chassis/System.Embedded.1"
POWER_SUBSYSTEM = f"{CHASSIS}/PowerSubsystem"


@pytest.fixture
async def clocked(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> tuple[Served, FakeClock]:
    monkeypatch.setenv("RF_PW", PASSWORD)
    clock = FakeClock()
    return await serve(make_server(KIND.load_text(CONFIG), clock=clock)), clock


async def probe(served: Served, device: SimulatedBMC, module: str = "default") -> dict[str, Any]:
    status, text = await served.probe(device.address, module=module)
    assert status == 200
    return parse(text)


def health(samples: dict[str, Any], resource: str) -> str:
    """The one state of ``resource`` whose series is 1."""
    states = [
        dict(labels)["state"]
        for labels, v in samples["powerplane_redfish_health"].items()
        if dict(labels)["resource"] == resource and v == 1.0
    ]
    assert len(states) == 1, states
    return states[0]


def outcome(samples: dict[str, Any]) -> dict[str, Any]:
    """What a probe answered, apart from the readings: up, each collector's success, health."""
    health = {
        (dict(k)["resource"], dict(k)["state"]): v
        for k, v in samples.get("powerplane_redfish_health", {}).items()
    }
    collectors = {dict(k)["collector"]: v for k, v in samples["powerplane_scrape_collector_success"].items()}
    return {"up": value(samples, "powerplane_target_up"), "collectors": collectors, "health": health}


async def test_a_changed_health_is_seen_within_the_refresh(
    lab: RedfishLab, clocked: tuple[Served, FakeClock]
) -> None:
    served, clock = clocked
    device = await bmc(lab)
    samples = await probe(served, device)
    assert (health(samples, "system"), health(samples, "chassis")) == ("ok", "ok")
    # Discovery read both documents; the probe reused them and read the PowerSubsystem.
    assert [device.requests[p] for p in (SYSTEM, CHASSIS, POWER_SUBSYSTEM)] == [1, 1, 1]
    device.health = "Critical"
    clock.now += 119
    samples = await probe(served, device)
    assert (health(samples, "system"), health(samples, "chassis")) == ("ok", "ok")
    assert [device.requests[p] for p in (SYSTEM, CHASSIS, POWER_SUBSYSTEM)] == [1, 1, 1]
    clock.now += 2
    samples = await probe(served, device)
    assert (health(samples, "system"), health(samples, "chassis")) == ("critical", "critical")
    assert [device.requests[p] for p in (SYSTEM, CHASSIS, POWER_SUBSYSTEM)] == [2, 2, 2]
    # Read once for the health, system, power and PSU collectors alike, then reused again.
    await probe(served, device)
    assert [device.requests[p] for p in (SYSTEM, CHASSIS, POWER_SUBSYSTEM)] == [2, 2, 2]


async def test_a_dead_bmc_is_down_although_its_documents_are_reused(
    lab: RedfishLab, clocked: tuple[Served, FakeClock]
) -> None:
    """A BMC that answers none of a probe's requests is down: its reused documents are not
    reported as its health and identity; an HTTP error is an answer and keeps them."""
    served, _clock = clocked
    device = await bmc(lab)
    await probe(served, device)
    device.faults.hang = "."
    status, text = await served.probe(device.address, {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
    samples = parse(text)
    assert status == 200 and value(samples, "powerplane_target_up") == 0.0
    assert success(samples, "health") == 0.0 and success(samples, "system") == 0.0
    assert "powerplane_redfish_health" not in samples
    device.faults.hang = None
    device.faults.general_error = "EnvironmentMetrics|PowerSupplies|ThermalSubsystem"
    samples = await probe(served, device)
    assert success(samples, "system") == 1.0 and health(samples, "system") == "ok"


async def test_a_refresh_asks_with_the_etag(lab: RedfishLab, clocked: tuple[Served, FakeClock]) -> None:
    """An unchanged document answers 304 and its copy is kept; a changed one comes whole."""
    served, clock = clocked
    device = await bmc(lab)
    await probe(served, device)
    clock.now += 121
    samples = await probe(served, device)
    assert health(samples, "system") == "ok" and success(samples, "system") == 1.0
    # The system, the chassis and the PowerSubsystem: all three unchanged, none sent again.
    assert device.not_modified == 3
    assert [device.requests[p] for p in (SYSTEM, CHASSIS, POWER_SUBSYSTEM)] == [2, 2, 2]
    device.health = "Warning"
    clock.now += 121
    samples = await probe(served, device)
    assert (health(samples, "system"), health(samples, "chassis")) == ("warning", "warning")
    assert device.not_modified == 4  # only the PowerSubsystem is as it was
    clock.now += 121
    assert health(await probe(served, device), "system") == "warning"
    assert device.not_modified == 7  # the new copies' ETags were kept


async def test_no_refresh_reads_them_at_every_probe(
    lab: RedfishLab, clocked: tuple[Served, FakeClock]
) -> None:
    served, _clock = clocked
    device = await bmc(lab)
    for _ in range(3):
        await probe(served, device, "every")
    assert (device.requests[SYSTEM], device.requests[CHASSIS]) == (4, 4)
    device.health = "Warning"
    assert health(await probe(served, device, "every"), "system") == "warning"


async def test_a_failing_document_due_for_refresh_fails_as_without_the_cache(
    lab: RedfishLab, clocked: tuple[Served, FakeClock]
) -> None:
    """A 500 on the system's document once it is due: the same answer as a probe that reads it
    every time, asked again at every probe until it answers, then reused again."""
    served, clock = clocked
    cached, uncached = await bmc(lab, name="cached"), await bmc(lab, name="uncached")
    await probe(served, cached)
    await probe(served, uncached, "every")
    for device in (cached, uncached):
        device.faults.general_error = "Systems/System.Embedded.1$"
    clock.now += 121
    failed = outcome(await probe(served, cached))
    assert failed == outcome(await probe(served, uncached, "every"))
    assert failed["up"] == 1.0 and failed["collectors"]["system"] == 0.0
    assert ("system", "ok") not in failed["health"] and failed["health"][("chassis", "ok")] == 1.0
    before = cached.requests[SYSTEM]
    assert outcome(await probe(served, cached)) == failed  # the failure is not kept
    assert cached.requests[SYSTEM] == before + 1
    cached.faults.general_error = None
    samples = await probe(served, cached)
    assert success(samples, "system") == 1.0 and health(samples, "system") == "ok"
    await probe(served, cached)
    assert cached.requests[SYSTEM] == before + 2


async def test_a_missing_document_due_for_refresh_rediscovers(
    lab: RedfishLab, clocked: tuple[Served, FakeClock]
) -> None:
    """A 404 on the system's document once it is due: as without the cache, the tree changed."""
    served, clock = clocked
    cached, uncached = await bmc(lab, name="cached"), await bmc(lab, name="uncached")
    await probe(served, cached)
    await probe(served, uncached, "every")
    for device in (cached, uncached):
        device.faults.missing = "Systems/System.Embedded.1$"
    clock.now += 121
    gone = outcome(await probe(served, cached))
    assert gone == outcome(await probe(served, uncached, "every"))
    assert gone["collectors"]["system"] == 0.0
    roots = cached.requests["/redfish/v1"]
    cached.faults.missing = None
    samples = await probe(served, cached)
    assert cached.requests["/redfish/v1"] == roots + 1  # discovered again
    assert success(samples, "system") == 1.0 and health(samples, "system") == "ok"


@pytest.mark.parametrize("bad", [-1, "300", None, True])
def test_the_refresh_is_validated(bad: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_PW", "x")
    with pytest.raises(ConfigError) as info:
        KIND.load_text(
            "auths: {a: {username: u, password: {env: RF_PW}}}\n"
            f"modules: {{m: {{inventory_refresh: {json.dumps(bad)}}}}}\n"
        )
    assert "modules.m.inventory_refresh" in str(info.value)


def test_the_refresh_defaults_to_five_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_PW", "x")
    config = KIND.load_text("auths: {a: {username: u, password: {env: RF_PW}}}\nmodules: {m: {}}\n")
    assert {m.name: m.inventory_refresh for m in config.policy.modules.values()} == {
        "default": 300.0,
        "m": 300.0,
    }
