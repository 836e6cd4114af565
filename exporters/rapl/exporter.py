"""The RAPL exporter process: ``make_server`` and ``powerplane exporter rapl``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from ..runtime import (
    ExporterServer,
    run,
)
from ..runtime.cli import WebOptions, web_options
from ..runtime.config import option_defaults, setting
from .collectors import RaplEnergyCollector, RaplLimitsCollector
from .powercap import PowercapTree

DEFAULT_PORT = 9871


@dataclass(frozen=True)
class RaplOptions:
    sysfs: str = setting("/sys", doc="sysfs mount point (the host's /sys when running in a container).")


def make_server(sysfs: Path, **kwargs: object) -> ExporterServer:
    """The RAPL exporter for the powercap tree under ``sysfs``."""
    tree = PowercapTree(sysfs)
    return ExporterServer(
        "rapl",
        collectors=[RaplEnergyCollector(tree), RaplLimitsCollector(tree)],
        description=f"CPU energy and power limits from {tree.root}",
        **kwargs,  # type: ignore[arg-type]
    )


@click.command("rapl")
@click.option(
    "--path.sysfs",
    "sysfs",
    type=click.Path(file_okay=False),
    **option_defaults(RaplOptions, "sysfs"),
)
@web_options(DEFAULT_PORT)
def command(web: WebOptions, sysfs: str) -> None:
    """CPU energy counters and power limits from powercap (RAPL)."""
    run(make_server(Path(sysfs), web_config=web.web_config), web.listen_address)
