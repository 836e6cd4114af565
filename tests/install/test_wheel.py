"""The wheel and sdist carry everything the commands read at run time.

``python -m build`` makes the sdist and, from it, the wheel (so the sdist is complete too); the
wheel is installed into a fresh virtual environment outside the checkout, and the commands run
from there, in a directory that is not the checkout, with no path leading back to it.

The fresh environment takes powerplane's dependencies from the test environment's
site-packages through a ``.pth`` line (a path added so runs no ``.pth`` file of its own, so the
checkout's editable install stays out of it): installing them again would cost minutes and
prove only that PyPI serves them, which ``pip check`` confirms against the wheel's metadata.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from powerplane import components
from powerplane.lab import procs

from .boot import ROOT

pytestmark = pytest.mark.image

# powerplane's configs among the examples (prometheus.yml and alertmanager.yml are not).
EXAMPLES = sorted(
    p
    for p in (ROOT / "docs" / "examples").glob("*.y*ml")
    if p.name not in ("prometheus.yml", "alertmanager.yml")
)


@dataclass
class Installed:
    venv: Path
    cwd: Path
    wheel: Path
    sdist: Path

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"
        env["POWERPLANE_CACHE"] = str(self.cwd / "cache")
        result = subprocess.run(
            [str(self.venv / "bin" / "powerplane"), *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"powerplane {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("powerplane-*.whl")
    (sdist,) = dist.glob("powerplane-*.tar.gz")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (shared,) = (ROOT / ".venv" / "lib").glob("python3*/site-packages")
    (site / "powerplane-test-dependencies.pth").write_text(f"{shared}\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300
    )
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    cwd = work / "elsewhere"
    cwd.mkdir()
    yield Installed(venv, cwd, wheel, sdist)


SHIPPED = (
    "powerplane/rules/powerplane-alerts.yaml",
    "powerplane/rules/powerplane-recording.yaml",
    "powerplane/controller/crd/powercappolicy.yaml",
    "powerplane/exporters/snmp/profiles/apc_rpdu2.yaml",
    "powerplane/lab/fakenvml/fakenvml.c",
    "powerplane/lab/snmprec/raritan-px3.snmprec",
    "powerplane/dashboards/json/powerplane-fleet.json",
    "powerplane/dashboards/schema.json",
    "powerplane/exporters/market/emission_factors.yaml",
    "powerplane/statuspage/templates/app.html",
)


def test_the_wheel_and_the_sdist_carry_the_resources(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert [name for name in SHIPPED if name not in names] == []
    with tarfile.open(installed.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    for directory in ("rules", "controller/crd", "exporters/snmp/profiles", "lab/snmprec", "dashboards/json"):
        assert any(m.startswith(directory + "/") for m in members), directory
    # No source-tree tooling rides along in the wheel.
    assert not [n for n in names if n.startswith(("tests/", "bench/", "charts/"))]


#: Every subcommand's --help, run by the installed package in one process (an interpreter start
#: per command would cost a second or two each).
HELP_ALL = """
import sys
from click.testing import CliRunner
from powerplane import components
from powerplane.cli import main
runner = CliRunner()
argv = [["exporter", name, "--help"] for name in components.exporters()]
argv += [[name, "--help"] for name in components.commands()]
for args in argv:
    result = runner.invoke(main, args)
    if result.exit_code != 0 or "Usage:" not in result.output:
        sys.exit(f"{' '.join(args)}: {result.exit_code} {result.output} {result.exception!r}")
print(len(argv))
"""


def test_commands_run_from_the_installed_wheel(installed: Installed) -> None:
    assert "powerplane" in installed.run("--version").stdout
    assert "exporter" in installed.run("--help").stdout
    result = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", HELP_ALL],
        cwd=installed.cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout) == len(components.exporters()) + len(components.commands())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_check_config_on_the_examples(installed: Installed, example: Path) -> None:
    result = installed.run("check-config", "--no-secrets", str(example))
    assert "valid" in result.stdout


def test_generators_refuse_to_write_into_the_package_and_write_where_told(installed: Installed) -> None:
    for args in (("rules", "build"), ("dashboards", "build"), ("chart", "sync")):
        result = installed.run(*args, check=False)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "not run from a checkout" in result.stderr or "checkout" in result.stderr
    out = installed.cwd / "out"
    installed.run("rules", "build", "--out", str(out / "rules"))
    for committed in sorted((ROOT / "rules").glob("powerplane-*.yaml")):
        assert (out / "rules" / committed.name).read_text() == committed.read_text()
    installed.run("dashboards", "build", "--out", str(out / "dashboards"))
    for committed in sorted((ROOT / "dashboards" / "json").glob("*.json")):
        assert (out / "dashboards" / committed.name).read_text() == committed.read_text()
    (site,) = (installed.venv / "lib").glob("python3*/site-packages")
    assert not (site / "rules").exists(), "a generator wrote into site-packages"
    # The installed package is the one that ran, not the checkout.
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import powerplane; print(powerplane.__file__)"],
        cwd=installed.cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site), where


def test_a_short_demo_from_the_wheel_runs_prometheus_with_the_rules(installed: Installed) -> None:
    if procs.find_binary("prometheus") is None:
        pytest.fail("REAL COMPONENT MISSING: prometheus (run scripts/setup)")
    workdir = installed.cwd / "demo"
    result = installed.run("demo", "--nodes", "1", "--duration", "10", "--workdir", str(workdir), timeout=240)
    assert "Prometheus" in result.stdout and "stopped" in result.stdout
    config = yaml.safe_load((workdir / "prometheus" / "prometheus.yml").read_text())
    rule_files = [Path(p) for p in config.get("rule_files", [])]
    assert rule_files, "the demo's Prometheus got no rule files"
    assert {p.name for p in rule_files} >= {"powerplane-alerts.yaml", "powerplane-recording.yaml"}
    assert all(p.is_file() for p in rule_files)
