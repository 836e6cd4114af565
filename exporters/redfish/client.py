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

Discovery reads the service root (unauthenticated), the first system, its chassis and manager,
and remembers the paths per target for ``discovery_ttl`` seconds, or until one of those paths
answers 404 (the tree changed, e.g. after a firmware update).  A 404 on any other path (a
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
from dataclasses import dataclass, field
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


class RedfishError(CollectorError):
    """A failed request; ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0, message_id: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message_id = message_id


class SessionLimitError(RedfishError):
    """The BMC refused a login because its sessions are used up (iDRAC RAC0218)."""


@dataclass
class Discovery:
    """Paths found from the service root, and facts that change only with firmware."""

    sessions: str
    system: str
    chassis: str
    manager: str | None
    expand_levels: int
    power: str | None = None
    thermal: str | None = None
    power_subsystem: str | None = None
    thermal_subsystem: str | None = None
    environment_metrics: str | None = None
    reports: str | None = None
    sensors: str | None = None
    bmc_firmware: str = ""
    bmc_model: str = ""
    at: float = field(default_factory=time.monotonic)

    def paths(self) -> set[str]:
        """The discovered paths: a 404 on one of them means the tree changed."""
        found = (
            self.system,
            self.chassis,
            self.manager,
            self.power,
            self.thermal,
            self.power_subsystem,
            self.thermal_subsystem,
            self.environment_metrics,
            self.reports,
            self.sensors,
        )
        return {p for p in found if p}


#: Dangling links remembered per target at most (each is skipped until the next discovery).
MAX_DANGLING = 64


@dataclass
class Target:
    """What the process remembers about one (BMC, auth): its session and discovered paths."""

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
    dangling: set[str] = field(default_factory=set)
    #: The chassis' temperature Sensors, learned from its Sensors collection (None: not yet).
    temperature_sensors: list[str] | None = None
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
    ) -> tuple[int, Any, Any]:
        """(status, parsed JSON or None, headers); raises RedfishError on 3xx-5xx or bad JSON."""
        url = self.url(target, path)
        headers = self._credentials(target) if authenticated else None
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
        session = target.auth.method == "session"
        if session and target.token is None:
            await self.login(target, deadline)
        used = target.token
        try:
            _status, doc, _headers = await self.request(
                target, "GET", path, deadline, module.max_response_bytes
            )
        except RedfishError as exc:
            found = target.discovery
            if exc.status == 404 and found is not None and path in found.paths():
                target.discovery = None  # the tree changed (firmware update?): discover again
            if exc.status != 401 or not session:
                raise
            if used is not None and target.token == used:
                self._renew(target, deadline)
            await self.login(target, deadline)
            _status, doc, _headers = await self.request(
                target, "GET", path, deadline, module.max_response_bytes
            )
        if used is not None and target.token == used:
            # The session works: the logins that made it were good (a new one that is refused at
            # once does not reset the backoff).
            target.session_served = True
            target.failed_logins, target.next_login = 0, 0.0
        if not isinstance(doc, dict):
            raise RedfishError(f"GET {_clean(path, 120)}: expected a JSON object, got {type(doc).__name__}")
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
        if found is not None and time.monotonic() - found.at < module.discovery_ttl:
            return found
        if target.discovery_task is None or target.discovery_task.done():
            target.discovery_task = self._spawn(self._discover(target, deadline, module))
        discovered: Discovery = await _joined(target, "discovery_task")
        if target.discovery is not discovered:
            target.dangling.clear()  # a new tree: its links are tried afresh
            target.temperature_sensors = None
        target.discovery = discovered
        return discovered

    def dangling(self, target: Target, path: str) -> None:
        """Remember a leaf that answered 404; logged the first time, skipped until rediscovery."""
        if path in target.dangling or len(target.dangling) >= MAX_DANGLING:
            return
        target.dangling.add(path)
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
        systems_uri = _link(root, "Systems")
        if systems_uri is None:
            raise RedfishError("service root: no Systems link")
        systems = await self.get(target, systems_uri, deadline, module)
        system_uri = _link(systems, "Members", 0)
        if system_uri is None:
            raise RedfishError(f"{systems_uri}: Members: no computer system")
        system = await self.get(target, system_uri, deadline, module)
        chassis_uri = _link(system, "Links", "Chassis", 0)
        if chassis_uri is None:
            chassis_collection = _link(root, "Chassis")
            if chassis_collection is None:
                raise RedfishError("service root: no Chassis link")
            chassis_uri = _link(await self.get(target, chassis_collection, deadline, module), "Members", 0)
            if chassis_uri is None:
                raise RedfishError(f"{chassis_collection}: Members: no chassis")
        chassis = await self.get(target, chassis_uri, deadline, module)
        found = Discovery(
            sessions=target.sessions_uri,
            system=system_uri,
            chassis=chassis_uri,
            manager=_link(system, "Links", "ManagedBy", 0) or _link(chassis, "Links", "ManagedBy", 0),
            expand_levels=levels,
            power=_link(chassis, "Power"),
            thermal=_link(chassis, "Thermal"),
            power_subsystem=_link(chassis, "PowerSubsystem"),
            thermal_subsystem=_link(chassis, "ThermalSubsystem"),
            environment_metrics=_link(chassis, "EnvironmentMetrics"),
            sensors=_link(chassis, "Sensors"),
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
            system=system_uri,
            chassis=chassis_uri,
            expand_levels=levels,
        )
        return found
