"""The ``powerplane`` command.

Subcommands are imported lazily so that ``powerplane exporter rapl`` does not pay for the
Redfish or GPU code, and a broken optional dependency breaks only its own subcommand.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import yaml

from powerplane import __version__, components


class _LazyGroup(click.Group):
    """A group whose subcommands come from the component registry, imported when used."""

    def __init__(self, *args: Any, lazy: Callable[[], dict[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        ref = self.lazy().get(cmd_name)
        if ref is not None:
            command: click.Command = components.resolve(ref)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_LazyGroup, lazy=components.commands, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="powerplane")
def main() -> None:
    """Power and heat of HPC and GPU data centres: exporters, rules, dashboards, power caps."""


@main.group(cls=_LazyGroup, lazy=components.exporters)
def exporter() -> None:
    """Run an exporter."""


@main.command("check-config")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", metavar="KIND", help="Kind of config (guessed when omitted); see --list-kinds.")
def check_config(path: str, kind: str | None) -> None:
    """Validate a config file and print it with every secret redacted."""
    from powerplane.exporters.runtime.config import ConfigError, redacted

    known = components.config_kinds()
    if kind is not None and kind not in known:
        raise click.BadParameter(f"{kind!r} is not one of {', '.join(sorted(known))}", param_hint="--kind")
    kinds = [kind] if kind else sorted(known)
    failures: list[tuple[str, ConfigError]] = []
    for name in kinds:
        try:
            config = components.resolve(known[name]).load(path)
        except ConfigError as exc:
            failures.append((name, exc))
            continue
        click.echo(f"# {path}: valid {name} config")
        click.echo(yaml.safe_dump(redacted(config), sort_keys=False), nl=False)
        return
    # Report against the kind the file most resembles: the one with the fewest errors.
    name, error = min(failures, key=lambda f: len(f[1].errors))
    label = f"{name} config" if kind or len(kinds) == 1 else f"config (closest kind: {name})"
    click.echo(f"{path}: invalid {label}:", err=True)
    for line in error.errors:
        click.echo(f"  {line}", err=True)
    sys.exit(1)


@main.group()
def docs() -> None:
    """Generate reference documentation from the code."""


@docs.command("metrics")
def docs_metrics() -> None:
    """Print docs/METRICS.md: every metric powerplane emits."""
    from powerplane.exporters.runtime.metrics import render_markdown

    click.echo(render_markdown(components.metric_sections()), nl=False)


if __name__ == "__main__":
    main()
