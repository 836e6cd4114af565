"""Command-line options every exporter shares, in the Prometheus exporters' spelling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .config import ConfigError
from .logs import setup_logging
from .webconfig import KIND as WEB_KIND
from .webconfig import WebConfig

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class WebOptions:
    listen_address: str
    web_config: WebConfig


def web_options(default_port: int) -> Callable[[F], F]:
    """Add ``--web.listen-address``, ``--web.config.file``, ``--log.level`` and ``--log.format``.

    The decorated command receives one ``web: WebOptions`` argument; logging is set up before it
    runs, and a bad web config exits with every error listed.
    """

    def decorate(func: F) -> F:
        def wrapper(
            listen_address: str, web_config_file: str | None, log_level: str, log_format: str, **kwargs: Any
        ) -> Any:
            setup_logging(log_level, log_format)
            try:
                web_config = WEB_KIND.load(web_config_file) if web_config_file else WebConfig()
            except ConfigError as exc:
                raise click.ClickException(f"invalid web config:\n{exc}") from None
            return func(web=WebOptions(listen_address, web_config), **kwargs)

        wrapper.__name__ = func.__name__
        wrapper.__doc__ = func.__doc__
        for option in reversed(
            [
                click.option(
                    "--web.listen-address",
                    "listen_address",
                    default=f":{default_port}",
                    show_default=True,
                    help="Address to listen on (HOST:PORT).",
                ),
                click.option(
                    "--web.config.file",
                    "web_config_file",
                    type=click.Path(dir_okay=False),
                    help="Web config file (exporter-toolkit format) enabling TLS and/or basic auth.",
                ),
                click.option(
                    "--log.level",
                    "log_level",
                    default="info",
                    show_default=True,
                    type=click.Choice(["debug", "info", "warn", "error"]),
                ),
                click.option(
                    "--log.format",
                    "log_format",
                    default="logfmt",
                    show_default=True,
                    type=click.Choice(["logfmt", "json"]),
                ),
            ]
        ):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


def config_option(kind: Any, help: str, flag: str = "--config") -> Callable[[F], F]:
    """A required ``--config FILE`` option that hands the command the loaded, validated config.

    A bad file stops the command before it serves anything, with every error listed.
    """

    def load(_ctx: click.Context, _param: click.Parameter, value: str) -> Any:
        return load_or_exit(kind, value)

    return click.option(
        flag, "config", required=True, type=click.Path(dir_okay=False), callback=load, help=help
    )


def load_or_exit(kind: Any, path: str) -> Any:
    """Load a config file of ``kind`` or exit with every error it has."""
    try:
        return kind.load(path)
    except ConfigError as exc:
        raise click.ClickException(f"invalid {kind.name} config:\n{exc}") from None
