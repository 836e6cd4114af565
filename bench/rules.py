"""Rule evaluation cost on a synthetic fleet: 10,000 GPUs on 1,250 nodes, 200 PDUs, one Prometheus.

A fast synthetic target serves the whole fleet's series (with their node/pdu labels, honoured by
Prometheus) and the inventory's info metrics; a real Prometheus evaluates the shipped rules and
reports ``prometheus_rule_group_last_duration_seconds`` per group.

    .venv/bin/python bench/rules.py [--nodes 1250] [--gpus-per-node 8] [--pdus 200]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from powerplane.lab import procs
from powerplane.rulegen import render
from powerplane.rulegen.config import RulesConfig


def exposition(nodes: int, gpus: int, pdus: int, t: float) -> str:
    lines = []
    racks = max(1, pdus // 2)
    for n in range(nodes):
        node = f"n{n:05d}"
        rack = f"r{n % racks:04d}"
        pdu = f"p{(n % racks) * 2:04d}"
        lines.append(
            f'powerplane_node_info{{node="{node}",rack="{rack}",row="row{n % 10}",cluster="c",'
            'bmc="",partition="gpu"} 1'
        )
        for s in range(2):
            lines.append(
                f'powerplane_rapl_energy_joules_total{{node="{node}",zone="package",index="{s}"}} '
                f"{200 * t:.3f}"
            )
            lines.append(
                f'powerplane_rapl_energy_joules_total{{node="{node}",zone="dram",index="{s}"}} {20 * t:.3f}'
            )
        if n % 2 == 0:
            lines.append(f'powerplane_redfish_power_watts{{node="{node}"}} {3000 + n % 500}')
        for o in range(2):
            lines.append(f'powerplane_pdu_outlet_info{{pdu="{pdu}",outlet="{n % 40}-{o}",node="{node}"}} 1')
            lines.append(f'powerplane_pdu_outlet_power_watts{{pdu="{pdu}",outlet="{n % 40}-{o}"}} 1400')
        for g in range(gpus):
            lab = f'node="{node}",gpu="{g}",uuid="GPU-{n}-{g}"'
            lines.append(f"powerplane_gpu_power_watts{{{lab}}} {300 + (n + g) % 400}")
            lines.append(f"powerplane_gpu_energy_joules_total{{{lab}}} {500 * t:.3f}")
            lines.append(f'powerplane_gpu_temperature_celsius{{{lab},sensor="gpu"}} {60 + g}')
            lines.append(f"powerplane_gpu_utilization_ratio{{{lab}}} 0.{(n + g) % 10}")
            lines.append(f'powerplane_gpu_power_limit_watts{{{lab},kind="enforced"}} 700')
            lines.append(
                f'powerplane_gpu_pod_info{{{lab},namespace="ml",pod="p{n}-{g // 4}",container="c"}} 1'
            )
    for p in range(pdus):
        pdu = f"p{p:04d}"
        lines.append(
            f'powerplane_inventory_pdu_info{{pdu="{pdu}",rack="r{p // 2:04d}",'
            f'row="row{p % 10}",cluster="c"}} 1'
        )
        lines.append(f'powerplane_pdu_power_watts{{pdu="{pdu}"}} 9000')
        for ph in (1, 2, 3):
            lines.append(f'powerplane_pdu_phase_current_amperes{{pdu="{pdu}",phase="{ph}"}} {12 + ph}')
    for r in range(racks):
        lines.append(
            f'powerplane_rack_power_budget_watts{{rack="r{r:04d}",row="row{r % 10}",cluster="c"}} 60000'
        )
    lines.append('powerplane_cluster_info{cluster="c",area="DE-LU"} 1')
    lines.append('powerplane_market_price_eur_per_mwh{area="DE-LU"} 87.5')
    return "\n".join(lines) + "\n"


async def serve(nodes: int, gpus: int, pdus: int) -> tuple[web.AppRunner, int, int]:
    start = time.monotonic()
    series = exposition(nodes, gpus, pdus, 0.0).count("\n")

    async def metrics(_request: web.Request) -> web.Response:
        text = await asyncio.to_thread(exposition, nodes, gpus, pdus, time.monotonic() - start + 1000)
        return web.Response(text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port, series


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1250)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--pdus", type=int, default=200)
    parser.add_argument("--evaluations", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, procs.BackgroundLoop() as loop:
        runner, port, series = loop.run(serve(args.nodes, args.gpus_per_node, args.pdus))
        rules = render.write(Path(tmp) / "rules", RulesConfig(rate_window="1m"))
        prom = procs.Prometheus(
            Path(tmp) / "prom",
            [
                {
                    "job_name": "fleet",
                    "honor_labels": True,
                    "scrape_timeout": "9s",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
            ],
            rules,
            scrape_interval="10s",
            evaluation_interval="10s",
        )
        with prom:
            prom.wait_targets_up(1, timeout=120)
            procs.wait_until(
                lambda: (prom.value("count(node:powerplane_rapl_power_watts:sum)") or 0) >= args.nodes,
                180,
                1.0,
                what="RAPL power recorded for every node",
            )
            durations: dict[str, list[float]] = {}
            last: dict[str, float] = {}
            deadline = time.monotonic() + 30 * args.evaluations
            # Prometheus's own timers are on its /metrics page (it does not scrape itself here).
            while (
                time.monotonic() < deadline
                and min((len(v) for v in durations.values()), default=0) < args.evaluations
            ):
                _status, body = procs.http_get(prom.url + "/metrics")
                seen: dict[str, dict[str, float]] = {}
                for family in text_string_to_metric_families(body.decode()):
                    if family.name in (
                        "prometheus_rule_group_last_duration_seconds",
                        "prometheus_rule_group_last_evaluation_timestamp_seconds",
                    ):
                        for sample in family.samples:
                            group = sample.labels["rule_group"].split(";")[-1]
                            seen.setdefault(group, {})[family.name] = sample.value
                for group, v in seen.items():
                    stamp = v.get("prometheus_rule_group_last_evaluation_timestamp_seconds", 0.0)
                    if stamp > 0 and last.get(group) != stamp:
                        last[group] = stamp
                        durations.setdefault(group, []).append(
                            v["prometheus_rule_group_last_duration_seconds"] * 1000
                        )
                time.sleep(1.0)
        loop.run(runner.cleanup())
    gpus = args.nodes * args.gpus_per_node
    print(f"fleet: {args.nodes} nodes, {gpus} GPUs, {args.pdus} PDUs, {series} series per scrape")
    print(f"{'group':<24} {'median ms':>10} {'max ms':>10}  (no anchor: Prometheus's own rule-group timer)")
    total = 0.0
    for group, values in sorted(durations.items()):
        values.sort()
        median = values[len(values) // 2]
        total += median
        print(f"{group:<24} {median:>10.1f} {values[-1]:>10.1f}")
    print(f"RESULT rules_eval_ms_10k_gpus={total:.1f} series={series} nodes={args.nodes} gpus={gpus}")


if __name__ == "__main__":
    main()
