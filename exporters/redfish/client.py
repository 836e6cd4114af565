"""HTTP, sessions and discovery for Redfish targets: one aiohttp session for the whole process.

Sessions (``X-Auth-Token``) are created once per (target, auth), shared by every probe and
collector, re-created when the BMC answers 401 (the session expired), and deleted when the
exporter shuts down.  A login runs as a task of its own, shielded from the probe that started it:
a probe that times out while the BMC is still creating the session must not abandon the token,
or the session would stay open on the BMC until its idle timeout.  The number of sessions this
process holds on one BMC never exceeds the auth's ``max_sessions``.

Discovery reads the service root (unauthenticated), the first system, its chassis and manager,
and remembers the paths per target for ``discovery_ttl`` seconds (or until one answers 404).

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
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from ..runtime import CollectorError, Deadline, ResettableCounter, log
from ..runtime.state import DEFAULT_STATE_TTL, Clock, ExpiringMap
from .config import Auth, Module

logger = logging.getLogger("powerplane.redfish")

Json = dict[str, Any]
T = TypeVar("T")
ROOT = "/redfish/v1"
DEFAULT_SESSIONS = "/redfish/v1/SessionService/Sessions"
#: A login gets at least this long even when the probe that needed it has less time left.
LOGIN_TIMEOUT = 30.0
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
    bmc_firmware: str = ""
    bmc_model: str = ""
    at: float = field(default_factory=time.monotonic)


@dataclass
class Target:
    """What the process remembers about one (BMC, auth): its session and discovered paths."""

    base: str
    device: str
    auth: Auth
    sessions_uri: str = DEFAULT_SESSIONS
    token: str | None = None
    session_uri: str | None = None
    login_task: asyncio.Task[None] | None = None
    discovery: Discovery | None = None
    discovery_task: asyncio.Task[Discovery] | None = None
    expand_refused: bool = False
    requests: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    #: The BMC's energy meter as a counter that survives meter resets.
    energy: ResettableCounter = field(default_factory=ResettableCounter)


def _link(doc: Any, *path: str | int) -> str | None:
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
    return node if isinstance(node, str) and node.startswith("/") else None


def _clean(text: Any, limit: int = 160) -> str:
    """A device-supplied string fit for a log line: printable and short."""
    out = "".join(c if c.isprintable() else " " for c in str(text))
    return out[:limit] + ("…" if len(out) > limit else "")


def describe_failure(status: int, body: bytes) -> tuple[str, str]:
    """(message id, text) of a Redfish error body, or ("", "") when it is not one."""
    try:
        doc = json.loads(body[:65536])
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


class RedfishClient:
    """One aiohttp session (connection pool) for every target of the process."""

    def __init__(
        self, connections: int = 1024, state_ttl: float = DEFAULT_STATE_TTL, clock: Clock | None = None
    ) -> None:
        self._connections = connections
        self._http: aiohttp.ClientSession | None = None
        self.targets: ExpiringMap[tuple[str, str], Target] = ExpiringMap(
            state_ttl, on_evict=self._evicted, **({"clock": clock} if clock else {})
        )
        self._ssl: dict[str, Any] = {}
        self.held: Counter[str] = Counter()  # device → sessions held (no zero entries)
        self.stats: Counter[str] = Counter()
        self._background: set[asyncio.Task[Any]] = set()
        self._retiring: set[asyncio.Task[None]] = set()

    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(
                limit=self._connections, limit_per_host=8, keepalive_timeout=120.0, ttl_dns_cache=300
            )
            self._http = aiohttp.ClientSession(
                connector=connector, headers={"Accept": "application/json", "OData-Version": "4.0"}
            )
        return self._http

    def target(self, base: str, device: str, auth: Auth, module: Module) -> Target:
        """The state of (BMC, auth), created on first use and marked used now."""
        return self.targets.get(
            (base, auth.name),
            lambda: Target(base, device, auth, requests=asyncio.Semaphore(module.max_concurrent_requests)),
        )

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
        """(status, parsed JSON or None, headers); raises RedfishError on 4xx/5xx or bad JSON."""
        auth = target.auth
        headers: dict[str, str] = {}
        if authenticated:
            if auth.method == "basic":
                pair = f"{auth.user()}:{auth.password.reveal()}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
            elif target.token:
                headers["X-Auth-Token"] = target.token
        timeout = aiohttp.ClientTimeout(total=max(0.05, deadline.remaining()))
        self.stats["requests"] += 1
        where = f"{method} {path}"
        async with target.requests:
            try:
                async with self.http().request(
                    method,
                    target.base + path,
                    headers=headers,
                    json=body,
                    ssl=self._ssl_for(auth, target.base),
                    timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    length = response.content_length
                    if length is not None and length > max_bytes:
                        raise RedfishError(f"{where}: response of {length} bytes exceeds {max_bytes}")
                    raw = bytearray()
                    async for chunk in response.content.iter_chunked(65536):
                        raw += chunk
                        if len(raw) > max_bytes:
                            raise RedfishError(f"{where}: response exceeds {max_bytes} bytes")
                    status, response_headers = response.status, response.headers
            except TimeoutError:
                raise RedfishError(f"{where}: timed out") from None
            except aiohttp.ClientSSLError as exc:
                raise RedfishError(f"{where}: TLS: {_clean(exc, 200)}") from None
            except aiohttp.ClientError as exc:
                raise RedfishError(f"{where}: {type(exc).__name__}: {_clean(exc)}") from None
        self.stats[f"status_{status // 100}xx"] += 1
        if status >= 400:
            message_id, text = describe_failure(status, bytes(raw))
            detail = f" {message_id}: {text}" if message_id or text else ""
            error_cls = SessionLimitError if RAC0218 in message_id or RAC0218 in text else RedfishError
            if error_cls is SessionLimitError:
                detail = f" {RAC0218}: the BMC's maximum number of sessions is reached ({text or message_id})"
            raise error_cls(f"{where}: HTTP {status}{detail}", status, message_id)
        if not raw.strip():
            return status, None, response_headers
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else _clean(exc, 80)
            raise RedfishError(f"{where}: malformed JSON ({reason})", status) from None
        return status, doc, response_headers

    async def get(self, target: Target, path: str, deadline: Deadline, module: Module) -> Json:
        """An authenticated GET of a JSON object; logs in again once on 401."""
        if target.auth.method == "session" and target.token is None:
            await self.login(target, deadline)
        used = target.token
        try:
            _status, doc, _headers = await self.request(
                target, "GET", path, deadline, module.max_response_bytes
            )
        except RedfishError as exc:
            if exc.status == 404 and target.discovery is not None and "?" not in path:
                target.discovery = None  # the tree changed (firmware update?): discover again
            if exc.status != 401 or target.auth.method != "session":
                raise
            self.stats["session_expired"] += 1
            if target.token == used:
                self._forget_session(target)
            await self.login(target, deadline)
            _status, doc, _headers = await self.request(
                target, "GET", path, deadline, module.max_response_bytes
            )
        if not isinstance(doc, dict):
            raise RedfishError(f"GET {path}: expected a JSON object, got {type(doc).__name__}")
        return doc

    # --- sessions ------------------------------------------------------------------------

    def _release(self, device: str) -> None:
        self.held[device] -= 1
        if self.held[device] <= 0:
            del self.held[device]

    def _forget_session(self, target: Target) -> None:
        if target.token is not None:
            target.token = None
            target.session_uri = None
            self._release(target.device)

    async def login(self, target: Target, deadline: Deadline) -> None:
        """Create the target's session, or join the login already under way."""
        if target.token is not None:
            return
        if target.login_task is None or target.login_task.done():
            if self.held[target.device] >= target.auth.max_sessions:
                raise RedfishError(
                    f"session budget of {target.auth.max_sessions} for this BMC is used up; not logging in"
                )
            target.login_task = self._spawn(self._login(target, max(deadline.remaining(), LOGIN_TIMEOUT)))
        await asyncio.shield(target.login_task)

    async def _login(self, target: Target, seconds: float) -> None:
        auth = target.auth
        body = {"UserName": auth.user(), "Password": auth.password.reveal()}
        self.held[target.device] += 1  # reserved before the BMC can create it
        try:
            status, doc, headers = await self.request(
                target, "POST", target.sessions_uri, Deadline.after(seconds), 65536, body, authenticated=False
            )
        except SessionLimitError:
            self._release(target.device)
            self.stats["login_session_limit"] += 1
            raise
        except BaseException:
            self._release(target.device)
            self.stats["login_failed"] += 1
            raise
        token = headers.get("X-Auth-Token")
        if not token:
            self._release(target.device)
            self.stats["login_failed"] += 1
            raise RedfishError(f"POST {target.sessions_uri}: HTTP {status} without an X-Auth-Token")
        location = headers.get("Location") or _link(doc, "@odata.id") or ""
        if "://" in location:
            location = "/" + location.split("://", 1)[1].partition("/")[2]
        target.token = token
        target.session_uri = location or None
        self.stats["sessions_created"] += 1
        log(logger, logging.DEBUG, "session created", target=target.base, auth=auth.name)

    async def logout(self, target: Target) -> None:
        uri = target.session_uri
        token = target.token
        self._forget_session(target)
        if not uri or not token:
            return
        headers = {"X-Auth-Token": token}
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with self.http().delete(
                target.base + uri,
                headers=headers,
                ssl=self._ssl_for(target.auth, target.base),
                timeout=aiohttp.ClientTimeout(total=5.0),
            ) as response:
                await response.read()
                if response.status < 300 or response.status == 404:
                    self.stats["sessions_deleted"] += 1

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
        found = await asyncio.shield(target.discovery_task)
        target.discovery = found
        return found

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
