"""powerplane measure on the lab's powercap tree and the C fake NVML: energy, exit status, signals, HDF5."""

from __future__ import annotations

import datetime as dt
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import h5py
import pandas as pd
import pytest
from aiohttp import web

from powerplane.exporters.market.curve import Curve
from powerplane.lab.fakenvml import FakeGpu, FakeNvml
from powerplane.lab.powercap import PowercapLab, ZoneSpec
from tests.conftest import require_binary

POWERPLANE = str(Path(sys.executable).with_name("powerplane"))
#: The H100 profile at utilisation 0.5: 70 W idle + (700 - 70) W x 0.5.
GPU_WATTS = 385.0
PACKAGE_WATTS, DRAM_WATTS = 100.0, 10.0


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[PowercapLab]:
    # A 100 J range wraps the package counter once a second: the sampler must add, not drop.
    zones = [
        ZoneSpec("intel-rapl:0", "package-0", PACKAGE_WATTS, 100_000_000),
        ZoneSpec("intel-rapl:0:0", "dram", DRAM_WATTS),
    ]
    powercap = PowercapLab(tmp_path / "sys", zones).create().start(interval=0.005)
    yield powercap
    powercap.stop()


@pytest.fixture
def gpu_env(tmp_path: Path) -> dict[str, str]:
    require_binary("gcc")
    return {**os.environ, **FakeNvml(tmp_path / "nvml", [FakeGpu("h100-sxm", util_base=0.5)]).env()}


def measure(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POWERPLANE, "measure", *args], capture_output=True, text=True, env=env, timeout=120, **kwargs
    )


def test_energy_within_one_percent_of_the_lab_and_a_readable_trace(
    lab: PowercapLab, gpu_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run.h5"
    result = measure("--sysfs", str(lab.root), "--out", str(out), "--", "sleep", "3", env=gpu_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    with h5py.File(out) as f:
        rapl = pd.DataFrame(f["rapl"][()])
        gpu = pd.DataFrame(f["gpu0"][()])
        attrs = dict(f.attrs)
        market = f["market"][()]
    assert list(rapl.columns) == ["time", "package-0", "dram-0"]
    assert list(gpu.columns)[:3] == ["time", "energy_j", "power_w"]
    assert len(rapl) >= 20 and rapl["time"].is_monotonic_increasing
    span = rapl["time"].iloc[-1] - rapl["time"].iloc[0]
    package = rapl["package-0"].iloc[-1]
    assert package > 200  # more than two 100 J ranges: every wrap was added
    assert package == pytest.approx(PACKAGE_WATTS * span, rel=0.01)
    assert rapl["dram-0"].iloc[-1] == pytest.approx(DRAM_WATTS * span, rel=0.01)
    gpu_span = gpu["time"].iloc[-1] - gpu["time"].iloc[0]
    assert gpu["energy_j"].iloc[-1] == pytest.approx(GPU_WATTS * gpu_span, rel=0.01)
    assert gpu["power_w"].max() == pytest.approx(GPU_WATTS)
    assert attrs["exit_status"] == 0 and attrs["interval"] == 0.1 and attrs["end"] > attrs["start"]
    assert attrs["command"] == '["sleep", "3"]' and attrs["host"]
    assert '"nvidia_driver": "550.90.07"' in attrs["versions"]
    assert len(market) == 0
    # The summary names each domain with its energy; --summary re-prints the same from the file.
    energy = _summary_energy(result.stderr)
    assert energy["package-0"] == pytest.approx(package, abs=0.1)
    assert energy["gpu0"] == pytest.approx(gpu["energy_j"].iloc[-1], abs=0.1)
    again = measure("--summary", str(out))
    assert again.returncode == 0 and again.stdout == result.stderr


def _summary_energy(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        match = re.match(r"\s+(\S+)(?: \(.*\))?\s+(-?\d+\.\d)\s+", line)
        if match and match.group(1) != "domain":
            found[match.group(1)] = float(match.group(2))
    return found


@pytest.mark.parametrize(("script", "status"), [("exit 7", 7), ("kill -TERM $$", 128 + 15), ("true", 0)])
def test_exit_status_is_the_commands(lab: PowercapLab, script: str, status: int) -> None:
    result = measure("--sysfs", str(lab.root), "--no-gpu", "--", "sh", "-c", script)
    assert result.returncode == status, result.stderr
    assert f"exit status {status}" in result.stderr


def test_standard_streams_pass_through(lab: PowercapLab) -> None:
    result = measure(
        "--sysfs", str(lab.root), "--no-gpu", "--", "sh", "-c", "cat; echo err >&2", input="hello\n"
    )
    assert result.stdout == "hello\n"
    assert result.stderr.startswith("err\npowerplane measure: sh -c")


CHILD = """
import signal, sys, time, pathlib
seen = []
signal.signal(signal.SIGINT, lambda *_: seen.append("INT"))
signal.signal(signal.SIGTERM, lambda *_: seen.append("TERM"))
pathlib.Path(sys.argv[1]).write_text("ready")
deadline = time.monotonic() + 60
while not seen and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.5)  # a second, duplicated delivery would arrive meanwhile
print(",".join(seen), flush=True)
sys.exit(40 + len(seen))
"""


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, "the measured command never started"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_sent_to_measure_reaches_the_command_once(
    lab: PowercapLab, tmp_path: Path, sig: int
) -> None:
    ready = tmp_path / "ready"
    argv = [
        POWERPLANE,
        "measure",
        "--sysfs",
        str(lab.root),
        "--no-gpu",
        "--",
        sys.executable,
        "-c",
        CHILD,
        str(ready),
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _wait_for(ready)
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert out == ("INT\n" if sig == signal.SIGINT else "TERM\n")
    assert proc.returncode == 41, err
    assert "exit status 41" in err


def test_ctrl_c_at_a_terminal_reaches_the_command_once(lab: PowercapLab, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    argv = [
        POWERPLANE,
        "measure",
        "--sysfs",
        str(lab.root),
        "--no-gpu",
        "--",
        sys.executable,
        "-c",
        CHILD,
        str(ready),
    ]
    pid, master = pty.fork()
    if pid == 0:  # the child: measure on the terminal's slave side, in the foreground
        os.execv(argv[0], argv)
    try:
        _wait_for(ready)
        os.write(master, b"\x03")  # the terminal driver sends SIGINT to the foreground process group
        output = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready_fds, _, _ = select.select([master], [], [], 1.0)
            if not ready_fds:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(master)
    text = output.decode(errors="replace")
    assert "INT\r\n" in text and "INT,INT" not in text
    assert os.waitstatus_to_exitcode(status) == 41


def test_a_command_that_does_not_exist(lab: PowercapLab, tmp_path: Path) -> None:
    out = tmp_path / "run.h5"
    result = measure("--sysfs", str(lab.root), "--no-gpu", "--out", str(out), "--", "no-such-command-xyz")
    assert result.returncode == 127
    assert "command not found: no-such-command-xyz" in result.stderr
    assert not out.exists()
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("echo hi\n")
    result = measure("--sysfs", str(lab.root), "--no-gpu", "--", str(not_executable))
    assert result.returncode == 126 and "cannot execute" in result.stderr


def test_a_run_shorter_than_one_interval_still_reports(lab: PowercapLab, tmp_path: Path) -> None:
    out = tmp_path / "run.h5"
    result = measure(
        "--sysfs", str(lab.root), "--no-gpu", "--interval", "10s", "--out", str(out), "--", "true"
    )
    assert result.returncode == 0, result.stderr
    assert "2 samples every 10 s" in result.stderr
    with h5py.File(out) as f:
        assert len(f["rapl"]) == 2
    assert set(_summary_energy(result.stderr)) == {"package-0", "dram-0", "total"}


def test_without_hardware_it_still_runs_and_says_why(tmp_path: Path) -> None:
    result = measure("--sysfs", str(tmp_path / "empty"), "--no-gpu", "--", "true")
    assert result.returncode == 0
    assert "no RAPL zone or GPU could be read: no powercap directory" in result.stderr


@pytest.fixture
async def market_server() -> AsyncIterator[str]:
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    price = Curve.uniform("DE-LU", start, dt.timedelta(minutes=15), [100.0] * 12, source="static")
    carbon = Curve.uniform("DE-LU", start, dt.timedelta(minutes=15), [300.0] * 12, source="static")

    async def curve(request: web.Request) -> web.Response:
        chosen = carbon if request.query.get("series") == "carbon" else price
        return web.json_response(chosen.to_json(unit="g/kWh" if chosen is carbon else "EUR/MWh"))

    app = web.Application()
    app.router.add_get("/api/v1/curve", curve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


async def test_cost_and_co2_at_the_market_price(
    gpu_env: dict[str, str], tmp_path: Path, market_server: str
) -> None:
    import asyncio

    out = tmp_path / "run.h5"
    argv = [
        POWERPLANE,
        "measure",
        "--sysfs",
        str(tmp_path / "none"),
        "--market",
        market_server,
        "--out",
        str(out),
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, "--", "sleep", "1", env=gpu_env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    text = err.decode()
    assert proc.returncode == 0, text
    with h5py.File(out) as f:
        joules = f["gpu0"]["energy_j"][-1]
        market = f["market"][()]
    kwh = joules / 3.6e6
    match = re.search(
        r"energy ([\d.]+) kWh; cost ([\d.]+) EUR at the day-ahead price of (\d) period\(s\); CO2 ([\d.]+) g",
        text,
    )
    assert match, text
    assert float(match.group(2)) == pytest.approx(kwh * 0.1, abs=2e-6)
    assert float(match.group(4)) == pytest.approx(kwh * 300, abs=2e-3)
    assert int(match.group(3)) in (1, 2) and len(market) == int(match.group(3))
    assert set(market["price_eur_per_mwh"]) == {100.0}


def test_unreachable_market_still_reports(lab: PowercapLab) -> None:
    result = measure("--sysfs", str(lab.root), "--no-gpu", "--market", "http://127.0.0.1:1", "--", "true")
    assert result.returncode == 0
    assert "no price: http://127.0.0.1:1/api/v1/curve" in result.stderr


def test_bad_arguments(tmp_path: Path) -> None:
    assert "interval" in measure("--interval", "fast", "--", "true").stderr
    assert "give the command" in measure().stderr
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    result = measure("--summary", str(junk))
    assert result.returncode == 1 and "not a readable HDF5 trace" in result.stderr
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2]
    result = measure("--summary", str(other))
    assert result.returncode == 1 and "not a powerplane measure trace" in result.stderr


def test_the_docs_example_reads_a_trace(lab: PowercapLab, tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text()
    example = re.search(r"```python\n(import h5py.*?)```", text, re.S)
    assert example, "docs/reports.md has no Python example reading run.h5"
    result = measure(
        "--sysfs", str(lab.root), "--no-gpu", "--out", str(tmp_path / "run.h5"), "--", "sleep", "1"
    )
    assert result.returncode == 0, result.stderr
    ran = subprocess.run(
        [sys.executable, "-c", example.group(1)], cwd=tmp_path, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert "power_w" in ran.stdout and '["sleep", "1"]' in ran.stdout
