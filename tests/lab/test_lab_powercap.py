"""The simulated powercap tree behaves like the kernel's for what the exporter and controller use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from powerplane.lab.powercap import PowercapLab, ZoneSpec, intel_server


def test_layout_matches_the_kernel(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=2)).create()
    klass = tmp_path / "class" / "powercap"
    assert sorted(os.listdir(klass)) == [
        "intel-rapl",
        "intel-rapl:0",
        "intel-rapl:0:0",
        "intel-rapl:0:1",
        "intel-rapl:1",
        "intel-rapl:1:0",
        "intel-rapl:1:1",
    ]
    assert (klass / "intel-rapl:1:1").is_symlink()
    # subzones live inside their package, as in /sys/devices/virtual/powercap
    assert (
        lab.zone_dir("intel-rapl:1:1")
        == tmp_path / "devices/virtual/powercap/intel-rapl/intel-rapl:1/intel-rapl:1:1"
    )
    assert (klass / "intel-rapl:0" / "constraint_2_name").read_text() == "peak_power\n"


def test_counter_advances_and_wraps(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path, [ZoneSpec("intel-rapl:0", "package-0", 100.0, 1_000_000_000)]).create()
    lab.advance(4.0)
    assert int((lab.zone_dir("intel-rapl:0") / "energy_uj").read_text()) == 400_000_000
    lab.advance(8.0)  # 1.2 kJ in total: past the 1 kJ range
    assert lab.true_joules("intel-rapl:0") == pytest.approx(1200.0)
    assert int((lab.zone_dir("intel-rapl:0") / "energy_uj").read_text()) == pytest.approx(199_999_999, abs=2)


def test_counters_are_rewritten_in_place(tmp_path: Path) -> None:
    # As sysfs: a descriptor held open and read at offset 0 sees every new value, across a wrap.
    lab = PowercapLab(tmp_path, [ZoneSpec("intel-rapl:0", "package-0", 100.0, 1_000_000_000)]).create()
    path = lab.zone_dir("intel-rapl:0") / "energy_uj"
    fd = os.open(path, os.O_RDONLY)
    try:
        inode = os.fstat(fd).st_ino
        seen = []
        for seconds in (4.0, 0.5, 5.6):  # 400 J, 450 J, then past the 1 kJ range: a shorter text
            lab.advance(seconds)
            seen.append(int(os.pread(fd, 256, 0)))
        assert os.stat(path).st_ino == inode
        assert seen == [400_000_000, 450_000_000, pytest.approx(9_999_999, abs=2)]
        assert os.pread(fd, 256, 0).endswith(b"\n") and b"\n" not in os.pread(fd, 256, 0)[:-1]
    finally:
        os.close(fd)


def test_power_follows_a_written_long_term_limit(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path, intel_server(sockets=1, package_watts=200.0, tdp=250.0)).create()
    assert lab.power("intel-rapl:0") == pytest.approx(200.0)
    assert lab.power("intel-rapl:0:0") == pytest.approx(140.0)
    # what the controller does: write PL1 (constraint 0 is long_term here)
    (lab.zone_dir("intel-rapl:0") / "constraint_0_power_limit_uw").write_text("150000000\n")
    assert lab.power("intel-rapl:0") == pytest.approx(150.0)
    assert lab.power("intel-rapl:0:0") == pytest.approx(105.0)  # the core subzone scales with its package
    assert lab.power("intel-rapl:0:1") == pytest.approx(20.0)  # DRAM is not under the package limit
    before = lab.true_joules("intel-rapl:0")
    lab.advance(10.0)
    assert lab.true_joules("intel-rapl:0") - before == pytest.approx(1500.0)
    # a disabled zone does not limit
    (lab.zone_dir("intel-rapl:0") / "enabled").write_text("0\n")
    assert lab.power("intel-rapl:0") == pytest.approx(200.0)


def test_a_source_decides_the_power_and_reads_the_limits(tmp_path: Path) -> None:
    """What the lab's node model does: it gives each zone's power and honours the written limit."""
    watts = {"intel-rapl:0": 180.0, "intel-rapl:0:0": 126.0, "intel-rapl:0:1": 15.0}
    lab = PowercapLab(tmp_path, intel_server(sockets=1), source=watts.__getitem__).create()
    assert lab.limit_w("intel-rapl:0", "long_term") == pytest.approx(250.0)
    assert lab.limit_w("intel-rapl:0", "no_such_constraint") is None
    lab.advance(2.0)
    assert lab.true_joules("intel-rapl:0") == pytest.approx(360.0)
    assert lab.true_joules("intel-rapl:0:1") == pytest.approx(30.0)
    assert int((lab.zone_dir("intel-rapl:0") / "energy_uj").read_text()) == 360_000_000
    # A limit file the controller left half-written, or a zone whose files vanished: no limit.
    (lab.zone_dir("intel-rapl:0") / "constraint_0_power_limit_uw").write_text("15O000000\n")
    assert lab.limit_w("intel-rapl:0", "long_term") is None
    (lab.zone_dir("intel-rapl:0") / "enabled").unlink()
    assert lab.limit_w("intel-rapl:0", "long_term") is None


def test_a_reader_almost_never_sees_a_half_written_counter(tmp_path: Path) -> None:
    # 1 J range at 1 kW: every few advances wrap, so the text shrinks and grows.  The reader is
    # another process (a thread would rarely run between two syscalls of the writer); written
    # without the padding, this saw over a hundred non-numbers in 20,000 advances.  The page
    # cache gives no atomicity between a write and a concurrent read, so a read that lands in
    # the middle of one copy can still be torn: once was seen in a CI run (hundreds of thousands
    # of reads).  What the padding removes is the systematic case, the shrink at each wrap.
    lab = PowercapLab(tmp_path, [ZoneSpec("intel-rapl:0", "package-0", 1000.0, 1_000_000)]).create()
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(lab.zone_dir("intel-rapl:0") / "energy_uj"), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline() == "reading\n"
        for _ in range(20_000):
            lab.advance(0.000371)
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    bad, reads = map(int, out.split())
    assert reads >= 10_000 and bad <= 5, (bad, reads)


READER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print("reading", flush=True)
bad = reads = 0
while not os.path.exists(sys.argv[2]):
    for _ in range(1000):
        try:
            int(os.pread(fd, 256, 0))
        except ValueError:
            bad += 1
    reads += 1000
print(bad, reads)
"""
