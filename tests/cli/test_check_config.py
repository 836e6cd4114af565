"""``powerplane check-config``: the kind from the flag or the file, secrets apart, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from powerplane.cli import main

REDFISH = """\
modules:
  default: {timeout: 30}
auths:
  idrac:
    username: {env: CHECK_IDRAC_USER}
    password: {env: CHECK_IDRAC_PASSWORD}
targets:
  idrac-01.mgmt.example: {}
"""
INVENTORY = "clusters:\n  - name: c1\nnodes:\n  - name: n1\n    cluster: c1\n"


def check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check-config", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_the_kind_comes_from_the_file_and_unset_secrets_are_reported_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHECK_IDRAC_USER", raising=False)
    monkeypatch.delenv("CHECK_IDRAC_PASSWORD", raising=False)
    path = tmp_path / "bmcs.yml"
    path.write_text(REDFISH)
    code, output = check(str(path))
    assert code == 1
    assert "valid redfish config, but its secrets cannot be read" in output
    assert "auths.idrac.username: environment variable CHECK_IDRAC_USER is not set" in output
    assert "auths.idrac.password: environment variable CHECK_IDRAC_PASSWORD is not set" in output
    assert "closest kind" not in output and "rules" not in output
    # --no-secrets checks the structure alone.
    code, output = check("--no-secrets", str(path))
    assert code == 0 and "valid redfish config" in output
    monkeypatch.setenv("CHECK_IDRAC_USER", "root")
    monkeypatch.setenv("CHECK_IDRAC_PASSWORD", "calvin-is-secret")
    code, output = check(str(path))
    assert code == 0 and "valid redfish config" in output
    assert "calvin-is-secret" not in output and "<redacted>" in output


def test_schema_errors_and_unreadable_secrets_are_listed_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHECK_IDRAC_USER", raising=False)
    path = tmp_path / "redfish.yml"
    path.write_text(REDFISH.replace("timeout: 30", "timeout: -1"))
    code, output = check(str(path))
    assert code == 1
    assert "invalid redfish config" in output
    assert "modules.default.timeout" in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("\n# only a comment\n\n", "the file is empty"),
        ("{}\n", "cannot tell the kind of config (no top-level keys)"),
        ("widgets: 3\n", "cannot tell the kind of config (top-level keys 'widgets')"),
        ("clusters: []\nclusters: []\n", "duplicate key 'clusters'"),
        ("nodes:\n  - {name: n1, name: n2}\n", "duplicate key 'name'"),
        ("\tkey: [\n", "invalid YAML"),
    ],
)
def test_files_that_are_not_a_config_are_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "site.yml"
    path.write_text(text)
    code, output = check(str(path))
    assert code == 1
    assert message in output


def test_duplicate_keys_are_errors_with_an_explicit_kind_too(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY + "clusters:\n  - name: c2\n")
    code, output = check("--kind", "inventory", str(path))
    assert code == 1 and "duplicate key 'clusters'" in output


def test_the_file_name_settles_an_ambiguous_document(tmp_path: Path) -> None:
    # An empty mapping of overrides fits no kind by its keys; the file name says it is rules.
    path = tmp_path / "site-rules.yaml"
    path.write_text("{}\n")
    code, output = check(str(path))
    assert code == 0 and "valid rules config" in output


def test_an_unknown_kind_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "x.yml"
    path.write_text(INVENTORY)
    result = CliRunner().invoke(main, ["check-config", "--kind", "nope", str(path)])
    assert result.exit_code == 2 and "'nope' is not one of" in result.output


def test_a_file_that_is_not_text_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    code, output = check(str(path))
    assert code == 1 and "invalid config" in output
