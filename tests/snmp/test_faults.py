"""Misbehaving agents: wrong types, sentinels, absent and slow and endless tables, meter resets."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from powerplane.exporters.snmp.exporter import make_server
from powerplane.lab.snmp import Snmpsim
from tests.conftest import Serve, require_binary
from tests.helpers import parse, value

from .conftest import APC, probe, snmp_config


async def test_wrong_types_sentinels_and_missing_tables(
    tmp_path: Path, agents: Snmpsim, serve: Serve
) -> None:
    config = snmp_config(tmp_path, ["bad-pdu"])
    status, text = await probe(
        await serve(make_server(config)), f"target=127.0.0.1:{agents.port}&module=apc_rpdu2"
    )
    assert status == 200
    samples = parse(text)
    success = samples["powerplane_scrape_collector_success"]
    assert value(samples, "powerplane_target_up") == 1
    assert success[(("collector", "device"), ("exporter", "snmp"))] == 0  # power is a string
    assert success[(("collector", "bank"), ("exporter", "snmp"))] == 0  # noSuchObject: table absent
    assert success[(("collector", "phase"), ("exporter", "snmp"))] == 1
    assert "powerplane_pdu_power_watts" not in samples
    assert value(samples, "powerplane_pdu_energy_joules_total") == pytest.approx(3.6e8)
    assert "powerplane_pdu_phase_power_watts" not in samples  # -1 sentinel
    assert value(samples, "powerplane_pdu_phase_current_amperes", phase="1") == 5.0
    assert value(samples, "powerplane_pdu_outlet_power_watts", outlet="1") == 100.0


async def test_wrong_community_is_down_within_the_deadline(
    tmp_path: Path, agents: Snmpsim, serve: Serve
) -> None:
    config = snmp_config(tmp_path, ["no-such-community"])
    start = time.monotonic()
    status, text = await probe(
        await serve(make_server(config)), f"target=127.0.0.1:{agents.port}&module=apc_rpdu2", "2"
    )
    elapsed = time.monotonic() - start
    assert status == 200
    assert value(parse(text), "powerplane_target_up") == 0
    assert elapsed < 2.5


async def test_slow_table_gives_partial_results_before_the_scrape_timeout(
    tmp_path: Path, agents: Snmpsim, serve: Serve
) -> None:
    config = snmp_config(tmp_path, ["slow-pdu"])
    start = time.monotonic()
    status, text = await probe(
        await serve(make_server(config)), f"target=127.0.0.1:{agents.port}&module=apc_rpdu2", "2"
    )
    elapsed = time.monotonic() - start
    samples = parse(text)
    assert status == 200 and elapsed < 2.5
    assert value(samples, "powerplane_target_up") == 1
    assert value(samples, "powerplane_pdu_power_watts") == pytest.approx(1210.0)
    assert (
        samples["powerplane_scrape_collector_success"][(("collector", "outlet"), ("exporter", "snmp"))] == 0
    )


async def test_endless_table_is_cut_off(tmp_path: Path, agents: Snmpsim, serve: Serve) -> None:
    config = snmp_config(tmp_path, ["endless-pdu"])
    start = time.monotonic()
    status, text = await probe(
        await serve(make_server(config)), f"target=127.0.0.1:{agents.port}&module=apc_rpdu2", "4"
    )
    assert status == 200 and time.monotonic() - start < 4
    samples = parse(text)
    assert (
        samples["powerplane_scrape_collector_success"][(("collector", "outlet"), ("exporter", "snmp"))] == 0
    )


async def test_energy_meter_reset_keeps_the_counter_monotonic(
    tmp_path: Path, agents: Snmpsim, serve: Serve
) -> None:
    from gufo.snmp.sync.client import SnmpSession

    def device_reads() -> object:
        with SnmpSession(addr="127.0.0.1", port=agents.port, community="writable-pdu") as session:
            return session.get(f"{APC}.4.3.1.9.1")

    served = await serve(make_server(snmp_config(tmp_path, ["writable-pdu"])))
    query = f"target=127.0.0.1:{agents.port}&module=apc_rpdu2"
    first = value(parse((await probe(served, query))[1]), "powerplane_pdu_energy_joules_total")
    assert first == pytest.approx(500.0 * 3.6e6)
    # The operator clears the meter: the device now reads 20 (2 kWh).
    await asyncio.to_thread(_snmpset, agents.port, "writable-pdu", f"{APC}.4.3.1.9.1", 20)
    assert await asyncio.to_thread(device_reads) == 20
    second = value(parse((await probe(served, query))[1]), "powerplane_pdu_energy_joules_total")
    assert second == pytest.approx(first + 2.0 * 3.6e6)


def _snmpset(port: int, community: str, oid: str, number: int) -> None:
    binary = require_binary("snmpset")
    subprocess.run(
        [binary, "-v2c", "-c", community, f"127.0.0.1:{port}", oid, "i", str(number)],
        check=True,
        capture_output=True,
        timeout=10,
    )


async def test_concurrent_probes_of_one_target_are_coalesced(
    tmp_path: Path, agents: Snmpsim, serve: Serve
) -> None:
    served = await serve(make_server(snmp_config(tmp_path, ["apc-8641"])))
    query = f"target=127.0.0.1:{agents.port}&module=apc_rpdu2"
    results = await asyncio.gather(*(probe(served, query) for _ in range(5)))
    assert [status for status, _text in results] == [200] * 5
    own = parse((await served.get("/metrics"))[1])
    assert sum(own.get("powerplane_probes_coalesced_total", {}).values()) >= 1


async def test_hostile_outlet_names_never_break_the_exposition(
    tmp_path: Path, hostile_agent: Snmpsim, serve: Serve
) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

    served = await serve(make_server(snmp_config(tmp_path, ["hostile-pdu"])))
    query = f"target=127.0.0.1:{hostile_agent.port}&module=apc_rpdu2"
    status, text = await probe(served, query)
    assert status == 200
    _status, om = await served.get(f"/probe?{query}", headers={"Accept": "application/openmetrics-text"})
    families = list(parse_openmetrics(om))  # raises on a broken exposition
    names = sorted(dict(k)["outlet_name"] for k in parse(text)["powerplane_pdu_outlet_power_watts"])
    assert names == [
        "N" * 127 + "…",
        "node-01  # TYPE evil counter",
        "node-02[31m",
        "node-04",
        "\ufffd\ufffd\ufffd not UTF-8",
    ]
    assert all(
        len(n) <= 128 and n.isprintable() for f in families for s in f.samples for n in s.labels.values()
    )
    own = parse((await served.get("/metrics"))[1])
    assert value(own, "powerplane_device_strings_sanitised_total", reason="truncated") == 2.0
    assert value(own, "powerplane_device_strings_sanitised_total", reason="invalid") == 8.0
