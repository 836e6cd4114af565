"""``powerplane demo``: a small simulated cluster, every exporter against it, Prometheus and Alertmanager.

The lab's physical model (``powerplane.lab.model``) is the cluster: one model per node that its
powercap tree, its fake GPUs, its BMC, the PDU outlets feeding it and the cooler of its rack all
read, so every source agrees as on real hardware and caps show everywhere.  Each component
declares its part of the demo (``Component.demo``, see ``powerplane.components``): an async
function that starts its simulated hardware and exporters through the ``DemoContext``, registers
their cleanup on the context's exit stack and adds the Prometheus scrape jobs that read them.
Everything listens on 127.0.0.1, on ephemeral ports or, with ``--base-port``, on fixed ones.
When the Debian ``prometheus`` binary is present a real Prometheus scrapes it all with the
shipped rules (``powerplane.resources.rule_files()``, written to the work directory) and sends
alerts to a real Alertmanager (``prometheus-alertmanager``); ``--inject`` adds the lab's
faults; Ctrl-C (or ``--duration``) stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from powerplane import components, resources
from powerplane.exporters.runtime import ExporterServer, log, setup_logging

from . import procs
from .model import ClusterModel, demo_layout

logger = logging.getLogger("powerplane.demo")

#: With ``--base-port``: Prometheus and Alertmanager first, then the parts in start order.
PROMETHEUS_OFFSET, ALERTMANAGER_OFFSET, PARTS_OFFSET = 0, 1, 10


class DemoError(click.ClickException):
    """The demo cannot start as asked (a fixed port is taken, say)."""


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
    #: Fixed ports from here on (``--base-port``), or None for ephemeral ones.
    base_port: int | None = None
    model: ClusterModel | None = None
    _next_offset: int = PARTS_OFFSET

    def cluster(self) -> ClusterModel:
        """The lab's physical model of these nodes, started on first use and stopped at exit."""
        if self.model is None:
            self.model = ClusterModel(demo_layout(self.nodes), self.workdir).start()
            self.stack.callback(self.model.stop)
        return self.model

    def port(self, offset: int | None = None) -> int:
        """A port for the next server: ``base_port`` + the next offset, or an ephemeral one."""
        if self.base_port is None:
            return procs.free_port()
        if offset is None:
            offset, self._next_offset = self._next_offset, self._next_offset + 1
        port = self.base_port + offset
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                raise DemoError(
                    f"port {port} (--base-port {self.base_port} + {offset}) is not free: {exc.strerror}"
                ) from None
        return port

    async def serve(self, server: ExporterServer, label: str) -> str:
        """Start an exporter on 127.0.0.1, stop it at exit; returns its host:port."""
        host, port = await server.start("127.0.0.1", self.port() if self.base_port is not None else 0)
        self.stack.push_async_callback(server.stop)
        address = f"{host}:{port}"
        self.urls.append((label, f"{server.scheme}://{address}/"))
        return address


DemoPart = Callable[[DemoContext], Awaitable[None]]


async def rapl_component(ctx: DemoContext) -> None:
    """A RAPL exporter per node, on the node's powercap tree (two Intel packages, driven by the model)."""
    from powerplane.exporters.rapl.exporter import make_server

    model = ctx.cluster()
    targets = []
    for node in ctx.nodes:
        lab = model.nodes[node].powercap
        address = await ctx.serve(make_server(lab.root), f"RAPL exporter ({node})")
        targets.append({"targets": [address], "labels": {"node": node}})
    ctx.shared["powercap"] = {node: model.nodes[node].powercap for node in ctx.nodes}
    ctx.scrape_configs.append({"job_name": "powerplane-rapl", "static_configs": targets})


async def start_parts(ctx: DemoContext) -> None:
    """Start every component's demo part, in the registry's order."""
    ctx.cluster()
    for ref in components.demo_parts():
        part: DemoPart = components.resolve(ref)
        await part(ctx)


def rule_files_on_disk(folder: Path) -> list[Path]:
    """The shipped rule files written to ``folder``, for a Prometheus to load.

    Written out rather than referenced: a wheel's resources need not be files on disk (a zip
    import), and the copy keeps the run's rules fixed while the checkout changes underneath.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rule_file in resources.rule_files():
        target = folder / rule_file.name
        target.write_bytes(rule_file.read_bytes())
        written.append(target)
    return written


async def _start_alerting(ctx: DemoContext, scrape_interval: str) -> None:
    """Alertmanager (when installed) and Prometheus with the rules, sending it the alerts."""
    alertmanagers: list[str] = []
    if procs.find_binary("alertmanager"):
        am = procs.Alertmanager(ctx.workdir / "alertmanager", port=ctx.port(ALERTMANAGER_OFFSET))
        await asyncio.to_thread(am.start)
        ctx.stack.callback(am.stop)
        alertmanagers.append(am.address)
        ctx.shared["alertmanager"] = am
    else:
        log(
            logger,
            logging.WARNING,
            "alertmanager not found; install 'prometheus-alertmanager' to route alerts",
        )
    rule_files = list(ctx.rule_files) or rule_files_on_disk(ctx.workdir / "rules")
    prom = procs.Prometheus(
        ctx.workdir / "prometheus",
        ctx.scrape_configs,
        rule_files,
        alertmanagers,
        scrape_interval=scrape_interval,
        evaluation_interval=scrape_interval,
        port=ctx.port(PROMETHEUS_OFFSET),
    )
    await asyncio.to_thread(prom.start)
    ctx.stack.callback(prom.stop)
    ctx.shared["prometheus"] = prom
    # Debian's Prometheus 2.42 serves the classic UI only (/graph redirects to /classic/graph).
    ctx.urls += [
        ("Prometheus graph", f"{prom.url}/graph"),
        ("Prometheus alerts", f"{prom.url}/classic/alerts"),
        ("Prometheus targets", f"{prom.url}/classic/targets"),
    ]
    if alertmanagers:
        ctx.urls.append(("Alertmanager", f"http://{alertmanagers[0]}/#/alerts"))


async def start_demo(
    stack: contextlib.AsyncExitStack,
    workdir: Path,
    nodes: int = 3,
    with_prometheus: bool = True,
    base_port: int | None = None,
    inject: Sequence[str] = (),
    scrape_interval: str = "5s",
) -> DemoContext:
    """Start the lab, every component's part and (when installed) Prometheus and Alertmanager."""
    from .faults import inject_faults

    ctx = DemoContext(Path(workdir), [f"node-{i + 1:02d}" for i in range(nodes)], stack, base_port=base_port)
    await start_parts(ctx)
    if with_prometheus and procs.find_binary("prometheus"):
        await _start_alerting(ctx, scrape_interval)
    elif with_prometheus:
        log(
            logger,
            logging.WARNING,
            "prometheus not found; install the Debian package 'prometheus' "
            "to have the demo scraped and its rules evaluated",
        )
    ctx.shared["faults"] = await inject_faults(ctx, inject)
    return ctx


def _print_urls(ctx: DemoContext, duration: float) -> None:
    click.echo(f"powerplane demo: {len(ctx.nodes)} simulated nodes in {ctx.workdir}")
    width = max(len(name) for name, _ in ctx.urls)
    for name, url in ctx.urls:
        click.echo(f"  {name:<{width}}  {url}")
    from .faults import standing_alerts

    for line in ctx.shared.get("faults", []):
        click.echo(f"  injected: {line}")
    for alert, why in standing_alerts(ctx).items():
        click.echo(f"  standing alert: {alert} ({why})")
    click.echo("Press Ctrl-C to stop." if not duration else f"Running for {duration:.0f}s.")


async def run_demo(
    nodes: int = 3,
    duration: float = 0.0,
    workdir: Path | None = None,
    with_prometheus: bool = True,
    ready: Callable[[DemoContext], None] | None = None,
    base_port: int | None = None,
    inject: Sequence[str] = (),
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
            ctx = await start_demo(stack, workdir, nodes, with_prometheus, base_port, inject)
            _print_urls(ctx, duration)
            if ready is not None:
                ready(ctx)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration or None)
        click.echo("powerplane demo: stopped")
    return ctx


def _fault_names() -> list[str]:
    from .faults import FAULTS

    return [*FAULTS, "all"]


@click.command("demo")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 64), help="Simulated nodes.")
@click.option(
    "--duration", default=0.0, type=click.FloatRange(0), help="Stop after this many seconds (0: never)."
)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), help="Keep the lab's files here."
)
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65000),
    help="Fixed ports: Prometheus on this one, Alertmanager on the next, the exporters from +10 on.",
)
@click.option(
    "--inject",
    multiple=True,
    type=click.Choice(_fault_names()),
    help="Inject a lab fault (repeatable): hot-gpu, dead-bmc, rack-over-budget, leak, or all.",
)
@click.option(
    "--no-prometheus", is_flag=True, help="Do not start Prometheus and Alertmanager even when installed."
)
@click.option(
    "--log.level", "log_level", default="warn", type=click.Choice(["debug", "info", "warn", "error"])
)
def command(
    nodes: int,
    duration: float,
    workdir: Path | None,
    base_port: int | None,
    inject: tuple[str, ...],
    no_prometheus: bool,
    log_level: str,
) -> None:
    """Start a simulated cluster with every exporter (and Prometheus and Alertmanager when installed)."""
    setup_logging(log_level)
    asyncio.run(run_demo(nodes, duration, workdir, not no_prometheus, base_port=base_port, inject=inject))
