"""The SNMP collectors: one per profile table, walking its columns over the probe's connection.

A probe opens one ``Connection`` (one session, requests one at a time) shared by its table
collectors.  Each table succeeds or fails on its own: a table that times out or answers garbage
fails its collector while the others are still exposed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from ..runtime import Collector, CollectorError, Deadline, Partial, ResettableCounter
from ..runtime.collector import DeviceText
from ..runtime.exposition import format_value
from ..runtime.metrics import MetricSpec
from .engine import Credentials, Session, Value
from .metrics import CATALOGUE
from .profiles import MetricRule, Profile, Table

SessionFactory = Callable[[str, int, Credentials, float], Session]
#: (metric, label values) → the start of its series' line.
Heads = dict[tuple[str, tuple[str, ...]], str]


@dataclass
class Connection:
    """One probe's session, shared by its table collectors (requests go out one at a time).

    The session is opened on first use, under the probe's deadline: a host name is resolved
    then (the engine takes addresses only), and a failure fails the probe, not the request."""

    host: str
    port: int
    credentials: Credentials
    timeout: float
    factory: SessionFactory
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _session: Session | None = None

    async def session(self, deadline: Deadline) -> Session:
        if self._session is None:
            address = await _resolve(self.host, deadline)
            try:
                self._session = self.factory(address, self.port, self.credentials, self.timeout)
            except Exception as exc:  # the engine refuses the address or cannot open a socket
                raise CollectorError(f"opening a session to {self.host}: {exc}") from None
        return self._session


async def _resolve(host: str, deadline: Deadline) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(deadline.remaining()):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (OSError, TimeoutError) as exc:
        raise CollectorError(f"resolving {host}: {exc.strerror or 'timed out'}") from None
    if not infos:
        raise CollectorError(f"resolving {host}: no address")
    return str(infos[0][4][0])


@dataclass(frozen=True)
class TableSnapshot:
    # column name → {index: value}, rows in index order (walks return them so)
    columns: Mapping[str, Mapping[str, Value]]
    # label column name → {index: label value}: device text sanitised once, as it arrives
    texts: Mapping[str, Mapping[str, str]]


def _number(value: Value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = value[:16] if isinstance(value, bytes | str) else value
        raise CollectorError(f"{where}: expected a number, got {type(value).__name__} {shown!r}")
    return float(value)


def as_text(value: Value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\x00 ")
    return "" if value is None else str(value)


class TableCollector(Collector[TableSnapshot]):
    """Walks one table's columns and renders its metrics."""

    def __init__(
        self,
        profile: Profile,
        table: Table,
        connection: Connection,
        counters: ResettableCounter,
        max_rows: int,
        text: DeviceText,
        heads: dict[tuple[str, str], Heads] | None = None,
        rows: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.name = table.name
        self.text = text
        self.profile = profile
        self.table = table
        self.connection = connection
        self.counters = counters
        self.max_rows = max_rows
        #: the start of each series' line (name and escaped labels) in the latest render of
        #: this table, per (profile, table): kept by the device's state from probe to probe, as
        #: a collector lives for one probe and the same series come back at every probe.
        self.heads = {} if heads is None else heads
        #: (profile, table) → the rows of its latest walk, kept by the device's state likewise.
        self.rows = {} if rows is None else rows
        self.key = (profile.name, table.name)
        self.label_columns = sorted(
            {source.column for rule in table.rules for _n, source in rule.labels if source.column}
        )

    async def fetch(self, deadline: Deadline) -> TableSnapshot | Partial[TableSnapshot]:
        deadline = inner_deadline(deadline)
        columns: dict[str, dict[str, Value]] = {}
        errors: list[str] = []
        async with self.connection.lock:
            session = await self.connection.session(deadline)
            oids = [oid for _name, oid in self.table.walked]
            walk = await session.walk_table(
                oids,
                deadline,
                self.max_rows,
                self.profile.max_repetitions,
                expected_rows=self.rows.get(self.key),
            )
        if walk.columns:
            self.rows[self.key] = max(map(len, walk.columns.values()))
        for name, oid in self.table.walked:
            if oid in walk.errors:
                errors.append(f"{self.table.name}.{name}: {walk.errors[oid]}")
            elif oid in walk.columns:
                columns[name] = walk.columns[oid]
        if not any(columns.values()):
            if errors:
                raise CollectorError("; ".join(errors))
            raise CollectorError(f"{self.table.name}: the device has none of the table's columns")
        errors.extend(self._type_errors(columns))
        text = self.text
        texts = {
            name: {index: text(cell) for index, cell in columns[name].items() if cell is not None}
            for name in self.label_columns
            if name in columns
        }
        snapshot = TableSnapshot(columns, texts)
        return Partial(snapshot, errors) if errors else snapshot

    def _type_errors(self, columns: Mapping[str, Mapping[str, Value]]) -> list[str]:
        numeric = {
            c for rule in self.table.rules for c in (*rule.columns, *([rule.digits] if rule.digits else []))
        }
        found = []
        for name in sorted(numeric):
            bad = [
                i
                for i, v in columns.get(name, {}).items()
                if isinstance(v, bool) or not isinstance(v, int | float)
            ]
            if bad:
                found.append(
                    f"{self.table.name}.{name}: {len(bad)} value(s) of the wrong type (not a number), "
                    f"e.g. index {bad[0]}"
                )
        return found

    def render(self, snapshot: TableSnapshot) -> Iterable[Metric]:
        families: dict[str, list[tuple[list[str], float]]] = {}
        errors: list[str] = []
        # Shared by the rules of one render: rows in index order and split indexes.
        orders: dict[tuple[str, ...], list[str]] = {}
        parts_of: dict[str, list[str]] = {}
        for rule in self.table.rules:
            spec = CATALOGUE[rule.metric]
            found = self._samples(rule, spec.labels, snapshot, errors, orders, parts_of)
            families.setdefault(rule.metric, []).extend(found)
        # Wrongly typed cells were reported by fetch (Partial); here they are only skipped.
        previous: Heads = self.heads.get(self.key, {})
        latest: Heads = {}
        self.heads[self.key] = latest
        return [
            TableSeries(CATALOGUE[name], series, previous, latest)
            for name, series in families.items()
            if series
        ]

    def _samples(
        self,
        rule: MetricRule,
        label_names: Sequence[str],
        snapshot: TableSnapshot,
        errors: list[str],
        orders: dict[tuple[str, ...], list[str]],
        parts_of: dict[str, list[str]],
    ) -> list[tuple[list[str], float]]:
        columns = snapshot.columns
        texts = snapshot.texts
        primary = [columns.get(c, {}) for c in rule.columns]
        order = orders.get(rule.columns)
        if order is None:
            if len(primary) == 1:
                order = list(primary[0])  # already in index order
            else:
                indexes: set[str] = set().union(*(set(p) for p in primary))
                order = sorted(indexes, key=_index_key)
            orders[rule.columns] = order
        sources = dict(rule.labels)
        label_sources = [sources[n] for n in label_names]
        sentinels = self.profile.sentinels
        value_map = dict(rule.value_map) if rule.value_map else None
        digits_column = columns.get(rule.digits, {}) if rule.digits is not None else None
        scale = rule.scale
        samples: list[tuple[list[str], float]] = []
        for index in order:
            parts = parts_of.get(index)
            if parts is None:
                parts = parts_of[index] = index.split(".")
            if rule.where is not None:
                position, wanted = rule.where
                if not -len(parts) <= position < len(parts) or parts[position] != str(wanted):
                    continue
            raw: Value = None
            for column in primary:
                cell = column.get(index)
                if cell is not None:
                    raw = cell
                    break
            if raw is None:
                continue
            try:
                if type(raw) is int or type(raw) is float:  # the common case, without the checks
                    value = float(raw)
                else:
                    value = _number(raw, f"{self.table.name}.{rule.columns[0]}.{index}")
                if sentinels and value == int(value) and int(value) in sentinels:
                    continue
                if value_map is not None:
                    mapped = value_map.get(int(value))
                    if mapped is None:
                        continue
                    value = mapped
                if digits_column is not None:
                    where = f"{self.table.name}.{rule.columns[0]}.{index}"
                    digits = _number(digits_column.get(index), f"{where} digits")
                    value = value / (10 ** int(digits))
                if scale != 1.0:
                    value = _scaled(value, scale)
            except CollectorError as exc:
                errors.append(str(exc))
                continue
            labels = []
            for source in label_sources:
                if source.value is not None:
                    labels.append(source.value)
                elif source.index is not None:
                    labels.append(parts[source.index] if -len(parts) <= source.index < len(parts) else "")
                else:
                    key = ".".join(parts[: source.parts]) if source.parts else index
                    labels.append(texts.get(source.column or "", {}).get(key, ""))
            if rule.resettable:
                # Scalar columns share index 0: the labels tell their meters apart.
                value = self.counters.update((rule.metric, index, *labels), value)
            samples.append((labels, value))
        return samples


class TableSeries(Metric):
    """A table's series of one metric, written once as text lines (``text_chunks``).

    The runtime's text renderer writes the lines as they are; ``samples`` are built from the
    same series only where something asks for them (OpenMetrics, a family that two tables
    emit).  Each line's start is kept from the collector's previous render (``previous``), as
    the same series come back at every probe, and only the latest render's are kept."""

    def __init__(
        self,
        spec: MetricSpec,
        series: list[tuple[list[str], float]],
        previous: Heads,
        heads: Heads,
    ) -> None:
        counter = spec.kind == "counter"
        super().__init__(
            spec.name.removesuffix("_total") if counter else spec.name, spec.help, spec.family().type
        )
        self.spec = spec
        self.series = series
        lines = []
        for labels, value in series:
            key = (spec.name, labels_key := tuple(labels))
            head = heads.get(key) or previous.get(key)
            if head is None:
                inner = ",".join(
                    f'{n}="{v.translate(_ESCAPE_LABEL)}"'
                    for n, v in zip(spec.labels, labels_key, strict=True)
                )
                head = f"{spec.name}{{{inner}}} " if inner else f"{spec.name} "
            heads[key] = head
            lines.append(f"{head}{format_value(value)}\n")
        self.text_chunks = ["".join(lines)]

    @property
    def samples(self) -> list[Sample]:
        names = self.spec.labels
        return [
            Sample(self.spec.name, dict(zip(names, labels, strict=True)), value)
            for labels, value in self.series
        ]

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        if value:  # Metric.__init__ sets it empty; the series are given to __init__
            raise AttributeError("TableSeries are built from a table's series")


_ESCAPE_LABEL = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


def inner_deadline(deadline: Deadline) -> Deadline:
    """A deadline a little before the probe's, so a slow table ends as a partial result
    instead of the probe runner cancelling every table at the same instant."""
    return Deadline(deadline.at - min(0.2, 0.05 + 0.02 * deadline.remaining()))


def _scaled(value: float, scale: float) -> float:
    # Dividing by 10 rather than multiplying by 0.1 keeps 38 * 0.1 from showing as 3.8000000000000003.
    if scale < 1:
        inverse = round(1 / scale)
        if abs(inverse * scale - 1) < 1e-12:
            return value / inverse
    return value * scale


def _index_key(index: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in index.split("."))
    except ValueError:
        return ()
