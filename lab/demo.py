"""``powerplane demo``: a small simulated cluster, every exporter against it, and a real Prometheus.

Each component declares its part of the demo (``Component.demo``, see ``powerplane.components``):
an async function that starts its simulated hardware and exporters through the ``DemoContext``,
registers their cleanup on the context's exit stack
and adds the Prometheus scrape jobs that read them.  Everything listens on 127.0.0.1 on
ephemeral ports.  When the Debian ``prometheus`` binary is present a real Prometheus scrapes it
all (with the rules from ``rules/`` when they exist); Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from powerplane import components
from powerplane.exporters.runtime import ExporterServer, log, setup_logging

from . import procs
from .powercap import PowercapLab, diurnal_load, intel_server

logger = logging.getLogger("powerplane.demo")


@dataclass
class DemoContext:
    """What components share: the work directory, the nodes and what Prometheus should scrape."""

    workdir: Path
    nodes: list[str]
    stack: contextlib.AsyncExitStack
    scrape_configs: list[dict[str, Any]] = field(default_factory=list)
    rule_files: list[Path] = field(default_factory=list)
    urls: list[tuple[str, str]] = field(default_factory=list)
    #: Objects components publish for later components (e.g. the node → powercap lab map).
    shared: dict[str, Any] = field(default_factory=dict)

    async def serve(self, server: ExporterServer, label: str) -> str:
        """Start an exporter on 127.0.0.1, stop it at exit; returns its host:port."""
        host, port = await server.start("127.0.0.1", 0)
        self.stack.push_async_callback(server.stop)
        address = f"{host}:{port}"
        self.urls.append((label, f"{server.scheme}://{address}/"))
        return address


DemoPart = Callable[[DemoContext], Awaitable[None]]


async def rapl_component(ctx: DemoContext) -> None:
    """A two-socket Intel powercap tree per node, and a RAPL exporter for each."""
    from powerplane.exporters.rapl.exporter import make_server

    targets = []
    labs: dict[str, PowercapLab] = {}
    for i, node in enumerate(ctx.nodes):
        lab = PowercapLab(
            ctx.workdir / node / "sys",
            intel_server(sockets=2, package_watts=160.0 + 20 * i),
            load=diurnal_load(period_s=600.0, depth=0.25),
        ).create()
        lab.start()
        ctx.stack.callback(lab.stop)
        labs[node] = lab
        address = await ctx.serve(make_server(lab.root), f"RAPL exporter ({node})")
        targets.append({"targets": [address], "labels": {"node": node}})
    ctx.shared["powercap"] = labs
    ctx.scrape_configs.append({"job_name": "powerplane-rapl", "static_configs": targets})


async def start_parts(ctx: DemoContext) -> None:
    """Start every component's demo part, in the registry's order."""
    for ref in components.demo_parts():
        part: DemoPart = components.resolve(ref)
        await part(ctx)


def _rules_dir() -> Path | None:
    # Rules ship in the source tree (rules/) next to the package's links.
    candidate = Path(__file__).resolve().parent.parent / "rules"
    return candidate if candidate.is_dir() else None


async def run_demo(
    nodes: int = 3,
    duration: float = 0.0,
    workdir: Path | None = None,
    with_prometheus: bool = True,
    ready: Callable[[DemoContext], None] | None = None,
) -> DemoContext:
    """Run the demo until ``duration`` seconds pass (0: until SIGINT/SIGTERM)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.ExitStack() as sync_stack:
        if workdir is None:
            workdir = Path(sync_stack.enter_context(tempfile.TemporaryDirectory(prefix="powerplane-demo-")))
        async with contextlib.AsyncExitStack() as stack:
            ctx = DemoContext(Path(workdir), [f"node-{i + 1:02d}" for i in range(nodes)], stack)
            await start_parts(ctx)
            prometheus_bin = procs.find_binary("prometheus") if with_prometheus else None
            if prometheus_bin:
                rules = _rules_dir()
                rule_files = list(ctx.rule_files) or (sorted(rules.glob("*.yaml")) if rules else [])
                prom = procs.Prometheus(
                    ctx.workdir / "prometheus",
                    ctx.scrape_configs,
                    rule_files,
                    scrape_interval="5s",
                    evaluation_interval="5s",
                )
                await asyncio.to_thread(prom.start)
                stack.callback(prom.stop)
                ctx.urls.append(("Prometheus", prom.url + "/"))
                ctx.shared["prometheus"] = prom
            elif with_prometheus:
                log(
                    logger,
                    logging.WARNING,
                    "prometheus not found; install the Debian package 'prometheus' "
                    "to have the demo scraped and its rules evaluated",
                )
            click.echo(f"powerplane demo: {nodes} simulated nodes in {ctx.workdir}")
            width = max(len(name) for name, _ in ctx.urls)
            for name, url in ctx.urls:
                click.echo(f"  {name:<{width}}  {url}")
            click.echo("Press Ctrl-C to stop." if not duration else f"Running for {duration:.0f}s.")
            if ready is not None:
                ready(ctx)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration or None)
        click.echo("powerplane demo: stopped")
    return ctx


@click.command("demo")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 64), help="Simulated nodes.")
@click.option(
    "--duration", default=0.0, type=click.FloatRange(0), help="Stop after this many seconds (0: never)."
)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), help="Keep the lab's files here."
)
@click.option("--no-prometheus", is_flag=True, help="Do not start Prometheus even when it is installed.")
@click.option(
    "--log.level", "log_level", default="warn", type=click.Choice(["debug", "info", "warn", "error"])
)
def command(nodes: int, duration: float, workdir: Path | None, no_prometheus: bool, log_level: str) -> None:
    """Start a simulated cluster with every exporter (and Prometheus when installed)."""
    setup_logging(log_level)
    asyncio.run(run_demo(nodes, duration, workdir, not no_prometheus))
