"""Sessions: reused, re-created on expiry, within the budget, deleted at shutdown; TLS verified."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from powerplane.exporters.redfish.config import KIND
from powerplane.exporters.redfish.exporter import make_server
from powerplane.lab.redfish import CHASSIS, IDRAC9_R640, IDRAC9_R760, Faults, RedfishLab
from tests.conftest import Serve, Served
from tests.helpers import logged, parse, value

from .conftest import PASSWORD, bmc, probe_with_healthy_neighbour


async def test_expired_session_is_recreated(lab: RedfishLab, exporter: Served) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R760)
    assert value(parse((await probe(device.address))[1]), "powerplane_target_up") == 1.0
    device.expire_sessions()
    samples = parse((await probe(device.address))[1])
    assert value(samples, "powerplane_target_up") == 1.0
    assert all(v == 1.0 for v in samples["powerplane_scrape_collector_success"].values())
    assert device.sessions_created == 2 and device.open_sessions() == 1


async def test_session_limit_is_reported_as_rac0218(lab: RedfishLab, exporter: Served, caplog: Any) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, max_sessions=2)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # someone else holds every session
            async with http.post(
                f"http://{device.address}/redfish/v1/SessionService/Sessions",
                json={"UserName": "root", "Password": PASSWORD},
            ) as response:
                assert response.status == 201
    with caplog.at_level(logging.WARNING):
        samples = await probe_with_healthy_neighbour(lab, probe, device)
    assert value(samples, "powerplane_target_up") == 0.0
    assert "RAC0218: the BMC's maximum number of sessions is reached" in logged(caplog)
    own = parse((await exporter.get("/metrics"))[1])
    assert value(own, "powerplane_redfish_login_failures_total", reason="session_limit") == 1.0
    device.sessions.clear()  # the other sessions end: the next probe after the backoff logs in
    await asyncio.sleep(1.1)
    assert value(parse((await probe(device.address))[1]), "powerplane_target_up") == 1.0


async def test_concurrent_probes_coalesce(lab: RedfishLab, exporter: Served) -> None:
    probe = exporter.probe
    device = await bmc(lab, IDRAC9_R640, faults=Faults(latency=lambda: 0.05))
    results = await asyncio.gather(*(probe(device.address) for _ in range(5)))
    assert all(value(parse(text), "powerplane_target_up") == 1.0 for _status, text in results)
    assert device.requests[f"{CHASSIS}/Power"] == 1
    assert device.sessions_created == 1
    own = parse((await exporter.get("/metrics"))[1])
    assert value(own, "powerplane_probes_coalesced_total") == 4.0


async def test_no_session_leak_after_1000_probes(lab: RedfishLab, exporter: Served) -> None:
    device = await bmc(lab, IDRAC9_R640, max_sessions=8)
    up = 0

    async def one(module: str) -> None:
        nonlocal up
        _status, text = await exporter.probe(device.address, module=module)
        up += int(value(parse(text), "powerplane_target_up"))  # after the await: no lost update

    for batch in range(50):
        if batch % 10 == 9:
            device.expire_sessions()  # the BMC drops sessions now and then
        await asyncio.gather(*(one("legacy" if i % 2 else "default") for i in range(20)))
        assert device.open_sessions() <= 1
    assert up == 1000
    assert device.peak_sessions == 1 and device.sessions_refused == 0
    assert device.sessions_created == 1 + 5  # the first, then one after each of the 5 expiries
    await exporter.server.stop()
    assert device.open_sessions() == 0
    assert device.sessions_deleted == 1  # the expired ones were gone already


async def test_shutdown_deletes_sessions_and_secrets_stay_out(
    lab: RedfishLab, exporter: Served, caplog: Any
) -> None:
    probe = exporter.probe
    devices = [await bmc(lab, m, name=f"s-{m.name}") for m in (IDRAC9_R640, IDRAC9_R760)]
    with caplog.at_level(logging.DEBUG):
        for device in devices:
            await probe(device.address)
        own = (await exporter.get("/metrics"))[1]
        assert value(parse(own), "powerplane_redfish_sessions") == 2.0
        await exporter.server.stop()
    assert [d.open_sessions() for d in devices] == [0, 0]
    assert PASSWORD not in logged(caplog) and PASSWORD not in own
    assert not any(s.token in logged(caplog) for d in devices for s in d.sessions.values())


# --- TLS ---------------------------------------------------------------------------------------------


async def test_tls_is_verified_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any, serve: Serve
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "bmc-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("RF_PW", PASSWORD)
    config = KIND.load_text(
        f"""
auths:
  verified: {{username: root, password: {{env: RF_PW}}, tls: {{ca_file: {ca_file}}}}}
  default: {{username: root, password: {{env: RF_PW}}}}
  insecure: {{username: root, password: {{env: RF_PW}}, tls: {{insecure_skip_verify: true}}}}
allow: ["127.0.0.0/8:*"]
"""
    )
    async with RedfishLab(ssl_context=server_context) as tls_lab:
        device = await bmc(tls_lab, IDRAC9_R640)
        served = await serve(make_server(config))
        results = {}
        with caplog.at_level(logging.WARNING):
            for auth in ("verified", "default", "insecure"):
                _status, text = await served.probe(device.address, auth=auth)
                results[auth] = value(parse(text), "powerplane_target_up")
            # plain HTTP to a configured-HTTPS target is refused, not attempted
            assert (await served.probe(f"http://{device.address}"))[0] == 400
        await served.server.stop()
    assert results == {"verified": 1.0, "default": 0.0, "insecure": 1.0}
    assert "certificate verify failed" in logged(caplog)
    assert device.open_sessions() == 0
