"""The examples of docs/install.md's bare-metal section run as written: every config file it shows
passes `check-config` with its kind, and the unit drop-in passes `systemd-analyze verify`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from powerplane.cli import main
from tests.conftest import require_binary

from .units import ROOT, SYSTEMD

DOC = (ROOT / "docs" / "install.md").read_text()
#: ```yaml blocks whose first line is "# /etc/powerplane/NAME (kind KIND)".
CONFIGS = re.findall(r"```yaml\n# (/etc/powerplane/\S+) \(kind (\w+)\)\n(.*?)```", DOC, re.S)
SECRETS = {
    "REDFISH_USERNAME": "monitor",
    "REDFISH_PASSWORD": "s3cret-redfish",
    "SNMP_AUTH_PASSWORD": "s3cret-snmp-auth",
    "SNMP_PRIV_PASSWORD": "s3cret-snmp-priv",
    "ENTSOE_TOKEN": "s3cret-entsoe",
    "SLURM_TOKEN": "s3cret-slurm-jwt",
}


def test_the_section_shows_each_config() -> None:
    assert {kind for _path, kind, _text in CONFIGS} == {
        "powercappolicy",
        "redfish",
        "snmp",
        "market",
        "slurm",
    }


@pytest.mark.parametrize("path, kind, text", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_config_examples_pass_check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, kind: str, text: str
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    ca = tmp_path / "bmc-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = tmp_path / Path(path).name
    config.write_text(text.replace("/etc/powerplane/bmc-ca.pem", str(ca)))
    result = CliRunner().invoke(main, ["check-config", "--kind", kind, str(config)])
    assert result.exit_code == 0, result.output
    assert not any(secret in result.output for secret in SECRETS.values() if secret.startswith("s3cret"))


def test_the_root_drop_in_verifies(tmp_path: Path) -> None:
    require_binary("systemd-analyze")
    (drop_in,) = re.findall(r"```ini\n# (\S+/powerplane-rapl\.service\.d/root\.conf)\n(.*?)```", DOC, re.S)
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    binary = root / "opt/powerplane/bin/powerplane"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    units = root / "etc/systemd/system"
    (units / "powerplane-rapl.service.d").mkdir(parents=True)
    shutil.copy(SYSTEMD / "powerplane-rapl.service", units)
    (units / "powerplane-rapl.service.d/root.conf").write_text(drop_in[1])
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", "powerplane-rapl.service"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
    shown = subprocess.run(
        ["systemd-analyze", "cat-config", f"--root={root}", "systemd/system/powerplane-rapl.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "DynamicUser=no" in shown.stdout or shown.returncode != 0
