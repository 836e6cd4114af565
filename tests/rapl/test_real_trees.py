"""The RAPL exporter on trees laid out as real kernels and firmware leave them.

The first fixture is written from the facts of node_exporter's own powercap fixture (its
``sys.ttar``): a package zone and a core subzone whose ``constraint_0_max_power_uw`` is an
empty file, and a package numbered in hexadecimal.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from powerplane.exporters.rapl import collectors, powercap
from powerplane.exporters.runtime import Deadline, FailureLog, Scrape, run_collectors
from powerplane.lab import procs
from tests.helpers import parse, undocumented, value


def write_tree(sysfs: Path, zones: dict[str, dict[str, str]]) -> None:
    base = sysfs / "class" / "powercap"
    for dirname, files in zones.items():
        zone = base / dirname
        zone.mkdir(parents=True)
        for name, content in files.items():
            (zone / name).write_text(content)


NODE_EXPORTER_FIXTURE = {
    "intel-rapl:0": {
        "name": "package-0\n",
        "energy_uj": "240422366267\n",
        "max_energy_range_uj": "262143328850\n",
        "enabled": "1\n",
        "constraint_0_name": "long_term\n",
        "constraint_0_max_power_uw": "95000000\n",
        "constraint_0_power_limit_uw": "95000000\n",
        "constraint_0_time_window_us": "999424\n",
        "constraint_1_name": "short_term\n",
        "constraint_1_max_power_uw": "\n",
        "constraint_1_power_limit_uw": "114000000\n",
        "constraint_1_time_window_us": "2440\n",
    },
    "intel-rapl:0:0": {
        "name": "core\n",
        "energy_uj": "118821284256\n",
        "max_energy_range_uj": "262143328850\n",
        "enabled": "0\n",
        "constraint_0_name": "long_term\n",
        "constraint_0_max_power_uw": "",
        "constraint_0_power_limit_uw": "0\n",
        "constraint_0_time_window_us": "976\n",
    },
    "intel-rapl:a": {
        "name": "package-10\n",
        "energy_uj": "334332\n",
        "max_energy_range_uj": "262143328850\n",
        "enabled": "1\n",
    },
}


async def scrape(sysfs: Path) -> tuple[dict[str, dict[tuple[tuple[str, str], ...], float]], str]:
    tree = powercap.PowercapTree(sysfs)
    outcomes = await run_collectors(
        "rapl",
        [collectors.RaplEnergyCollector(tree), collectors.RaplLimitsCollector(tree)],
        Deadline.after(5),
        FailureLog(logging.getLogger("powerplane.rapl")),
    )
    text = generate_latest(Scrape("rapl", outcomes)).decode()  # type: ignore[arg-type]
    assert undocumented(text) == set()
    return parse(text), text


async def test_an_empty_optional_file_drops_that_value_only(tmp_path: Path) -> None:
    write_tree(tmp_path, NODE_EXPORTER_FIXTURE)
    samples, _ = await scrape(tmp_path)
    for collector in ("energy", "limits"):
        assert value(samples, "powerplane_scrape_collector_success", collector=collector) == 1.0
    energy = "powerplane_rapl_energy_joules_total"
    assert value(samples, energy, zone="package", index="0") == pytest.approx(240422.366267)
    assert value(samples, energy, zone="core", index="0") == pytest.approx(118821.284256)
    assert value(samples, energy, zone="package", index="10") == pytest.approx(0.334332)
    limit = "powerplane_rapl_power_limit_watts"
    assert value(samples, limit, zone="core", index="0", constraint="long_term") == 0.0
    assert value(samples, limit, zone="package", index="0", constraint="short_term") == 114.0
    maximum = samples["powerplane_rapl_max_power_watts"]
    # Only the one constraint whose maximum was readable has one.
    assert list(maximum.values()) == [95.0]


async def test_an_unreadable_max_energy_range_keeps_the_energy(tmp_path: Path) -> None:
    zones = {"intel-rapl:0": dict(NODE_EXPORTER_FIXTURE["intel-rapl:0"], max_energy_range_uj="")}
    write_tree(tmp_path, zones)
    samples, _ = await scrape(tmp_path)
    assert value(samples, "powerplane_scrape_collector_success", collector="energy") == 1.0
    assert value(samples, "powerplane_rapl_energy_joules_total", zone="package") == pytest.approx(
        240422.366267
    )


async def test_no_powercap_is_logged_once_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree = powercap.PowercapTree(tmp_path)
    failures = FailureLog(logging.getLogger("powerplane.rapl"))
    rapl = [collectors.RaplEnergyCollector(tree), collectors.RaplLimitsCollector(tree)]
    with caplog.at_level(logging.INFO, logger="powerplane.rapl"):
        for _ in range(3):
            outcomes = await run_collectors("rapl", rapl, Deadline.after(5), failures)
            assert all(o.success for o in outcomes)
    lines = [r for r in caplog.records if r.levelno == logging.INFO and "no data" in r.getMessage()]
    assert len(lines) == 2  # once per collector, not once per scrape
    assert all("no powercap directory" in str(getattr(r, "fields", "")) for r in lines)


def test_the_exporter_process_says_why_it_has_no_series(tmp_path: Path) -> None:
    port = procs.free_port()
    argv = [sys.executable, "-m", "powerplane.cli", "exporter", "rapl", "--path.sysfs", str(tmp_path)]
    proc = procs.Process([*argv, "--web.listen-address", f"127.0.0.1:{port}"], tmp_path / "rapl.log")
    try:
        proc.wait_ready(f"http://127.0.0.1:{port}/-/ready", 20)
        assert procs.http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
        procs.wait_until(lambda: "no powercap directory" in proc.log_tail(20), 10, what="the log line")
        line = next(x for x in proc.log_tail(20).splitlines() if "no powercap directory" in x)
        assert "level=info" in line
    finally:
        proc.stop()
