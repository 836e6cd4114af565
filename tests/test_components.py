"""The component registry drives the CLI, check-config, docs/METRICS.md and the demo."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from powerplane import components
from powerplane.cli import main
from powerplane.components import Component
from powerplane.exporters.runtime.config import ConfigKind
from powerplane.exporters.runtime.metrics import MetricSpec

TOY_METRICS = (MetricSpec("powerplane_toy_widgets", "gauge", "Widgets the toy counts."),)
TOY_KIND: ConfigKind[dict[str, object]] = ConfigKind(
    "toy", {"type": "object", "required": ["widgets"]}, lambda doc: dict(doc)
)


@click.command("toy")
def toy_command() -> None:
    """The toy exporter."""
    click.echo("toy ran")


TOY = Component(
    name="toy",
    order=55,
    exporter=f"{__name__}:toy_command",
    commands=(("toy-report", f"{__name__}:toy_command"),),
    config_kinds=(("toy", f"{__name__}:TOY_KIND"),),
    metrics=(f"{__name__}:TOY_METRICS",),
)


@pytest.fixture
def with_toy(monkeypatch: pytest.MonkeyPatch) -> None:
    real = components.components()
    monkeypatch.setattr(components, "components", lambda: tuple(sorted((*real, TOY), key=lambda c: c.order)))


def test_every_exporter_package_declares_itself() -> None:
    import powerplane.exporters

    declared = {c.name for c in components.components()}
    packages = {m.name for m in pkgutil.iter_modules(powerplane.exporters.__path__)}
    assert packages <= declared, packages - declared
    assert {"controller", "rules", "dashboards", "chart", "demo"} <= declared


def test_references_resolve() -> None:
    for component in components.components():
        refs = [component.exporter, component.demo, *component.metrics]
        refs += [ref for _name, ref in (*component.commands, *component.config_kinds)]
        for ref in filter(None, refs):
            assert components.resolve(ref) is not None, (component.name, ref)


def test_a_declared_component_reaches_the_cli(with_toy: None) -> None:
    runner = CliRunner()
    assert "toy" in runner.invoke(main, ["exporter", "--help"]).output
    assert runner.invoke(main, ["exporter", "toy"]).output == "toy ran\n"
    assert runner.invoke(main, ["toy-report"]).output == "toy ran\n"


def test_a_declared_config_kind_reaches_check_config(with_toy: None, tmp_path: Path) -> None:
    path = tmp_path / "toy.yml"
    path.write_text("widgets: 3\n")
    result = CliRunner().invoke(main, ["check-config", "--kind", "toy", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid toy config" in result.output


def test_declared_metrics_reach_the_metrics_doc(with_toy: None) -> None:
    output = CliRunner().invoke(main, ["docs", "metrics"]).output
    assert "## toy" in output
    assert "| `powerplane_toy_widgets` | gauge |" in output
    # Sections follow the declared order: the toy (55) sits between market (50) and inventory (60).
    assert output.index("## market") < output.index("## toy") < output.index("## inventory")


def test_a_name_declared_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    clash = Component(name="clash", order=1, commands=(("rules", f"{__name__}:toy_command"),))
    real = components.components()
    monkeypatch.setattr(components, "components", lambda: (*real, clash))
    with pytest.raises(RuntimeError, match="command 'rules' is declared by two components"):
        components.commands()


def test_the_runtime_imports_no_component() -> None:
    runtime = Path(components.__file__).parent.parent / "exporters" / "runtime"
    for path in runtime.glob("*.py"):
        text = path.read_text()
        for name in ("powerplane.controller", "powerplane.lab", "powerplane.rulegen", "..rapl", "..gpu"):
            assert name not in text, f"{path.name} imports {name}"
