"""The GPU exporter process: ``make_server`` and ``powerplane exporter gpu``."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..runtime import Collector, ExporterServer, run
from ..runtime.cli import WebOptions, web_options
from ..runtime.config import option_defaults
from ..runtime.logs import log
from .attribution import Attribution, JobCollector, PodCollector
from .collectors import AbsentCollector, Gpu, GpuCollector
from .config import NAMINGS, GpuOptions
from .nvml import Nvml
from .xid import XidWatcher

logger = logging.getLogger("powerplane.gpu")

DEFAULT_PORT = 9872


def _collectors(nvml: Nvml, options: GpuOptions, hostname: str | None) -> tuple[list[Any], list[Any]]:
    """The collector of the GPUs NVML reports now (and of pods and jobs), and the hooks that stop
    what they started."""
    attribution = Attribution()
    shutdown: list[Callable[[], Any]] = []
    watcher = XidWatcher(nvml) if options.xid_events else None
    if watcher is not None:
        watcher.start()
        shutdown.append(watcher.stop)
    host = hostname or os.environ.get("NODE_NAME") or socket.gethostname()
    collectors: list[Collector[Any]] = []
    if nvml.count:
        gpus = [Gpu(nvml, i, watcher) for i in range(nvml.count)]
        collectors.append(GpuCollector(gpus, options.namings, attribution, host))
    if options.pod_resources_socket:
        collectors.append(
            PodCollector(nvml, options.pod_resources_socket, attribution, options.pod_resources)
        )
    if options.job_mapping_dir:
        collectors.append(JobCollector(nvml, Path(options.job_mapping_dir), attribution))
    shutdown.append(nvml.shutdown)
    return collectors, shutdown


def make_server(
    options: GpuOptions | None = None, *, hostname: str | None = None, **kwargs: Any
) -> ExporterServer:
    """The GPU exporter.  NVML is initialised here; without it the exporter serves no GPU data."""
    options = options or GpuOptions()
    nvml = Nvml()
    collectors: list[Collector[Any]]
    shutdown: list[Callable[[], Any]] = []
    if nvml.init():
        collectors, shutdown = _collectors(nvml, options, hostname)
        log(logger, logging.INFO, "NVML ready", gpus=nvml.count, driver=nvml.driver_version)
    else:
        log(logger, logging.INFO, "no GPUs: NVML is not available", err=nvml.error)
        collectors = [AbsentCollector(nvml.error)]

    async def close() -> None:
        for hook in shutdown:
            await asyncio.to_thread(hook)

    server = ExporterServer(
        "gpu",
        collectors=collectors,
        description="NVIDIA GPUs through NVML",
        on_shutdown=[close],
        **kwargs,
    )
    server.nvml = nvml  # type: ignore[attr-defined]  # for tests and the benchmark
    return server


@click.command("gpu")
@click.option(
    "--naming",
    "namings",
    multiple=True,
    type=click.Choice(NAMINGS),
    **option_defaults(GpuOptions, "namings"),
)
@click.option(
    "--pod-resources.socket", "pod_resources_socket", **option_defaults(GpuOptions, "pod_resources_socket")
)
@click.option(
    "--hpc-job-mapping.dir",
    "job_mapping_dir",
    envvar="DCGM_HPC_JOB_MAPPING_DIR",
    **option_defaults(GpuOptions, "job_mapping_dir"),
)
@click.option("--xid-events/--no-xid-events", "xid_events", **option_defaults(GpuOptions, "xid_events"))
@web_options(DEFAULT_PORT)
def command(web: WebOptions, **options: Any) -> None:
    """NVIDIA GPU power, energy, thermals, clocks and errors through NVML."""
    run(make_server(GpuOptions(**options), web_config=web.web_config), web.listen_address)
