"""Where the scheduler's state comes from: slurmrestd or the Slurm commands, one snapshot per interval.

A ``Source`` turns an endpoint (``nodes``, ``jobs``, ...) into a ``Listing`` of parsed records;
``SlurmrestdSource`` asks the REST API (its version discovered from ``/openapi/v3``),
``CliSource`` runs ``squeue --json`` and friends without a shell, falling back to the text
output where a command has no ``--json`` (Slurm 22.05's ``scontrol show partitions``,
``sdiag``).  Another scheduler (PBS) would be another ``Source`` producing the same records.

``Snapshots`` stands between the collectors and the source: concurrent scrapes share one
fetch, and a listing younger than ``min_interval`` (its failure too) is served again, so
slurmctld is asked at most once per endpoint and interval however many Prometheus replicas
scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..runtime import CollectorError
from . import http, model, textformat
from .config import API_VERSIONS, CliConfig, Limits, RestConfig, Token
from .stream import StreamError, chunks_of, read_document

T = TypeVar("T")
#: Record errors named per listing (the rest are counted).
MAX_ERRORS_NAMED = 5


@dataclass(frozen=True)
class Endpoint(Generic[T]):
    """One kind of record: its REST path and array, and the parser of one element."""

    name: str
    path: str
    key: str
    parse: Callable[[Mapping[str, Any]], T]


NODES: Endpoint[model.Node] = Endpoint("nodes", "nodes", "nodes", model.parse_node)
PARTITIONS: Endpoint[model.Partition] = Endpoint(
    "partitions", "partitions", "partitions", model.parse_partition
)
JOBS: Endpoint[model.Job] = Endpoint("jobs", "jobs", "jobs", model.parse_job)
RESERVATIONS: Endpoint[model.Reservation] = Endpoint(
    "reservations", "reservations", "reservations", model.parse_reservation
)
PING: Endpoint[model.Controller] = Endpoint("ping", "ping", "pings", model.parse_ping)
#: ``/diag`` is one object, parsed whole: its listing has one record.
DIAG: Endpoint[model.Diag] = Endpoint("diag", "diag", "statistics", model.parse_diag)


@dataclass(frozen=True)
class Meta:
    """What the answer said about its origin."""

    release: str = ""
    api: str = ""
    cluster: str = ""


@dataclass(frozen=True)
class Listing(Generic[T]):
    records: Sequence[T]
    errors: Sequence[str] = ()
    dropped: int = 0
    meta: Meta = field(default_factory=Meta)
    #: Wall-clock time the answer arrived.
    fetched_at: float = 0.0


class _Collect(Generic[T]):
    """Parses elements as they stream in, keeping at most ``limit`` records and a few errors."""

    def __init__(self, endpoint: Endpoint[T], limit: int) -> None:
        self.endpoint = endpoint
        self.limit = limit
        self.records: list[T] = []
        self.errors: list[str] = []
        self.bad = 0
        self.dropped = 0
        self.index = 0

    def __call__(self, element: Any) -> None:
        i = self.index
        self.index += 1
        if len(self.records) >= self.limit:
            self.dropped += 1
            return
        try:
            if not isinstance(element, Mapping):
                raise model.FieldError(f"expected an object, got {type(element).__name__}")
            self.records.append(self.endpoint.parse(element))
        except (model.FieldError, TypeError, ValueError, AttributeError) as exc:
            self.bad += 1
            if len(self.errors) < MAX_ERRORS_NAMED:
                self.errors.append(f"{self.endpoint.key}[{i}].{exc}")

    def listing(self, members: Mapping[str, Any]) -> Listing[T]:
        errors = list(self.errors)
        if self.bad > len(self.errors):
            errors.append(f"{self.bad - len(self.errors)} more {self.endpoint.key} records could not be read")
        server = _server_errors(members)
        if server and not self.records:
            raise CollectorError(f"{self.endpoint.name}: {server}")
        return Listing(self.records, errors, self.dropped, _meta(members), time.time())


def _server_errors(members: Mapping[str, Any]) -> str:
    errors = members.get("errors")
    if not isinstance(errors, list):
        return ""
    texts = []
    for e in errors[:3]:
        if isinstance(e, Mapping):
            texts.append(str(e.get("description") or e.get("error") or e.get("error_number") or e)[:200])
    return "; ".join(texts)


def _meta(members: Mapping[str, Any]) -> Meta:
    meta = members.get("meta")
    if not isinstance(meta, Mapping):
        return Meta()
    slurm = meta.get("slurm") or meta.get("Slurm") or {}
    plugin = meta.get("plugin") or {}
    if not isinstance(slurm, Mapping) or not isinstance(plugin, Mapping):
        return Meta()
    api = str(plugin.get("data_parser") or plugin.get("type") or "")
    api = api.rsplit("/", 1)[-1]
    return Meta(str(slurm.get("release", ""))[:32], api[:32], str(slurm.get("cluster", ""))[:64])


async def parse_stream(chunks: AsyncIterator[bytes], endpoint: Endpoint[T], limits: Limits) -> Listing[T]:
    """Read one answer: the endpoint's array streamed through its parser (``/diag``: the object)."""
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        return await _parse(chunks, endpoint, limits)


async def _parse(chunks: AsyncIterator[bytes], endpoint: Endpoint[T], limits: Limits) -> Listing[T]:
    collect = _Collect(endpoint, limits.max_records)
    try:
        if endpoint is DIAG:
            members = await read_document(chunks, {}, limits.max_response_bytes)
            stats = members.get("statistics")
            if not isinstance(stats, Mapping):
                raise CollectorError(f"diag: {_server_errors(members) or 'no statistics in the answer'}")
            return Listing([model.parse_diag(stats)], (), 0, _meta(members), time.time())  # type: ignore[list-item]
        members = await read_document(chunks, {endpoint.key: collect}, limits.max_response_bytes)
    except StreamError as exc:
        raise CollectorError(f"{endpoint.name}: {exc}") from None
    except model.FieldError as exc:
        raise CollectorError(f"{endpoint.name}: statistics.{exc}") from None
    if collect.index == 0 and endpoint.key in members:
        raise CollectorError(f"{endpoint.name}: {endpoint.key} is not a list")
    return collect.listing(members)


class Source(ABC):
    """A scheduler's state, one endpoint at a time."""

    kind: str = "source"

    @abstractmethod
    async def fetch(self, endpoint: Endpoint[T]) -> Listing[T]:
        """The endpoint's records now; raises ``CollectorError`` with a concise cause."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


# --- slurmrestd --------------------------------------------------------------------------------

_VERSION_PATH = re.compile(r"^/slurm/(v\d+\.\d+\.\d+)/")


class SlurmrestdSource(Source):
    """slurmrestd over TCP (JWT) or a unix socket (local auth)."""

    kind = "slurmrestd"

    def __init__(self, config: RestConfig, limits: Limits, timeout: float) -> None:
        self.config = config
        self.limits = limits
        self.timeout = timeout
        self.token = Token(config.token, config.token_path) if config.token else None
        self.version: str | None = None if config.api_version == "auto" else config.api_version
        self._discovering: asyncio.Lock | None = None

    @property
    def base(self) -> str:
        return "http://localhost" if self.config.unix_socket else self.config.url

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["X-SLURM-USER-TOKEN"] = self.token.value()
            if self.config.user:
                headers["X-SLURM-USER-NAME"] = self.config.user
        return headers

    async def _get(self, path: str) -> AsyncGenerator[bytes]:
        try:
            async with http.get(
                f"{self.base}{path}",
                self._headers(),
                unix_socket=self.config.unix_socket,
                ssl_context=self.config.ssl_context(),
                connect_timeout=self.timeout,
            ) as response:
                if response.status != 200:
                    body = b""
                    async for chunk in response.body:
                        body += chunk
                        if len(body) >= 4096:
                            break
                    raise CollectorError(
                        f"slurmrestd {path}: HTTP {response.status}: {_error_text(body[:4096])}"
                    )
                async for chunk in response.body:
                    yield chunk
        except http.HttpError as exc:
            raise CollectorError(f"slurmrestd {path}: {exc}") from None

    async def discover(self) -> str:
        """The newest API version both the server and the exporter know."""
        if self._discovering is None:
            self._discovering = asyncio.Lock()
        async with self._discovering:
            if self.version:
                return self.version
            try:
                async with contextlib.aclosing(self._get("/openapi/v3")) as chunks:
                    doc = await read_document(chunks, {}, 256 << 20)
            except StreamError as exc:
                raise CollectorError(f"slurmrestd /openapi/v3: {exc}") from None
            paths = doc.get("paths")
            offered = set()
            if isinstance(paths, Mapping):
                offered = {m.group(1) for p in paths if (m := _VERSION_PATH.match(str(p)))}
            for version in API_VERSIONS:
                if version in offered:
                    self.version = version
                    return version
            raise CollectorError(
                "slurmrestd offers no API version this exporter reads "
                f"(offered: {', '.join(sorted(offered)) or 'none'}; known: {', '.join(API_VERSIONS)})"
            )

    async def fetch(self, endpoint: Endpoint[T]) -> Listing[T]:
        try:
            async with asyncio.timeout(self.timeout):
                version = await self.discover()
                return await parse_stream(
                    self._get(f"/slurm/{version}/{endpoint.path}"), endpoint, self.limits
                )
        except TimeoutError:
            raise CollectorError(f"slurmrestd {endpoint.name}: no answer within {self.timeout:g}s") from None
        except CollectorError as exc:
            if "HTTP 404" in str(exc) and self.config.api_version == "auto":
                self.version = None  # the server was upgraded or downgraded: discover again next time
            raise


def _error_text(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip().splitlines()[0][:200] if body.strip() else "(no body)"
    if isinstance(doc, Mapping):
        return _server_errors(doc) or "(no error message)"
    return "(unexpected body)"


# --- the Slurm commands ------------------------------------------------------------------------

#: Per endpoint: the command with --json, and the fallback for versions without it (text or JSON).
_COMMANDS: dict[str, tuple[list[str], list[str] | None]] = {
    "jobs": (["squeue", "--all", "--json"], None),
    "nodes": (["scontrol", "--json", "show", "nodes"], ["sinfo", "--json"]),
    "partitions": (["scontrol", "--json", "show", "partitions"], ["scontrol", "-o", "show", "partitions"]),
    "reservations": (
        ["scontrol", "--json", "show", "reservations"],
        ["scontrol", "-o", "show", "reservations"],
    ),
    "ping": (["scontrol", "--json", "ping"], ["scontrol", "ping"]),
    "diag": (["sdiag", "--json"], ["sdiag"]),
}
_TEXT: dict[str, Callable[[str], Any]] = {
    "partitions": lambda t: {"partitions": list(textformat.partitions(t))},
    "reservations": lambda t: {"reservations": list(textformat.reservations(t))},
    "ping": lambda t: {"pings": list(textformat.pings(t))},
    "diag": lambda t: {"statistics": textformat.sdiag(t)},
}
_NO_JSON = re.compile(r"unrecognized option|invalid option|unknown option", re.IGNORECASE)
#: Text outputs are small; more than this is not a Slurm command's answer.
MAX_TEXT_BYTES = 64 << 20


class CliSource(Source):
    """``squeue --json``, ``scontrol --json show ...`` and ``sdiag`` run without a shell."""

    kind = "cli"

    def __init__(self, config: CliConfig, limits: Limits, timeout: float) -> None:
        self.config = config
        self.limits = limits
        self.timeout = timeout
        self.token = Token(config.token, config.token_path) if config.token else None
        #: Endpoints whose --json form the installed Slurm lacks (learned from its answer).
        self.fallback: set[str] = set()

    async def fetch(self, endpoint: Endpoint[T]) -> Listing[T]:
        primary, fallback = _COMMANDS[endpoint.name]
        if endpoint.name not in self.fallback or fallback is None:
            try:
                return await self._run(primary, endpoint)
            except _NoJson:
                if fallback is None:
                    raise CollectorError(f"{primary[0]} has no --json here") from None
                self.fallback.add(endpoint.name)
        return await self._run(fallback, endpoint)

    async def _run(self, argv: list[str], endpoint: Endpoint[T]) -> Listing[T]:
        command = [self.config.command(argv[0]), *argv[1:]]
        shown = " ".join(argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.config.env(self.token),
            )
        except OSError as exc:
            raise CollectorError(f"{shown}: {exc.strerror}: {command[0]}") from None
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.ensure_future(proc.stderr.read(65536))
        try:
            async with asyncio.timeout(self.timeout):
                if "--json" in argv:
                    listing = await self._json(proc, endpoint, shown, stderr_task)
                else:
                    out = await proc.stdout.read(MAX_TEXT_BYTES + 1)
                    if len(out) > MAX_TEXT_BYTES:
                        raise CollectorError(f"{shown}: more than {MAX_TEXT_BYTES} bytes of output")
                    await self._check(proc, shown, stderr_task)
                    text = out.decode("utf-8", "replace")
                    document = json.dumps(_TEXT[endpoint.name](text)).encode()
                    listing = await parse_stream(chunks_of(document), endpoint, self.limits)
            return listing
        except TimeoutError:
            raise CollectorError(f"{shown}: no answer within {self.timeout:g}s") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            stderr_task.cancel()

    async def _json(
        self,
        proc: asyncio.subprocess.Process,
        endpoint: Endpoint[T],
        shown: str,
        stderr: asyncio.Future[bytes],
    ) -> Listing[T]:
        assert proc.stdout is not None
        stdout = proc.stdout

        async def chunks() -> AsyncGenerator[bytes]:
            while chunk := await stdout.read(1 << 20):
                yield chunk

        try:
            listing = await parse_stream(chunks(), endpoint, self.limits)
        except CollectorError:
            await self._check(proc, shown, stderr)  # a failed command explains itself better
            raise
        await self._check(proc, shown, stderr)
        return listing

    async def _check(
        self, proc: asyncio.subprocess.Process, shown: str, stderr: asyncio.Future[bytes]
    ) -> None:
        code = await proc.wait()
        if code == 0:
            return
        message = (await stderr).decode("utf-8", "replace").strip()
        if _NO_JSON.search(message):
            raise _NoJson()
        first = message.splitlines()[0][:200] if message else "(no message)"
        raise CollectorError(f"{shown}: exit status {code}: {first}")


class _NoJson(Exception):
    pass


# --- one fetch per endpoint and interval --------------------------------------------------------


@dataclass
class _Entry:
    task: asyncio.Task[Listing[Any]] | None = None
    done_at: float = -1e18


class Snapshots:
    """Coalesces concurrent requests for an endpoint and serves a recent answer (or failure) again."""

    def __init__(
        self, source: Source, min_interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.source = source
        self.min_interval = min_interval
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        #: Requests sent to the source per endpoint (tests and the exporter's own metrics).
        self.fetches: dict[str, int] = {}

    async def get(self, endpoint: Endpoint[T]) -> Listing[T]:
        entry = self._entries.setdefault(endpoint.name, _Entry())
        task = entry.task
        fresh = task is not None and task.done() and self.clock() - entry.done_at < self.min_interval
        if task is None or (task.done() and not fresh):
            self.fetches[endpoint.name] = self.fetches.get(endpoint.name, 0) + 1
            task = asyncio.ensure_future(self._fetch(endpoint, entry))
            entry.task = task
        # A scrape that gives up (its deadline) leaves the fetch running for the next one.
        result: Listing[T] = await asyncio.shield(task)
        return result

    async def _fetch(self, endpoint: Endpoint[T], entry: _Entry) -> Listing[T]:
        try:
            return await self.source.fetch(endpoint)
        finally:
            entry.done_at = self.clock()

    async def close(self) -> None:
        for entry in self._entries.values():
            if entry.task is not None and not entry.task.done():
                entry.task.cancel()
                with contextlib.suppress(BaseException):
                    await entry.task
        await self.source.close()


def make_source(kind: str, rest: RestConfig | None, cli: CliConfig, limits: Limits, timeout: float) -> Source:
    if kind == "slurmrestd":
        assert rest is not None
        return SlurmrestdSource(rest, limits, timeout)
    return CliSource(cli, limits, timeout)
