"""The RAPL exporter against a real Prometheus and node_exporter on the same tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from powerplane.exporters.rapl.exporter import make_server
from powerplane.lab import procs
from powerplane.lab.powercap import PowercapLab, ZoneSpec, intel_server
from tests.conftest import PrometheusFactory, require_binary
from tests.helpers import parse, value


@pytest.mark.e2e
def test_prometheus_rate_matches_simulated_power_across_a_wrap(
    tmp_path: Path, prometheus: PrometheusFactory, background_loop: procs.BackgroundLoop
) -> None:
    watts = 150.0
    # A 1.2 kJ range wraps every 8 s at 150 W: the 10 s window below contains a wrap.
    range_uj = 1_200_000_000
    lab = PowercapLab(tmp_path / "sys", [ZoneSpec("intel-rapl:0", "package-0", watts, range_uj)]).create()
    lab.start(interval=0.02)
    try:
        server = make_server(tmp_path / "sys")
        host, port = background_loop.run(server.start("127.0.0.1", 0))
        prom = prometheus([{"job_name": "rapl", "static_configs": [{"targets": [f"{host}:{port}"]}]}])
        # 10 s at 150 W is 1.5 kJ, more than the range: any full 10 s window holds a wrap.
        # rate() divides by the whole window: wait until the series is older than the window.
        series = 'powerplane_rapl_energy_joules_total{zone="package"}'
        samples = procs.wait_until(
            lambda: (prom.value(f"count_over_time({series}[13s])") or 0) >= 13, 60, what="13 s of samples"
        )
        measured = prom.wait_value(f"rate({series}[10s])")
        resets = prom.value('resets(powerplane_rapl_energy_joules_total{zone="package"}[1m])')
        background_loop.run(server.stop())
    finally:
        lab.stop()
    assert samples
    assert measured == pytest.approx(watts, rel=0.02)
    assert resets == 0.0  # the wrap did not look like a counter reset


@pytest.mark.e2e
def test_parity_with_node_exporter(tmp_path: Path, background_loop: procs.BackgroundLoop) -> None:
    binary = require_binary("node_exporter")
    sysfs = tmp_path / "sys"
    zones = [
        *intel_server(sockets=2, start_uj=123456789012),
        ZoneSpec("intel-rapl:2", "psys", 20.0, 262143328850, start_uj=987654321),
    ]
    PowercapLab(sysfs, zones).create()  # frozen: no counter moves between the two scrapes
    port = procs.free_port()
    node = procs.Process(
        [
            binary,
            "--collector.disable-defaults",
            "--collector.rapl",
            f"--path.sysfs={sysfs}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "node_exporter.log",
    )
    try:
        node.wait_ready(f"http://127.0.0.1:{port}/metrics")
        theirs = parse(procs.http_get(f"http://127.0.0.1:{port}/metrics")[1].decode())
    finally:
        node.stop()
    server = make_server(sysfs)
    host, our_port = background_loop.run(server.start("127.0.0.1", 0))
    ours = parse(procs.http_get(f"http://{host}:{our_port}/metrics")[1].decode())
    background_loop.run(server.stop())

    # node_exporter names a metric per zone name and labels each series with the zone's path:
    # compare zone directory by zone directory.
    their_joules = {
        dict(labels)["path"].rsplit("/", 1)[-1]: joules
        for name, series in theirs.items()
        if re.fullmatch(r"node_rapl_\w+_joules_total", name)
        for labels, joules in series.items()
    }
    ours_by_dir = {
        spec.dirname: value(
            ours,
            "powerplane_rapl_energy_joules_total",
            zone=re.sub(r"-\d+$", "", spec.name),
            index=str(int(spec.dirname.split(":")[1], 16)),
        )
        for spec in zones
    }
    assert len(their_joules) == len(zones)
    assert ours_by_dir == pytest.approx(their_joules, abs=1e-6)
    assert min(ours_by_dir.values()) > 0
