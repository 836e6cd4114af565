"""Attribute files held open and read with pread: fresh values, stale descriptors, bounded fds."""

from __future__ import annotations

import errno
import gc
import os
import shutil
from pathlib import Path

import pytest

from powerplane.exporters.rapl import powercap
from powerplane.lab.powercap import PowercapLab, intel_server
from tests.helpers import value

from .conftest import Exporter, success


def open_fds(under: Path) -> int:
    """Descriptors of this process open on files under ``under`` (other tests' do not count)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}").startswith(str(under))
        except OSError:
            pass  # closed meanwhile
    return count


async def test_every_scrape_reads_the_counters_afresh(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=1, package_watts=100.0)).create()
    exporter = Exporter(tmp_path)
    first, _ = await exporter.scrape()
    held = len(exporter.tree.files)
    lab.advance(2.0)
    second, _ = await exporter.scrape()
    package = {"zone": "package", "index": "0"}
    energy = "powerplane_rapl_energy_joules_total"
    assert value(second, energy, **package) - value(first, energy, **package) == pytest.approx(200.0)
    # A limit written in place (as the controller writes it) shows at the next scrape.
    (lab.zone_dir("intel-rapl:0") / "constraint_0_power_limit_uw").write_text("123000000\n")
    third, _ = await exporter.scrape()
    limit = "powerplane_rapl_power_limit_watts"
    assert value(third, limit, constraint="long_term", **package) == 123.0
    # energy, enabled, limit and window files of each zone; no more after further scrapes
    assert held == len(exporter.tree.files) > 0


async def test_descriptors_stay_bounded_and_close_with_the_tree(tmp_path: Path) -> None:
    PowercapLab(tmp_path, intel_server(sockets=2)).create()
    exporter = Exporter(tmp_path)
    for _ in range(5):
        await exporter.scrape()
    assert open_fds(tmp_path) == len(exporter.tree.files) > 0
    exporter.tree.discover()  # listing the tree again drops every descriptor
    assert len(exporter.tree.files) == 0 and open_fds(tmp_path) == 0
    await exporter.scrape()
    assert open_fds(tmp_path) > 0
    del exporter
    gc.collect()
    assert open_fds(tmp_path) == 0


async def test_a_stale_descriptor_is_reopened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=1)).create()
    exporter = Exporter(tmp_path)
    await exporter.scrape()
    real_pread = os.pread
    failed: list[int] = []

    def pread(fd: int, size: int, offset: int) -> bytes:
        if not failed:
            failed.append(fd)
            raise OSError(errno.ENODEV, "No such device")
        return real_pread(fd, size, offset)

    monkeypatch.setattr(powercap.os, "pread", pread)
    lab.advance(1.0)
    samples, _ = await exporter.scrape()
    assert failed and success(samples, "energy") == success(samples, "limits") == 1.0
    assert value(samples, "powerplane_rapl_energy_joules_total", zone="package") == pytest.approx(180.0)


async def test_a_failing_read_drops_its_descriptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    PowercapLab(tmp_path, intel_server(sockets=1)).create()
    exporter = Exporter(tmp_path)
    await exporter.scrape()
    energy_file = str(exporter.tree.root / "intel-rapl:0" / "energy_uj")
    energy_fd = exporter.tree.files._fds[energy_file]
    real_pread = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        if fd == energy_fd:
            raise OSError(errno.EIO, "Input/output error")
        return real_pread(fd, size, offset)

    monkeypatch.setattr(powercap.os, "pread", pread)
    samples, _ = await exporter.scrape()
    assert success(samples, "energy") == 0.0
    assert energy_file not in exporter.tree.files._fds  # dropped: the next scrape opens it again
    monkeypatch.undo()
    samples, _ = await exporter.scrape()
    assert success(samples, "energy") == 1.0


async def test_a_vanished_zone_is_reported_and_rediscovered(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=2)).create()
    exporter = Exporter(tmp_path)
    await exporter.scrape()
    # The zone's directory goes; its held descriptors would still read the removed files, so
    # the next listing of the tree (forced here) must drop them and the zone.
    shutil.rmtree(lab.zone_dir("intel-rapl:1"))
    for link in (tmp_path / "class" / "powercap").glob("intel-rapl:1*"):
        link.unlink()  # the package and its subzones
    exporter.tree.invalidate()
    samples, _ = await exporter.scrape()
    assert success(samples, "energy") == 1.0
    assert {dict(k)["index"] for k in samples["powerplane_rapl_energy_joules_total"]} == {"0"}
