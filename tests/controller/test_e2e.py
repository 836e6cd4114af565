"""End to end: a price spike in a static curve → caps written → lab power follows → Prometheus sees it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from powerplane.controller.agent import LocalBackend
from powerplane.controller.cli import build
from powerplane.controller.policy import period_start
from powerplane.exporters.rapl.exporter import make_server
from powerplane.exporters.runtime.server import ExporterServer
from powerplane.lab import procs
from powerplane.lab.controller import demo_policy, spike_curve
from powerplane.lab.powercap import PowercapLab, intel_server
from tests.helpers import parse, undocumented

PERIOD = 2  # seconds: a compressed market period


@pytest.mark.e2e
def test_price_spike_lowers_power_seen_by_prometheus(
    tmp_path: Path, background_loop: procs.BackgroundLoop, prometheus: Any
) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2, package_watts=180.0)).create().start(0.05)
    stopping: list[bool] = []  # non-empty while the servers run
    try:
        start = period_start(datetime.now(UTC), timedelta(seconds=PERIOD))
        curve = tmp_path / "curve.json"
        # Cheap for 5 periods, then expensive for a long time.
        curve.write_text(json.dumps(spike_curve(start, PERIOD, 400, 5, 390, 400)))
        backend = LocalBackend("node-01", documents=[demo_policy(curve, PERIOD)])
        agent, server = build("node-01", backend, lab.root, tmp_path / "state.json", None)
        rapl = make_server(lab.root)
        stop = asyncio.Event()
        tasks: list[asyncio.Future[None]] = []

        async def start_all() -> tuple[int, int]:
            _, cport = await server.start("127.0.0.1", 0)
            _, rport = await rapl.start("127.0.0.1", 0)
            tasks.append(asyncio.ensure_future(agent.run(stop)))
            return cport, rport

        async def stop_all(servers: list[ExporterServer]) -> None:
            stop.set()
            stopping.clear()
            await agent.shutdown()
            for s in servers:
                await s.stop()

        cport, rport = background_loop.run(start_all())
        stopping.append(True)
        prom = prometheus(
            [
                {
                    "job_name": "rapl",
                    "static_configs": [{"targets": [f"127.0.0.1:{rport}"], "labels": {"node": "node-01"}}],
                },
                {
                    "job_name": "controller",
                    "static_configs": [{"targets": [f"127.0.0.1:{cport}"], "labels": {"node": "node-01"}}],
                },
            ]
        )
        power = 'sum(rate(powerplane_rapl_energy_joules_total{zone="package"}[3s]))'
        before = procs.wait_until(
            lambda: (v := prom.value(power)) and v > 300 and v, 30, 0.5, "uncapped power"
        )
        assert 330 < before < 390  # two packages at 180 W
        # The spike: bands put the node at 200 W, 100 W per package; the lab's power follows.
        after = procs.wait_until(
            lambda: (v := prom.value(power)) is not None and v < 230 and v, 60, 0.5, "capped power"
        )
        assert 170 < after < 230
        applied = prom.wait_value(
            'powerplane_controller_cap_applied_watts{node="node-01",domain="package-1"}'
        )
        assert applied == 100.0
        # The cap joins the RAPL exporter's series on its own labels: power drawn over the cap.
        used = prom.wait_value(
            "sum by (node, zone, index) (rate("
            'powerplane_rapl_energy_joules_total{zone="package",index="1"}[3s])) / on (node, zone, index)'
            ' powerplane_controller_cap_applied_watts{constraint="long_term"}'
        )
        # (a 3 s rate over 2 s periods on a loaded machine: only roughly 1)
        assert 0.6 < used < 1.4
        assert prom.wait_value('powerplane_controller_signal_value{policy="demo-price-bands"}') == 350.0
        assert prom.wait_value('powerplane_controller_reconcile_total{result="success"}') >= 2
        assert backend.labels["powerplane.io/power-cap-watts"] == "200"
        assert backend.labels["powerplane.io/price-level"] == "extreme"

        async def scrape() -> str:
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{cport}/metrics") as r:
                return await r.text()

        text = background_loop.run(scrape())
        assert undocumented(text) == set()
        assert "powerplane_controller_last_reconcile_timestamp_seconds" in parse(text)

        background_loop.run(stop_all([server, rapl]))
        # SIGTERM path: the original limits are back and the state file is gone.
        assert int((lab.zone_dir("intel-rapl:1") / "constraint_0_power_limit_uw").read_text()) == 250_000_000
        assert not (tmp_path / "state.json").exists()
    finally:
        if stopping:
            background_loop.run(stop_all([server, rapl]))  # a failed assertion: stop them anyway
        lab.stop()
