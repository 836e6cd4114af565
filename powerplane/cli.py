"""The ``powerplane`` command.

Subcommands are imported lazily so that ``powerplane exporter rapl`` does not pay for the
Redfish or GPU code, and a broken optional dependency breaks only its own subcommand.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click
import yaml

from powerplane import __version__

#: exporter name → module defining ``command`` (a click command).
EXPORTERS: dict[str, str] = {
    "rapl": "powerplane.exporters.rapl",
    "gpu": "powerplane.exporters.gpu",
    "inventory": "powerplane.exporters.inventory",
    "snmp": "powerplane.exporters.snmp",
    "market": "powerplane.exporters.market",
    "redfish": "powerplane.exporters.redfish",
}

#: config kind name → "module:attribute" of its ``ConfigKind``, for ``check-config``.
CONFIG_KINDS: dict[str, str] = {
    "web": "powerplane.exporters.runtime.webconfig:KIND",
    "inventory": "powerplane.exporters.inventory:KIND",
    "rules": "powerplane.rulegen:KIND",
    "snmp": "powerplane.exporters.snmp.exporter:KIND",
    "market": "powerplane.exporters.market.config:KIND",
    "redfish": "powerplane.exporters.redfish.config:KIND",
    "powercappolicy": "powerplane.controller.config:KIND",
}

#: top-level command name → "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "demo": "powerplane.lab.demo:command",
    "inventory": "powerplane.exporters.inventory:group",
    "rules": "powerplane.rulegen:group",
    "controller": "powerplane.controller.cli:command",
    "chart": "powerplane.chart:command",
    "dashboards": "powerplane.dashboards.build:command",
}


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr or "command")


class _LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            ref = self.lazy[cmd_name]
            command: click.Command = _load(ref if ":" in ref else ref + ":command")
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="powerplane")
def main() -> None:
    """Power and heat of HPC and GPU data centres: exporters, rules, dashboards, power caps."""


@main.group(cls=_LazyGroup, lazy=EXPORTERS)
def exporter() -> None:
    """Run an exporter."""


@main.command("check-config")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--kind", type=click.Choice(sorted(CONFIG_KINDS)), help="Kind of config (guessed when omitted)."
)
def check_config(path: str, kind: str | None) -> None:
    """Validate a config file and print it with every secret redacted."""
    from powerplane.exporters.runtime.config import ConfigError, redacted

    kinds = [kind] if kind else sorted(CONFIG_KINDS)
    failures: list[tuple[str, ConfigError]] = []
    for name in kinds:
        try:
            config = _load(CONFIG_KINDS[name]).load(path)
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

    click.echo(render_markdown(), nl=False)


if __name__ == "__main__":
    main()
