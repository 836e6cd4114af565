"""Shared by the SNMP tests: real agents (snmpsim with recordings, snmpd) and config helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from powerplane.exporters.snmp.config import KIND, SnmpConfig
from powerplane.lab.hostile import hostile_pdu
from powerplane.lab.snmp import (
    BUILDERS,
    COUNTER32,
    INTEGER,
    OCTETS,
    RECORDINGS,
    V3_USER,
    Row,
    Snmpd,
    Snmpsim,
    apc_recording,
    snmprec_text,
)
from tests.conftest import IN_CI, Served, require_binary

APC = "1.3.6.1.4.1.318.1.1.26"


def require_snmpsim() -> Path:
    recording = apc_recording()
    if recording is None:
        message = "REAL COMPONENT MISSING: snmpsim-data is not installed (run scripts/setup)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return recording


def bad_device() -> str:
    """A PDU that answers some columns wrongly: types, sentinels and a missing table."""
    rows = [
        Row("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.318.1.3.4.6"),
        Row(f"{APC}.4.3.1.5.1", OCTETS, "lots"),  # device power as a string
        Row(f"{APC}.4.3.1.9.1", INTEGER, 1000),
        Row(f"{APC}.6.3.1.3.1", INTEGER, 1),
        Row(f"{APC}.6.3.1.5.1", INTEGER, 50),
        Row(f"{APC}.6.3.1.6.1", INTEGER, 230),
        Row(f"{APC}.6.3.1.7.1", INTEGER, -1),  # sentinel: dropped
        Row(f"{APC}.9.4.3.1.3.1", OCTETS, "a"),
        Row(f"{APC}.9.4.3.1.4.1", INTEGER, 1),
        Row(f"{APC}.9.4.3.1.7.1", COUNTER32, 100),
        Row(f"{APC}.9.4.3.1.11.1", INTEGER, 10),
    ]
    return snmprec_text(rows)


def slow_device() -> str:
    """The AP8641's device table, with the outlet table answering only after 3 s."""
    rows = [
        Row("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.318.1.3.4.6"),
        Row(f"{APC}.4.3.1.5.1", INTEGER, 121),
        Row(f"{APC}.4.3.1.9.1", INTEGER, 19516),
        Row(f"{APC}.9.4.3.1.3.1", "4:delay", "value=x,wait=3000"),
    ]
    # Keep the delayed cell out of the bulk responses of the tables before it (they read ahead
    # up to 25 OIDs for each column; snmpsim delays every variable that names the cell).
    rows += [
        Row(f"{APC}.{table}.20.{i}", INTEGER, 0)
        for table in ("4.3.1", "6.3.1", "8.3.1")
        for i in range(1, 40)
    ]
    return snmprec_text(rows)


def endless_device(rows: int = 30000) -> str:
    lines = [Row("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.318.1.3.4.6")]
    lines += [Row(f"{APC}.9.4.3.1.7.{i}", INTEGER, 1) for i in range(1, rows)]
    return snmprec_text(lines)


def writable_device() -> str:
    return snmprec_text(
        [
            Row("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.318.1.3.4.6"),
            Row(f"{APC}.4.3.1.5.1", INTEGER, 100),
            Row(f"{APC}.4.3.1.9.1", "2:writecache", "value=5000"),
        ]
    )


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpsim]:
    """snmpsim serving the AP8641 walk, the project's recordings and the misbehaving devices."""
    recording = require_snmpsim()
    recordings: dict[str, Path | str] = {
        "apc-8641": recording,
        "bad-pdu": bad_device(),
        "slow-pdu": slow_device(),
        "endless-pdu": endless_device(),
        "writable-pdu": writable_device(),
    }
    for community in BUILDERS:
        recordings[community] = RECORDINGS / f"{community}.snmprec"
    with Snmpsim(tmp_path_factory.mktemp("snmpsim"), recordings) as sim:
        yield sim


@pytest.fixture(scope="module")
def hostile_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpsim]:
    """snmpsim serving the hostile recordings of ``powerplane.lab.hostile``."""
    require_snmpsim()
    with Snmpsim(tmp_path_factory.mktemp("hostile"), {"hostile-pdu": hostile_pdu()}) as sim:
        yield sim


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpd]:
    require_binary("snmpd")
    with Snmpd(tmp_path_factory.mktemp("snmpd")) as agent:
        yield agent


#: The lab snmpd's SNMPv3 user (SHA/AES), its passwords read from T_AUTH and T_PRIV.
V3_AUTH_SPEC = {
    "version": 3,
    "username": V3_USER,
    "auth_protocol": "SHA",
    "auth_password": {"env": "T_AUTH"},
    "priv_protocol": "AES",
    "priv_password": {"env": "T_PRIV"},
}


def snmp_config(tmp_path: Path, communities: list[str], extra: str = "") -> SnmpConfig:
    """A v2c auth per community (secrets in files), every port of 127.0.0.0/8 allowed."""
    auths = {}
    for community in communities:
        secret = tmp_path / f"community-{community}"
        secret.write_text(community + "\n")
        auths[community] = {"version": 2, "community": {"file": str(secret)}}
    doc = {"auths": auths, "allow": ["127.0.0.0/8:*"], "timeout": 5, "max_rows": 2000}
    return KIND.load_text(yaml.safe_dump(doc) + extra)


async def probe(served: Served, query: str, timeout_header: str | None = None) -> tuple[int, str]:
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": timeout_header} if timeout_header else {}
    return await served.get(f"/probe?{query}", headers=headers)
