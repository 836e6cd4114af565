"""``powerplane rules``: render the rule files, with a site's overrides."""

from __future__ import annotations

from pathlib import Path

import click

from .config import KIND, RulesConfig
from .render import write


@click.group("rules")
def group() -> None:
    """Generate the Prometheus recording and alerting rules."""


@group.command("build")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML overrides of thresholds, selectors, runbook URL and `for` durations.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (default: rules/ of the checkout; required for an installed package).",
)
def build_command(config_path: str | None, out: Path | None) -> None:
    """Render the rule files."""
    from powerplane.exporters.runtime.cli import load_or_exit

    config = load_or_exit(KIND, config_path) if config_path else RulesConfig()
    from powerplane.resources import output_dir

    for path in write(output_dir(out, "rules", "rules build"), config):
        click.echo(f"wrote {path}")
