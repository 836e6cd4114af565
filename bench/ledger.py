"""The ledger's cost: the accounting rules on a large fleet, and ``powerplane job`` on a large job.

1. Rule evaluation: bench/rules.py's synthetic fleet (1,250 nodes, 10,000 GPUs each held by a
   pod, 200 PDUs) plus a Slurm cluster on it: 5,000 running jobs (four per node, 16 of 64 CPUs and
   two GPUs each), the GPUs' minor numbers, the jobs' owners.  A real Prometheus scrapes and
   evaluates the shipped rules every 10 s; its rules API gives each rule's evaluation time, and the
   accounting family's rules are summed (goal: under 200 ms per evaluation); with the allocation
   joins in their own, slower group (``accounting_allocation_interval``, 1 min here as on a large
   fleet) the sum counts them at every evaluation, and their cost spread over their interval is
   given beside it (``accounting_10s_ms``).  Each accounting rule is listed with its median time,
   the series it records and the samples it reads (the last two do not depend on the load).
2. ``powerplane job`` for one job of 1,000 nodes (8 GPUs each) that ran 24 h: the series the rules
   record for it (and the meters' it reads) over a day at a 60 s interval, backfilled with
   ``promtool tsdb create-blocks-from openmetrics`` an hour at a time, then the command timed
   against a Prometheus on that TSDB (goal: under 5 s).

    .venv/bin/python bench/ledger.py [--nodes 1250] [--jobs-per-node 4] [--allocation-interval 1m]
        [--job-nodes 1000] [--hours 24] [--only rules|job] [--tsdb DIR] [--query-log FILE]

No anchor runs beside these: the figures are Prometheus's own timers, the command's wall time and the
CPU seconds it and Prometheus spend (less dependent on the machine's other load).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from powerplane.accounting import model
from powerplane.lab import procs
from powerplane.rulegen import render
from powerplane.rulegen.config import RulesConfig

_spec = importlib.util.spec_from_file_location("bench_rules", Path(__file__).with_name("rules.py"))
assert _spec and _spec.loader
fleet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fleet)


def slurm_exposition(nodes: int, gpus: int, jobs_per_node: int) -> str:
    lines = []
    for n in range(nodes):
        node = f"n{n:05d}"
        lines.append(f'powerplane_slurm_node_cpus{{node="{node}",state="total"}} 64')
        for g in range(gpus):
            # NVML's order and the minor numbers differ, as on many AMD hosts.
            lines.append(
                f'powerplane_gpu_info{{node="{node}",gpu="{g}",uuid="GPU-{n}-{g}",model="H100",'
                f'pci_bus_id="p{g}",driver_version="550",minor_number="{gpus - 1 - g}"}} 1'
            )
        for j in range(jobs_per_node):
            job = str(100000 + n * jobs_per_node + j)
            lines.append(
                f'powerplane_slurm_job_info{{job_id="{job}",user="u{n % 300}",account="a{n % 40}",'
                'partition="gpu",qos="normal"} 1'
            )
            lines.append(
                f'powerplane_slurm_job_allocation{{job_id="{job}",node="{node}",resource="cpus"}} 16'
            )
            lines.append(f'powerplane_slurm_job_allocation{{job_id="{job}",node="{node}",resource="gpus"}} 2')
            for k in range(2):
                lines.append(
                    f'powerplane_slurm_job_gpu_info{{job_id="{job}",node="{node}",gpu="{2 * j + k}"}} 1'
                )
    lines.append('powerplane_grid_carbon_intensity_grams_per_kwh{area="DE-LU"} 320')
    return "\n".join(lines) + "\n"


def rule_times(
    prom: procs.Prometheus, names: set[str], every: dict[str, float]
) -> tuple[str, dict[str, float], dict[str, float]]:
    """The attribution group's last evaluation: its timestamp, each accounting rule's ms, each group's ms;
    ``every`` gets each accounting rule's group interval (s).

    A rule of a slower group keeps its last time, so a sample counts every accounting rule once (the
    evaluation where all groups run together, the worst case).
    """
    stamp, rules, groups = "", {}, {}
    for group in prom.api("rules", type="record")["groups"]:
        ours: dict[str, float] = {}
        for r in group["rules"]:
            if r["name"] in names:  # a name several rules record (one per part) sums them
                ours[r["name"]] = ours.get(r["name"], 0.0) + 1000 * r["evaluationTime"]
        if ours:
            rules.update(ours)
            every.update(dict.fromkeys(ours, float(group["interval"])))
            groups[f"{group['name']} ({group['interval']:g} s)"] = 1000 * group["evaluationTime"]
        if model.JOB_POWER in ours:
            stamp = group["lastEvaluation"]
    return stamp, rules, groups


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def bench_rules(args: argparse.Namespace) -> dict[str, float]:
    nodes, gpus = args.nodes, args.gpus_per_node
    extra = slurm_exposition(nodes, gpus, args.jobs_per_node)
    names = {r.record for r in model.recording_rules(RulesConfig())}
    base = fleet.exposition

    def exposition(n: int, g: int, pdus: int, t: float) -> str:
        return str(base(n, g, pdus, t)) + extra

    fleet.exposition = exposition
    with tempfile.TemporaryDirectory() as tmp, procs.BackgroundLoop() as loop:
        runner, port, series = loop.run(fleet.serve(nodes, gpus, args.pdus))
        config = RulesConfig(rate_window="1m", accounting_allocation_interval=args.allocation_interval)
        rules = render.write(Path(tmp) / "rules", config)
        scrape = {"job_name": "fleet", "honor_labels": True, "scrape_timeout": "9s"}
        scrape["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        # Scraped and evaluated every 10 s (keywords: the fourth positional parameter is alertmanagers).
        prom = procs.Prometheus(
            Path(tmp) / "prom", [scrape], rules, scrape_interval="10s", evaluation_interval="10s"
        )
        per_rule: dict[str, list[float]] = {}
        every: dict[str, float] = {}
        per_group: dict[str, list[float]] = {}
        totals: list[float] = []
        with prom:
            prom.wait_targets_up(1, timeout=180)
            jobs = f"count(count by (hpc_job) ({model.JOB_POWER}))"
            procs.wait_until(
                lambda: (prom.value(jobs) or 0) >= nodes * args.jobs_per_node, 240, 2.0, "every job"
            )
            seen: set[str] = set()
            while len(totals) < args.evaluations:
                stamp, times, groups = rule_times(prom, names, every)
                if stamp and stamp not in seen:
                    seen.add(stamp)
                    totals.append(sum(times.values()))
                    for name, ms in times.items():
                        per_rule.setdefault(name, []).append(ms)
                    for name, ms in groups.items():
                        per_group.setdefault(name, []).append(ms)
                time.sleep(1.0)
            attributed = prom.value(f"count({model.JOB_POWER})") or 0
            work = samples_touched(prom, names)
            recorded = {name: prom.value(f"count({name})") or 0 for name in per_rule}
        loop.run(runner.cleanup())
    totals.sort()
    print(f"fleet: {nodes} nodes, {nodes * gpus} GPUs, {nodes * args.jobs_per_node} jobs, {series} series")
    print(f"accounting rules: median {_median(totals):.1f} ms, max {totals[-1]:.1f} ms per evaluation")
    for name, values in per_group.items():
        print(f"group {name}: median {_median(values):.1f} ms")
    # What a slower group costs, spread over its interval: the load on Prometheus per 10 s.
    amortised = sum(_median(v) * 10 / every[n] for n, v in per_rule.items())
    samples_10s = sum(work[2].get(n, 0) * 10 / every[n] for n in per_rule)
    print(f"accounting rules per 10 s, slower groups spread over their interval: {amortised:.1f} ms")
    print(f"{attributed:.0f} attributed series")
    print(f"{'accounting rule':<56} {'median ms':>9} {'series':>7} {'samples read':>12}")
    for name, values in sorted(per_rule.items(), key=lambda item: -_median(item[1])):
        print(f"{name:<56} {_median(values):>9.1f} {recorded[name]:>7.0f} {work[2].get(name, 0):>12.0f}")
    print(
        f"samples read per evaluation (load-independent): accounting {work[0]:.0f} ({samples_10s:.0f} per "
        f"10 s), the other recording rules {work[1]:.0f} (ratio {work[0] / max(work[1], 1):.2f})"
    )
    return {
        "accounting_ms": _median(totals),
        "accounting_max_ms": totals[-1],
        "accounting_10s_ms": amortised,
        "accounting_series": sum(recorded.values()),
        "accounting_samples": work[0],
        "accounting_samples_10s": samples_10s,
        "other_samples": work[1],
    }


def samples_touched(prom: procs.Prometheus, names: set[str]) -> tuple[float, float, dict[str, float]]:
    """Samples each recording rule's expression reads (Prometheus's query stats): accounting's, the
    rest's, and each accounting rule's."""
    ours = others = 0.0
    each: dict[str, float] = {}
    for group in prom.api("rules", type="record")["groups"]:
        for rule in group["rules"]:
            try:
                stats = prom.api("query", query=rule["query"], stats="all").get("stats", {})
            except RuntimeError:  # a rule the synthetic fleet breaks (bench/rules.py's shared outlets)
                continue
            touched = float(stats.get("samples", {}).get("totalQueryableSamples", 0))
            if rule["name"] in names:
                ours += touched
                each[rule["name"]] = each.get(rule["name"], 0.0) + touched
            else:
                others += touched
    return ours, others, each


# --- powerplane job on a backfilled day ---------------------------------------------------------


def _job_series(nodes: int, gpus: int, start: int, job: str) -> list[tuple[str, str, Any]]:
    """(name, labels, value of t) of every series the command reads, grouped by family."""
    sel = f'cluster="c",hpc_job="{job}"'
    rows: dict[str, list[tuple[str, str, Any]]] = {}

    def add(name: str, labels: str, value: Any) -> None:
        rows.setdefault(name, []).append((name, labels, value))

    for n in range(nodes):
        node = f"n{n:05d}"
        watts = [300 + (n + g) % 400 for g in range(gpus)]
        best = 1500 + sum(watts) + n % 500
        rest = best - sum(watts)
        add(model.BEST, f'node="{node}",source="bmc"', lambda _t, b=best: b)
        add(model.REST, f'node="{node}"', lambda _t, r=rest: r)
        add(model.NODE_GPU_POWER, f'node="{node}"', lambda _t, w=best - rest: w)
        add(model.JOB_CPU_SHARE, f'{sel},node="{node}"', lambda _t: 1)
        place = f'rack="r{n // 40}",row="w",cluster="c",bmc="",partition="gpu"'
        add("powerplane_node_info", f'node="{node}",{place}', lambda _t: 1)
        add("powerplane_slurm_job_allocation", f'cluster="c",job_id="{job}",node="{node}",resource="cpus"',
            lambda _t: 64)  # fmt: skip
        add(model.JOB_POWER, f'{sel},node="{node}",part="rest"', lambda _t, r=rest: r)
        add(model.JOB_POWER, f'{sel},node="{node}",part="gpu"', lambda _t, w=best - rest: w)
        for g, w in enumerate(watts):
            gpu = f'node="{node}",gpu="{g}"'
            add(model.JOB_HOLDER, f"{sel},{gpu}", lambda _t: 1)
            add(model.GPU_SHARE, gpu, lambda _t: 1)
            add("powerplane_gpu_power_watts", f'{gpu},uuid="GPU-{n}-{g}"', lambda _t, w=w: w)
            add(model.GPU_ENERGY, f'{gpu},uuid="GPU-{n}-{g}"', lambda t, w=w: w * (t - start))
            add(model.GPU_ENERGY_START, f'{gpu},uuid="GPU-{n}-{g}"', lambda _t: start - 3600)
    add("powerplane_cluster_info", 'cluster="c",area="DE-LU"', lambda _t: 1)
    add("powerplane_market_period_seconds", 'area="DE-LU"', lambda _t: 900)
    add("powerplane_market_price_eur_per_mwh", 'area="DE-LU"', lambda t: 60 + (t // 900) % 96)
    add(
        "powerplane_grid_carbon_intensity_grams_per_kwh", 'area="DE-LU"', lambda t: 250 + (t // 3600) % 24 * 5
    )
    labels = f'cluster="c",job_id="{job}"'
    add("powerplane_slurm_job_info", f'{labels},user="alice",account="physics",partition="gpu",qos="normal"',
        lambda _t: 1)  # fmt: skip
    add("powerplane_slurm_job_start_timestamp_seconds", labels, lambda _t: start)
    return [row for family in rows.values() for row in family]


def _hour(path: Path, t0: int, interval: int, series: list[tuple[str, str, Any]]) -> None:
    """One hour of the series in OpenMetrics, each family's samples together as promtool wants."""
    times = range(t0, t0 + 3600, interval)
    with path.open("w") as out:
        for name, labels, value in series:
            out.write("".join(f"{name}{{{labels}}} {value(t)} {t}\n" for t in times))
        out.write("# EOF\n")


class _LongPrometheus(procs.Prometheus):
    def argv(self) -> list[str]:
        return [a.replace("retention.time=1d", "retention.time=30d") for a in super().argv()]


def bench_job(args: argparse.Namespace) -> dict[str, float]:
    promtool = procs.find_binary("promtool")
    if promtool is None:
        sys.exit("promtool is not installed (Debian package prometheus)")
    job, hours, nodes = "777", args.hours, args.job_nodes
    end = (int(time.time()) // 3600 - 1) * 3600
    start = end - hours * 3600
    with tempfile.TemporaryDirectory() as scratch:
        # --tsdb keeps the backfilled day for another run (the backfill is the slow part).
        tmp = args.tsdb or scratch
        data = Path(tmp) / "prom" / "data"
        done = Path(tmp) / "backfilled"
        if done.exists():
            start, end = (int(x) for x in done.read_text().split())
        data.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        series = _job_series(nodes, args.job_gpus_per_node, start, job)
        for h in range(hours if done.exists() else 0, hours):
            path = Path(tmp) / "hour.om"
            _hour(path, start + 3600 * h, args.interval, series)
            subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(path), str(data)],
                           check=True, capture_output=True)  # fmt: skip
            path.unlink()
        done.write_text(f"{start} {end}")
        print(f"backfilled {hours} h of a {nodes}-node job in {time.monotonic() - began:.0f} s")
        # The rules are loaded (the command reads their interval); they find nothing current to record.
        rules = render.write(Path(scratch) / "rules", RulesConfig())
        prom = _LongPrometheus(Path(tmp) / "prom", [], rules, evaluation_interval=f"{args.interval}s")
        with prom:
            argv = [sys.executable, "-m", "powerplane.cli", "job", job, "--json", "--slurm", "prometheus",
                    "--prometheus", prom.url, "--lookback", f"{hours + 4}h"]  # fmt: skip
            walls, server, client = [], [], []
            for i in range(args.repeat):
                if args.query_log and i == args.repeat - 1:
                    argv += ["--query-log", args.query_log]  # its stats requests cost a little
                t, cpu, own = time.monotonic(), procs.stat_cpu_seconds(prom.process.pid), _children_cpu()
                result = subprocess.run(argv, capture_output=True, text=True)
                if result.returncode:
                    sys.exit(f"powerplane job failed: {result.stderr.strip()}")
                walls.append(time.monotonic() - t)
                server.append(procs.stat_cpu_seconds(prom.process.pid) - cpu)
                client.append(_children_cpu() - own)
            doc = json.loads(result.stdout)
    energy, cost = doc["energy_kwh"]["it"], doc["cost_eur"]
    print(f"powerplane job: {energy:.1f} kWh over {len(doc['node_share'])} nodes, cost {cost:.2f} EUR")
    print(f"coverage {doc['coverage']:.3f}; methods {doc['methods']}")
    print(f"wall time per run (s): {', '.join(f'{w:.2f}' for w in walls)}")
    # CPU seconds depend less on the machine's other load than wall time does.
    print(f"Prometheus CPU per run (s): {', '.join(f'{c:.2f}' for c in server)}")
    print(f"powerplane job CPU per run (s): {', '.join(f'{c:.2f}' for c in client)}")
    return {
        "job_s": statistics.median(walls),
        "job_first_s": walls[0],
        "job_prometheus_cpu_s": statistics.median(server),
        "job_command_cpu_s": statistics.median(client),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1250)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--pdus", type=int, default=200)
    parser.add_argument("--jobs-per-node", type=int, default=4)
    parser.add_argument("--evaluations", type=int, default=5)
    parser.add_argument(
        "--allocation-interval",
        default="1m",
        help='accounting_allocation_interval, as on a large fleet ("" for the default: one group)',
    )
    parser.add_argument("--job-nodes", type=int, default=1000)
    parser.add_argument("--job-gpus-per-node", type=int, default=8)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--interval", type=int, default=60, help="seconds between the backfilled samples")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["rules", "job"])
    parser.add_argument("--tsdb", help="keep the backfilled TSDB here and reuse it on the next run")
    parser.add_argument("--query-log", help="the last powerplane job run writes its query log here")
    args = parser.parse_args()
    results: dict[str, float] = {}
    if args.only != "job":
        results.update(bench_rules(args))
    if args.only != "rules":
        results.update(bench_job(args))
    print("RESULT " + " ".join(f"{k}={v:.3f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
