"""Config kinds: YAML, a JSON Schema with every error at once, secrets from env or file, redacted."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from powerplane.exporters.runtime import ConfigError, ConfigKind, resolve_secret, strict_object
from powerplane.exporters.runtime.config import SECRET_SCHEMA, redacted
from powerplane.exporters.runtime.logs import scrub


def _kind() -> ConfigKind[dict[str, Any]]:
    schema = strict_object(
        {
            "modules": {
                "type": "object",
                "additionalProperties": strict_object(
                    {"timeout": {"type": "number", "minimum": 0.1}, "walk": {"type": "array"}}
                ),
            },
            "auths": {
                "type": "object",
                "additionalProperties": strict_object(
                    {"username": {"type": "string"}, "password": SECRET_SCHEMA}
                ),
            },
        }
    )

    def build(doc: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: {
                "username": a["username"],
                "password": resolve_secret(a["password"], f"auths.{name}.password"),
            }
            for name, a in doc.get("auths", {}).items()
        }

    return ConfigKind("test", schema, build)


def test_config_reports_every_error_with_its_path() -> None:
    text = """
modules:
  idrac: {timeout: -1, walk: 3, colour: red}
auths:
  admin: {username: root, password: calvin}
bogus: 1
"""
    with pytest.raises(ConfigError) as info:
        _kind().load_text(text, "redfish.yml")
    errors = info.value.errors
    assert "(top level): unknown key(s) 'bogus'" in errors
    assert "modules.idrac: unknown key(s) 'colour'" in errors
    assert "modules.idrac.timeout: -1 is less than the minimum of 0.1" in errors
    assert any(e.startswith("modules.idrac.walk:") for e in errors)
    assert "auths.admin.password: secrets cannot be written inline; use {env: NAME} or {file: PATH}" in errors
    assert "calvin" not in str(info.value)
    assert str(info.value).startswith("redfish.yml: ")


@pytest.mark.parametrize("text", ["modules: [", "a: b: c", "\t- x", "!!python/object:os.system {}"])
def test_config_rejects_malformed_yaml(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        _kind().load_text(text, "x.yml")
    assert info.value.errors


def test_secrets_from_env_and_file_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMC_PASSWORD", "s3cret-from-env")
    (tmp_path / "pw").write_text("s3cret-from-file\n")
    config = _kind().load_text(
        f"auths:\n  a: {{username: u, password: {{env: BMC_PASSWORD}}}}\n"
        f"  b: {{username: u, password: {{file: {tmp_path / 'pw'}}}}}\n"
    )
    assert config["a"]["password"].reveal() == "s3cret-from-env"
    assert config["b"]["password"].reveal() == "s3cret-from-file"
    dumped = f"{config} {redacted(config)} {config['a']['password']!s}"
    assert "s3cret" not in dumped
    assert "env:BMC_PASSWORD" in dumped
    assert scrub("login with s3cret-from-file failed") == "login with <redacted> failed"


def test_missing_secret_names_the_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(ConfigError, match=r"auths.a.password: environment variable NOPE is not set"):
        _kind().load_text("auths:\n  a: {username: u, password: {env: NOPE}}\n")
    with pytest.raises(ConfigError, match=r"auths.a.password: cannot read secret file"):
        _kind().load_text(f"auths:\n  a: {{username: u, password: {{file: {tmp_path}/missing}}}}\n")
