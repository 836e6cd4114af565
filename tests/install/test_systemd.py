"""The systemd units: `systemd-analyze verify` and `security` clean, commands the CLI accepts, and the
RAPL exporter's privilege model (a group grant instead of root) exercised with the real tools."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from powerplane.cli import main
from powerplane.lab import procs
from powerplane.lab.powercap import PowercapLab, intel_server
from tests.conftest import require_binary

from .units import ROOT, SYSTEMD, Unit, services, units

#: The highest `systemd-analyze security` exposure (0 safe … 10 exposed) a unit may have.
MAX_EXPOSURE = 2.5
#: Units that need uid 0 (and say why in their header); every other service is a DynamicUser.
ROOT_UNITS = {"powerplane-controller.service", "powerplane-inventory-sd.service"}


@pytest.fixture(scope="module")
def system_root() -> Iterator[Path]:
    """A root directory holding systemd's own units and the shipped ones, for `--root=`.

    Without systemd as PID 1, `systemd-analyze --root` loads units from this tree, and checks that
    each command exists in it: /opt/powerplane/bin/powerplane and systemd-tmpfiles are present.
    """
    require_binary("systemd-analyze")
    with tempfile.TemporaryDirectory(prefix="powerplane-systemd-") as tmp:
        root = Path(tmp)
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        (root / "usr/bin").mkdir(parents=True)
        tmpfiles = shutil.which("systemd-tmpfiles") or "/usr/bin/systemd-tmpfiles"
        shutil.copy(tmpfiles, root / "usr/bin/systemd-tmpfiles")
        binary = root / "opt/powerplane/bin/powerplane"
        binary.parent.mkdir(parents=True)
        binary.write_text(f'#!/bin/sh\nexec {ROOT / ".venv/bin/powerplane"} "$@"\n')
        binary.chmod(0o755)
        target = root / "etc/systemd/system"
        target.mkdir(parents=True)
        for unit in units():
            shutil.copy(unit.path, target / unit.name)
        yield root


def test_every_exporter_and_the_controller_have_a_unit() -> None:
    names = {u.name for u in units()}
    assert {
        "powerplane-rapl.service",
        "powerplane-gpu.service",
        "powerplane-controller.service",
        "powerplane-redfish@.service",
        "powerplane-snmp@.service",
        "powerplane-slurm@.service",
        "powerplane-market.service",
        "powerplane-inventory.service",
        "powerplane-inventory-sd.service",
        "powerplane-inventory-sd.path",
    } <= names
    exporters = CliRunner().invoke(main, ["exporter", "--help"]).output
    listed = re.findall(r"^  (\w+)\s", exporters.split("Commands:")[1], re.M)
    for exporter in listed:
        assert any(f"exporter {exporter}" in " ".join(u.command()) for u in services()), exporter


@pytest.mark.parametrize("unit", units(), ids=lambda u: u.name)
def test_systemd_analyze_verify_is_clean(system_root: Path, unit: Unit) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={system_root}", unit.instance_name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # verify exits 0 on unknown keys and bad values, printing them: any output is a finding.
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_verify_would_catch_a_bad_unit(system_root: Path) -> None:
    bad = system_root / "etc/systemd/system/powerplane-broken.service"
    bad.write_text("[Service]\nExecStart=/opt/powerplane/bin/missing\nProtectSystem=bananas\n")
    try:
        done = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", f"--root={system_root}", bad.name],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        bad.unlink()
    assert "bananas" in done.stderr and "not executable" in done.stderr


@pytest.mark.parametrize("unit", services(), ids=lambda u: u.name)
def test_security_exposure_is_low(system_root: Path, unit: Unit) -> None:
    done = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--root={system_root}",
            "--no-pager",
            f"--threshold={round(MAX_EXPOSURE * 10)}",
            unit.instance_name,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert level, done.stdout[-500:] + done.stderr
    assert float(level.group(1)) <= MAX_EXPOSURE and done.returncode == 0, done.stdout[-2000:]


@pytest.mark.parametrize("unit", services(), ids=lambda u: u.name)
def test_hardening(unit: Unit) -> None:
    assert unit.value("CapabilityBoundingSet") == "", "no capabilities"
    assert unit.value("AmbientCapabilities") == ""
    assert unit.value("NoNewPrivileges") == "yes"
    assert unit.value("ProtectSystem") == "strict"
    assert unit.value("ProtectHome") == "yes"
    assert unit.value("User") is None, "a transient user or, where stated, root"
    if unit.name in ROOT_UNITS:
        assert unit.value("DynamicUser") is None
    else:
        assert unit.value("DynamicUser") == "yes"
    if unit.name in ("powerplane-rapl.service", "powerplane-gpu.service", "powerplane-controller.service"):
        assert "/sys" in unit.values("ReadOnlyPaths")


@pytest.mark.parametrize("unit", services(), ids=lambda u: u.name)
def test_secrets_come_from_environment_files_only(unit: Unit) -> None:
    for assignment in unit.values("Environment"):
        assert not re.search(r"PASSWORD|TOKEN|COMMUNITY|SECRET", assignment, re.I), assignment
    line = " ".join(unit.command())
    assert not re.search(r"password|token|community|secret", line, re.I), line
    if unit.name != "powerplane-inventory-sd.service":
        (env_file,) = unit.values("EnvironmentFile")
        assert env_file.startswith("-/etc/powerplane/"), "optional, under /etc/powerplane"


@pytest.mark.parametrize("unit", services(), ids=lambda u: u.name)
def test_the_cli_accepts_each_command(unit: Unit) -> None:
    argv = unit.command()
    assert argv[0] == "/opt/powerplane/bin/powerplane"
    result = CliRunner().invoke(main, [*argv[1:], "--help"])
    assert result.exit_code == 0, f"{' '.join(argv)}:\n{result.output}"
    # The same check refuses an option the command does not have.
    wrong = CliRunner().invoke(main, [*argv[1:], "--no-such-option", "--help"])
    assert wrong.exit_code == 2 and "No such option" in wrong.output


def test_the_path_unit_starts_the_sd_service() -> None:
    (path,) = (u for u in units() if u.name == "powerplane-inventory-sd.path")
    (service,) = (u for u in units() if u.name == "powerplane-inventory-sd.service")
    assert path.value("PathChanged", "Path") == "/etc/powerplane/inventory.yaml"
    assert "--file=/etc/powerplane/inventory.yaml" in service.command()


# --- the RAPL exporter's privilege: a group grant applied with the real systemd tools -------------


@pytest.fixture
def host_root() -> Iterator[Path]:
    """A root 'nobody' can traverse (pytest's tmp_path is private to root), with a lab /sys."""
    require_binary("systemd-tmpfiles")
    require_binary("systemd-sysusers")
    with tempfile.TemporaryDirectory(prefix="powerplane-host-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        (root / "etc").mkdir()
        for name in ("passwd", "group"):
            shutil.copy(f"/etc/{name}", root / "etc" / name)
        PowercapLab(root / "sys", intel_server()).create()
        for energy in (root / "sys").rglob("energy_uj"):
            energy.chmod(0o400)  # the kernel's mode since Linux 5.10
        yield root


def _grant(root: Path) -> int:
    """Create the group and apply the tmpfiles rule as installing the units does; its gid."""
    sysusers = SYSTEMD / "sysusers.d/powerplane.conf"
    tmpfiles = SYSTEMD / "tmpfiles.d/powerplane-rapl.conf"
    subprocess.run(["systemd-sysusers", f"--root={root}", str(sysusers)], check=True, timeout=60)
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(tmpfiles)], check=True, timeout=60)
    for line in (root / "etc/group").read_text().splitlines():
        name, _, gid, _ = line.split(":", 3)
        if name == "powerplane-energy":
            return int(gid)
    raise AssertionError("systemd-sysusers did not create powerplane-energy")


def test_the_tmpfiles_rule_grants_read_to_the_units_group(host_root: Path) -> None:
    gid = _grant(host_root)
    energies = list((host_root / "sys").rglob("energy_uj"))
    assert energies
    for energy in energies:
        st = energy.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o440, 0, gid), energy
    limits = list((host_root / "sys").rglob("constraint_0_power_limit_uw"))
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in limits), "limits keep their modes"
    (rapl,) = (u for u in services() if u.name == "powerplane-rapl.service")
    assert rapl.value("SupplementaryGroups") == "powerplane-energy"
    assert rapl.value("ExecStartPre") == "-+/usr/bin/systemd-tmpfiles --create powerplane-rapl.conf"


def _run_unprivileged(root: Path, groups: list[int]) -> str:
    """The RAPL exporter as the unit runs it, as an unprivileged user; its first /metrics."""
    require_binary("setpriv")
    python = str(ROOT / ".venv/bin/python")
    probe = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", "import powerplane"],
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip(f"the virtual environment at {ROOT} is not readable by nobody")
    port = procs.free_port()
    argv = [a for a in _rapl_unit().command() if not a.startswith(("--path.sysfs", "--web.listen-address"))]
    group_args = ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    process = procs.Process(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            *group_args,
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            python,
            "-m",
            "powerplane.cli",
            *argv[1:],
            f"--path.sysfs={root / 'sys'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        root / f"rapl-{port}.log",
    )
    try:
        process.wait_ready(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        status, body = procs.http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        return body.decode()
    finally:
        process.stop()


def _rapl_unit() -> Unit:
    (rapl,) = (u for u in services() if u.name == "powerplane-rapl.service")
    return rapl


def test_an_unprivileged_exporter_in_the_group_reads_energy(host_root: Path) -> None:
    gid = _grant(host_root)
    metrics = _run_unprivileged(host_root, [gid])
    assert re.search(r'^powerplane_rapl_energy_joules_total\{zone="package",index="0"\} ', metrics, re.M)
    assert 'powerplane_scrape_collector_success{exporter="rapl",collector="energy"} 1' in metrics


def test_without_the_grant_the_exporter_serves_limits_but_no_energy(host_root: Path) -> None:
    metrics = _run_unprivileged(host_root, [])
    assert "powerplane_rapl_energy_joules_total{" not in metrics
    assert re.search(r'^powerplane_rapl_power_limit_watts\{zone="package",index="0",', metrics, re.M)
