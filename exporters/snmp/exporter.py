"""The SNMP exporter process: ``make_server`` and ``powerplane exporter snmp``."""

from __future__ import annotations

from typing import Any

import click

from ..runtime import ExporterServer, run
from ..runtime.cli import WebOptions, config_option, web_options
from ..runtime.state import Clock
from .collectors import SessionFactory
from .config import KIND, SnmpConfig
from .engine import GufoSession
from .prober import SnmpProber

DEFAULT_PORT = 9874


def make_server(
    config: SnmpConfig,
    session_factory: SessionFactory = GufoSession,
    clock: Clock | None = None,
    **kwargs: Any,
) -> ExporterServer:
    """The SNMP exporter for ``config`` (``clock`` drives state expiry; tests inject one)."""
    return ExporterServer(
        "snmp",
        prober=SnmpProber(config, session_factory, clock),
        timeout=config.timeout,
        per_device_concurrency=config.per_device_concurrency,
        description="Metered PDUs and in-row coolers over SNMP (profiles: "
        + ", ".join(sorted(config.profiles))
        + ")",
        **kwargs,
    )


@click.command("snmp")
@config_option(KIND, help="SNMP exporter config (auths, targets, allow-list, extra profiles).")
@web_options(DEFAULT_PORT)
def command(web: WebOptions, config: SnmpConfig) -> None:
    """Metered PDUs and in-row coolers over SNMP (multi-target /probe)."""
    run(make_server(config, web_config=web.web_config), web.listen_address)
