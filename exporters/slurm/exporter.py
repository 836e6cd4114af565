"""The Slurm exporter process: ``powerplane exporter slurm --config slurm.yml``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..runtime import Collector, ExporterServer, run
from ..runtime.cli import WebOptions, config_option, web_options
from .collectors import (
    JobCollector,
    NodeCollector,
    PartitionCollector,
    ReservationCollector,
    SchedulerCollector,
)
from .config import KIND, SlurmConfig
from .sources import Snapshots, Source, make_source

DEFAULT_PORT = 9878


def make_collectors(config: SlurmConfig, snapshots: Snapshots) -> list[Collector[Any]]:
    """The collectors ``config.collectors`` names, sharing ``snapshots``."""
    build: dict[str, Callable[[], Collector[Any]]] = {
        "scheduler": lambda: SchedulerCollector(snapshots, config.limits, config.source),
        "partitions": lambda: PartitionCollector(snapshots),
        "nodes": lambda: NodeCollector(snapshots, config.limits),
        "jobs": lambda: JobCollector(snapshots, config.jobs, config.privacy),
        "reservations": lambda: ReservationCollector(snapshots),
    }
    return [build[name]() for name in config.collectors]


def make_server(config: SlurmConfig, source: Source | None = None, **kwargs: Any) -> ExporterServer:
    """The exporter for ``config`` (``source``: another source, for tests and benchmarks)."""
    rest = config.slurmrestd
    source = source or make_source(config.source, rest, config.cli, config.limits, config.timeout)
    snapshots = Snapshots(source, config.min_interval)
    where = rest.url if config.source == "slurmrestd" and rest else "the Slurm commands"
    server = ExporterServer(
        "slurm",
        collectors=make_collectors(config, snapshots),
        timeout=config.timeout,
        description=f"Slurm's view (partitions, nodes, queues, reservations, jobs) from {where}",
        on_shutdown=[snapshots.close],
        **kwargs,
    )
    server.snapshots = snapshots  # type: ignore[attr-defined]
    return server


@click.command("slurm")
@config_option(KIND, "The exporter's configuration (YAML, docs/slurm.md).")
@web_options(DEFAULT_PORT)
def command(web: WebOptions, config: SlurmConfig) -> None:
    """Serve Slurm's partitions, node states, queues, reservations and job → node/GPU allocations."""
    run(make_server(config, web_config=web.web_config), web.listen_address)
