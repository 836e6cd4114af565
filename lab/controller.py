"""The controller in the demo: a local-mode agent per node, capping the lab's RAPL from a price curve.

The demo's market curve has short periods (``period_s``, 30 s by default rather than 15 min)
and a recurring price spike, so the caps, and the lab's power that follows them, visibly move
within minutes.  No Kubernetes: labels, events and status stay in memory and in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from . import procs
from .demo import DemoContext
from .powercap import PowercapLab


def spike_curve(
    start: datetime, period_s: float, periods: int, spike_at: int, spike_len: int, every: int
) -> dict[str, Any]:
    """A market-style JSON curve: 80 EUR/MWh with a 350 EUR/MWh spike ``spike_len`` periods long."""
    rows = []
    for i in range(periods):
        begin = start + timedelta(seconds=i * period_s)
        spiking = (i - spike_at) % every < spike_len if i >= spike_at else False
        rows.append(
            {
                "start": begin.isoformat().replace("+00:00", "Z"),
                "end": (begin + timedelta(seconds=period_s)).isoformat().replace("+00:00", "Z"),
                "price": 350.0 if spiking else 80.0 + (i % 7) * 5.0,
            }
        )
    # The market's static curve format (read by its static provider).
    return {"area": "DEMO", "periods": rows}


def demo_policy(
    curve: Path | None,
    period_s: int,
    market_url: str | None = None,
    node_watts: float = 500.0,
    cpu_share: float = 1.0,
) -> dict[str, Any]:
    """Price bands on the demo curve file or the market's curve endpoint, sized to the node.

    High prices cap the node at 60 % of ``node_watts`` (its CPU and GPU maxima together),
    extreme ones at 40 %.
    """
    signal: dict[str, Any] = (
        {"market": {"url": market_url}} if market_url else {"curveFile": {"path": str(curve)}}
    )
    return {
        "apiVersion": "powerplane.io/v1alpha1",
        "kind": "PowerCapPolicy",
        "metadata": {"name": "demo-price-bands"},
        "spec": {
            "signal": signal,
            "policy": {
                "type": "bands",
                "bands": {
                    "hysteresis": 20,
                    "thresholds": [
                        {"above": 150, "watts": round(node_watts * 0.6), "level": "high"},
                        {"above": 300, "watts": round(node_watts * 0.4), "level": "extreme"},
                    ],
                },
            },
            "budget": {"cpuShare": cpu_share},
            "periodSeconds": period_s,
            "signalLostHoldSeconds": period_s * 4,
        },
    }


def _cpu_watts(lab: PowercapLab) -> float:
    """The sum of the packages' long_term maxima (the node's CPU capacity)."""
    return sum(
        c.max_w or c.limit_w
        for z in lab.zones.values()
        if z.parent is None and z.name.startswith("package")
        for c in z.constraints
        if c.name == "long_term"
    )


def _gpu_watts(nvml: Any) -> float:
    from powerplane.lab.fakenvml import PROFILES

    return sum(PROFILES[g.profile].power_limit_max_mw / 1e3 for g in nvml.gpus)


def agent_argv(node: str, lab: PowercapLab, workdir: Path, policy: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from powerplane.cli import main; main()",
        "controller",
        "run",
        f"--node={node}",
        f"--path.sysfs={lab.root}",
        f"--state-file={workdir / 'controller-state.json'}",
        f"--local-policy={policy}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]


async def controller_component(ctx: DemoContext, period_s: int = 30) -> None:
    """A local-mode controller per node, writing caps into the node's lab powercap tree and GPUs.

    With the demo's market exporter running (``ctx.shared["market"]``) the policy follows its
    curve endpoint in real 15-minute periods; otherwise a local curve with ``period_s``-second
    periods and a recurring spike keeps the caps moving within minutes.  A node with fake GPUs
    (``ctx.shared["gpu"]``) gets its agent as a process of its own, since the fake NVML a
    process loads is chosen by its environment; the others run in the demo's process.
    """
    from powerplane.controller.agent import LocalBackend
    from powerplane.controller.cli import build

    labs: dict[str, PowercapLab] = ctx.shared.get("powercap", {})
    if not labs:
        return
    gpus: dict[str, Any] = ctx.shared.get("gpu", {})
    market = ctx.shared.get("market") or {}
    market_url = market.get("url") if isinstance(market, dict) else None
    curve: Path | None = None
    if market_url:
        period_s = 900
    else:
        now = datetime.now(UTC).replace(microsecond=0)
        curve = ctx.workdir / "market-curve.json"
        curve.write_text(json.dumps(spike_curve(now, period_s, 24 * 3600 // period_s, 4, 4, 12)))
    stop = asyncio.Event()
    targets: list[dict[str, Any]] = []
    tasks = []
    for node, lab in labs.items():
        workdir = ctx.workdir / node
        workdir.mkdir(parents=True, exist_ok=True)
        cpu = _cpu_watts(lab)
        nvml = gpus.get(node)
        gpu = _gpu_watts(nvml) if nvml is not None else 0.0
        policy = demo_policy(curve, period_s, market_url, cpu + gpu, cpu / (cpu + gpu) if cpu + gpu else 1.0)
        if nvml is not None:
            path = workdir / "controller-policy.yaml"
            path.write_text(yaml.safe_dump(policy, sort_keys=False))
            port = ctx.port()
            process = procs.Process(
                agent_argv(node, lab, workdir, path, port), workdir / "controller.log", env=nvml.env()
            )
            await asyncio.to_thread(process.wait_ready, f"http://127.0.0.1:{port}/-/ready", 30.0)
            # SIGTERM: the agent restores the original limits before it exits.
            ctx.stack.callback(process.stop)
            address = f"127.0.0.1:{port}"
            ctx.urls.append((f"controller ({node})", f"http://{address}/"))
        else:
            backend = LocalBackend(node, documents=[policy])
            agent, server = build(node, backend, lab.root, workdir / "controller-state.json", None)
            address = await ctx.serve(server, f"controller ({node})")
            tasks.append(asyncio.ensure_future(agent.run(stop)))

            async def finish(agent: Any = agent) -> None:
                await agent.shutdown()

            ctx.stack.push_async_callback(finish)
        targets.append({"targets": [address], "labels": {"node": node}})

    async def stop_all() -> None:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    ctx.stack.push_async_callback(stop_all)
    ctx.scrape_configs.append({"job_name": "powerplane-controller", "static_configs": targets})
