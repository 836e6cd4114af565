"""The status page's HTTP side, on the exporter runtime's server (web config: TLS, basic auth).

    /                          the overview (every system, every outage)
    /system/<name>             one system's tab
    ?fragment=1                either, without the surrounding document (status.js)
    /api/v1/status             the same content as JSON; /api/v1/status/<name> for one system
    /api/v1/outages            public alerts, announcements and maintenance reservations
    /api/v1/reservations       maintenance reservations only
    /metrics, /-/healthy, /-/ready   the page's own health (as every exporter)

Every answer carries a strict Content-Security-Policy (scripts, styles and images from the page
itself only; no inline script or style; no framing) and the usual hardening headers.  Nothing in
a request reaches an upstream: the path picks one of the configured systems or nothing.

Between two refreshes an answer is a look-up: the rendition's bytes (gzipped when accepted) with
headers built with them, or 304 when ``If-None-Match`` names its ETag (docs/status-page.md).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from powerplane.exporters.runtime import ExporterServer

from .metrics import StatusPageCollector
from .page import StatusPage
from .render import Body, Renderer, View, static_files

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
DEFAULT_PORT = 9879


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    # The page's own answers come with these already (prepared with their bytes).
    if "Content-Security-Policy" not in response.headers:
        response.headers.update(SECURITY_HEADERS)


def _respond(request: web.Request, body: Body) -> web.Response:
    headers = request.headers
    variant = body.variant(headers.get("Accept-Encoding", ""))
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None and variant.matches(if_none_match):
        return web.Response(status=304, headers=variant.not_modified)
    return web.Response(body=variant.data, headers=variant.headers)


class StatusServer(ExporterServer):
    """The page on an ``ExporterServer``: its landing page is the overview."""

    def __init__(self, page: StatusPage, **kwargs: Any) -> None:
        self.page = page
        self.renderer = Renderer(page.config, SECURITY_HEADERS)
        self.static = static_files(SECURITY_HEADERS)
        self.systems = frozenset(s.name for s in page.config.systems)
        super().__init__(
            "statuspage",
            collectors=[StatusPageCollector(page)],
            description=page.config.title,
            routes=[
                ("GET", "/system/{name}", self.handle_system),
                ("GET", "/api/v1/status", self.handle_status),
                ("GET", "/api/v1/status/{name}", self.handle_status),
                ("GET", "/api/v1/outages", self.handle_outages),
                ("GET", "/api/v1/reservations", self.handle_reservations),
                ("GET", "/static/{name}", self.handle_static),
            ],
            on_shutdown=[page.close],
            **kwargs,
        )

    def make_app(self) -> web.Application:
        app = super().make_app()
        app.on_response_prepare.append(_security_headers)
        return app

    async def _view(self, request: web.Request, view: View) -> web.Response:
        # The hot path: no await, no lock; the rendition is swapped whole by whoever renders.
        rendition, page = self.renderer.latest, self.page
        if not rendition.serves(page.snapshot.generation, page.clock()):
            snapshot = await page.current()
            rendition = self.renderer.rendition(snapshot, page.clock())
        return _respond(request, rendition.bodies[view])

    def _fragment(self, request: web.Request) -> bool:
        return bool(request.query_string) and request.query.get("fragment") == "1"

    async def handle_landing(self, request: web.Request) -> web.Response:
        return await self._view(request, ("fragment" if self._fragment(request) else "page", ""))

    async def handle_system(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.systems:
            # The name is not echoed back: nothing from the request is shown.
            raise web.HTTPNotFound(text="No such system.\n")
        return await self._view(request, ("fragment" if self._fragment(request) else "page", name))

    async def handle_status(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name", "")
        if name and name not in self.systems:
            raise web.HTTPNotFound(text='{"error": "no such system"}\n', content_type="application/json")
        return await self._view(request, ("status", name))

    async def handle_outages(self, request: web.Request) -> web.Response:
        return await self._view(request, ("outages", ""))

    async def handle_reservations(self, request: web.Request) -> web.Response:
        return await self._view(request, ("reservations", ""))

    async def handle_static(self, request: web.Request) -> web.Response:
        body = self.static.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound(text="Not found.\n")
        return _respond(request, body)


def make_server(page: StatusPage, **kwargs: Any) -> StatusServer:
    return StatusServer(page, **kwargs)
