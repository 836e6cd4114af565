"""The ``powerplane`` command.

Subcommands are imported lazily so that ``powerplane exporter rapl`` does not pay for the
Redfish or GPU code, and a broken optional dependency breaks only its own subcommand.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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


class _Root(_LazyGroup):
    """The ``powerplane`` command: no user input ends in a traceback.

    Commands report what they expect (click errors, config errors); anything else is shown as one
    line naming the error, scrubbed of secrets.  ``POWERPLANE_DEBUG=1`` shows the traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if os.environ.get("POWERPLANE_DEBUG"):
                raise
            from powerplane.exporters.runtime.logs import scrub

            what = str(exc) or type(exc).__name__
            raise click.ClickException(
                scrub(f"{what} ({type(exc).__name__}; POWERPLANE_DEBUG=1 shows where)")
            ) from None


@click.group(cls=_Root, lazy=components.commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="powerplane")
def main() -> None:
    """Power and heat of HPC and GPU data centres: exporters, rules, dashboards, power caps."""


@main.group(cls=_LazyGroup, lazy=components.exporters)
def exporter() -> None:
    """Run an exporter."""


@main.command("check-config")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", metavar="KIND", help="Kind of config (told from the file when omitted).")
@click.option(
    "--no-secrets", is_flag=True, help="Check the structure only; do not read the secrets it names."
)
def check_config(path: str, kind: str | None, no_secrets: bool) -> None:
    """Validate a config file and print it with every secret redacted.

    The kind comes from --kind, or from the file: a document whose top-level keys fit exactly
    one kind is that kind, else a kind named in the file's name (``redfish.yml``). Secrets that
    cannot be read are listed apart from the config's errors; both exit with status 1.
    """
    from powerplane.exporters.runtime.config import ConfigError, collecting_unresolved, parse_yaml, redacted

    known = {name: components.resolve(ref) for name, ref in components.config_kinds().items()}
    if kind is not None and kind not in known:
        raise click.BadParameter(f"{kind!r} is not one of {', '.join(sorted(known))}", param_hint="--kind")
    try:
        text = Path(path).read_text(encoding="utf-8")
        name = kind or _kind_of(parse_yaml(text, path), Path(path), known)
    except (ConfigError, UnicodeDecodeError, OSError) as exc:
        label = f"invalid {kind} config" if kind else "invalid config"
        _fail(path, label, exc.errors if isinstance(exc, ConfigError) else [str(exc)])
    with collecting_unresolved() as unresolved:
        try:
            config = known[name].load_text(text, path)
        except ConfigError as exc:
            secrets = [f"unreadable secret: {line}" for line in unresolved if not no_secrets]
            _fail(path, f"invalid {name} config", [*exc.errors, *secrets])
    if unresolved and not no_secrets:
        _fail(path, f"valid {name} config, but its secrets cannot be read (or pass --no-secrets)", unresolved)
    click.echo(f"# {path}: valid {name} config")
    click.echo(yaml.safe_dump(redacted(config), sort_keys=False), nl=False)


def _kind_of(document: Any, path: Path, known: dict[str, Any]) -> str:
    """The config kind a document is: told by its top-level keys, else by the file's name."""
    from powerplane.exporters.runtime.config import ConfigError

    fits = sorted(name for name, k in known.items() if _fits(document, k.schema))
    if len(fits) == 1:
        return fits[0]
    named = sorted(name for name in (fits or known) if name in path.name.lower())
    if len(named) == 1:
        return named[0]
    candidates = ", ".join(fits or sorted(known))
    keys = sorted(document) if isinstance(document, dict) else []
    shown = f"top-level keys {', '.join(map(repr, keys))}" if keys else "no top-level keys"
    raise ConfigError([f"cannot tell the kind of config ({shown}); pass --kind, one of: {candidates}"])


def _fits(document: Any, schema: Any) -> bool:
    """Whether the document's top level is what ``schema`` expects (deeper errors aside)."""
    from powerplane.exporters.runtime.config import validate

    if not isinstance(document, dict) or not document:
        return False
    return not any(error.startswith("(top level):") for error in validate(document, schema))


def _fail(path: str, label: str, lines: list[str]) -> NoReturn:
    click.echo(f"{path}: {label}:", err=True)
    for line in lines:
        click.echo(f"  {line.removeprefix(path + ': ')}", err=True)
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
