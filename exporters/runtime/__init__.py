"""The shared exporter runtime: collectors, probes, config, logging and the HTTP server.

How an exporter plugs in (see docs/ARCHITECTURE.md): write ``Collector`` subclasses whose
``fetch`` gathers a snapshot under a ``Deadline`` and whose ``render`` yields metric families;
node-local exporters hand them to ``ExporterServer(collectors=...)``, multi-target exporters
implement a ``Prober`` that resolves ``/probe`` parameters into a ``ProbeJob``.
"""

from powerplane.components import Component

from .collector import (
    Collector,
    CollectorError,
    Deadline,
    NoData,
    Outcome,
    Part,
    Partial,
    Parts,
    Scrape,
    run_collectors,
)
from .config import ConfigError, ConfigKind, Secret, resolve_secret, strict_object
from .counters import ResettableCounter, WrappingCounter
from .logs import FailureLog, log, setup_logging
from .probe import ProbeJob, Prober, ProbeRequestError, ProbeRunner
from .server import ExporterServer, parse_listen_address, run, scrape_deadline, serve_until_signalled

__all__ = [
    "Collector",
    "CollectorError",
    "ConfigError",
    "ConfigKind",
    "Deadline",
    "ExporterServer",
    "FailureLog",
    "NoData",
    "Outcome",
    "Part",
    "Partial",
    "Parts",
    "ProbeJob",
    "ProbeRequestError",
    "ProbeRunner",
    "Prober",
    "ResettableCounter",
    "Scrape",
    "Secret",
    "WrappingCounter",
    "log",
    "parse_listen_address",
    "resolve_secret",
    "run",
    "run_collectors",
    "scrape_deadline",
    "serve_until_signalled",
    "setup_logging",
    "strict_object",
]

COMPONENT = Component(
    name="runtime",
    order=0,
    config_kinds=(("web", "powerplane.exporters.runtime.webconfig:KIND"),),
    metrics=("powerplane.exporters.runtime.builtin:METRICS",),
)
