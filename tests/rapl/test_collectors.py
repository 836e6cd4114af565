"""The RAPL collectors on fixture powercap trees: zones, constraints by name, wraps, bad files."""

from __future__ import annotations

import errno
import logging
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplane.exporters.rapl import powercap
from powerplane.lab.powercap import PowercapLab, ZoneSpec, amd_zen, intel_server, laptop_with_psys
from tests.helpers import value

from .conftest import Exporter, success


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
    real_open = powercap.open_attribute

    def open_attribute(path: str) -> int:
        if path.endswith("energy_uj"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path)

    monkeypatch.setattr(powercap, "open_attribute", open_attribute)
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
