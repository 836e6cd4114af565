"""Candidate Python SNMP engines against snmpd on this machine: wall time and CPU per OID.

Walks the same columns (ifTable, ifXTable, hrStorageTable, hrSWRunTable, hrSWRunPerfTable of a
private snmpd on 127.0.0.1) with gufo-snmp, ezsnmp (net-snmp bindings) and pysnmp, and with
snmp_exporter for reference, and prints the medians.  The figures and the decision they led to
are in docs/snmp.md.

    .venv/bin/python bench/snmp_engines.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from powerplane.lab.snmp import V3_AUTH, V3_PRIV, V3_USER, Snmpd

COLUMNS = [
    "1.3.6.1.2.1.2.2",  # ifTable
    "1.3.6.1.2.1.31.1.1",  # ifXTable
    "1.3.6.1.2.1.25.2.3",  # hrStorageTable
    "1.3.6.1.2.1.25.4.2",  # hrSWRunTable
    "1.3.6.1.2.1.25.5.1",  # hrSWRunPerfTable
]


def gufo_walk(port: int, v3: bool = False) -> int:
    from gufo.snmp import Aes128Key, Sha1Key, User
    from gufo.snmp.aio.client import SnmpSession

    async def run() -> int:
        kwargs: dict[str, object] = {"community": "public"}
        if v3:
            kwargs = {
                "user": User(
                    V3_USER, auth_key=Sha1Key(V3_AUTH.encode()), priv_key=Aes128Key(V3_PRIV.encode())
                )
            }
        count = 0
        async with SnmpSession(addr="127.0.0.1", port=port, timeout=2.0, max_repetitions=25, **kwargs) as s:  # type: ignore[arg-type]
            for column in COLUMNS:
                async for _oid, _value in s.getbulk(column):
                    count += 1
        return count

    return asyncio.run(run())


def ezsnmp_walk(port: int, v3: bool = False) -> int:
    from ezsnmp import Session

    if v3:
        session = Session(
            hostname="127.0.0.1",
            port_number=port,
            version=3,
            security_level="authPriv",
            security_username=V3_USER,
            auth_protocol="SHA",
            auth_passphrase=V3_AUTH,
            privacy_protocol="AES",
            privacy_passphrase=V3_PRIV,
            set_max_repeaters_to_num=25,
        )
    else:
        session = Session(
            hostname="127.0.0.1",
            port_number=port,
            version=2,
            community="public",
            set_max_repeaters_to_num=25,
            print_oids_numerically=True,
        )
    # One walk per column: given a list, bulk_walk sends a single GETBULK for all of them.
    return sum(len(session.bulk_walk(column)) for column in COLUMNS)


def pysnmp_walk(port: int, v3: bool = False) -> int:
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        UsmUserData,
        bulk_walk_cmd,
        usmAesCfb128Protocol,
        usmHMACSHAAuthProtocol,
    )

    async def run() -> int:
        engine = SnmpEngine()
        auth = (
            UsmUserData(
                V3_USER,
                V3_AUTH,
                V3_PRIV,
                authProtocol=usmHMACSHAAuthProtocol,
                privProtocol=usmAesCfb128Protocol,
            )
            if v3
            else CommunityData("public")
        )
        target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=2.0, retries=0)
        count = 0
        for column in COLUMNS:
            async for err_ind, err_stat, _idx, binds in bulk_walk_cmd(
                engine,
                auth,
                target,
                ContextData(),
                0,
                25,
                ObjectType(ObjectIdentity(column)),
                lexicographicMode=False,
                lookupMib=False,
            ):
                if err_ind or err_stat:
                    raise RuntimeError(str(err_ind or err_stat))
                count += len(binds)
        engine.close_dispatcher()
        return count

    return asyncio.run(run())


def measure(fn: Callable[[], int], rounds: int) -> tuple[int, float, float]:
    fn()  # warm up: imports, engine discovery
    walls, cpus, count = [], [], 0
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        count = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return count, statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Snmpd(Path(tmp)) as agent:
        print(f"snmpd on 127.0.0.1:{agent.port}; columns: {' '.join(COLUMNS)}")
        print(f"{'engine':<18}{'OIDs':>6}{'wall ms':>10}{'CPU ms':>10}{'CPU us/OID':>12}")
        for name, fn in (
            ("gufo-snmp v2c", gufo_walk),
            ("ezsnmp v2c", ezsnmp_walk),
            ("pysnmp v2c", pysnmp_walk),
        ):
            for v3 in (False, True):
                label = name.replace("v2c", "v3 SHA/AES") if v3 else name
                try:
                    count, wall, cpu = measure(lambda fn=fn, v3=v3: fn(agent.port, v3), args.rounds)
                except Exception as exc:
                    print(f"{label:<18} failed: {type(exc).__name__}: {exc}")
                    continue
                print(
                    f"{label:<18}{count:>6}{wall * 1e3:>10.1f}{cpu * 1e3:>10.1f}"
                    f"{cpu / max(count, 1) * 1e6:>12.1f}"
                )


if __name__ == "__main__":
    main()
