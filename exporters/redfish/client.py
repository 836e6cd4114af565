"""HTTP, sessions and discovery for Redfish targets: one connection pool for the whole process.

Requests go through ``runtime.http1.HttpClient``: keep-alive connections per BMC (and TLS
context), reused across collectors and probes, each request one write and one parse of the
answer (aiohttp's client cost more than twice the CPU per request: bench/http_client.py).

Every request goes to the target's own origin: a path from a document or a header passes
``links.same_origin`` or is refused and counted, and no redirect is followed (a logout
included), so nothing a BMC sends can make the exporter hand its credentials to another host.
Every body is read through ``runtime.http`` with the module's ``max_response_bytes`` as the cap.

Sessions (``X-Auth-Token``) are created once per (target, auth) — concurrent probes join the one
login under way — shared by every probe and collector, and deleted when the exporter shuts down
or the target is evicted.  A login runs as a task of its own, shielded from the probe that
started it: a probe that times out while the BMC is still creating the session must not abandon
the token.  The number of sessions this process holds on one BMC never exceeds the auth's
``max_sessions``, counting a session until the BMC has answered its deletion.  When the BMC
answers 401 the session is deleted first and a new one made once; a failed login, or a new
session the BMC refuses at once, defers the next login 1 s, then 2, 4, … up to 5 minutes
(``powerplane_redfish_login_backoff_targets``), so a BMC that refuses every login sees a few
attempts per minute at first and one per five minutes after, not one per probe (account
lockout on real BMCs).

Discovery reads the service root (unauthenticated), every system (at most ``max_systems``),
every chassis (those the systems link, then the Chassis collection's; at most ``max_chassis``)
and the manager, and remembers the paths per target for ``discovery_ttl`` seconds, or until a
system's or the manager's path answers 404 (the tree changed, e.g. after a firmware update).  A
404 on a chassis' path reads that chassis again, only it (a pulled blade is dropped, the other
chassis keep their paths).  A 404 on any other path (a
dangling link to one PSU's ``Metrics``, which real firmware has) is a leaf: the collector that
follows it records it as dangling (logged once), skips it until the next discovery, and nothing
else is discovered again.

What the client remembers per (BMC, auth) — session, paths, the energy meter's counter — is
evicted ``state_ttl`` seconds after the target's last probe (``ExpiringMap``); an evicted
target's session is deleted on the BMC first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import resource
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from yarl import URL

from ..runtime import CollectorError, Deadline, ResettableCounter, log
from ..runtime.http import BodyTooLarge, format_size
from ..runtime.http1 import HttpClient, HttpError, TlsError
from ..runtime.state import DEFAULT_STATE_TTL, Clock, ExpiringMap
from .config import Auth, Module
from .links import LinkRefused, same_origin

logger = logging.getLogger("powerplane.redfish")

Json = dict[str, Any]
T = TypeVar("T")
ROOT = "/redfish/v1"
DEFAULT_SESSIONS = "/redfish/v1/SessionService/Sessions"
#: A login gets at least this long even when the probe that needed it has less time left.
LOGIN_TIMEOUT = 30.0
#: A session's deletion waits this long for the BMC's answer.
LOGOUT_TIMEOUT = 5.0
#: The first wait after a failed login, doubled after each further failure up to the cap.
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 300.0
#: Idle connections to a BMC are kept this long (the lab's server keeps them 75 s; a probe every
#: 60 s then finds its connections open).
KEEPALIVE = 70.0
#: Error bodies are read this far (enough for any Redfish error message).
ERROR_BODY_BYTES = 65536
RAC0218 = "RAC0218"
#: Longer ETags are not kept (nor sent back): a BMC's are short hashes or counters.
MAX_ETAG = 256
#: Documents kept for reuse, by path: (when read, on the client's clock; the document; its ETag).
Documents = dict[str, tuple[float, Json, str | None]]


class RedfishError(CollectorError):
    """A failed request; ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0, message_id: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message_id = message_id


class SessionLimitError(RedfishError):
    """The BMC refused a login because its sessions are used up (iDRAC RAC0218)."""


@dataclass(frozen=True)
class ChassisPaths:
    """One chassis: its ``Id``, the resources it links (None: not linked) and its place."""

    path: str
    id: str
    power: str | None = None
    thermal: str | None = None
    power_subsystem: str | None = None
    thermal_subsystem: str | None = None
    environment_metrics: str | None = None
    sensors: str | None = None
    #: The systems it links (``Links.ComputerSystems``) and the chassis that holds it.
    systems: tuple[str, ...] = ()
    manager: str | None = None
    contained_by: str | None = None
    contains: tuple[str, ...] = ()
    #: Whether it holds other chassis that report power (a blade enclosure): its power is the
    #: sum of theirs and more, so it is not node power.
    enclosure: bool = False

    def powered(self) -> bool:
        return bool(self.power or self.power_subsystem or self.environment_metrics)

    def paths(self) -> set[str]:
        found = (
            self.path,
            self.power,
            self.thermal,
            self.power_subsystem,
            self.thermal_subsystem,
            self.environment_metrics,
            self.sensors,
        )
        return {p for p in found if p}


@dataclass(frozen=True)
class SystemPaths:
    """One computer system: its ``Id`` and the chassis it links (``Links.Chassis``)."""

    path: str
    id: str
    chassis: tuple[str, ...] = ()
    manager: str | None = None


@dataclass
class Discovery:
    """Paths found from the service root, and facts that change only with firmware."""

    sessions: str
    systems: list[SystemPaths]
    chassis: list[ChassisPaths]
    manager: str | None
    expand_levels: int
    reports: str | None = None
    bmc_firmware: str = ""
    bmc_model: str = ""
    at: float = field(default_factory=time.monotonic)
    #: The systems', chassis' and PowerSubsystems' own documents by path, with when they were
    #: read (the client's clock) and their ETag: reused for the module's ``inventory_refresh``,
    #: forgotten with this discovery.
    documents: Documents = field(default_factory=dict)

    def paths(self) -> set[str]:
        """The discovered paths outside any chassis: a 404 on one means the tree changed."""
        found = [s.path for s in self.systems] + [self.manager, self.reports]
        return {p for p in found if p}

    def chassis_of(self, path: str) -> ChassisPaths | None:
        """The chassis ``path`` is one of the discovered paths of."""
        return next((c for c in self.chassis if path in c.paths()), None)

    def main_chassis(self) -> ChassisPaths | None:
        """The chassis BMC-wide figures belong to (telemetry's ``SystemInputPower``): the first
        one the only system links (a rack server beside its drive bays), else the only chassis."""
        if len(self.systems) == 1 and self.systems[0].chassis:
            first = _key(self.systems[0].chassis[0])
            return next((c for c in self.chassis if _key(c.path) == first), None)
        return self.chassis[0] if len(self.chassis) == 1 else None

    def system_of(self, chassis: ChassisPaths) -> SystemPaths | None:
        """The system the chassis powers: the one it links, else one linking it, else the only one."""
        for system in self.systems:
            if _same(system.path, chassis.systems) or _same(chassis.path, system.chassis):
                return system
        return self.systems[0] if len(self.systems) == 1 else None


def _key(path: str) -> str:
    # iLO writes collection members with a trailing slash, other BMCs without.
    return path.rstrip("/")


def _same(path: str, paths: tuple[str, ...]) -> bool:
    return _key(path) in {_key(p) for p in paths}


def _enclosures(chassis: list[ChassisPaths]) -> list[ChassisPaths]:
    """Mark the chassis that hold another chassis reporting power (by ``ContainedBy`` or
    ``Contains``): a blade enclosure's reading includes its blades'."""
    out = []
    for c in chassis:
        held = any(
            other is not c
            and other.powered()
            and (
                (other.contained_by and _key(other.contained_by) == _key(c.path))
                or _same(other.path, c.contains)
            )
            for other in chassis
        )
        out.append(replace(c, enclosure=held and c.powered()))
    return out


#: Dangling links remembered per target at most (each is skipped until the next discovery).
MAX_DANGLING = 64


@dataclass(slots=True)
class Target:
    """What the process remembers about one (BMC, auth): its session and discovered paths.

    One exists for every target probed within ``state_ttl``, most of them (in a scan of an
    allowed range) never answering: slots, and the sets and maps of a discovered tree shared
    empty until a BMC fills them, keep such a target to its strings and its semaphore."""

    base: str
    device: str
    auth: Auth
    sessions_uri: str = DEFAULT_SESSIONS
    token: str | None = None
    session_uri: str | None = None
    #: Whether a request with the current session has succeeded (a 401 then means it expired).
    session_served: bool = False
    login_task: asyncio.Task[None] | None = None
    #: Logins (or new sessions refused at once) that failed in a row, and when to try again.
    failed_logins: int = 0
    next_login: float = 0.0
    discovery: Discovery | None = None
    discovery_task: asyncio.Task[Discovery] | None = None
    expand_refused: bool = False
    #: Leaf paths that answered 404 since the last discovery: not requested again until then.
    dangling: frozenset[str] = frozenset()
    #: Each chassis' temperature Sensors (by chassis path), learned from its Sensors collection
    #: (None: nothing learned yet).
    temperature_sensors: dict[str, list[str]] | None = None
    #: Chassis with a discovered path that answered 404: read again before the next probe.
    stale: frozenset[str] = frozenset()
    #: Whether the systems or chassis dropped by the module's caps have been logged.
    capped_logged: bool = False
    requests: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    #: The BMC's energy meter as a counter that survives meter resets (made on first reading).
    energy_meter: ResettableCounter | None = None

    @property
    def origin(self) -> URL:
        # Parsed when used rather than kept: a scan of many targets keeps less per target.
        return URL(self.base)

    @property
    def energy(self) -> ResettableCounter:
        if self.energy_meter is None:
            self.energy_meter = ResettableCounter()
        return self.energy_meter


def _link(doc: Any, *path: str | int) -> str | None:
    """The ``@odata.id`` at ``path`` in ``doc`` (a request checks where it leads)."""
    node = doc
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or len(node) <= part:
                return None
        elif not isinstance(node, dict):
            return None
        node = node[part] if isinstance(part, int) else node.get(part)
    if isinstance(node, dict):
        node = node.get("@odata.id")
    return node if isinstance(node, str) else None


def _clean(text: Any, limit: int = 160) -> str:
    """A device-supplied string fit for a log line: printable and short."""
    out = "".join(c if c.isprintable() else " " for c in str(text))
    return out[:limit] + ("…" if len(out) > limit else "")


def describe_failure(status: int, body: bytes) -> tuple[str, str]:
    """(message id, text) of a Redfish error body, or ("", "") when it is not one."""
    try:
        doc = json.loads(body[:ERROR_BODY_BYTES])
    except (ValueError, RecursionError):
        return "", ""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return "", ""
    infos = error.get("@Message.ExtendedInfo")
    info = infos[0] if isinstance(infos, list) and infos and isinstance(infos[0], dict) else {}
    message_id = str(info.get("MessageId") or error.get("code") or "")
    text = str(info.get("Message") or error.get("message") or "")
    return _clean(message_id, 80), _clean(text)


async def _joined(target: Target, attribute: str) -> Any:
    """Await the target's task under ``attribute`` (shielded), then forget it once done.

    A finished task holds its exception and with it the frames of the failed requests (some
    20 KB a target): kept, every BMC that ever failed would cost that until it is evicted."""
    task: asyncio.Task[Any] = getattr(target, attribute)
    try:
        return await asyncio.shield(task)
    finally:
        if task.done() and getattr(target, attribute) is task:
            setattr(target, attribute, None)


def idle_connections() -> int:
    """Idle connections kept at most: half the process's file descriptors.

    A probe of one BMC uses up to ``max_concurrent_requests`` connections; kept until its next
    probe, they are reused instead of connecting again.  A cap below the BMCs x connections of a
    replica would close, least recently used first, exactly those the next probes need."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, soft // 2) if soft != resource.RLIM_INFINITY else 16384


def _where(method: str, url: URL) -> str:
    """The request as error messages name it (made only when one is raised)."""
    return f"{method} {_clean(url.path_qs, 120)}"


def _http_error(where: str, status: int, body: bytes) -> RedfishError:
    message_id, text = describe_failure(status, body)
    if RAC0218 in message_id or RAC0218 in text:
        detail = f" {RAC0218}: the BMC's maximum number of sessions is reached ({text or message_id})"
        return SessionLimitError(f"{where}: HTTP {status}{detail}", status, message_id)
    detail = f" {message_id}: {text}" if message_id or text else ""
    return RedfishError(f"{where}: HTTP {status}{detail}", status, message_id)


class RedfishClient:
    """One connection pool (``HttpClient``) for every target of the process."""

    def __init__(
        self, connections: int | None = None, state_ttl: float = DEFAULT_STATE_TTL, clock: Clock | None = None
    ) -> None:
        self._connections = connections or idle_connections()
        self._http: HttpClient | None = None
        self.clock = clock or time.monotonic
        self.targets: ExpiringMap[tuple[str, str], Target] = ExpiringMap(
            state_ttl, on_evict=self._evicted, clock=self.clock
        )
        self._ssl: dict[str, Any] = {}
        self.held: Counter[str] = Counter()  # device → sessions held (no zero entries)
        self.stats: Counter[str] = Counter()
        self._background: set[asyncio.Task[Any]] = set()
        self._retiring: set[asyncio.Task[None]] = set()

    def http(self) -> HttpClient:
        if self._http is None:
            self._http = HttpClient(
                {"Accept": "application/json", "OData-Version": "4.0", "Accept-Encoding": "gzip, deflate"},
                keepalive=KEEPALIVE,
                max_idle=self._connections,
            )
        return self._http

    def target(self, base: str, device: str, auth: Auth, module: Module) -> Target:
        """The state of (BMC, auth), created on first use and marked used now."""
        return self.targets.get(
            (base, auth.name),
            lambda: Target(base, device, auth, requests=asyncio.Semaphore(module.max_concurrent_requests)),
        )

    def backing_off(self) -> int:
        """Targets whose next login is deferred now."""
        now = self.clock()
        return sum(1 for t in self.targets.values() if t.next_login > now)

    def _evicted(self, _key: tuple[str, str], target: Target) -> None:
        if target.token is None and (target.login_task is None or target.login_task.done()):
            return  # no session to delete
        task = asyncio.ensure_future(self._retire(target))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, target: Target) -> None:
        """Delete an evicted target's session, once a login still under way has finished."""
        if target.login_task is not None and not target.login_task.done():
            await asyncio.wait([target.login_task], timeout=LOGIN_TIMEOUT)
        await self.logout(target)

    def _ssl_for(self, auth: Auth, base: str) -> Any:
        if not base.startswith("https:"):
            return None
        if auth.name not in self._ssl:
            self._ssl[auth.name] = auth.ssl_context()
        return self._ssl[auth.name]

    def _spawn(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        self._background.add(task)
        # An orphaned task's failure was already reported to whoever awaited it.
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()

    # --- requests ------------------------------------------------------------------------

    def url(self, target: Target, link: object) -> URL:
        """The URL of ``link`` on the target's origin; a refused link is counted and raised."""
        try:
            return same_origin(target.origin, link)
        except LinkRefused as exc:
            self.stats["links_refused"] += 1
            raise RedfishError(f"link {_clean(link, 100)!r} refused: {exc}") from None

    def _credentials(self, target: Target) -> dict[str, str]:
        auth = target.auth
        if auth.method == "basic":
            pair = f"{auth.user()}:{auth.password.reveal()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        return {"X-Auth-Token": target.token} if target.token else {}

    async def request(
        self,
        target: Target,
        method: str,
        path: str,
        deadline: Deadline,
        max_bytes: int,
        body: Json | None = None,
        authenticated: bool = True,
        extra: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        """(status, parsed JSON or None, headers); raises RedfishError on 3xx-5xx or bad JSON,
        except 304 (None: the copy whose ETag was sent in ``extra`` is current)."""
        url = self.url(target, path)
        headers = self._credentials(target) if authenticated else None
        if extra:
            headers = {**(headers or {}), **extra}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers = {**(headers or {}), "Content-Type": "application/json"}
        self.stats["requests"] += 1
        async with target.requests:
            try:
                answer = await self.http().request(
                    method,
                    url,
                    limit=max_bytes,
                    seconds=max(0.05, deadline.remaining()),
                    headers=headers,
                    body=payload,
                    ssl=self._ssl_for(target.auth, target.base),
                )
            except TimeoutError:
                raise RedfishError(f"{_where(method, url)}: timed out") from None
            except BodyTooLarge as exc:
                raise RedfishError(
                    f"{_where(method, url)}: response exceeds the limit of {format_size(exc.limit)}"
                ) from None
            except TlsError as exc:
                raise RedfishError(f"{_where(method, url)}: TLS: {_clean(exc, 200)}") from None
            except HttpError as exc:
                raise RedfishError(f"{_where(method, url)}: {type(exc).__name__}: {_clean(exc)}") from None
        status, raw = answer.status, answer.body
        self.stats[f"status_{status // 100}xx"] += 1
        if status == 304 and extra and "If-None-Match" in extra:
            return status, None, answer.headers
        if 300 <= status < 400:
            raise RedfishError(f"{_where(method, url)}: HTTP {status}: redirect not followed", status)
        if status >= 400:
            raise _http_error(_where(method, url), status, raw[:ERROR_BODY_BYTES])
        if not raw.strip():
            return status, None, answer.headers
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else _clean(exc, 80)
            raise RedfishError(f"{_where(method, url)}: malformed JSON ({reason})", status) from None
        return status, doc, answer.headers

    async def get(self, target: Target, path: str, deadline: Deadline, module: Module) -> Json:
        """An authenticated GET of a JSON object; on 401, a new session and one retry."""
        doc, _etag = await self._get(target, path, deadline, module)
        assert doc is not None  # only a conditional request may answer none
        return doc

    async def _get(
        self, target: Target, path: str, deadline: Deadline, module: Module, etag: str | None = None
    ) -> tuple[Json | None, str | None]:
        """``get``, and the answer's ETag; with ``etag``, conditional: (None, etag) when the
        BMC answers 304 Not Modified."""
        session = target.auth.method == "session"
        if session and target.token is None:
            await self.login(target, deadline)
        used = target.token
        extra = {"If-None-Match": etag} if etag else None
        try:
            status, doc, headers = await self.request(
                target, "GET", path, deadline, module.max_response_bytes, extra=extra
            )
        except RedfishError as exc:
            found = target.discovery
            if exc.status == 404 and found is not None:
                owner = found.chassis_of(path)
                if owner is not None:
                    target.stale |= {owner.path}  # that chassis changed: read it again, only it
                elif path in found.paths():
                    target.discovery = None  # the tree changed (firmware update?): discover again
            if exc.status != 401 or not session:
                raise
            if used is not None and target.token == used:
                self._renew(target, deadline)
            await self.login(target, deadline)
            status, doc, headers = await self.request(
                target, "GET", path, deadline, module.max_response_bytes, extra=extra
            )
        if used is not None and target.token == used:
            # The session works: the logins that made it were good (a new one that is refused at
            # once does not reset the backoff).
            target.session_served = True
            target.failed_logins, target.next_login = 0, 0.0
        if status == 304:
            return None, etag
        if not isinstance(doc, dict):
            raise RedfishError(f"GET {_clean(path, 120)}: expected a JSON object, got {type(doc).__name__}")
        tag = headers.get("ETag")
        return doc, tag if isinstance(tag, str) and 0 < len(tag) <= MAX_ETAG and tag.isprintable() else None

    def kept(self, target: Target, path: str, module: Module) -> Json | None:
        """The document of a system or chassis at ``path`` if it is recent enough to reuse."""
        found = target.discovery
        kept = found.documents.get(path) if found is not None else None
        if kept is not None and self.clock() - kept[0] < module.inventory_refresh:
            return kept[1]
        return None

    async def inventory(self, target: Target, path: str, deadline: Deadline, module: Module) -> Json:
        """A discovered system's, chassis' or PowerSubsystem's own document, read again once it
        is ``module.inventory_refresh`` seconds old.

        These carry health, identity, power state and ratings (capacity, allocation, PSU
        redundancy), which change far less often than the readings every probe needs; reusing
        them saves three of a rack server's six requests per probe.  Where the BMC gave an ETag,
        the refresh asks with ``If-None-Match`` and a 304 keeps the copy without a body to read.
        A failed reading is forgotten, so the next probe asks again and reports the same error
        as before."""
        kept = self.kept(target, path, module)
        if kept is not None:
            return kept
        found = target.discovery
        old = found.documents.get(path) if found is not None else None
        try:
            doc, etag = await self._get(target, path, deadline, module, old[2] if old else None)
        except RedfishError:
            if found is not None:
                found.documents.pop(path, None)
            raise
        if doc is None:  # 304: the copy is current
            assert old is not None
            doc = old[1]
        if found is not None and target.discovery is found:
            found.documents[path] = (self.clock(), doc, etag)
        return doc

    # --- sessions ------------------------------------------------------------------------

    def _release(self, device: str) -> None:
        self.held[device] -= 1
        if self.held[device] <= 0:
            del self.held[device]

    def _take_session(self, target: Target) -> tuple[str | None, str | None]:
        """The target's session (URI, token), no longer used; still held until deleted."""
        uri, token = target.session_uri, target.token
        target.token = target.session_uri = None
        target.session_served = False
        return uri, token

    def _failed_login(self, target: Target, stat: str) -> None:
        target.failed_logins += 1
        wait = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (target.failed_logins - 1))
        target.next_login = self.clock() + wait
        self.stats[stat] += 1

    def _renew(self, target: Target, deadline: Deadline) -> None:
        """The BMC answered 401 to the target's session: delete it, then log in again.

        Both steps are one task that concurrent requests join, so the old session is gone from
        the BMC before the new one is made, and only one new one is."""
        rejected = not target.session_served  # a new session refused at once: logins do not work
        uri, token = self._take_session(target)
        seconds = max(deadline.remaining(), LOGIN_TIMEOUT)

        async def renew() -> None:
            await self._delete(target, uri, token)
            if rejected:
                self._failed_login(target, "login_session_rejected")
                raise RedfishError("the BMC refused a new session at once (HTTP 401); logins back off")
            self.stats["session_expired"] += 1
            await self._login(target, seconds)

        target.login_task = self._spawn(renew())

    async def login(self, target: Target, deadline: Deadline) -> None:
        """Create the target's session, or join the login (or renewal) already under way."""
        if target.token is not None:
            return
        if target.login_task is None or target.login_task.done():
            wait = target.next_login - self.clock()
            if wait > 0:
                self.stats["logins_deferred"] += 1
                raise RedfishError(
                    f"login deferred {wait:.0f} s after {target.failed_logins} failure(s) in a row (backoff)"
                )
            if self.held[target.device] >= target.auth.max_sessions:
                raise RedfishError(
                    f"session budget of {target.auth.max_sessions} for this BMC is used up; not logging in"
                )
            target.login_task = self._spawn(self._login(target, max(deadline.remaining(), LOGIN_TIMEOUT)))
        await _joined(target, "login_task")

    async def _login(self, target: Target, seconds: float) -> None:
        auth = target.auth
        body = {"UserName": auth.user(), "Password": auth.password.reveal()}
        self.held[target.device] += 1  # reserved before the BMC can create it
        try:
            _status, doc, headers = await self.request(
                target, "POST", target.sessions_uri, Deadline.after(seconds), 65536, body, authenticated=False
            )
            token = headers.get("X-Auth-Token")
            if not token:
                raise RedfishError(f"POST {_clean(target.sessions_uri)}: no X-Auth-Token in the answer")
        except BaseException as exc:
            self._release(target.device)
            limit = isinstance(exc, SessionLimitError)
            self._failed_login(target, "login_session_limit" if limit else "login_failed")
            raise
        target.token = token
        target.session_uri = self._session_path(target, headers.get("Location"), doc)
        self.stats["sessions_created"] += 1
        log(logger, logging.DEBUG, "session created", target=target.base, auth=auth.name)

    def _session_path(self, target: Target, location: str | None, doc: Any) -> str | None:
        """Where the new session can be deleted: ``Location``, else the body's ``@odata.id``."""
        for link in (location, _link(doc, "@odata.id")):
            if link:
                with contextlib.suppress(RedfishError):
                    return self.url(target, link).path
        return None

    async def logout(self, target: Target) -> None:
        uri, token = self._take_session(target)
        await self._delete(target, uri, token)

    async def _delete(self, target: Target, uri: str | None, token: str | None) -> None:
        """Delete a session on the BMC (never following a redirect), then stop counting it."""
        if token is None:
            return
        try:
            if uri is None:
                return
            with contextlib.suppress(HttpError, BodyTooLarge, TimeoutError, OSError, RedfishError):
                answer = await self.http().request(
                    "DELETE",
                    self.url(target, uri),
                    limit=ERROR_BODY_BYTES,
                    seconds=LOGOUT_TIMEOUT,
                    headers={"X-Auth-Token": token},
                    ssl=self._ssl_for(target.auth, target.base),
                )
                if answer.status < 300 or answer.status == 404:
                    self.stats["sessions_deleted"] += 1
        finally:
            self._release(target.device)

    async def close(self) -> None:
        """Delete every session this process holds, then close the connection pool."""
        targets = [t for _key, t in self.targets.drain()]
        # Logins under way may still yield a token that must be deleted: give them a moment.
        pending = [t.login_task for t in targets if t.login_task and not t.login_task.done()]
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        await asyncio.gather(*(self.logout(t) for t in targets), return_exceptions=True)
        if self._retiring:
            await asyncio.wait(list(self._retiring), timeout=10.0)
        for task in list(self._background):
            task.cancel()
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- discovery -----------------------------------------------------------------------

    async def discover(self, target: Target, deadline: Deadline, module: Module) -> Discovery:
        found = target.discovery
        fresh = found is not None and time.monotonic() - found.at < module.discovery_ttl
        if found is not None and fresh and not target.stale:
            return found
        if target.discovery_task is None or target.discovery_task.done():
            work = (
                self._refresh(target, found, deadline, module)
                if found is not None and fresh
                else self._discover(target, deadline, module)
            )
            target.discovery_task = self._spawn(work)
        discovered: Discovery = await _joined(target, "discovery_task")
        if target.discovery is None or target.discovery.at != discovered.at:
            # A new tree: its links are tried afresh.
            target.dangling = target.stale = frozenset()
            target.temperature_sensors = None
        target.discovery = discovered
        return discovered

    def dangling(self, target: Target, path: str) -> None:
        """Remember a leaf that answered 404; logged the first time, skipped until rediscovery."""
        if path in target.dangling or len(target.dangling) >= MAX_DANGLING:
            return
        target.dangling |= {path}
        log(
            logger,
            logging.INFO,
            "dangling link skipped until the next discovery",
            target=target.base,
            path=_clean(path, 120),
        )

    async def _discover(self, target: Target, deadline: Deadline, module: Module) -> Discovery:
        _s, root, _h = await self.request(
            target, "GET", ROOT, deadline, module.max_response_bytes, authenticated=False
        )
        if not isinstance(root, dict):
            raise RedfishError(f"GET {ROOT}: the service root is not a JSON object")
        target.sessions_uri = _link(root, "Links", "Sessions") or DEFAULT_SESSIONS
        expand = root.get("ProtocolFeaturesSupported", {})
        expand = expand.get("ExpandQuery") if isinstance(expand, dict) else None
        levels = 0
        if isinstance(expand, dict) and expand.get("NoLinks") is True:
            max_levels = expand.get("MaxLevels", 1)
            levels = (
                min(2, max_levels) if isinstance(max_levels, int) and not isinstance(max_levels, bool) else 1
            )
        if not module.expand:
            levels = 0
        documents: Documents = {}
        systems = await self._systems(target, root, deadline, module, documents)
        chassis = await self._all_chassis(target, root, systems, deadline, module, documents)
        managers = [s.manager for s in systems] + [c.manager for c in chassis]
        found = Discovery(
            sessions=target.sessions_uri,
            systems=systems,
            chassis=chassis,
            manager=next((m for m in managers if m), None),
            expand_levels=levels,
            documents=documents,
        )
        if found.manager:
            # Firmware and model are facts for the info metric, not worth failing discovery over.
            with contextlib.suppress(RedfishError):
                manager = await self.get(target, found.manager, deadline, module)
                found.bmc_firmware = _clean(manager.get("FirmwareVersion") or "", 64)
                found.bmc_model = _clean(manager.get("Model") or "", 64)
        telemetry = _link(root, "TelemetryService")
        if telemetry and "telemetry" in module.collectors:
            with contextlib.suppress(RedfishError):
                found.reports = _link(await self.get(target, telemetry, deadline, module), "MetricReports")
        log(
            logger,
            logging.DEBUG,
            "discovered",
            target=target.base,
            systems=len(systems),
            chassis=len(chassis),
            expand_levels=levels,
        )
        return found

    def _capped(self, target: Target, kind: str, links: list[str], cap: int) -> list[str]:
        """The first ``cap`` of ``links``; the rest are counted and, once per target, logged."""
        if len(links) <= cap:
            return links
        self.stats[f"{kind}_dropped"] += len(links) - cap
        if not target.capped_logged:
            target.capped_logged = True
            log(
                logger,
                logging.WARNING,
                f"BMC lists more {kind} than max_{kind}: the rest are not read",
                target=target.base,
                listed=len(links),
                read=cap,
            )
        return links[:cap]

    async def _read_all(
        self,
        target: Target,
        links: list[str],
        deadline: Deadline,
        module: Module,
        documents: Documents,
    ) -> list[tuple[str, Json]]:
        """(link, document) of each link that could be read, also kept in ``documents`` (the
        probes' first reading); none readable raises the first error."""
        answers = await asyncio.gather(
            *(self._get(target, link, deadline, module) for link in links), return_exceptions=True
        )
        now = self.clock()
        read = []
        for link, answer in zip(links, answers, strict=True):
            if isinstance(answer, tuple) and answer[0] is not None:
                read.append((link, answer[0]))
                documents[link] = (now, answer[0], answer[1])
        failed = [answer for answer in answers if isinstance(answer, BaseException)]
        if not read and failed:
            raise failed[0]
        for exc in failed:
            if not isinstance(exc, RedfishError):
                raise exc
            log(logger, logging.INFO, "member not read at discovery", target=target.base, error=_clean(exc))
        return read

    async def _systems(
        self,
        target: Target,
        root: Json,
        deadline: Deadline,
        module: Module,
        documents: Documents,
    ) -> list[SystemPaths]:
        systems_uri = _link(root, "Systems")
        if systems_uri is None:
            raise RedfishError("service root: no Systems link")
        links = _member_links(await self.get(target, systems_uri, deadline, module))
        if not links:
            raise RedfishError(f"{systems_uri}: Members: no computer system")
        links = self._capped(target, "systems", links, module.max_systems)
        return [
            SystemPaths(
                path=link,
                id=_resource_id(doc, link),
                chassis=tuple(_links(doc, "Links", "Chassis")),
                manager=_link(doc, "Links", "ManagedBy", 0),
            )
            for link, doc in await self._read_all(target, links, deadline, module, documents)
        ]

    async def _all_chassis(
        self,
        target: Target,
        root: Json,
        systems: list[SystemPaths],
        deadline: Deadline,
        module: Module,
        documents: Documents,
    ) -> list[ChassisPaths]:
        """Every chassis: those the systems link first, then the rest of the Chassis collection.

        The collection is optional where the systems link their chassis (some services answer
        404 for it)."""
        links = [c for s in systems for c in s.chassis]
        collection = _link(root, "Chassis")
        if collection is not None:
            try:
                links += _member_links(await self.get(target, collection, deadline, module))
            except RedfishError:
                if not links:
                    raise
        elif not links:
            raise RedfishError("service root: no Chassis link")
        first: dict[str, str] = {}
        for link in links:
            first.setdefault(_key(link), link)
        unique = list(first.values())
        if not unique:
            raise RedfishError(f"{collection}: Members: no chassis")
        unique = self._capped(target, "chassis", unique, module.max_chassis)
        read = await self._read_all(target, unique, deadline, module, documents)
        return _enclosures([_chassis(link, doc) for link, doc in read])

    async def _refresh(
        self, target: Target, found: Discovery, deadline: Deadline, module: Module
    ) -> Discovery:
        """Read the stale chassis again, only them: one that answers 404 is gone (a blade
        pulled), the others keep their paths; one that cannot be read now stays stale."""
        stale = set(target.stale)
        kept: list[ChassisPaths] = []
        for chassis in found.chassis:
            if chassis.path not in stale:
                kept.append(chassis)
                continue
            try:
                doc = await self.get(target, chassis.path, deadline, module)
            except RedfishError as exc:
                if exc.status != 404:
                    kept.append(chassis)
                    stale.discard(chassis.path)  # tried again at the next probe
                    continue
                log(logger, logging.INFO, "chassis gone", target=target.base, chassis=_clean(chassis.path))
            else:
                kept.append(_chassis(chassis.path, doc))
                found.documents[chassis.path] = (self.clock(), doc, None)
            if target.temperature_sensors:
                target.temperature_sensors.pop(chassis.path, None)
        target.stale -= stale
        if not kept:
            raise RedfishError("no chassis left after rediscovery")
        return replace(found, chassis=_enclosures(kept))


def _member_links(collection: Json) -> list[str]:
    members = collection.get("Members")
    if not isinstance(members, list):
        return []
    return [link for i in range(len(members)) if (link := _link(members, i)) is not None]


def _links(doc: Any, *path: str) -> list[str]:
    node = doc
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, list):
        return []
    return [link for i in range(len(node)) if (link := _link(node, i)) is not None]


def _resource_id(doc: Json, link: str) -> str:
    """The resource's ``Id``, else the last segment of its path (label ``system``/``chassis``)."""
    found = doc.get("Id")
    if isinstance(found, str | int) and not isinstance(found, bool) and str(found).strip():
        return str(found)
    return link.rstrip("/").rsplit("/", 1)[-1]


def _chassis(link: str, doc: Json) -> ChassisPaths:
    return ChassisPaths(
        path=link,
        id=_resource_id(doc, link),
        power=_link(doc, "Power"),
        thermal=_link(doc, "Thermal"),
        power_subsystem=_link(doc, "PowerSubsystem"),
        thermal_subsystem=_link(doc, "ThermalSubsystem"),
        environment_metrics=_link(doc, "EnvironmentMetrics"),
        sensors=_link(doc, "Sensors"),
        systems=tuple(_links(doc, "Links", "ComputerSystems")),
        contained_by=_link(doc, "Links", "ContainedBy"),
        contains=tuple(_links(doc, "Links", "Contains")),
        manager=_link(doc, "Links", "ManagedBy", 0),
    )
