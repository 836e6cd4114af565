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
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from powerplane.exporters.runtime import ExporterServer

from .metrics import StatusPageCollector
from .page import StatusPage
from .render import Body, Renderer, static_files

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
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _respond(request: web.Request, body: Body, cache: str = "no-cache", status: int = 200) -> web.Response:
    headers = {"Content-Type": body.content_type, "Cache-Control": cache, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=body.gzipped, headers=headers, status=status)
    return web.Response(body=body.data, headers=headers, status=status)


class StatusServer(ExporterServer):
    """The page on an ``ExporterServer``: its landing page is the overview."""

    def __init__(self, page: StatusPage, **kwargs: Any) -> None:
        self.page = page
        self.renderer = Renderer(page.config)
        self.static = static_files()
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

    async def _html(self, request: web.Request, system: str | None) -> web.Response:
        snapshot = await self.page.current()
        fragment = request.query.get("fragment") == "1"
        return _respond(request, self.renderer.page(snapshot, self.page.now(), system, fragment))

    async def handle_landing(self, request: web.Request) -> web.Response:
        return await self._html(request, None)

    async def handle_system(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.page.config.system(name) is None:
            # The name is not echoed back: nothing from the request is shown.
            raise web.HTTPNotFound(text="No such system.\n")
        return await self._html(request, name)

    async def handle_status(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name")
        if name is not None and self.page.config.system(name) is None:
            raise web.HTTPNotFound(text='{"error": "no such system"}\n', content_type="application/json")
        snapshot = await self.page.current()
        return _respond(request, self.renderer.json(snapshot, self.page.now(), "status", name))

    async def handle_outages(self, request: web.Request) -> web.Response:
        snapshot = await self.page.current()
        return _respond(request, self.renderer.json(snapshot, self.page.now(), "outages"))

    async def handle_reservations(self, request: web.Request) -> web.Response:
        snapshot = await self.page.current()
        return _respond(request, self.renderer.json(snapshot, self.page.now(), "reservations"))

    async def handle_static(self, request: web.Request) -> web.Response:
        body = self.static.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound(text="Not found.\n")
        return _respond(request, body, cache="public, max-age=3600")


def make_server(page: StatusPage, **kwargs: Any) -> StatusServer:
    return StatusServer(page, **kwargs)
