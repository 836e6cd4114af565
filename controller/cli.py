"""``powerplane controller``: the node agent (``run``), one-shot decisions, restore and the CRD."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import yaml

from powerplane.exporters.runtime import (
    ConfigError,
    ExporterServer,
    log,
    parse_listen_address,
    resolve_secret,
    setup_logging,
)
from powerplane.exporters.runtime.cli import WebOptions, web_options

from .actuators import Actuators, load_nvml
from .agent import Agent, AgentCollector, Backend, LocalBackend, load_policy_document
from .policy import PolicyError
from .signals import CurveSignal, Signal, SignalError
from .webhook import GPU_TEMPERATURE_ALERT, WEBHOOK_PATH, GpuSteps, WebhookReceiver

logger = logging.getLogger("powerplane.controller")

DEFAULT_PORT = 9877
DEFAULT_STATE_FILE = "/var/lib/powerplane/controller-state.json"
TOKEN_ENV = "POWERPLANE_WEBHOOK_TOKEN"  # noqa: S105 - the variable name, not a token


def _node(node: str | None) -> str:
    return node or os.environ.get("NODE_NAME") or socket.gethostname()


@click.group("controller")
def command() -> None:
    """The power-cap node agent."""


def _sysfs(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--path.sysfs`` as the RAPL exporter spells it, with ``--sysfs`` as a hidden deprecated alias."""

    @functools.wraps(command)
    def wrapper(*args: Any, sysfs: Path | None, sysfs_alias: Path | None, **kwargs: Any) -> Any:
        if sysfs_alias is not None:
            if sysfs is not None:
                raise click.UsageError("give --path.sysfs only (--sysfs is its deprecated old name)")
            log(logger, logging.WARNING, "--sysfs is deprecated: use --path.sysfs")
        return command(*args, sysfs=sysfs or sysfs_alias or Path("/sys"), **kwargs)

    wrapper = click.option(
        "--sysfs", "sysfs_alias", hidden=True, type=click.Path(file_okay=False, path_type=Path)
    )(wrapper)
    return click.option(
        "--path.sysfs",
        "sysfs",
        show_default="/sys",
        type=click.Path(file_okay=False, path_type=Path),
        help="sysfs mount point (the host's /sys when running in a container).",
    )(wrapper)


_state = click.option(
    "--state-file",
    default=DEFAULT_STATE_FILE,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Host file keeping the original limits (must survive a restart: a hostPath).",
)
_gpu = click.option("--no-gpu", is_flag=True, help="Do not use NVML even when it is present.")


async def serve_agent(
    agent: Agent, server: ExporterServer, listen_address: str, stop: asyncio.Event | None = None
) -> None:
    """Serve metrics (and the webhook) and run the agent until SIGINT/SIGTERM; then restore."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, port = parse_listen_address(listen_address)
    bound = await server.start(host, port)
    log(
        logger,
        logging.INFO,
        "listening",
        exporter="controller",
        address=f"{bound[0]}:{bound[1]}",
        node=agent.node,
    )
    try:
        await agent.run(stop)
    finally:
        errors = await agent.shutdown()
        await server.stop()
        log(logger, logging.INFO, "stopped", restored=not errors)


@command.command("run")
@click.option("--node", help="This node's name (default: $NODE_NAME).")
@_sysfs
@_state
@_gpu
@click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), help="Kubeconfig (default: in-cluster config)."
)
@click.option(
    "--local-policy",
    "local_policies",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Local mode: read policies from these files and do not talk to Kubernetes.",
)
@click.option("--dry-run", is_flag=True, help="Decide and publish, but write no limits.")
@click.option(
    "--webhook.token-file",
    "token_file",
    type=click.Path(dir_okay=False),
    help=f"Bearer token of the Alertmanager webhook (or ${TOKEN_ENV}); no token: no webhook.",
)
@click.option(
    "--webhook.gpu-step-alert",
    "gpu_step_alerts",
    multiple=True,
    default=(GPU_TEMPERATURE_ALERT,),
    show_default=True,
    help="Alert (by name, with a gpu label) that lowers that GPU's cap by a step; repeatable.",
)
@click.option(
    "--webhook.gpu-step-watts",
    "gpu_step_watts",
    default=100.0,
    show_default=True,
    type=click.FloatRange(1, 100_000),
    help="How much one alert lowers the GPU's cap.",
)
@click.option(
    "--webhook.gpu-step-max-watts",
    "gpu_step_max_watts",
    default=200.0,
    show_default=True,
    type=click.FloatRange(1, 100_000),
    help="The most all alerts together lower one GPU's cap.",
)
@click.option(
    "--webhook.gpu-step-seconds",
    "gpu_step_seconds",
    default=1800.0,
    show_default=True,
    type=click.FloatRange(1, 7 * 86400),
    help="How long a step lasts unless its alerts resolve earlier.",
)
@click.option(
    "--poll-seconds", default=30.0, show_default=True, type=click.FloatRange(0.1), help="Policy poll."
)
@web_options(DEFAULT_PORT)
def run_command(
    web: WebOptions,
    node: str | None,
    sysfs: Path,
    state_file: Path,
    no_gpu: bool,
    kubeconfig: str | None,
    local_policies: tuple[Path, ...],
    dry_run: bool,
    token_file: str | None,
    gpu_step_alerts: tuple[str, ...],
    gpu_step_watts: float,
    gpu_step_max_watts: float,
    gpu_step_seconds: float,
    poll_seconds: float,
) -> None:
    """Cap this node's RAPL packages and GPUs by the matching PowerCapPolicy, every period."""
    name = _node(node)
    backend: Backend
    if local_policies:
        backend = LocalBackend(name, local_policies)
    else:
        from .kube import Kube

        backend = Kube.connect(name, kubeconfig)
    agent, server = build(
        name,
        backend,
        sysfs,
        state_file,
        None if no_gpu else load_nvml(),
        dry_run,
        poll_seconds,
        token_spec={"file": token_file}
        if token_file
        else ({"env": TOKEN_ENV} if TOKEN_ENV in os.environ else None),
        steps=GpuSteps(gpu_step_alerts, gpu_step_watts, gpu_step_max_watts, gpu_step_seconds),
        web=web,
    )
    asyncio.run(serve_agent(agent, server, web.listen_address))


def build(
    node: str,
    backend: Backend,
    sysfs: Path,
    state_file: Path,
    nvml: Any,
    dry_run: bool = False,
    poll_seconds: float = 30.0,
    token_spec: Mapping[str, str] | None = None,
    steps: GpuSteps | None = None,
    web: WebOptions | None = None,
) -> tuple[Agent, ExporterServer]:
    """An agent and its HTTP server (metrics, webhook when a token is configured)."""

    actuators = Actuators(sysfs, state_file, nvml)
    errors = actuators.recover()
    if errors:
        log(
            logger, logging.ERROR, "could not restore limits left by an earlier run", errors="; ".join(errors)
        )
    agent = Agent(node, backend, actuators, dry_run=dry_run, poll_seconds=poll_seconds)
    routes = []
    if token_spec:
        try:
            token = resolve_secret(token_spec, "webhook token")
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        receiver = WebhookReceiver(agent, token, steps or GpuSteps())
        routes.append(("POST", WEBHOOK_PATH, receiver.handle))
    server = ExporterServer(
        "controller",
        collectors=[AgentCollector(agent)],
        routes=routes,
        web_config=web.web_config if web else None,
        description=f"power-cap controller of node {node}",
    )
    return agent, server


@command.command("reconcile-once")
@click.option(
    "--policy", "policy_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_sysfs
@click.option(
    "--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Price curve file."
)
@click.option("--at", "at", help="ISO-8601 instant to decide for (default: now).")
@click.option("--signal-value", type=float, help="Act on this signal value instead of the policy's signal.")
@click.option("--dry-run", is_flag=True, help="Print the decisions; write nothing.")
@_state
@_gpu
@click.option("--node", help="Node name for the report (default: $NODE_NAME).")
def reconcile_once(
    policy_file: Path,
    sysfs: Path,
    prices: Path | None,
    at: str | None,
    signal_value: float | None,
    dry_run: bool,
    state_file: Path,
    no_gpu: bool,
    node: str | None,
) -> None:
    """Decide once for the policy in FILE and print the decisions as JSON."""
    # Warnings (a signal that cannot be read, a clamp) go to stderr with their fields.
    setup_logging("warning")
    if prices is not None and signal_value is not None:
        raise click.UsageError("give --prices or --signal-value, not both")
    try:
        instant = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else datetime.now(UTC)
    except ValueError:
        raise click.BadParameter(f"{at!r} is not an ISO-8601 instant", param_hint="--at") from None
    if instant.tzinfo is None:
        raise click.BadParameter("give a UTC offset (e.g. 2026-05-04T10:00:00Z)", param_hint="--at")
    try:
        instant = instant.astimezone(UTC)
    except OverflowError:
        raise click.BadParameter(f"{at!r} is out of range once in UTC", param_hint="--at") from None
    try:
        doc = load_policy_document(policy_file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    name = _node(node)
    backend = LocalBackend(name, documents=[doc])
    factory = None
    if prices is not None:
        curve_path = prices

        def factory(_spec: Mapping[str, Any], period: timedelta) -> Signal:
            return CurveSignal(curve_path, period)

    actuators = Actuators(sysfs, state_file, None if no_gpu else load_nvml())
    # A cap left by an earlier run stays; its recorded originals remain the ceiling and what
    # `restore` puts back (reading the capped limits as originals would lose them).
    actuators.state.load()
    agent = Agent(name, backend, actuators, dry_run=dry_run, clock=lambda: instant)
    if factory is not None:
        agent.signal_factory = factory
    try:
        outcome = asyncio.run(agent.reconcile(signal_value, use_override=signal_value is not None))
    except SignalError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(outcome.as_dict(), indent=2))
    if outcome.result == "failure":
        raise SystemExit(1)


@command.command("restore")
@_sysfs
@_state
@_gpu
def restore(sysfs: Path, state_file: Path, no_gpu: bool) -> None:
    """Put back the original limits recorded in the state file."""
    setup_logging("warning")
    actuators = Actuators(sysfs, state_file, None if no_gpu else load_nvml())
    if not actuators.state.load():
        click.echo("nothing to restore")
        return
    errors = actuators.restore()
    for error in errors:
        click.echo(error, err=True)
    if errors:
        raise SystemExit(1)
    click.echo("original limits restored")


@command.command("crd")
def crd() -> None:
    """Print the PowerCapPolicy CustomResourceDefinition."""
    from .kube import crd_manifest

    click.echo(yaml.safe_dump(crd_manifest(), sort_keys=False), nl=False)
