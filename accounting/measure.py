"""``powerplane measure -- CMD``: one run of a program, its energy (RAPL zones, NVML GPUs), cost and CO2.

The command runs with this process's standard input, output and error; its exit status becomes
ours (128 + N when a signal N ended it).  Signals sent to ``powerplane measure`` (``kill -INT``,
``kill -TERM``, …) are passed on to the command; a Ctrl-C at a terminal already reaches the command
(same process group) and is not sent twice.  The summary goes to standard error::

    powerplane measure: python train.py
      duration 12.031 s, exit status 0, 121 samples every 0.1 s on node-01
      domain                         energy (J)    avg (W)   peak (W)
      package-0                          2215.4      184.1      201.9
      gpu0 (NVIDIA H100 80GB HBM3)       4632.0      385.0      385.0
      total                              6847.4      569.1   (package + dram zones and GPUs)
      energy 0.001902 kWh; cost 0.000234 EUR at the day-ahead price of 1 period(s); CO2 0.571 g
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click

from powerplane import __version__

from .measure_sampling import Gpus, Rapl, Sampler
from .measure_store import Tee, Totals, Trace, read_trace, summary

#: Signals passed on to the command.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
#: si_code of a signal sent by kill(2), sigqueue(3) or tgkill(2): from a process, not the terminal.
_FROM_PROCESS = (0, -1, -6)
#: The body of a market curve answer read at most.
CURVE_LIMIT = 8 << 20


def parse_interval(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration such as 0.1s or 100ms", param_hint="--interval")
    value = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    if not 0.001 <= value <= 3600:
        raise click.BadParameter("the interval must lie between 1 ms and 1 h", param_hint="--interval")
    return value


class CommandError(Exception):
    """The command could not be started: 127 when it does not exist, 126 when it cannot run (as shells)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Child:
    """The measured command: spawned with an empty signal mask, waited for, signalled."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        path = shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]
        if path is None or not os.path.exists(path):
            raise CommandError(f"command not found: {argv[0]}", 127)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise CommandError(f"cannot execute {argv[0]}: permission denied or not a program", 126)
        try:
            # posix_spawn, not fork + preexec_fn: the sampling thread may already run.
            self.pid = os.posix_spawn(
                path, argv, os.environ, setsigmask=(), setsigdef=(signal.SIGPIPE, signal.SIGXFSZ)
            )
        except OSError as exc:
            raise CommandError(f"cannot execute {argv[0]}: {exc.strerror}", 126) from None
        self.status: int | None = None

    def poll(self) -> int | None:
        if self.status is None:
            pid, raw = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = os.waitstatus_to_exitcode(raw)
        return self.status

    def exit_code(self) -> int:
        status = self.status if self.status is not None else 1
        return 128 - status if status < 0 else status


def supervise(child: Child) -> None:
    """Wait for the command, passing on the signals sent to us (the mask blocks them meanwhile)."""
    waited = {*FORWARDED, signal.SIGCHLD}
    while child.poll() is None:
        info = signal.sigtimedwait(waited, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_code in _FROM_PROCESS:
            try:
                os.kill(child.pid, info.si_signo)
            except ProcessLookupError:
                pass


async def fetch_market(
    url: str, area: str | None, start: float, end: float
) -> tuple[list[tuple[float, float, float, float]], str]:
    """The periods overlapping [start, end] with their price and carbon intensity; an error text if none."""
    import datetime as dt

    import aiohttp

    from powerplane.exporters.market.curve import Curve
    from powerplane.exporters.runtime.http import BodyError, public_url, read_json

    base = url.rstrip("/")
    if not base.endswith("/api/v1/curve"):
        base += "/api/v1/curve"
    curves: dict[str, Curve | None] = {}
    problem = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        for series in ("price", "carbon"):
            params = {"series": series, **({"area": area} if area else {})}
            try:
                async with session.get(base, params=params) as response:
                    if response.status != 200:
                        raise BodyError(public_url(base), f"HTTP {response.status}")
                    curves[series] = Curve.from_json(await read_json(response, CURVE_LIMIT))
            except (aiohttp.ClientError, TimeoutError, BodyError, ValueError) as exc:
                curves[series] = None
                if series == "price":
                    problem = f"{public_url(base)}: {exc}"[:300]
    begin = dt.datetime.fromtimestamp(start, dt.UTC)
    finish = dt.datetime.fromtimestamp(end, dt.UTC)
    price, carbon = curves.get("price"), curves.get("carbon")
    if price is None:
        return [], problem or "no price curve"
    periods = []
    for p in price.between(begin, finish):
        grams = carbon.price_at(p.start) if carbon is not None else None
        periods.append(
            (p.start.timestamp(), p.end.timestamp(), p.price, float("nan") if grams is None else grams)
        )
    return periods, "" if periods else "the curve has no period of the run"


def _versions(gpus: Gpus | None) -> dict[str, str]:
    versions = {"powerplane": __version__, "python": platform.python_version(), "kernel": platform.release()}
    if gpus is not None and gpus.nvml.available:
        versions["nvidia_driver"] = gpus.nvml.driver_version
    return versions


def run(
    argv: list[str],
    interval: float,
    out: Path | None,
    sysfs: Path,
    gpu: bool,
    market: str | None,
    area: str | None,
) -> int:
    rapl = Rapl(sysfs)
    gpus = Gpus() if gpu else None
    totals = Totals()
    trace = Trace(out) if out is not None else None
    sampler = Sampler(interval, rapl, gpus, Tee(totals, trace))
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
    try:
        start = time.time()
        sampler.sample()  # the baseline, before the command starts
        sampler.start()
        try:
            child = Child(argv)
        except CommandError:
            sampler.stop()
            if trace is not None:
                trace.file.close()
                out.unlink(missing_ok=True)  # type: ignore[union-attr]
            raise
        supervise(child)
        sampler.stop()
        sampler.sample()  # the last reading, once the command has ended
        sampler.flush()
        end = time.time()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    prices, problem = asyncio.run(fetch_market(market, area, start, end)) if market else ([], "")
    errors = "; ".join(e for e in (rapl.error, gpus.error if gpus else "") if e)
    attrs: dict[str, Any] = {
        "command": argv,
        "host": socket.gethostname(),
        "start": start,
        "end": end,
        "exit_status": child.exit_code(),
        "interval": interval,
        "samples": sampler.samples,
        "sampler_cpu_seconds": sampler.cpu_seconds,
        "versions": _versions(gpus),
        "gpu_models": gpus.models if gpus else {},
        "errors": errors,
        "market": problem,
    }
    if trace is not None:
        trace.finish(attrs, prices)
    rapl.close()
    if gpus is not None:
        gpus.close()
    sys.stderr.write(summary(attrs, totals, prices))
    return child.exit_code()


@click.command("measure", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--interval", "interval_text", default="0.1s", show_default=True, help="Sampling interval (0.1s, 50ms)."
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the trace as HDF5 here.")
@click.option("--market", metavar="URL", help="Market exporter (its /api/v1/curve) for cost and CO2.")
@click.option("--area", help="Market area when the exporter has several.")
@click.option(
    "--sysfs",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/sys"),
    show_default=True,
    help="Where sysfs is mounted (its class/powercap is read).",
)
@click.option("--no-gpu", is_flag=True, help="Do not read NVML GPUs.")
@click.option(
    "--summary",
    "stored",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Re-print a stored run.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(
    interval_text: str,
    out: Path | None,
    market: str | None,
    area: str | None,
    sysfs: Path,
    no_gpu: bool,
    stored: Path | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND, sampling the RAPL zones and GPUs, and print its energy, cost and CO2.

    \b
    powerplane measure --out run.h5 -- python train.py --epochs 3
    powerplane measure --summary run.h5
    """
    if stored is not None:
        if command:
            raise click.UsageError("--summary re-prints a stored run: give no command")
        try:
            attrs, totals, prices = read_trace(stored)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(summary(attrs, totals, prices), nl=False)
        return
    if not command:
        raise click.UsageError("give the command to measure after --, e.g. powerplane measure -- sleep 1")
    interval = parse_interval(interval_text)
    try:
        status = run(list(command), interval, out, sysfs, not no_gpu, market, area)
    except CommandError as exc:
        click.echo(f"Error: {exc}", err=True)
        status = exc.status
    sys.exit(status)
