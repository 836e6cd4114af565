"""The Redfish exporter process: ``make_server`` and ``powerplane exporter redfish``."""

from __future__ import annotations

from typing import Any

import click

from ..runtime import ExporterServer, run
from ..runtime.cli import WebOptions, config_option, web_options
from ..runtime.state import Clock
from .config import KIND, RedfishConfig
from .prober import RedfishProber

DEFAULT_PORT = 9873


def make_server(config: RedfishConfig, clock: Clock | None = None, **kwargs: Any) -> ExporterServer:
    """The Redfish exporter for ``config`` (``clock`` drives state expiry; tests inject one)."""
    prober = RedfishProber(config, clock)
    timeout = max(m.timeout for m in config.policy.modules.values())
    server = ExporterServer(
        "redfish",
        prober=prober,
        timeout=timeout,
        description="Node power, limits, thermals and health from BMCs through Redfish",
        **kwargs,
    )
    server.registry.register(prober)
    return server


@click.command("redfish")
@config_option(KIND, help="Redfish exporter config (YAML).")
@web_options(DEFAULT_PORT)
def command(web: WebOptions, config: RedfishConfig) -> None:
    """Multi-target Redfish exporter (Dell iDRAC and other BMCs): /probe?target=&module=&auth=."""
    run(make_server(config, web_config=web.web_config), web.listen_address)
