"""powerplane's SNMP exporter against snmp_exporter 0.21, side by side on the same agents.

Both exporters run as processes on 127.0.0.1 and walk the same columns:

- snmpd (the net-snmp C agent, generated config): numeric columns of ifTable, ifXTable,
  hrStorageTable, hrSWRunTable and hrSWRunPerfTable, through a bench profile for powerplane and
  the equivalent generated snmp.yml module for snmp_exporter;
- snmpsim serving the real APC AP8641 recording: the ``apc_rpdu2`` profile's columns, and the
  same columns in snmp.yml.

For each it reports the median probe time, the exporter's CPU per OID (the scheduler's run
time of its threads, /proc/PID/task/*/schedstat, around each probe) and the wall time of 20
concurrent probes (distinct auths, so powerplane cannot merge them); the two exporters'
probes alternate, so a busy machine slows both alike.  ``--runs N`` repeats the whole
side-by-side measurement N times with the same processes and prints each run's ratios
(powerplane / snmp_exporter, lower is better); the last line is
``RESULT snmp_walk_snmpd=... snmp_cpu_snmpd=... snmp_walk_snmpsim=... snmp_cpu_snmpsim=... ...``
with the median of each ratio and, over several runs, its spread (``_spread=min-max``).

    .venv/bin/python bench/snmp.py [--rounds 30] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from powerplane.exporters.snmp.metrics import CATALOGUE
from powerplane.exporters.snmp.profiles import load_profiles
from powerplane.lab import procs
from powerplane.lab.snmp import Snmpd, Snmpsim, apc_recording

HOST_COLUMNS = {
    "if": [
        "1.3.6.1.2.1.2.2.1." + c
        for c in ("1", "3", "4", "5", "7", "8", "10", "11", "13", "14", "16", "17", "19", "20")
    ],
    "ifx": ["1.3.6.1.2.1.31.1.1.1." + c for c in ("6", "7", "10", "11", "15")],
    "storage": ["1.3.6.1.2.1.25.2.3.1." + c for c in ("1", "4", "5", "6")],
    "swrun": ["1.3.6.1.2.1.25.4.2.1." + c for c in ("1", "6", "7")],
    "swperf": ["1.3.6.1.2.1.25.5.1.1." + c for c in ("1", "2")],
}


def host_profile() -> dict[str, object]:
    """A bench-only profile: every column becomes one labelled series per row."""
    tables = []
    for table, columns in HOST_COLUMNS.items():
        named = {f"c{oid.rsplit('.', 1)[1]}": oid for oid in columns}
        tables.append(
            {
                "name": table,
                "columns": named,
                "metrics": [
                    {
                        "metric": "powerplane_pdu_outlet_power_watts",
                        "column": name,
                        "labels": {"outlet": {"index": 0}, "outlet_name": {"value": f"{table}_{name}"}},
                    }
                    for name in named
                ],
            }
        )
    return {"name": "bench_host", "kind": "pdu", "sys_object_ids": ["1.3.6.1.4.1.8072.3.2"], "tables": tables}


def snmp_exporter_module(
    columns: dict[str, str], community: str, texts: frozenset[str] = frozenset()
) -> dict[str, object]:
    """The module walking ``columns``; those named in ``texts`` (labels in the profile) are strings."""
    metrics = []
    for name, oid in columns.items():
        metrics.append(
            {
                "name": "c_" + oid.replace(".", "_"),
                "oid": oid,
                "type": "DisplayString" if name in texts else "gauge",
                "help": name,
                "indexes": [{"labelname": "index", "type": "gauge"}],
            }
        )
    return {
        "walk": list(columns.values()),
        "version": 2,
        "max_repetitions": 25,
        "retries": 0,
        "timeout": "5s",
        "auth": {"community": community},
        "metrics": metrics,
    }


async def fetch(client: aiohttp.ClientSession, url: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    async with client.get(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"}) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}: {body[:200]!r}")
    return time.perf_counter() - start, body


async def measure(
    ours: tuple[int, list[str]], theirs: tuple[int, list[str]], rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Both exporters' probe time, CPU per probe and 20 concurrent probes, interleaved.

    The probes alternate (ours, theirs, theirs, ours, ...), so a change in the machine's load
    falls on both alike; each probe's CPU is read from /proc around it."""
    sides = {"ours": ours, "theirs": theirs}
    walls: dict[str, list[float]] = {"ours": [], "theirs": []}
    cpu = {"ours": 0.0, "theirs": 0.0}
    concurrent = {"ours": 0.0, "theirs": 0.0}
    async with aiohttp.ClientSession() as client:
        for _pid, urls in sides.values():
            await fetch(client, urls[0])  # warm up (v3 discovery, module detection, imports)
        for i in range(rounds):
            for name in ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours"):
                pid, urls = sides[name]
                before = procs.cpu_seconds(pid)
                wall, _body = await fetch(client, urls[0])
                cpu[name] += procs.cpu_seconds(pid) - before
                walls[name].append(wall)
        for name in ("ours", "theirs") if rounds % 2 == 0 else ("theirs", "ours"):
            urls = sides[name][1]
            start = time.perf_counter()
            await asyncio.gather(*(fetch(client, url) for url in urls[:20]))
            concurrent[name] = time.perf_counter() - start
    a, b = (
        {"wall": statistics.median(walls[n]), "cpu": cpu[n] / rounds, "concurrent20": concurrent[n]}
        for n in ("ours", "theirs")
    )
    return a, b


def count_oids(port: int, community: str, columns: list[str]) -> int:
    from gufo.snmp.sync.client import SnmpSession

    count = 0
    with SnmpSession(addr="127.0.0.1", port=port, community=community, timeout=5, max_repetitions=25) as s:
        for column in columns:
            count += sum(1 for _ in s.getbulk(column))
    return count


def start(argv: list[str], workdir: Path, name: str, ready: str) -> procs.Process:
    proc = procs.Process(argv, workdir / f"{name}.log")
    proc.wait_ready(ready, 60)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="probes per exporter and agent in a run")
    parser.add_argument("--runs", type=int, default=1, help="consecutive side-by-side runs")
    args = parser.parse_args()
    snmp_exporter = procs.find_binary("snmp_exporter")
    recording = apc_recording()
    if snmp_exporter is None or recording is None or procs.find_binary("snmpd") is None:
        sys.exit("bench/snmp.py needs snmp_exporter, snmpd and snmpsim-data (run scripts/setup)")
    apc = load_profiles(CATALOGUE)["apc_rpdu2"]
    apc_columns = {f"{t.name}_{n}": oid for t in apc.tables for n, oid in t.walked}
    apc_texts = frozenset(
        f"{t.name}_{source.column}"
        for t in apc.tables
        for r in t.rules
        for _n, source in r.labels
        if source.column
    )
    host = host_profile()
    host_columns = {f"{t}_{oid.rsplit('.', 1)[1]}": oid for t, cols in HOST_COLUMNS.items() for oid in cols}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with Snmpd(tmp / "snmpd") as snmpd, Snmpsim(tmp / "snmpsim", {"apc-8641": recording}) as sim:
            (tmp / "host.yaml").write_text(yaml.safe_dump(host))
            for i in range(20):
                (tmp / f"c-public-{i}").write_text("public")
                (tmp / f"c-apc-{i}").write_text("apc-8641")
            config = {
                "auths": {
                    **{
                        f"public{i}": {"version": 2, "community": {"file": str(tmp / f"c-public-{i}")}}
                        for i in range(20)
                    },
                    **{
                        f"apc{i}": {"version": 2, "community": {"file": str(tmp / f"c-apc-{i}")}}
                        for i in range(20)
                    },
                },
                "default_auth": "public0",
                "allow": ["127.0.0.1/32:*"],
                "profile_files": [str(tmp / "host.yaml")],
                "max_rows": 100000,
            }
            (tmp / "powerplane.yml").write_text(yaml.safe_dump(config))
            (tmp / "snmp.yml").write_text(
                yaml.safe_dump(
                    {
                        "bench_host": snmp_exporter_module(host_columns, "public"),
                        "apc_rpdu2": snmp_exporter_module(apc_columns, "apc-8641", apc_texts),
                    }
                )
            )
            ours_port, theirs_port = procs.free_port(), procs.free_port()
            ours = start(
                [
                    str(Path(sys.executable).parent / "powerplane"),
                    "exporter",
                    "snmp",
                    "--config",
                    str(tmp / "powerplane.yml"),
                    f"--web.listen-address=127.0.0.1:{ours_port}",
                    "--log.level=error",
                ],
                tmp,
                "powerplane",
                f"http://127.0.0.1:{ours_port}/-/ready",
            )
            theirs = start(
                [
                    snmp_exporter,
                    f"--config.file={tmp / 'snmp.yml'}",
                    f"--web.listen-address=127.0.0.1:{theirs_port}",
                    "--log.level=error",
                ],
                tmp,
                "snmp_exporter",
                f"http://127.0.0.1:{theirs_port}/",
            )
            try:
                agents = []
                for agent, port, module, auth, columns in (
                    ("snmpd", snmpd.port, "bench_host", "public", host_columns),
                    ("snmpsim", sim.port, "apc_rpdu2", "apc", apc_columns),
                ):
                    target = f"127.0.0.1:{port}"
                    ours_urls = [
                        f"http://127.0.0.1:{ours_port}/probe?target={target}&module={module}&auth={auth}{i}"
                        for i in range(20)
                    ]
                    theirs_url = f"http://127.0.0.1:{theirs_port}/snmp?target={target}&module={module}"
                    theirs_urls = [theirs_url] * 20
                    community = "public" if auth == "public" else "apc-8641"
                    agents.append((agent, port, community, columns, ours_urls, theirs_urls))
                runs = [run_once(ours.pid, theirs.pid, agents, args.rounds) for _ in range(args.runs)]
            finally:
                ours.stop()
                theirs.stop()
    report(runs)


Agent = tuple[str, int, str, dict[str, str], list[str], list[str]]


def run_once(ours: int, theirs: int, agents: list[Agent], rounds: int) -> dict[str, float]:
    """One side-by-side run on every agent: the ratios (powerplane / snmp_exporter) and our CPU per OID."""
    ratios: dict[str, float] = {}
    for agent, port, community, columns, ours_urls, theirs_urls in agents:
        oids = count_oids(port, community, list(columns.values()))
        a, b = asyncio.run(measure((ours, ours_urls), (theirs, theirs_urls), rounds))
        print(f"\n{agent}: {len(columns)} columns, {oids} OIDs per probe, {rounds} probes")
        print(f"  {'':<14}{'walk ms':>10}{'CPU ms':>10}{'CPU us/OID':>12}{'20 concurrent ms':>18}")
        for label, r in (("powerplane", a), ("snmp_exporter", b)):
            print(
                f"  {label:<14}{r['wall'] * 1e3:>10.1f}{r['cpu'] * 1e3:>10.2f}"
                f"{r['cpu'] / oids * 1e6:>12.2f}{r['concurrent20'] * 1e3:>18.1f}"
            )
        ratios[f"walk_{agent}"] = a["wall"] / b["wall"]
        ratios[f"cpu_{agent}"] = a["cpu"] / max(b["cpu"], 1e-9)
        ratios[f"concurrent20_{agent}"] = a["concurrent20"] / b["concurrent20"]
        ratios[f"cpu_per_oid_us_{agent}"] = a["cpu"] / oids * 1e6
        print(
            f"  ratio (powerplane / snmp_exporter): walk {ratios[f'walk_{agent}']:.2f}, "
            f"CPU {ratios[f'cpu_{agent}']:.2f}, 20 concurrent {ratios[f'concurrent20_{agent}']:.2f}"
        )
    return ratios


def report(runs: list[dict[str, float]]) -> None:
    """One line per run, then the medians with the spread over the runs (min-max)."""
    print(f"\n{len(runs)} run(s), ratios powerplane / snmp_exporter (lower is better):")
    names = list(runs[0])
    for i, run in enumerate(runs, 1):
        print(f"  run {i}: " + " ".join(f"{name}={run[name]:.3f}" for name in names))
    fields = []
    for name in names:
        values = [run[name] for run in runs]
        fields.append(f"snmp_{name}={statistics.median(values):.3f}")
        if len(runs) > 1:
            fields.append(f"snmp_{name}_spread={min(values):.3f}-{max(values):.3f}")
    print("RESULT " + " ".join(fields))


if __name__ == "__main__":
    main()
