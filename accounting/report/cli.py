"""``powerplane report``: energy, cost and CO2 per group over a time range, from Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sys
import time
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from powerplane.exporters.runtime.cli import load_or_exit
from powerplane.exporters.runtime.config import ConfigError
from powerplane.rulegen.config import KIND as RULES
from powerplane.rulegen.config import RulesConfig

from ..prometheus import (
    ClientSettings,
    Progress,
    PrometheusClient,
    QueryError,
    choose_step,
    json_lines,
    settings_for,
)
from . import queries as q
from .build import Options, build
from .fold import Window
from .html import to_html
from .model import Report
from .text import to_csv, to_json, to_markdown
from .xlsx import write_xlsx

FORMATS = ("xlsx", "html", "csv", "json", "md")
#: Steps a report may use: at least a minute (twice a 30 s scrape interval), each dividing a period.
REPORT_STEPS = (60.0, 120.0, 300.0, 900.0)
_RELATIVE = re.compile(r"^now(?:-(\d+)([smhdw]))?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, zone: ZoneInfo, now: float | None = None) -> float:
    """``2026-03-01``, ``2026-03-01T06:00``, ``…+01:00``, ``…Z``, Unix seconds, ``now`` or ``now-7d``."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        base = time.time() if now is None else now
        return base - (int(relative.group(1)) * _UNITS[relative.group(2)] if relative.group(1) else 0)
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a time (ISO 8601, Unix seconds, now or now-7d)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.timestamp()


def parse_step(text: str) -> float:
    match = re.fullmatch(r"(\d+)([smh]?)", text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration such as 60s, 5m or 15m")
    step = float(int(match.group(1)) * _UNITS[match.group(2) or "s"])
    if step <= 0 or q.PERIOD_SECONDS % step:
        raise click.BadParameter(f"{text}: the step must divide the 15-minute market period (60s, 5m, 15m…)")
    return step


def _format_of(out: str, given: str | None) -> str:
    if given:
        return given
    suffix = Path(out).suffix.lstrip(".").lower()
    if suffix in FORMATS:
        return suffix
    if suffix == "htm":
        return "html"
    raise click.BadParameter(f"cannot tell the format from {out!r}: give --format ({', '.join(FORMATS)})")


@click.command("report")
@click.option(
    "--prometheus",
    "url",
    metavar="URL",
    help="Prometheus-compatible API (overrides the settings file's url).",
)
@click.option(
    "--prometheus-config",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML: url, basic_auth or bearer_token ({env: NAME} / {file: PATH}), headers, tls, timeout.",
)
@click.option(
    "--from", "start_text", required=True, help="Start: 2026-03-01, 2026-03-01T06:00Z, Unix seconds, now-30d."
)
@click.option("--to", "end_text", required=True, help="End (same forms).")
@click.option(
    "--by",
    "groupings",
    multiple=True,
    type=click.Choice(list(q.GROUPINGS)),
    help="Grouping (repeatable; default: cluster, rack and node). Each becomes a table (an XLSX sheet).",
)
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), help="Output format (default: from --out's suffix)."
)
@click.option("--out", required=True, help="Output file ('-' for standard output, text formats only).")
@click.option(
    "--step", "step_text", help="Resolution of peaks, gaps and integration (default: from the range)."
)
@click.option("--timezone", default="UTC", show_default=True, help="Time zone of the times shown.")
@click.option(
    "--query-log",
    type=click.Path(dir_okay=False, writable=True),
    help="Write one JSON line per request here: query, range, step, seconds, bytes, samples read.",
)
@click.option(
    "--rules-config",
    type=click.Path(exists=True, dir_okay=False),
    help="The site's rules overrides (powerplane rules build --config): thresholds and selectors.",
)
def command(
    url: str | None,
    prometheus_config: str | None,
    start_text: str,
    end_text: str,
    groupings: tuple[str, ...],
    fmt: str | None,
    out: str,
    step_text: str | None,
    timezone: str,
    query_log: str | None,
    rules_config: str | None,
) -> None:
    """Energy (per source and best source), cost per market period, CO2, peaks, temperatures, alerts and
    data coverage per group over a time range, read from Prometheus.

    \b
    powerplane report --prometheus http://prometheus:9090 --from 2026-03-01 --to 2026-04-01 \\
        --by cluster --by rack --by account --out march.xlsx
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {timezone!r}", param_hint="--timezone") from None
    kind = _format_of(out, fmt)
    if out == "-" and kind == "xlsx":
        raise click.BadParameter("XLSX cannot go to standard output: name a file", param_hint="--out")
    start, end = parse_time(start_text, zone), parse_time(end_text, zone)
    if end <= start:
        raise click.BadParameter(f"--to ({end_text}) is not after --from ({start_text})")
    aligned_start = start // q.PERIOD_SECONDS * q.PERIOD_SECONDS
    aligned_end = -(-end // q.PERIOD_SECONDS) * q.PERIOD_SECONDS
    if (aligned_start, aligned_end) != (start, end):
        click.echo("report: the range is widened to whole 15-minute market periods", err=True)
    step = (
        parse_step(step_text)
        if step_text
        else choose_step(aligned_start, aligned_end, candidates=REPORT_STEPS)
    )
    rules = load_or_exit(RULES, rules_config) if rules_config else RulesConfig()
    try:
        settings = settings_for(url, prometheus_config)
        options = Options(
            Window(aligned_start, aligned_end, step),
            groupings or ("cluster", "rack", "node"),
            rules,
            timezone,
        )
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open(query_log, "w", encoding="utf-8")) if query_log else None
            report = asyncio.run(_run(settings, options, Progress(label="report"), log))
    except (QueryError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {query_log}: {exc.strerror or exc}") from None
    try:
        write(report, kind, out)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None
    if out != "-":
        click.echo(f"report: wrote {out}", err=True)


async def _run(
    settings: ClientSettings, options: Options, progress: Progress, log: IO[str] | None = None
) -> Report:
    try:
        async with PrometheusClient(settings, progress) as client:
            if log is not None:
                client.query_log = json_lines(log)
            return await build(client, options)
    finally:
        progress.close()


def write(report: Report, kind: str, out: str) -> None:
    """Render ``report`` as ``kind`` into the file ``out`` (``-``: standard output)."""
    if kind == "xlsx":
        write_xlsx(report, Path(out))
        return
    render = {"html": to_html, "csv": to_csv, "json": to_json, "md": to_markdown}[kind]
    body = render(report)
    if out == "-":
        sys.stdout.write(body)
    else:
        Path(out).write_text(body, encoding="utf-8")
