"""Where the scheduler's state comes from: slurmrestd or the Slurm commands, one snapshot per interval.

A ``Source`` turns an endpoint (``nodes``, ``jobs``, ...) into a ``Listing`` of parsed records;
``SlurmrestdSource`` asks the REST API (its version discovered from ``/openapi/v3``),
``CliSource`` runs ``squeue --json`` and friends without a shell, falling back to the text
output where a command has no ``--json`` (Slurm 22.05's ``scontrol show partitions``,
``sdiag``).  Another scheduler (PBS) would be another ``Source`` producing the same records.

``Snapshots`` stands between the collectors and the source: concurrent scrapes share one
fetch, and a listing younger than ``min_interval`` (its failure too) is served again, so
slurmctld is asked at most once per endpoint and interval however many Prometheus replicas
scrape.  It hands the source the last listing it read, so that slurmrestd can be asked for the
nodes, jobs, partitions and reservations only if they changed (``update_time``; see
``SlurmrestdSource``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
from .stream import Stream, StreamError, chunks_of, read_document

T = TypeVar("T")
#: Record errors named per listing (the rest are counted).
MAX_ERRORS_NAMED = 5
#: Seconds subtracted from the exporter's clock for ``update_time`` where the answer does not
#: say when its data last changed (v0.0.38): a slurmctld clock that far behind still never hides
#: a change; a change in those seconds costs one full read more.
CLOCK_MARGIN = 5.0
_OBJECT = dict[str, Any]


@dataclass(frozen=True)
class Endpoint(Generic[T]):
    """One kind of record: its REST path and array, how one element is decoded and parsed.

    ``type`` is what msgspec decodes an element into (a struct of the fields read, for the large
    listings; a plain object for the small ones) and ``parse`` turns that into the record.
    ``conditional``: slurmrestd answers it only if it changed since ``update_time``.
    """

    name: str
    path: str
    key: str
    parse: Callable[[Any], T]
    type: Any = _OBJECT
    conditional: bool = False


NODES: Endpoint[model.Node] = Endpoint(
    "nodes", "nodes", "nodes", model.parse_node, model.NodeRecord, conditional=True
)
PARTITIONS: Endpoint[model.Partition] = Endpoint(
    "partitions", "partitions", "partitions", model.parse_partition, conditional=True
)
JOBS: Endpoint[model.Job] = Endpoint(
    "jobs", "jobs", "jobs", model.parse_job, model.JobRecord, conditional=True
)
RESERVATIONS: Endpoint[model.Reservation] = Endpoint(
    "reservations", "reservations", "reservations", model.parse_reservation, conditional=True
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
    #: Wall-clock time the answer arrived (or, unchanged, was confirmed).
    fetched_at: float = 0.0
    #: Wall-clock time the records were last read in full.
    full_at: float = 0.0
    #: The ``update_time`` to ask with next: when the data was known current, in slurmctld's
    #: clock where the answer says so (``last_update``); None: ask for everything.
    as_of: float | None = None
    #: The server said nothing changed since the previous answer (the records are that answer's).
    unchanged: bool = False


#: Newer data parsers answer an unchanged listing with 200, no records and this warning.
_NO_CHANGE = re.compile(r"\bno \w+ changes since update_time", re.IGNORECASE)


class _Collect(Generic[T]):
    """Parses decoded elements as they stream in, keeping at most ``limit`` records and a few errors."""

    def __init__(self, endpoint: Endpoint[T], limit: int, known: Sequence[T] = ()) -> None:
        self.endpoint = endpoint
        self.limit = limit
        self.known = _index(known)
        self.records: list[T] = []
        self.errors: list[str] = []
        self.bad = 0
        self.dropped = 0
        self.stream: Stream[Any] = Stream(self.take, self.reject, endpoint.type)

    def take(self, elements: Sequence[Any], first: int) -> None:
        room = self.limit - len(self.records)
        if len(elements) > room:
            self.dropped += len(elements) - max(room, 0)
            elements = elements[: max(room, 0)]
        parse, records, known = self.endpoint.parse, self.records, self.known
        for i, element in enumerate(elements):
            try:
                record = parse(element)
            except (model.FieldError, TypeError, ValueError, AttributeError) as exc:
                self.reject(first + i, str(exc))
            else:
                records.append(known.get(record, record) if known else record)

    def reject(self, index: int, why: str) -> None:
        self.bad += 1
        if len(self.errors) < MAX_ERRORS_NAMED:
            where = self.endpoint.key + f"[{index}]"
            self.errors.append(f"{where}.{why}" if not why.startswith("expected") else f"{where}: {why}")

    def listing(self, members: Mapping[str, Any], asked_at: float) -> Listing[T]:
        errors = list(self.errors)
        if self.bad > len(self.errors):
            errors.append(f"{self.bad - len(self.errors)} more {self.endpoint.key} records could not be read")
        server = _server_errors(members)
        if server and not self.records:
            raise CollectorError(f"{self.endpoint.name}: {server}")
        now = time.time()
        unchanged = not self.records and _said_unchanged(members)
        return Listing(
            self.records, errors, self.dropped, _meta(members), now, now, _as_of(members, asked_at), unchanged
        )


def _index(records: Sequence[T]) -> dict[T, T]:
    """Records by themselves, where they can be (frozen and hashable: nodes, jobs)."""
    try:
        return {r: r for r in records}
    except TypeError:
        return {}


def _said_unchanged(members: Mapping[str, Any]) -> bool:
    warnings = members.get("warnings")
    if not isinstance(warnings, list):
        return False
    return any(isinstance(w, Mapping) and _NO_CHANGE.search(str(w.get("description", ""))) for w in warnings)


def _as_of(members: Mapping[str, Any], asked_at: float) -> float:
    """When the answer's data was current: its ``last_update`` (slurmctld's clock, v0.0.40+), else
    the exporter's clock when it asked, less the margin."""
    try:
        stamp = model.number(members, "last_update")
    except model.FieldError:
        stamp = None
    return stamp if stamp and stamp > 0 and stamp != float("inf") else asked_at - CLOCK_MARGIN


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


async def parse_stream(
    chunks: AsyncIterator[bytes],
    endpoint: Endpoint[T],
    limits: Limits,
    asked_at: float | None = None,
    previous: Listing[T] | None = None,
) -> Listing[T]:
    """Read one answer: the endpoint's array streamed through its parser (``/diag``: the object).

    A record equal to one of ``previous`` is that one: what did not change is held once.
    """
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        when = time.time() if asked_at is None else asked_at
        return await _parse(chunks, endpoint, limits, when, previous)


async def _parse(
    chunks: AsyncIterator[bytes],
    endpoint: Endpoint[T],
    limits: Limits,
    asked_at: float,
    previous: Listing[T] | None,
) -> Listing[T]:
    collect = _Collect(endpoint, limits.max_records, previous.records if previous else ())
    try:
        if endpoint is DIAG:
            members = await read_document(chunks, {}, limits.max_response_bytes)
            stats = members.get("statistics")
            if not isinstance(stats, Mapping):
                raise CollectorError(f"diag: {_server_errors(members) or 'no statistics in the answer'}")
            now = time.time()
            return Listing([model.parse_diag(stats)], (), 0, _meta(members), now, now)  # type: ignore[list-item]
        members = await read_document(chunks, {endpoint.key: collect.stream}, limits.max_response_bytes)
    except StreamError as exc:
        raise CollectorError(f"{endpoint.name}: {exc}") from None
    except model.FieldError as exc:
        raise CollectorError(f"{endpoint.name}: statistics.{exc}") from None
    if endpoint.key in members:
        raise CollectorError(f"{endpoint.name}: {endpoint.key} is not a list")
    return collect.listing(members, asked_at)


class Source(ABC):
    """A scheduler's state, one endpoint at a time."""

    kind: str = "source"

    @abstractmethod
    async def fetch(self, endpoint: Endpoint[T], previous: Listing[T] | None = None) -> Listing[T]:
        """The endpoint's records now; raises ``CollectorError`` with a concise cause.

        ``previous`` is the last listing read: a source may ask only whether it changed and, if
        not, return it again (``unchanged``, ``fetched_at`` now).
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


# --- slurmrestd --------------------------------------------------------------------------------

_VERSION_PATH = re.compile(r"^/slurm/(v\d+\.\d+\.\d+)/")


class _NotModified(Exception):
    """slurmrestd 22.05 (v0.0.38) answers an unchanged listing with HTTP 304 and no body."""


class SlurmrestdSource(Source):
    """slurmrestd over TCP (JWT) or a unix socket (local auth).

    Nodes, jobs, partitions and reservations are asked for with ``update_time`` (the time the
    previous answer was current) where a previous listing exists.  slurmctld's answer is all or
    nothing: everything, if anything in the listing changed since then, else "no change"
    (v0.0.38: HTTP 304; newer: 200, no records and a warning), and the previous records are
    served again.  Every ``full_refresh`` seconds, and after anything doubtful (a failed or
    partial answer, records over the limit, a listing that turns up empty), the next read is
    unconditional; a conditional read answered with an error is followed at once by a full one.
    """

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

    async def _get(self, path: str, query: str = "") -> AsyncGenerator[bytes]:
        try:
            async with http.get(
                f"{self.base}{path}{query}",
                self._headers(),
                unix_socket=self.config.unix_socket,
                ssl_context=self.config.ssl_context(),
                connect_timeout=self.timeout,
            ) as response:
                if response.status == 304 and query:
                    raise _NotModified()
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

    def _since(self, endpoint: Endpoint[T], previous: Listing[T] | None) -> float | None:
        """The ``update_time`` to ask with, or None for a full read."""
        if not endpoint.conditional or previous is None or previous.as_of is None:
            return None
        if previous.errors or previous.dropped or not previous.records:
            return None  # doubt: read it all (an empty listing is cheap to read again)
        if time.time() - previous.full_at >= self.config.full_refresh:
            return None
        return previous.as_of

    async def fetch(self, endpoint: Endpoint[T], previous: Listing[T] | None = None) -> Listing[T]:
        try:
            async with asyncio.timeout(self.timeout):
                version = await self.discover()
                path = f"/slurm/{version}/{endpoint.path}"
                since = self._since(endpoint, previous)
                if since is not None:
                    refreshed = await self._conditional(path, endpoint, since, previous)
                    if refreshed is not None:
                        return refreshed
                return await parse_stream(self._get(path), endpoint, self.limits, time.time(), previous)
        except TimeoutError:
            raise CollectorError(f"slurmrestd {endpoint.name}: no answer within {self.timeout:g}s") from None
        except CollectorError as exc:
            if "HTTP 404" in str(exc) and self.config.api_version == "auto":
                self.version = None  # the server was upgraded or downgraded: discover again next time
            raise

    async def _conditional(
        self, path: str, endpoint: Endpoint[T], since: float, previous: Listing[T] | None
    ) -> Listing[T] | None:
        """Ask for the listing if it changed since ``since``: the new listing, the previous one
        again (unchanged), or None when the answer leaves a doubt (read it all)."""
        assert previous is not None
        asked_at = time.time()
        try:
            query = f"?update_time={int(since)}"
            listing = await parse_stream(self._get(path, query), endpoint, self.limits, asked_at, previous)
        except _NotModified:
            listing = None
        except CollectorError:
            # slurmrestd 22.05 answers a conditional read of the nodes with HTTP 500 ("Unspecified
            # error") whenever a node changed and no partition did: drained, resumed, given a
            # comment.  An error to a conditional read is a doubt, not the answer.
            return None
        if listing is not None and not listing.unchanged:
            # A listing that empties at once is more likely an answer not understood than a
            # cluster whose every job ended: make sure.
            return listing if listing.records else None
        # Nothing changed since ``since``: ask with the same time again (as correct as a later
        # one, and no clock is trusted further).
        return dataclasses.replace(previous, fetched_at=time.time(), unchanged=True)


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

    async def fetch(self, endpoint: Endpoint[T], previous: Listing[T] | None = None) -> Listing[T]:
        primary, fallback = _COMMANDS[endpoint.name]
        if endpoint.name not in self.fallback or fallback is None:
            try:
                return await self._run(primary, endpoint, previous)
            except _NoJson:
                if fallback is None:
                    raise CollectorError(f"{primary[0]} has no --json here") from None
                self.fallback.add(endpoint.name)
        return await self._run(fallback, endpoint, previous)

    async def _run(self, argv: list[str], endpoint: Endpoint[T], previous: Listing[T] | None) -> Listing[T]:
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
                    listing = await self._json(proc, endpoint, shown, stderr_task, previous)
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
        previous: Listing[T] | None,
    ) -> Listing[T]:
        assert proc.stdout is not None
        stdout = proc.stdout

        async def chunks() -> AsyncGenerator[bytes]:
            while chunk := await stdout.read(1 << 20):
                yield chunk

        try:
            listing = await parse_stream(chunks(), endpoint, self.limits, previous=previous)
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
    #: The last listing read (None after a failure: the next read is a full one).
    last: Listing[Any] | None = None


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
            listing = await self.source.fetch(endpoint, entry.last)
        except BaseException:
            entry.last = None
            raise
        finally:
            entry.done_at = self.clock()
        entry.last = listing
        return listing

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
