"""v2c table walks: every column of a table in each GETBULK, checked against net-snmp and hostile agents."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from powerplane.exporters.runtime import Deadline
from powerplane.exporters.snmp.ber import RESPONSE, Message, decode_message, encode_message
from powerplane.exporters.snmp.engine import Credentials, GufoSession, TableWalk
from powerplane.lab.hostile import HostileAgent
from powerplane.lab.snmp import Snmpd
from tests.conftest import require_binary

IF = "1.3.6.1.2.1.2.2.1"
STORAGE = "1.3.6.1.2.1.25.2.3.1"
T = "1.3.6.1.4.1.99999.1.1"  # the hostile agents' table
NET_SNMP_OPTIONS = ("-v2c", "-c", "public", "-On", "-Oq", "-Oe", "-Ot", "-OU")


async def walk(
    port: int,
    columns: list[str],
    max_rows: int = 1000,
    repetitions: int = 25,
    expected_rows: int | None = None,
) -> TableWalk:
    session = GufoSession("127.0.0.1", port, Credentials(2, community="public"), 5.0)
    try:
        return await session.walk_table(columns, Deadline.after(5), max_rows, repetitions, expected_rows)
    finally:
        await session.close()


def net_snmp_walk(port: int, column: str) -> dict[str, str]:
    """index → value as snmpbulkwalk prints it (numeric OIDs, enums and ticks as numbers, no units)."""
    done = subprocess.run(
        [require_binary("snmpbulkwalk"), *NET_SNMP_OPTIONS, f"127.0.0.1:{port}", column],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    rows = {}
    for line in done.stdout.splitlines():
        oid, _, shown = line.partition(" ")
        rows[oid.lstrip(".")[len(column) + 1 :]] = shown
    return rows


async def test_a_table_walk_reads_what_net_snmp_reads(snmpd: Snmpd) -> None:
    columns = [f"{IF}.1", f"{IF}.3", f"{IF}.4", f"{STORAGE}.1", f"{STORAGE}.4"]
    # Three rows per column and request: several requests, the later ones larger.
    found = await walk(snmpd.port, columns, repetitions=3)
    assert found.errors == {}
    for column in columns:
        expected = await asyncio.to_thread(net_snmp_walk, snmpd.port, column)
        assert expected, column
        assert {i: str(v) for i, v in found.columns[column].items()} == expected, column
        assert list(found.columns[column]) == sorted(expected, key=lambda i: tuple(map(int, i.split("."))))


class Counting(HostileAgent):
    """Counts the GETBULKs and the variables each named."""

    def __init__(self, values: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(values, **kwargs)
        self.names: list[int] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.names.append(len(decode_message(data).varbinds))
        super().datagram_received(data, addr)


@pytest.fixture
async def sparse() -> AsyncIterator[Counting]:
    values: dict[str, Any] = {f"{T}.1.{i}": i for i in range(1, 31)}  # 30 rows
    values |= {f"{T}.2.{i}": f"row {i}".encode() for i in (2, 5, 29)}  # a sparse column
    # no column 3; column 4 with indexes of several arcs, some over 127
    values |= {f"{T}.4.1.300.{i}": 70000 + i for i in (1, 2, 200)}
    values |= {"1.3.6.1.4.1.99999.2.1.0": 7}  # what lies after the table
    agent = await Counting(values).start()
    yield agent
    agent.stop()


async def test_columns_of_any_length_are_walked_together(sparse: Counting) -> None:
    found = await walk(sparse.port, [f"{T}.1", f"{T}.2", f"{T}.3", f"{T}.4"])
    assert found.errors == {}
    assert found.columns == {
        f"{T}.1": {str(i): i for i in range(1, 31)},
        f"{T}.2": {str(i): f"row {i}".encode() for i in (2, 5, 29)},
        f"{T}.3": {},
        f"{T}.4": {f"1.300.{i}": 70000 + i for i in (1, 2, 200)},
    }
    # One column at a time, this takes 5 requests of 25 rows.  Together: one naming the four
    # columns for 6 rows each (three columns end there), then column 1 for 12 rows, then 24.
    assert sparse.names == [4, 1, 1], sparse.names
    assert sparse.repetitions == [6, 12, 24]


async def test_a_table_of_known_size_is_read_in_one_request(sparse: Counting) -> None:
    columns = [f"{T}.2", f"{T}.4"]  # three rows each
    unknown = await walk(sparse.port, columns)
    assert sparse.repetitions == [12]  # 25 variables over two columns
    sparse.names.clear()
    sparse.repetitions.clear()
    known = await walk(sparse.port, columns, expected_rows=3)
    assert known.errors == {} and known.columns == unknown.columns
    assert (sparse.names, sparse.repetitions) == ([2], [4])  # one row past the end
    sparse.names.clear()
    sparse.repetitions.clear()
    grown = await walk(sparse.port, columns, expected_rows=1)  # the table had one row then
    assert grown.errors == {} and grown.columns == unknown.columns
    assert (sparse.names, sparse.repetitions) == ([2, 2], [2, 4])
    sparse.repetitions.clear()
    assert (await walk(sparse.port, [f"{T}.1"], expected_rows=30)).columns[f"{T}.1"] == {
        str(i): i for i in range(1, 31)
    }
    assert sparse.repetitions == [25, 6]  # never more than max_repetitions, then the rest and the end


async def test_max_rows_cuts_one_column_only(sparse: Counting) -> None:
    found = await walk(sparse.port, [f"{T}.1", f"{T}.2"], max_rows=10)
    assert found.errors == {f"{T}.1": f"walk {T}.1: more than 10 rows, table cut off"}
    assert found.columns == {f"{T}.2": {str(i): f"row {i}".encode() for i in (2, 5, 29)}}


class Looping(HostileAgent):
    """Answers column 1 with its first row again and again: a walk that would never end."""

    def _after(self, oid: str, count: int) -> list[tuple[str, Any]]:
        if oid.startswith(f"{T}.1"):
            return [(f"{T}.1.1", 1)] * count
        return super()._after(oid, count)


class Stale(HostileAgent):
    """Sends, before each answer, another for a request it never had (a late answer)."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        request = decode_message(data)
        stale = Message(1, self.community, RESPONSE, request.request_id ^ 0x5A5A, varbinds=[(f"{T}.1.9", 99)])
        assert self.transport is not None
        self.transport.sendto(encode_message(stale), addr)
        super().datagram_received(data, addr)


async def test_an_agent_looping_fails_that_column_and_a_stale_answer_is_ignored() -> None:
    values: dict[str, Any] = {f"{T}.1.1": 1, f"{T}.1.2": 2, f"{T}.2.1": 10, f"{T}.2.2": 20}
    looping = await Looping(values).start()
    stale = await Stale(values).start()
    try:
        found = await walk(looping.port, [f"{T}.1", f"{T}.2"])
        assert found.errors == {f"{T}.1": f"walk {T}.1: agent returned OIDs out of order"}
        assert found.columns == {f"{T}.2": {"1": 10, "2": 20}}
        found = await walk(stale.port, [f"{T}.1", f"{T}.2"])
        assert found.errors == {}
        assert found.columns == {f"{T}.1": {"1": 1, "2": 2}, f"{T}.2": {"1": 10, "2": 20}}
    finally:
        looping.stop()
        stale.stop()


async def test_a_silent_agent_names_every_unread_column() -> None:
    quiet = await HostileAgent({}, community=b"other").start()  # drops every request
    try:
        session = GufoSession("127.0.0.1", quiet.port, Credentials(2, community="public"), 0.3)
        found = await session.walk_table([f"{T}.1", f"{T}.2"], Deadline.after(0.3), 100)
    finally:
        quiet.stop()
    assert found.columns == {}
    assert found.errors == {
        f"{T}.1": f"walk {T}.1: timeout (no answer from the agent)",
        f"{T}.2": f"walk {T}.2: timeout (no answer from the agent)",
    }
