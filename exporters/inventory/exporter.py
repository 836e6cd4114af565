"""The inventory exporter process and ``powerplane inventory sd``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..runtime import (
    ExporterServer,
    run,
)
from ..runtime.cli import WebOptions, load_or_exit, web_options
from .collectors import InventoryCollector, InventoryFile
from .config import KIND, Inventory
from .sd import write_file_sd

DEFAULT_PORT = 9876


def make_server(path: Path, inventory: Inventory | None = None, **kwargs: Any) -> ExporterServer:
    """The inventory exporter serving ``path`` (``inventory``: the already-loaded contents)."""
    return ExporterServer(
        "inventory",
        collectors=[InventoryCollector(InventoryFile(path, inventory))],
        description=f"Site inventory from {path}",
        **kwargs,
    )


_FILE = click.option(
    "--config",
    "--file",
    "file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The inventory (YAML); --file is the former spelling.",
)


@click.command("inventory")
@_FILE
@web_options(DEFAULT_PORT)
def command(web: WebOptions, file: Path) -> None:
    """Serve the inventory as info metrics (node → rack/row/cluster, PDU outlets, rack budgets)."""
    inventory = load_or_exit(KIND, str(file))
    run(make_server(file, inventory, web_config=web.web_config), web.listen_address)


@click.group("inventory")
def group() -> None:
    """Work with the site inventory."""


@group.command("sd")
@_FILE
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the file_sd JSON files.",
)
def sd_command(file: Path, out: Path) -> None:
    """Write Prometheus file_sd JSON for the Redfish and SNMP probes (redfish, snmp-pdu, snmp-cooler)."""
    inventory = load_or_exit(KIND, str(file))
    for path in write_file_sd(inventory, out):
        click.echo(f"wrote {path}")
