"""The controller in the demo: a local-mode agent per node, capping the lab's RAPL from a price curve.

The demo's market curve has short periods (``period_s``, 30 s by default rather than 15 min)
and a recurring price spike, so the caps, and the lab's power that follows them, visibly move
within minutes.  No Kubernetes: labels, events and status stay in memory and in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .demo import DemoContext


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


def demo_policy(curve: Path | None, period_s: int, market_url: str | None = None) -> dict[str, Any]:
    """Price bands on the demo curve file, or on the market exporter's curve endpoint."""
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
                        {"above": 150, "watts": 300, "level": "high"},
                        {"above": 300, "watts": 200, "level": "extreme"},
                    ],
                },
            },
            "periodSeconds": period_s,
            "signalLostHoldSeconds": period_s * 4,
        },
    }


async def controller_component(ctx: DemoContext, period_s: int = 30) -> None:
    """A local-mode controller per node, writing caps into that node's lab powercap tree.

    With the demo's market exporter running (``ctx.shared["market"]``) the policy follows its
    curve endpoint in real 15-minute periods; otherwise a local curve with ``period_s``-second
    periods and a recurring spike keeps the caps moving within minutes.
    """
    from powerplane.controller.agent import LocalBackend
    from powerplane.controller.cli import build

    labs = ctx.shared.get("powercap", {})
    if not labs:
        return
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
        backend = LocalBackend(node, documents=[demo_policy(curve, period_s, market_url)])
        agent, server = build(node, backend, lab.root, ctx.workdir / node / "controller-state.json", None)
        address = await ctx.serve(server, f"controller ({node})")
        targets.append({"targets": [address], "labels": {"node": node}})
        tasks.append(asyncio.ensure_future(agent.run(stop)))

        async def finish(agent: Any = agent) -> None:
            await agent.shutdown()

        ctx.stack.push_async_callback(finish)

    async def stop_all() -> None:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    ctx.stack.push_async_callback(stop_all)
    ctx.scrape_configs.append({"job_name": "powerplane-controller", "static_configs": targets})
