"""Benchmark: a large simulated fleet scraped by the sharded topology (lab/topology.py).

Thousands of simulated iDRACs (``powerplane.lab.redfish`` in a process of its own, every request
answered after 200-800 ms) and metered PDUs (Raritan PX3 recordings served by snmpsim, one
community per PDU, spread over a few snmpsim agents) are probed through two replicas of each
multi-target exporter (``powerplane exporter redfish|snmp``, one process each), by two real
Prometheus shards (hashmod) that remote-write to a real VictoriaMetrics: the topology of
docs/scale.md, on this one machine.

Printed per interval and replica: probes answered, device requests per probe (a steady probe
makes no discovery requests), CPU seconds per probe (of the exporter processes alone, from
/proc: the simulated fleet, snmpsim, the shards and VictoriaMetrics are not counted), peak RSS;
per shard:
targets up (scraped in time); and the end-to-end freshness: how long after a probe's scrape
started (its sample's timestamp, just before the device is read) the sample was queryable in
VictoriaMetrics, polled every second for a sample of targets.  The first interval pays for
discovery and logins; RESULT reports the last one.  Everything shares this machine's cores with
the simulated fleet, so the figures are an upper bound of the exporter's cost: say so when quoting.

    .venv/bin/python bench/fleet.py                          # 5000 BMCs, 1000 PDUs, 60 s, 3 intervals
    .venv/bin/python bench/fleet.py --bmcs 500 --pdus 100 --interval 20 --intervals 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from powerplane.lab import procs
from powerplane.lab.snmp import Snmpsim, raritan_pdu2
from powerplane.lab.topology import PrometheusShard, VictoriaMetrics, probe_job, sharded

PASSWORD = "calvin"  # the simulated fleet's default
REPLICAS = 2
SHARDS = 2
#: PDUs per snmpsim agent: each agent stands for many devices (one community each).
PDUS_PER_AGENT = 250
FRESHNESS_SAMPLE = 20


def probes_answered(address: str) -> tuple[float, float]:
    """(probes, device requests) from an exporter's own /metrics: the sum of
    ``powerplane_probes_total`` (every result) and ``powerplane_redfish_requests_total``."""
    # A saturated exporter answers its own /metrics late or not at all (its accept queue full):
    # that is a result (NaN), not a crash of the benchmark.
    try:
        _status, body = procs.http_get(f"http://{address}/metrics", timeout=60.0)
    except OSError:
        return float("nan"), float("nan")
    total = requests = 0.0
    for line in body.decode().splitlines():
        if line.startswith("powerplane_probes_total{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("powerplane_redfish_requests_total "):
            requests = float(line.rsplit(" ", 1)[1])
    return total, requests


class Replica:
    """One exporter process and the counters read from it between intervals."""

    def __init__(self, kind: str, config: Path, workdir: Path, env: dict[str, str]) -> None:
        self.kind = kind
        self.address = f"127.0.0.1:{procs.free_port()}"
        self.process = procs.Process(
            [
                str(Path(sys.executable).parent / "powerplane"),
                "exporter",
                kind,
                f"--config={config}",
                f"--web.listen-address={self.address}",
                "--log.level=error",
            ],
            workdir / f"{kind}-{self.address.rsplit(':', 1)[1]}.log",
            env=env,
        )
        self.process.wait_ready(f"http://{self.address}/-/ready")
        self.cpu, self.probes, self.requests = 0.0, 0.0, 0.0

    def delta(self) -> tuple[float, float, float]:
        """(CPU seconds of this exporter process alone, probes, device requests) since the last call."""
        cpu = procs.stat_cpu_seconds(self.process.pid)
        probes, requests = probes_answered(self.address)
        out = (cpu - self.cpu, probes - self.probes, requests - self.requests)
        self.cpu = cpu
        if probes == probes:  # not NaN: an unanswered /metrics leaves the count where it was
            self.probes, self.requests = probes, requests
        return out

    def rss(self) -> float:
        return procs.rss_mb(self.process.pid, "VmHWM")


#: BMCs one simulator process serves: each keeps up to a few connections per BMC open from the
#: replicas (their idle-connection cap is half their descriptors), so 5,000 BMCs in one process
#: would pass a 20,000-descriptor limit where real BMCs are each their own host.
BMCS_PER_PROCESS = 1000


def start_fleet(bmcs: int, latency: tuple[float, float]) -> tuple[list[subprocess.Popen[str]], list[str]]:
    processes: list[subprocess.Popen[str]] = []
    targets: list[str] = []
    for first in range(0, bmcs, BMCS_PER_PROCESS):
        count = min(BMCS_PER_PROCESS, bmcs - first)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "powerplane.lab.redfish",
                "--count",
                str(count),
                "--first",
                str(first),
                "--latency",
                *map(str, latency),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        found = [process.stdout.readline().strip().removeprefix("http://") for _ in range(count)]
        if not all(found):
            stop_fleet(processes)
            raise RuntimeError("the simulated fleet did not start")
        targets += found
    return processes, targets


def stop_fleet(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)


def configs(workdir: Path, communities: list[str], timeout: float) -> tuple[Path, Path]:
    redfish = workdir / "redfish.yml"
    redfish.write_text(
        "auths: {idrac: {username: root, password: {env: BENCH_BMC_PASSWORD}}}\n"
        f"modules: {{default: {{timeout: {timeout}}}}}\n"
        "defaults: {scheme: http}\nallow: ['127.0.0.0/8:*']\n"
    )
    secrets = workdir / "communities"
    secrets.mkdir()
    auths = {}
    for community in communities:
        (secrets / community).write_text(community + "\n")
        auths[community] = {"version": 2, "community": {"file": str(secrets / community)}}
    snmp = workdir / "snmp.yml"
    snmp.write_text(
        yaml.safe_dump(
            {
                "auths": auths,
                "allow": ["127.0.0.0/8:*"],
                "timeout": timeout,
                # One snmpsim agent stands for PDUS_PER_AGENT devices behind one address.
                "per_device_concurrency": 16,
            }
        )
    )
    return redfish, snmp


def jobs(
    bmcs: list[str], pdus: list[tuple[str, str]], redfish: list[Replica], snmp: list[Replica], timeout: float
) -> list[dict[str, Any]]:
    redfish_job = probe_job(
        "powerplane-redfish-probe",
        [r.address for r in redfish],
        [{"targets": bmcs}],
        {"auth": ["idrac"]},
    )
    snmp_job = probe_job(
        "powerplane-snmp-pdu",
        [r.address for r in snmp],
        [{"targets": [address], "labels": {"__param_auth": auth, "pdu": auth}} for address, auth in pdus],
        {"module": ["raritan_pdu2"]},
    )
    for job in (redfish_job, snmp_job):
        job["scrape_timeout"] = f"{timeout:g}s"
    return [redfish_job, snmp_job]


def freshness(vm: VictoriaMetrics, sample: list[str], until: float) -> list[float]:
    """Seconds from each new sample's timestamp to its first sight in VictoriaMetrics."""
    selector = "|".join(t.replace(".", "\\\\.") for t in sample)
    expr = f'timestamp(up{{job="powerplane-redfish-probe",instance=~"{selector}"}})'
    seen: dict[str, float] = {}
    ages: list[float] = []
    while time.time() < until:
        polled = time.time()
        try:
            result = vm.query(expr)
        except (RuntimeError, OSError, ValueError):
            result = []
        for r in result:
            instance, ts = r["metric"]["instance"], float(r["value"][1])
            if instance in seen and ts > seen[instance]:
                ages.append(polled - ts)
            seen[instance] = ts
        time.sleep(max(0.0, polled + 1.0 - time.time()))
    return ages


def shard_up(vm: VictoriaMetrics) -> dict[tuple[str, str], tuple[int, int]]:
    """(replica, job) → (targets up, targets) in the global view now."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    total = {(r["metric"]["replica"], r["metric"]["job"]): int(float(r["value"][1])) for r in
             vm.query('count by (replica, job) (up{job=~"powerplane-.*-(probe|pdu)"})')}  # fmt: skip
    up = {(r["metric"]["replica"], r["metric"]["job"]): int(float(r["value"][1])) for r in
          vm.query('count by (replica, job) (up{job=~"powerplane-.*-(probe|pdu)"} == 1)')}  # fmt: skip
    for key, n in total.items():
        out[key] = (up.get(key, 0), n)
    return out


def scrapes_in(vm: VictoriaMetrics, seconds: float) -> dict[str, float]:
    """job → probes Prometheus made (answered or timed out) over the last ``seconds``."""
    expr = f'sum by (job) (count_over_time(up{{job=~"powerplane-.*-(probe|pdu)"}}[{seconds:.0f}s]))'
    return {r["metric"]["job"]: float(r["value"][1]) for r in vm.query(expr)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def bench(args: argparse.Namespace) -> None:
    if args.bmcs < 1 or args.pdus < 1:
        raise SystemExit("fleet.py: --bmcs and --pdus must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="powerplane-bench-fleet-"))
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    fleet, bmcs = start_fleet(args.bmcs, args.latency)
    started: list[Any] = []
    try:
        communities = [f"pdu-{i:04d}" for i in range(args.pdus)]
        pdus: list[tuple[str, str]] = []
        for first in range(0, args.pdus, PDUS_PER_AGENT):
            names = communities[first : first + PDUS_PER_AGENT]
            sim = Snmpsim(workdir / f"snmpsim-{first}", {c: raritan_pdu2() for c in names})
            started.append(sim.start(timeout=300))
            pdus += [(f"127.0.0.1:{sim.port}", c) for c in names]
        redfish_config, snmp_config = configs(workdir, communities, args.timeout)
        env = {"BENCH_BMC_PASSWORD": PASSWORD}
        redfish: list[Replica] = []
        snmp: list[Replica] = []
        for group, kind, config in ((redfish, "redfish", redfish_config), (snmp, "snmp", snmp_config)):
            for _ in range(REPLICAS):
                group.append(Replica(kind, config, workdir, env))
                started.append(group[-1].process)  # stopped even if a later one fails to start
        vm = VictoriaMetrics(workdir / "vm").start()
        started.append(vm)
        scrape = jobs(bmcs, pdus, redfish, snmp, args.timeout)
        shards = [
            PrometheusShard(
                workdir / f"shard-{i}",
                sharded(scrape, i, SHARDS),
                cluster="bench",
                replica=f"bench-{i}",
                remote_write=vm.write_url,
                scrape_interval=f"{args.interval:g}s",
            ).start(timeout=120)
            for i in range(SHARDS)
        ]
        started += shards
        for replica in (*redfish, *snmp):
            replica.delta()
        sample = bmcs[:: max(1, len(bmcs) // FRESHNESS_SAMPLE)][:FRESHNESS_SAMPLE]
        rows = []
        for n in range(args.intervals):
            ages = freshness(vm, sample, time.time() + args.interval)
            deltas = {id(r): r.delta() for r in (*redfish, *snmp)}
            ups = shard_up(vm)
            scrapes = scrapes_in(vm, args.interval)
            label = "cold (discovery, logins)" if n == 0 else "steady"
            parts = [
                f"{r.kind}@{r.address}: {deltas[id(r)][1]:.0f} probes, {r.rss():.0f} MB"
                + (
                    f", {deltas[id(r)][2] / deltas[id(r)][1]:.1f} requests/probe"
                    if deltas[id(r)][1] > 0 and r.kind == "redfish"
                    else ""
                )
                for r in (*redfish, *snmp)
            ]
            print(f"interval {n + 1} [{label}]: " + "; ".join(parts), flush=True)
            print(
                "  up/targets by shard: "
                + ", ".join(f"{k[0]} {k[1]} {v[0]}/{v[1]}" for k, v in sorted(ups.items()))
            )
            print(
                "  probes made by the shards: "
                + ", ".join(f"{j} {n:.0f}" for j, n in sorted(scrapes.items()))
            )
            rows.append((deltas, ups, ages, scrapes))
        deltas, ups, ages, scrapes = rows[-1]

        def per_probe(replicas: list[Replica], job: str) -> float:
            cpu = sum(deltas[id(r)][0] for r in replicas)
            probes = sum(deltas[id(r)][1] for r in replicas)
            if probes != probes:  # NaN: a replica did not answer /metrics; count what Prometheus made
                probes = scrapes.get(job, 0.0)
            return 1000 * cpu / probes if probes else float("nan")

        bmcs_up = sum(v[0] for k, v in ups.items() if k[1] == "powerplane-redfish-probe")
        pdus_up = sum(v[0] for k, v in ups.items() if k[1] == "powerplane-snmp-pdu")
        per_replica = "/".join(f"{deltas[id(r)][1]:.0f}" for r in redfish)
        rss = {kind: max(r.rss() for r in group) for kind, group in (("redfish", redfish), ("snmp", snmp))}
        print()
        print(
            f"fleet: {args.bmcs} BMCs ({args.latency[0]}-{args.latency[1]} s per request), {args.pdus} PDUs"
        )
        print(f"topology: {SHARDS} Prometheus shards -> VictoriaMetrics, {REPLICAS} replicas per exporter")
        load = os.getloadavg()[0]
        print(
            f"interval {args.interval:g} s, scrape timeout {args.timeout:g} s; load average now {load:.1f} "
            f"on {os.cpu_count()} cores (the fleet and the stack share them)"
        )
        print(
            f"RESULT fleet_bmcs_up={bmcs_up} fleet_pdus_up={pdus_up} "
            f"redfish_probes_per_replica={per_replica} "
            f"redfish_cpu_ms_per_probe={per_probe(redfish, 'powerplane-redfish-probe'):.2f} "
            f"snmp_cpu_ms_per_probe={per_probe(snmp, 'powerplane-snmp-pdu'):.2f} "
            f"redfish_peak_rss_mb={rss['redfish']:.0f} snmp_peak_rss_mb={rss['snmp']:.0f} "
            f"freshness_p50_s={statistics.median(ages) if ages else float('nan'):.1f} "
            f"freshness_p99_s={percentile(ages, 0.99):.1f}"
        )
    finally:
        for component in reversed(started):
            component.stop()
        stop_fleet(fleet)


def main() -> None:
    parser = argparse.ArgumentParser(description="The sharded topology scraping a large simulated fleet")
    parser.add_argument("--bmcs", type=int, default=5000, help="simulated BMCs (default 5000)")
    parser.add_argument("--pdus", type=int, default=1000, help="simulated PDUs (default 1000, at least 1)")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="scrape interval in seconds (default 60)"
    )
    parser.add_argument("--timeout", type=float, default=50.0, help="scrape timeout in seconds (default 50)")
    parser.add_argument("--intervals", type=int, default=3, help="intervals to run; the last is reported")
    parser.add_argument("--latency", type=float, nargs=2, default=(0.2, 0.8), metavar=("MIN", "MAX"))
    bench(parser.parse_args())


if __name__ == "__main__":
    main()
