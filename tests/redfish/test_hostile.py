"""A hostile BMC: strings that break expositions, links elsewhere, redirects, 401 loops, floods."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from powerplane.lab.hostile import HostileBMC, HostileLab
from powerplane.lab.redfish import CHASSIS, IDRAC_XE9680
from tests.conftest import Served
from tests.helpers import parse, value

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


def evil_strings(path: str, doc: dict[str, Any]) -> dict[str, Any]:
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
