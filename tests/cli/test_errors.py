"""No user input ends in a traceback: unexpected errors become one scrubbed line."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from powerplane import components
from powerplane.cli import main
from powerplane.components import Component
from powerplane.exporters.runtime import resolve_secret
from powerplane.lab.powercap import PowercapLab, intel_server


@click.command("explode")
def explode() -> None:
    """Fails the way an unforeseen input makes a command fail."""
    raise OverflowError("date value out of range near hunter22-secret")


@pytest.fixture
def with_explode(monkeypatch: pytest.MonkeyPatch) -> None:
    component = Component(name="explode", order=1, commands=(("explode", f"{__name__}:explode"),))
    real = components.components()
    monkeypatch.setattr(components, "components", lambda: (*real, component))


def test_an_unexpected_error_is_one_line_without_secrets(
    with_explode: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPLODE_SECRET", "hunter22-secret")
    resolve_secret({"env": "EXPLODE_SECRET"}, "x")
    monkeypatch.delenv("POWERPLANE_DEBUG", raising=False)
    result = CliRunner().invoke(main, ["explode"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "Error: date value out of range near <redacted> (OverflowError;" in result.output
    assert "hunter22-secret" not in result.output


def test_debug_shows_the_traceback(with_explode: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERPLANE_DEBUG", "1")
    result = CliRunner().invoke(main, ["explode"])
    assert isinstance(result.exception, OverflowError)


def test_reconcile_once_at_an_impossible_time_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "powerplane.io/v1alpha1",
                "kind": "PowerCapPolicy",
                "metadata": {"name": "price"},
                "spec": {
                    "signal": {"static": {"value": 100}},
                    "policy": {
                        "type": "linear",
                        "linear": {"minWatts": 200, "maxWatts": 500, "signalMax": 300},
                    },
                },
            }
        )
    )
    args = ["controller", "reconcile-once", "--policy", str(policy), "--sysfs", str(lab.root)]
    args += ["--no-gpu", "--dry-run", "--state-file", str(tmp_path / "state.json")]
    assert CliRunner().invoke(main, args).exit_code == 0
    # The earliest representable instant with a positive offset lies before year 1 in UTC.
    result = CliRunner().invoke(main, [*args, "--at", "0001-01-01T00:00:00+14:00"])
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit)
    assert "Error:" in result.output and "Traceback" not in result.output
