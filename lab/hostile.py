"""Hostile devices: a Redfish BMC that turns its answers against the exporter, and a canary.

``HostileBMC`` is a ``SimulatedBMC`` whose documents pass through ``mutate`` (links to other
hosts, strings with lone surrogates and control characters, numbers no float can hold, huge
collections) and whose session service misbehaves on request: a login ``Location`` elsewhere,
a logout answered with a redirect, 401 for every valid session, or every login refused.
``HostileLab`` serves them as ``RedfishLab`` serves simulated BMCs.  ``Canary`` is an HTTP
server on another loopback address that records every request that reaches it, and whether it
carried credentials: a test asserts that nothing the exporter was told by a device made it send
a BMC's credentials there.

``hostile_pdu`` writes an snmpsim recording of an APC PDU whose outlet names are hostile
strings (control characters, invalid UTF-8, thousands of characters); ``HostileAgent`` is an
SNMP v2c agent whose answers are larger than 4 KB, or ``tooBig``.

    lab = HostileLab()
    bmc = lab.add(HostileBMC("evil", IDRAC_XE9680, refuse_logins=True))
    await lab.start()
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from powerplane.exporters.snmp.ber import (
    END,
    GET_BULK,
    GET_NEXT,
    RESPONSE,
    TOO_BIG,
    BerError,
    EndOfMibView,
    Message,
    Value,
    decode_message,
    encode_message,
)

from .redfish import SESSIONS, RedfishLab, SimulatedBMC, _error
from .snmp import INTEGER, OCTETS, Row, snmprec_text

Json = dict[str, Any]
CREDENTIAL_HEADERS = ("authorization", "x-auth-token")


@dataclass
class HostileBMC(SimulatedBMC):
    """A simulated BMC with hostile documents and a hostile session service."""

    #: (path, document or None) → the document served instead, or None for 404 (applied to every
    #: resource, expansions too; it may serve paths the simulated BMC does not have).
    mutate: Callable[[str, Json | None], Json | None] | None = None
    #: The ``Location`` (and ``@odata.id``) of a session it creates, instead of its own path.
    login_location: str | None = None
    #: A logout (``DELETE`` of a session) is answered with a 307 to this URL.
    logout_redirect: str | None = None
    #: Every request with a valid session token is answered 401, as if the session had expired.
    reject_sessions: bool = False
    #: Every login is answered 401, whatever the credentials.
    refuse_logins: bool = False
    #: When each login arrived (time.monotonic), refused or not.
    logins: list[float] = field(default_factory=list)

    def resource(self, path: str) -> Json | None:
        doc = super().resource(path)
        return self.mutate(path, doc) if self.mutate is not None else doc

    async def intercept(self, request: web.Request) -> web.StreamResponse | None:
        """An answer of its own for the requests it misbehaves on; None to answer as usual."""
        path = request.path.rstrip("/")
        if request.method == "POST" and path == SESSIONS:
            self.logins.append(time.monotonic())
            if self.refuse_logins:
                return _error(401, "Base.1.12.ResourceAtUriUnauthorized", "Unauthorized.")
            return None
        if request.method == "DELETE" and path.startswith(SESSIONS + "/") and self.logout_redirect:
            raise web.HTTPTemporaryRedirect(self.logout_redirect)
        if self.reject_sessions and request.headers.get("X-Auth-Token") and request.method == "GET":
            return _error(401, "Base.1.12.NoValidSession", "There is no valid session.")
        return None


class HostileLab(RedfishLab):
    """Serves ``HostileBMC``s (and ordinary simulated BMCs) from one application."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        bmc = self.bmcs.get((sockname[0], sockname[1])) if sockname else None
        if isinstance(bmc, HostileBMC):
            own = await bmc.intercept(request)
            if own is not None:
                return own
            response = await super()._handle(request)
            if bmc.login_location and request.method == "POST" and response.status == 201:
                response.headers["Location"] = bmc.login_location
            return response
        return await super()._handle(request)


@dataclass
class Seen:
    method: str
    path: str
    credentials: bool


class Canary:
    """An HTTP server that records every request: nothing should ever reach it."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.host = host
        self.port = 0
        self.seen: list[Seen] = []
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def credentials_seen(self) -> list[Seen]:
        return [s for s in self.seen if s.credentials]

    async def _record(self, request: web.Request) -> web.Response:
        has = any(h in request.headers for h in ("Authorization", "X-Auth-Token"))
        self.seen.append(Seen(request.method, request.path_qs, has))
        return web.json_response({"@odata.id": request.path, "Members": [], "Id": "canary"})

    async def start(self) -> Canary:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def replace_links(doc: Any, pattern: str, link: str) -> Any:
    """``doc`` with every ``@odata.id`` that matches ``pattern`` (searched) replaced by ``link``."""
    if isinstance(doc, list):
        return [replace_links(v, pattern, link) for v in doc]
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        if key == "@odata.id" and isinstance(value, str) and re.search(pattern, value):
            out[key] = link
        else:
            out[key] = replace_links(value, pattern, link)
    return out


# --- SNMP --------------------------------------------------------------------------------------

APC = "1.3.6.1.4.1.318.1.1.26"
#: Outlet names no label value may carry as they are.
HOSTILE_NAMES: tuple[bytes, ...] = (
    b"node-01\r\n# TYPE evil counter",
    b"node-02\x00\x07\x1b[31m",
    b"\xff\xfe\xfd not UTF-8",
    "node-04 \u202e\u200b".encode(),
    b"N" * 1000,
)


def hostile_pdu(names: tuple[bytes, ...] = HOSTILE_NAMES) -> str:
    """An APC Rack PDU 2G recording whose outlet names are ``names``, one outlet each."""
    rows = [Row("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.318.1.3.4.6")]
    rows += [Row(f"{APC}.4.3.1.5.1", INTEGER, 100), Row(f"{APC}.4.3.1.9.1", INTEGER, 1000)]
    for i, name in enumerate(names, start=1):
        rows += [
            Row(f"{APC}.9.4.3.1.3.{i}", OCTETS, name),
            Row(f"{APC}.9.4.3.1.4.{i}", INTEGER, i),
            Row(f"{APC}.9.4.3.1.7.{i}", INTEGER, 10 * i),
        ]
    return snmprec_text(rows)


class HostileAgent(asyncio.DatagramProtocol):
    """An SNMP v2c agent on 127.0.0.1 serving ``values``, hostile in the size of its answers.

    Answers larger than ``max_size`` bytes are refused with ``tooBig`` (as agents with a small
    message size do, instead of sending fewer rows); below that, answers are as large as the
    request allows, well past the 4096 bytes some managers read.  Requests are counted by their
    max-repetitions (``repetitions``, and in ``refused`` whether each was answered ``tooBig``),
    so a test can see a manager ask for fewer after a ``tooBig``.
    """

    def __init__(self, values: dict[str, Value], community: bytes = b"public", max_size: int = 65000) -> None:
        self.values = dict(sorted(values.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))
        self.order = list(self.values)
        self.community = community
        self.max_size = max_size
        self.repetitions: list[int] = []
        self.refused: list[bool] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> HostileAgent:
        loop = asyncio.get_running_loop()
        transport, _protocol = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _after(self, oid: str, count: int) -> list[tuple[str, Value | EndOfMibView]]:
        key = tuple(map(int, oid.split(".")))
        later = [o for o in self.order if tuple(map(int, o.split("."))) > key][:count]
        return [(o, self.values[o]) for o in later] + ([(oid, END)] if len(later) < count else [])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            request = decode_message(data)
        except BerError:
            return
        if request.community != self.community or self.transport is None:
            return
        if request.pdu == GET_BULK:
            self.repetitions.append(request.error_index)
            count = max(1, request.error_index)
            # Row by row, as RFC 3416 4.2.3 orders them: each variable's next, then the ones after.
            columns = [self._after(name, count) for name, _v in request.varbinds]
            binds = [column[row] for row in range(count) for column in columns if row < len(column)]
        elif request.pdu == GET_NEXT:
            binds = [b for name, _v in request.varbinds for b in self._after(name, 1)]
        else:
            binds = [(name, self.values.get(name)) for name, _v in request.varbinds]
        answer = Message(1, self.community, RESPONSE, request.request_id, varbinds=binds)
        encoded = encode_message(answer)
        if request.pdu == GET_BULK:
            self.refused.append(len(encoded) > self.max_size)
        if len(encoded) > self.max_size:
            # tooBig, with no variables (RFC 3416, 4.2.1), as agents that do not cut GETBULK answer.
            encoded = encode_message(Message(1, self.community, RESPONSE, request.request_id, TOO_BIG, 0))
        self.transport.sendto(encoded, addr)
