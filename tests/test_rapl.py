"""The RAPL exporter on fixture powercap trees, against a real Prometheus and node_exporter."""

from __future__ import annotations

import errno
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from powerplane.exporters.rapl import collectors, powercap
from powerplane.exporters.rapl.exporter import make_server
from powerplane.exporters.runtime import Deadline, FailureLog, Scrape, run_collectors
from powerplane.lab import procs
from powerplane.lab.powercap import PowercapLab, ZoneSpec, amd_zen, intel_server, laptop_with_psys

from .conftest import PrometheusFactory, require_binary
from .helpers import parse, undocumented, value


class Exporter:
    """The RAPL collectors over one tree, scraped in-process."""

    def __init__(self, sysfs: Path) -> None:
        self.tree = powercap.PowercapTree(sysfs)
        self.collectors = [
            collectors.RaplEnergyCollector(self.tree),
            collectors.RaplLimitsCollector(self.tree),
        ]
        self.failures = FailureLog(logging.getLogger("powerplane.rapl"))

    async def scrape(self) -> tuple[dict[str, Any], str]:
        outcomes = await run_collectors("rapl", self.collectors, Deadline.after(5), self.failures)
        text = generate_latest(Scrape("rapl", outcomes)).decode()  # type: ignore[arg-type]
        assert undocumented(text) == set()
        return parse(text), text


def success(samples: dict[str, Any], collector: str) -> float:
    return value(samples, "powerplane_scrape_collector_success", collector=collector)


async def test_intel_two_sockets_with_pl1_pl2_pl4(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=2, tdp=250.0, start_uj=5_000_000)).create()
    samples, _ = await Exporter(tmp_path).scrape()
    energy = samples["powerplane_rapl_energy_joules_total"]
    assert {dict(k)["zone"] for k in energy} == {"package", "core", "dram"}
    assert {dict(k)["index"] for k in energy} == {"0", "1"}
    assert value(samples, "powerplane_rapl_energy_joules_total", zone="package", index="1") == 5.0
    for constraint, watts in (("long_term", 250.0), ("short_term", 300.0), ("peak_power", 500.0)):
        assert (
            value(
                samples, "powerplane_rapl_power_limit_watts", zone="package", index="0", constraint=constraint
            )
            == watts
        )
    assert value(
        samples, "powerplane_rapl_time_window_seconds", zone="package", index="0", constraint="long_term"
    ) == pytest.approx(0.999424)
    assert (
        value(samples, "powerplane_rapl_max_power_watts", zone="package", index="1", constraint="long_term")
        == 350.0
    )
    # peak_power has no max file on this part: no series rather than a made-up one
    assert not [k for k in samples["powerplane_rapl_max_power_watts"] if ("constraint", "peak_power") in k]
    assert value(samples, "powerplane_rapl_zone_enabled", zone="dram", index="0") == 1.0
    assert success(samples, "energy") == success(samples, "limits") == 1.0
    assert lab.zones  # the tree the test built


async def test_limits_follow_by_name_not_position(tmp_path: Path) -> None:
    zones = intel_server(sockets=1)
    # Firmware may list constraints in another order: names, not positions, identify them.
    zones[0].constraints.reverse()
    PowercapLab(tmp_path, zones).create()
    samples, _ = await Exporter(tmp_path).scrape()
    assert (
        value(samples, "powerplane_rapl_power_limit_watts", zone="package", constraint="long_term") == 250.0
    )
    assert (
        value(samples, "powerplane_rapl_power_limit_watts", zone="package", constraint="peak_power") == 500.0
    )


async def test_hex_zone_directories(tmp_path: Path) -> None:
    PowercapLab(tmp_path, intel_server(sockets=12)).create()
    assert (tmp_path / "class/powercap/intel-rapl:a").is_dir()
    samples, _ = await Exporter(tmp_path).scrape()
    indexes = {dict(k)["index"] for k in samples["powerplane_rapl_energy_joules_total"]}
    assert indexes == {str(i) for i in range(12)}
    assert (
        value(
            samples, "powerplane_rapl_power_limit_watts", zone="package", index="11", constraint="long_term"
        )
        == 250.0
    )


async def test_amd_zen_without_constraints(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path, amd_zen(sockets=2)).create()
    lab.advance(10.0)
    samples, _ = await Exporter(tmp_path).scrape()
    assert value(samples, "powerplane_rapl_energy_joules_total", zone="package", index="1") == pytest.approx(
        2000.0
    )
    assert value(samples, "powerplane_rapl_energy_joules_total", zone="core", index="0") == pytest.approx(
        1600.0
    )
    assert "powerplane_rapl_power_limit_watts" not in samples
    assert success(samples, "energy") == success(samples, "limits") == 1.0


async def test_psys_and_uncore(tmp_path: Path) -> None:
    PowercapLab(tmp_path, laptop_with_psys()).create()
    samples, _ = await Exporter(tmp_path).scrape()
    zones = {(dict(k)["zone"], dict(k)["index"]) for k in samples["powerplane_rapl_energy_joules_total"]}
    assert zones == {("package", "0"), ("core", "0"), ("uncore", "0"), ("dram", "0"), ("psys", "1")}


async def test_a_wrap_between_two_scrapes_adds_the_energy(tmp_path: Path) -> None:
    range_uj = 1_000_000_000  # 1 kJ
    spec = ZoneSpec("intel-rapl:0", "package-0", 100.0, range_uj, start_uj=range_uj - 200_000_000)
    lab = PowercapLab(tmp_path, [spec]).create()
    exporter = Exporter(tmp_path)
    first, _ = await exporter.scrape()
    assert value(first, "powerplane_rapl_energy_joules_total", zone="package") == pytest.approx(800.0)
    lab.advance(5.0)  # 500 J: the counter passes its range and wraps to ~300 J
    assert lab.raw_uj("intel-rapl:0") < range_uj - 200_000_000
    second, _ = await exporter.scrape()
    # A naive reading would drop to ~300 J; the exported counter goes on to ~1300 J.
    assert value(second, "powerplane_rapl_energy_joules_total", zone="package") == pytest.approx(
        1300.0, abs=0.01
    )


async def test_missing_files_and_garbage_name_the_file(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=2)).create()
    (lab.zone_dir("intel-rapl:1") / "energy_uj").write_text("not-a-number\n")
    (lab.zone_dir("intel-rapl:0:1") / "constraint_0_power_limit_uw").unlink()
    (lab.zone_dir("intel-rapl:0") / "constraint_1_time_window_us").write_text("\x00\xff garbage")
    samples, _ = await Exporter(tmp_path).scrape()
    assert success(samples, "energy") == 0.0
    assert success(samples, "limits") == 0.0
    # every other zone still reports
    assert value(samples, "powerplane_rapl_energy_joules_total", zone="package", index="0") == 0.0
    assert len(samples["powerplane_rapl_energy_joules_total"]) == 5
    assert (
        value(samples, "powerplane_rapl_power_limit_watts", zone="package", index="1", constraint="long_term")
        == 250.0
    )


async def test_errors_are_logged_once_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=1)).create()
    (lab.zone_dir("intel-rapl:0") / "energy_uj").write_text("12abc\n")
    exporter = Exporter(tmp_path)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            await exporter.scrape()
    lines = [r.__dict__.get("fields", {}).get("cause", "") for r in caplog.records]
    assert lines == ["intel-rapl:0/energy_uj: not an integer: '12abc'"]


async def test_root_only_energy_keeps_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Tests run as root, for whom mode 0400 does not deny a read: simulate the kernel's EACCES.
    PowercapLab(tmp_path, intel_server(sockets=2)).create()
    real_read = powercap.read_text

    def read(path: Path) -> str:
        if str(path).endswith("energy_uj"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(powercap, "read_text", read)
    exporter = Exporter(tmp_path)
    with caplog.at_level(logging.WARNING):
        samples, _ = await exporter.scrape()
        await exporter.scrape()
    assert success(samples, "energy") == 0.0
    assert success(samples, "limits") == 1.0
    assert "powerplane_rapl_energy_joules_total" not in samples
    assert (
        value(samples, "powerplane_rapl_power_limit_watts", zone="package", index="0", constraint="long_term")
        == 250.0
    )
    causes = [r.__dict__["fields"]["cause"] for r in caplog.records]
    assert (
        len(causes) == 1
        and "root only since Linux 5.10" in causes[0]
        and "run the exporter as root" in causes[0]
    )


async def test_no_powercap_is_not_a_failure(tmp_path: Path) -> None:
    samples, _ = await Exporter(tmp_path).scrape()
    assert success(samples, "energy") == success(samples, "limits") == 1.0
    assert "powerplane_rapl_energy_joules_total" not in samples


async def test_unreadable_zone_name_is_reported(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=2)).create()
    (lab.zone_dir("intel-rapl:1") / "name").unlink()
    samples, _text = await Exporter(tmp_path).scrape()
    assert success(samples, "energy") == 0.0
    assert len(samples["powerplane_rapl_energy_joules_total"]) == 5  # the other zones still report


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=64))
async def test_hostile_counter_content_never_raises(tmp_path: Path, content: bytes) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=1)).create()
    (lab.zone_dir("intel-rapl:0") / "energy_uj").write_bytes(content)
    samples, _ = await Exporter(tmp_path).scrape()
    text = content.decode("ascii", "replace").strip()
    if re.fullmatch(r"[+-]?\d+(_\d+)*", text):
        assert success(samples, "energy") == 1.0
    else:
        assert success(samples, "energy") == 0.0
    assert success(samples, "limits") == 1.0


# --- real components ---------------------------------------------------------------------


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
