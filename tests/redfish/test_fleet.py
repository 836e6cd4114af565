"""The Redfish exporter against the simulated iDRAC fleet: every model, schema choice, $expand, auth."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from powerplane.lab.redfish import (
    CHASSIS,
    GENERIC_NOEXPAND,
    IDRAC9_R640,
    IDRAC9_R760,
    IDRAC_XE9680,
    MODELS,
    RedfishLab,
)
from tests.conftest import Served
from tests.helpers import logged, parse, undocumented, value

from .conftest import PASSWORD, bmc, success


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
async def test_every_model_reports_the_simulated_node(lab: RedfishLab, exporter: Served, model: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, model)
    status, text = await probe(device.address)
    assert status == 200
    assert undocumented(text) == set()
    samples = parse(text)
    assert value(samples, "powerplane_target_up") == 1.0
    for collector in ("power", "psu", "thermal", "health", "system", "telemetry"):
        assert success(samples, collector) == 1.0, collector
    assert value(samples, "powerplane_redfish_power_watts") == device.power_watts()
    expected_source = "environment_metrics" if model.new else "power_control"
    assert value(samples, "powerplane_redfish_power_source_info", source=expected_source) == 1.0
    assert len(samples["powerplane_redfish_psu_output_watts"]) == model.psus
    assert len(samples["powerplane_redfish_fan_speed_rpm"]) == model.fans
    assert value(samples, "powerplane_redfish_power_limit_watts") == device.power_limit_watts
    assert (
        value(samples, "powerplane_redfish_temperature_summary_celsius", context="intake")
        == (device.temperatures()[0][3])
    )
    assert value(samples, "powerplane_redfish_health", resource="system", state="ok") == 1.0
    assert value(
        samples, "powerplane_redfish_system_info", model=model.model, bmc_firmware_version=model.firmware
    )
    if model.energy:
        assert value(samples, "powerplane_redfish_energy_joules_total") == pytest.approx(
            device.energy_kwh() * 3.6e6, rel=1e-6
        )
    if model.telemetry:
        assert (
            value(samples, "powerplane_redfish_telemetry_value", metric="SystemInputPower")
            == device.power_watts()
        )


async def test_values_move_with_load(lab: RedfishLab, exporter: Served) -> None:
    probe = exporter.probe
    loads = {"v": 0.1}
    device = await bmc(lab, IDRAC9_R640, load=lambda _t: loads["v"])
    low = value(parse((await probe(device.address))[1]), "powerplane_redfish_power_watts")
    loads["v"] = 0.9
    high = value(parse((await probe(device.address))[1]), "powerplane_redfish_power_watts")
    assert high > low and high == device.power_watts()


async def test_legacy_module_reads_the_legacy_schema_on_a_new_bmc(lab: RedfishLab, exporter: Served) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R760)
    samples = parse((await probe(device.address, module="legacy"))[1])
    assert value(samples, "powerplane_redfish_power_source_info", source="power_control") == 1.0
    assert device.requests[f"{CHASSIS}/EnvironmentMetrics"] == 0


async def test_expand_is_used_and_not_per_member(lab: RedfishLab, exporter: Served) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC_XE9680)
    assert (await probe(device.address))[0] == 200
    assert device.requests["$expand"] == 2  # PowerSupplies and Fans, one request each
    # members and their Metrics arrive inside the expansion, never requested one by one
    assert device.requests[f"{CHASSIS}/PowerSubsystem/PowerSupplies/PSU.Slot.1"] == 0
    assert device.requests[f"{CHASSIS}/PowerSubsystem/PowerSupplies/PSU.Slot.1/Metrics"] == 0
    assert device.requests[f"{CHASSIS}/ThermalSubsystem/Fans/Fan.Embedded.1"] == 0


async def test_expand_refused_falls_back_and_is_remembered(lab: RedfishLab, exporter: Served) -> None:
    probe = exporter.probe
    liar = dataclasses.replace(IDRAC_XE9680, name="liar", expand=False, announce_expand=True)
    device = await bmc(lab, liar)
    first = parse((await probe(device.address))[1])
    assert success(first, "psu") == 1.0 and success(first, "thermal") == 1.0
    assert len(first["powerplane_redfish_psu_output_watts"]) == liar.psus
    refused = device.requests["$expand"]
    assert refused >= 1
    second = parse((await probe(device.address))[1])
    assert success(second, "psu") == 1.0
    assert device.requests["$expand"] == refused


async def test_basic_auth_creates_no_session(lab: RedfishLab, exporter: Served, caplog: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, GENERIC_NOEXPAND)
    with caplog.at_level(logging.WARNING):
        samples = parse((await probe(device.address, auth="basic"))[1])
    assert value(samples, "powerplane_target_up") == 1.0
    assert device.sessions_created == 0


async def test_wrong_password_is_target_down(lab: RedfishLab, exporter: Served, caplog: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, password="another-password")
    with caplog.at_level(logging.WARNING):
        samples = parse((await probe(device.address))[1])
    assert value(samples, "powerplane_target_up") == 0.0
    assert "HTTP 401" in logged(caplog)
    assert PASSWORD not in logged(caplog)


# --- request validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"target": "192.0.2.10"}, "neither configured nor allowed"),
        ({"target": "evil.example.com"}, "neither configured nor allowed"),
        ({"target": "127.0.0.1/redfish"}, "a path is not allowed"),
        ({"target": "root:pw@127.0.0.1"}, "user info (user@) not allowed"),
        ({"target": "127.1"}, "not an IP address in dotted form"),
        ({"target": "https://127.0.0.1:1"}, "configured for http"),
        ({"target": "127.0.0.1:1", "module": "nope"}, "unknown module"),
        ({"target": "127.0.0.1:1", "auth": "nope"}, "unknown auth"),
        ({}, "missing 'target'"),
    ],
)
async def test_refused_probe_requests_are_400(exporter: Served, params: dict[str, str], reason: str) -> None:
    probe = exporter.probe
    target = params.pop("target", "")
    status, text = await probe(target, **params)
    assert status == 400
    assert reason in text


# --- demo ----------------------------------------------------------------------------------------------


async def test_demo_component_follows_the_nodes_model(tmp_path: Path) -> None:
    import contextlib

    from powerplane.lab.demo import DemoContext
    from powerplane.lab.redfish import redfish_component

    async with contextlib.AsyncExitStack() as stack:
        ctx = DemoContext(tmp_path, ["node-01", "node-02"], stack)
        await redfish_component(ctx)
        job = next(c for c in ctx.scrape_configs if c["job_name"] == "powerplane-redfish-probe")
        exporter = job["relabel_configs"][-1]["replacement"]
        async with aiohttp.ClientSession() as http:
            for static in job["static_configs"]:
                node = static["labels"]["node"]
                async with http.get(
                    f"http://{exporter}/probe", params={"target": static["targets"][0]}
                ) as response:
                    samples = parse(await response.text())
                assert value(samples, "powerplane_target_up") == 1.0
                truth = ctx.cluster().snapshot.nodes[node].input_w
                # the BMC reads the node's physical model (which moves between reads)
                assert value(samples, "powerplane_redfish_power_watts") == pytest.approx(truth, rel=0.05)
        assert (tmp_path / "redfish-password").stat().st_mode & 0o077 == 0
