"""The HTTP side of every exporter: ``/metrics``, ``/probe``, ``/``, ``/-/healthy``, ``/-/ready``.

``ExporterServer`` serves node-local collectors on ``/metrics`` and, when given a ``Prober``,
multi-target probes on ``/probe``.  The scrape deadline comes from Prometheus's
``X-Prometheus-Scrape-Timeout-Seconds`` header minus a small offset, capped by the configured
timeout (the module's, for probes), so an answer always arrives before Prometheus gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import resource
import signal
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from powerplane import __version__

from . import exposition
from .builtin import BUILD_INFO
from .collector import Collector, Deadline, Scrape, run_collectors
from .logs import FailureLog, log
from .metrics import MetricSpec
from .probe import Prober, ProbeRequestError, ProbeRunner
from .process import ProcessMetrics
from .webconfig import BasicAuth, WebConfig, headers_middleware

logger = logging.getLogger("powerplane.server")

#: Seconds kept back from Prometheus's scrape timeout for the answer to travel.
DEFAULT_TIMEOUT_OFFSET = 0.5


def scrape_deadline(header: str | None, timeout: float, offset: float = DEFAULT_TIMEOUT_OFFSET) -> Deadline:
    """The deadline for a scrape: the header's timeout minus ``offset``, at most ``timeout``."""
    seconds = timeout
    if header:
        try:
            announced = float(header)
        except ValueError:
            announced = 0.0
        if announced > 0:
            # A timeout shorter than the offset keeps half of itself rather than nothing.
            usable = announced - offset if announced > 2 * offset else announced / 2
            seconds = min(timeout, usable)
    return Deadline.after(seconds)


def parse_listen_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``[V6]:PORT`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address: {address!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _Chain:
    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


class _Constant:
    """A series that never changes (the build info): one family, built once, rendered from the
    exposition's line cache rather than through a prometheus_client metric every scrape."""

    def __init__(self, spec: MetricSpec, labels: tuple[str, ...], value: float = 1.0) -> None:
        self.family = spec.family()
        self.family.add_metric(labels, value)

    def collect(self) -> Iterator[Metric]:
        yield self.family


class ExporterServer:
    """An exporter's HTTP server."""

    def __init__(
        self,
        exporter: str,
        *,
        collectors: Sequence[Collector[Any]] = (),
        prober: Prober | None = None,
        timeout: float = 10.0,
        timeout_offset: float = DEFAULT_TIMEOUT_OFFSET,
        web_config: WebConfig | None = None,
        description: str = "",
        max_concurrency: int = 512,
        per_device_concurrency: int = 2,
        routes: Sequence[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = (),
        on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.exporter = exporter
        self.collectors = list(collectors)
        self.prober = prober
        self.timeout = timeout
        self.timeout_offset = timeout_offset
        self.web_config = web_config or WebConfig()
        self.description = description
        self.failures = FailureLog(logging.getLogger(f"powerplane.{exporter}"))
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ProcessMetrics())
        self.registry.register(_Constant(BUILD_INFO, (exporter, __version__)))
        self._probe_concurrency = (max_concurrency, per_device_concurrency)
        self.runner: ProbeRunner | None = None
        self._extra_routes = list(routes)
        self._on_shutdown = list(on_shutdown)
        self._app_runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.ready = True

    # --- handlers -----------------------------------------------------------------------

    async def handle_metrics(self, request: web.Request) -> web.StreamResponse:
        deadline = scrape_deadline(
            request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"), self.timeout, self.timeout_offset
        )
        outcomes = await run_collectors(self.exporter, self.collectors, deadline, self.failures)
        source = _Chain(Scrape(self.exporter, outcomes), self.registry) if self.collectors else self.registry
        return self._expose(request, source)

    async def handle_probe(self, request: web.Request) -> web.StreamResponse:
        assert self.prober is not None and self.runner is not None
        try:
            job = self.prober.resolve(request.query)
        except ProbeRequestError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        deadline = scrape_deadline(
            request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"), job.timeout, self.timeout_offset
        )
        scrape = await self.runner.probe(job, deadline)
        return self._expose(request, scrape)

    def _expose(self, request: web.Request, source: Any) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        # The text format is what Prometheus parses fastest and what we render fastest; it is
        # acceptable to every Prometheus.  OpenMetrics only for a client that accepts nothing else.
        if "openmetrics" in accept and "text/plain" not in accept and "*/*" not in accept:
            _encoder, content_type = choose_encoder(accept)  # the version the client asked for
            body = exposition.render_openmetrics(source.collect())
        else:
            body, content_type = exposition.render(source.collect()), exposition.CONTENT_TYPE
        headers = {"Content-Type": content_type}
        if "gzip" in request.headers.get("Accept-Encoding", "") and len(body) > 256:
            # Inline: aiohttp's own compression moves bodies over 4 KiB to a thread pool, and the
            # thread hop costs more than compressing a scrape.  Level 1: a RAPL scrape shrinks to
            # 1077 bytes (1011 at level 6) in 17 µs instead of 30 µs.
            # One call (wbits 31: the gzip container): no compressor object to build and join.
            body = zlib.compress(body, 1, 31)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        return web.Response(body=body, headers=headers)

    async def handle_landing(self, _request: web.Request) -> web.Response:
        links = []
        if self.collectors or self.prober is None:
            links.append('<li><a href="metrics">/metrics</a> — metrics</li>')
        if self.prober is not None:
            links.append('<li><a href="metrics">/metrics</a> — the exporter\'s own metrics</li>')
            links.append("<li>/probe?target=&amp;module=&amp;auth= — probe a configured target</li>")
        links += [
            f'<li><a href="{p.lstrip("/")}">{html.escape(p)}</a></li>' for _m, p, _h in self._extra_routes
        ]
        links += ['<li><a href="-/healthy">/-/healthy</a></li>', '<li><a href="-/ready">/-/ready</a></li>']
        body = (
            f"<!doctype html><html><head><title>powerplane {self.exporter} exporter</title></head><body>"
            f"<h1>powerplane {html.escape(self.exporter)} exporter</h1>"
            f"<p>{html.escape(self.description)}</p><p>version {__version__}</p>"
            f"<ul>{''.join(links)}</ul></body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    async def handle_healthy(self, _request: web.Request) -> web.Response:
        return web.Response(text="Healthy\n")

    async def handle_ready(self, _request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503, text="Not ready\n")
        return web.Response(text="Ready\n")

    # --- lifecycle ----------------------------------------------------------------------

    def make_app(self) -> web.Application:
        middlewares = []
        if self.web_config.basic_auth_users:
            middlewares.append(BasicAuth(dict(self.web_config.basic_auth_users)).middleware)
        if self.web_config.headers:
            middlewares.append(headers_middleware(self.web_config.headers))
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/", self.handle_landing)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/-/healthy", self.handle_healthy)
        app.router.add_get("/-/ready", self.handle_ready)
        if self.prober is not None:
            max_total, per_device = self._probe_concurrency
            self.runner = ProbeRunner(self.prober, self.registry, max_total, per_device)
            app.router.add_get("/probe", self.handle_probe)
            app.on_startup.append(self._start_sweeper)
        for method, path, handler in self._extra_routes:
            app.router.add_route(method, path, handler)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _start_sweeper(self, _app: web.Application) -> None:
        assert self.runner is not None
        self._sweeper = asyncio.ensure_future(self.runner.sweep_forever())

    async def _cleanup(self, _app: web.Application) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for hook in self._on_shutdown:
            await hook()
        if self.prober is not None:
            await self.prober.close()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Start serving; returns the bound (host, port) (port 0 picks a free one)."""
        self._app_runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await self._app_runner.setup()
        site = web.TCPSite(self._app_runner, host, port, ssl_context=self.web_config.ssl_context())
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname() if sockets else (host, port)
        return str(bound[0]), int(bound[1])

    async def stop(self) -> None:
        if self._app_runner is not None:
            await self._app_runner.cleanup()
            self._app_runner = None

    @property
    def scheme(self) -> str:
        return "https" if self.web_config.cert_file else "http"


async def serve_until_signalled(servers: Sequence[tuple[ExporterServer, str]]) -> None:
    """Serve each (server, listen address) until SIGINT or SIGTERM, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = []
    try:
        for server, address in servers:
            host, port = parse_listen_address(address)
            bound = await server.start(host, port)
            started.append(server)
            log(
                logger,
                logging.INFO,
                "listening",
                exporter=server.exporter,
                address=f"{bound[0]}:{bound[1]}",
                tls=server.scheme == "https",
            )
        await stop.wait()
    finally:
        for server in started:
            await server.stop()
        log(logger, logging.INFO, "stopped")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop where it is installed (it halves the HTTP overhead per scrape), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


#: The most file descriptors an exporter asks for (its soft limit is raised up to this).
MAX_OPEN_FILES = 65536


def raise_open_files_limit(wanted: int = MAX_OPEN_FILES) -> int:
    """Raise the soft limit of open files towards the hard one (as Go programs do at start).

    systemd starts services with a soft limit of 1,024; a multi-target exporter keeps some
    connections open per device between probes (the Redfish client up to half the soft limit),
    so thousands of devices need more.  Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)


def run(server: ExporterServer, listen_address: str) -> None:
    """Blocking entry point for ``powerplane exporter …`` commands."""
    raise_open_files_limit()
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve_until_signalled([(server, listen_address)]))
