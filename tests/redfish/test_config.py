"""The Redfish config: every error at once, secrets never shown, collectors, targets and allow rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerplane.exporters.redfish.config import KIND
from powerplane.exporters.redfish.prober import RedfishProber
from powerplane.exporters.runtime import ConfigError, ProbeRequestError

from .conftest import PASSWORD


def test_config_reports_every_error_and_never_the_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RF_PW", PASSWORD)
    with pytest.raises(ConfigError) as info:
        KIND.load_text(
            """
auths:
  a: {username: root, password: calvin}
  b: {username: root, password: {env: RF_PW}, tls: {insecure_skip_verify: true, ca_file: /nonexistent}}
modules: {m: {timeout: -1, collectors: {powr: true}}}
targets: {"bad host!": {}, ok.example: {auth: nope}}
colour: blue
"""
        )
    text = str(info.value)
    assert "auths.a.password: secrets cannot be written inline" in text
    assert "unknown key(s) 'colour'" in text
    assert "modules.m.timeout" in text and "'powr'" in text
    assert "calvin" not in text.replace("secrets cannot", "")
    with pytest.raises(ConfigError) as info:
        KIND.load_text(
            """
auths: {b: {username: root, password: {env: RF_PW}, tls: {insecure_skip_verify: true, ca_file: /nonexistent}}}
targets: {"bad host!": {}, ok.example: {auth: nope}}
allow: ["10.0.0.0/33"]
"""
        )
    errors = info.value.errors
    assert any("insecure_skip_verify and ca_file exclude each other" in e for e in errors)
    assert any("ca_file: /nonexistent is not a readable file" in e for e in errors)
    assert any(e.startswith("targets.bad host!") for e in errors)
    assert any("targets.ok.example.auth: unknown auth 'nope'" in e for e in errors)
    assert any(e.startswith("allow[0]") for e in errors)
    assert PASSWORD not in str(info.value)


async def test_the_prober_resolves_through_the_shared_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared rules (tests/runtime/test_targets.py) as the Redfish prober applies them."""
    monkeypatch.setenv("RF_PW", PASSWORD)
    prober = RedfishProber(
        KIND.load_text(
            "auths: {idrac: {username: root, password: {env: RF_PW}}}\n"
            "allow: ['*.mgmt.example', 10.0.0.0/8, '10.30.0.*:8443']"
        )
    )
    try:
        for ok, device in (
            ("idrac-1.mgmt.example", "idrac-1.mgmt.example:443"),
            ("IDRAC-2.MGMT.EXAMPLE.:443", "idrac-2.mgmt.example:443"),
            ("10.1.2.3", "10.1.2.3:443"),
            ("https://10.0.0.1", "10.0.0.1:443"),
            ("10.30.0.9:8443", "10.30.0.9:8443"),
        ):
            job = prober.resolve({"target": ok})
            assert job.device == device and job.key[0] == f"https://{device}"
        for refused in (
            "idrac-1.mgmt.example.evil.com",
            "10.evil.com",
            "11.0.0.1",
            "mgmt.example",
            "http://10.1.2.3",  # no downgrade to plain HTTP
            "10.1.2.3:22",  # the rule allows the HTTPS port only
            "10.30.0.attacker.example:8443",  # IP-like globs match addresses only
            "10.1.2.3:9873",  # not the exporter's own port either
        ):
            with pytest.raises(ProbeRequestError):
                prober.resolve({"target": refused})
    finally:
        await prober.close()


def test_check_config_redacts_the_password(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from powerplane.cli import main

    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    good = tmp_path / "redfish.yml"
    good.write_text(
        f"auths: {{idrac: {{username: root, password: {{file: {secret}}}}}}}\nallow: [10.0.0.0/8]\n"
    )
    result = CliRunner().invoke(main, ["check-config", "--kind", "redfish", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid redfish config" in result.output and "<redacted>" in result.output
    assert PASSWORD not in result.output
    bad = tmp_path / "bad.yml"
    bad.write_text("auths: {idrac: {username: root, password: hunter22}}\n")
    result = CliRunner().invoke(main, ["check-config", "--kind", "redfish", str(bad)])
    assert result.exit_code == 1
    assert "auths.idrac.password: secrets cannot be written inline" in result.output
    assert "hunter22" not in result.output


def test_collectors_as_switches_or_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RF_PW", PASSWORD)
    config = KIND.load_text(
        """
auths: {idrac: {username: {env: RF_PW}, password: {env: RF_PW}}}
modules:
  listed: {collectors: [power, thermal]}
  switched: {collectors: {psu: false, telemetry: true}}
"""
    )
    modules = config.policy.modules
    assert modules["listed"].collectors == ("power", "thermal")
    assert modules["switched"].collectors == ("power", "thermal", "health", "system", "telemetry")
    assert modules["default"].collectors == ("power", "psu", "thermal", "health", "system")
    with pytest.raises(ConfigError):
        KIND.load_text("auths: {}\nmodules: {m: {collectors: [power, powr]}}")


def test_the_documented_config_is_valid() -> None:
    """docs/redfish.md's example: the schema accepts it and its targets and allow rules parse."""
    import re

    import yaml

    from powerplane.exporters.redfish.config import PROTOCOL, SCHEMA
    from powerplane.exporters.runtime.config import validate
    from powerplane.exporters.runtime.targets import build_policy

    text = (Path(__file__).resolve().parents[2] / "docs" / "redfish.md").read_text()
    doc = yaml.safe_load(re.search(r"## Configuration\n\n```yaml\n(.*?)```", text, re.S).group(1))
    assert validate(doc, SCHEMA) == []
    errors: list[str] = []
    modules = {name: name for name in ["default", *doc["modules"]]}
    policy = build_policy(doc, PROTOCOL, modules, dict.fromkeys(doc["auths"], "auth"), errors)
    assert errors == []
    assert len(policy.allow) == 3 and policy.resolve({"target": "r02-n01"}).device == "10.20.1.1:443"
