"""``powerplane status-page --config status.yml``: serve the public system-status page."""

from __future__ import annotations

import asyncio

import click

from powerplane.exporters.runtime import serve_until_signalled
from powerplane.exporters.runtime.cli import WebOptions, config_option, web_options
from powerplane.exporters.runtime.server import event_loop_factory

from .config import KIND, StatusPageConfig
from .page import StatusPage
from .server import DEFAULT_PORT, StatusServer


@click.command("status-page")
@config_option(KIND, help="Status page config (YAML).")
@web_options(DEFAULT_PORT)
def command(web: WebOptions, config: StatusPageConfig) -> None:
    """Serve the public system-status page (HTML and JSON) for the clusters' users."""
    server = StatusServer(StatusPage(config), web_config=web.web_config)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve_until_signalled([(server, web.listen_address)]))
