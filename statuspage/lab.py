"""Scheduler series for the status page's tests, bench and demo, and its part of the demo.

``SeriesServer`` serves, per cluster at ``/metrics/<cluster>``, the series a Slurm exporter
emits under the names of the design's metric table (nodes per partition and state, CPUs, GPUs
and memory, jobs by state, one ``powerplane_slurm_job_info`` per running job, maintenance
reservations with their start and end), and optionally the power recording rules' cluster
series.  As with a real exporter, the ``cluster`` label comes from the scrape config
(``scrape_config()``), not from the exposition.  The scenario is plain data, so a test can
change it between scrapes::

    server = SeriesServer([ClusterSample("alpha", [PartitionSample("gpu", {"idle": 2})])])
    url = await server.start()
    prometheus(server.scrape_configs())
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .config import KIND
from .page import StatusPage
from .server import StatusServer


@dataclass
class PartitionSample:
    name: str
    nodes: dict[str, int]
    cpus: tuple[int, int] = (0, 0)  # allocated, total
    gpus: tuple[int, int] = (0, 0)
    memory_bytes: tuple[float, float] = (0.0, 0.0)
    jobs: dict[str, int] = field(default_factory=dict)
    #: The users of the running jobs (the page must count them, never show them).
    users: tuple[str, ...] = ()


@dataclass
class ReservationSample:
    name: str
    partition: str
    flags: str
    start: float
    end: float


@dataclass
class ClusterSample:
    cluster: str
    partitions: list[PartitionSample]
    reservations: list[ReservationSample] = field(default_factory=list)
    #: Cluster power and cost per hour as the recording rules give them (None: not served).
    power_watts: float | None = None
    cost_eur_per_hour: float | None = None


def _line(name: str, labels: dict[str, str], value: float) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    inner = ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {value!r}\n" if inner else f"{name} {value!r}\n"


def exposition(sample: ClusterSample) -> str:
    """The text exposition of one cluster's scheduler series."""
    out = []
    for p in sample.partitions:
        for state, count in p.nodes.items():
            out.append(
                _line("powerplane_slurm_partition_nodes", {"partition": p.name, "state": state}, count)
            )
        for metric, (alloc, total) in (
            ("powerplane_slurm_partition_cpus", p.cpus),
            ("powerplane_slurm_partition_memory_bytes", p.memory_bytes),
        ):
            for state, value in (("allocated", alloc), ("idle", total - alloc), ("total", total)):
                out.append(_line(metric, {"partition": p.name, "state": state}, float(value)))
        if p.gpus[1]:
            for state, value in (
                ("allocated", p.gpus[0]),
                ("idle", p.gpus[1] - p.gpus[0]),
                ("total", p.gpus[1]),
            ):
                labels = {"partition": p.name, "type": "h100", "state": state}
                out.append(_line("powerplane_slurm_partition_gpus", labels, float(value)))
        for state, count in p.jobs.items():
            out.append(_line("powerplane_slurm_jobs", {"partition": p.name, "state": state}, count))
        for i in range(p.jobs.get("running", 0)):
            user = p.users[i % len(p.users)] if p.users else "nobody"
            labels = {
                "job_id": f"{p.name}-{i}",
                "user": user,
                "account": f"acct-{user}",
                "partition": p.name,
                "qos": "normal",
            }
            out.append(_line("powerplane_slurm_job_info", labels, 1))
    for r in sample.reservations:
        info = {"reservation": r.name, "partition": r.partition, "flags": r.flags}
        out.append(_line("powerplane_slurm_reservation_info", info, 1))
        out.append(
            _line("powerplane_slurm_reservation_start_timestamp_seconds", {"reservation": r.name}, r.start)
        )
        out.append(
            _line("powerplane_slurm_reservation_end_timestamp_seconds", {"reservation": r.name}, r.end)
        )
    if sample.power_watts is not None:
        out.append(_line("cluster:powerplane_power_watts:sum", {}, sample.power_watts))
    if sample.cost_eur_per_hour is not None:
        out.append(_line("cluster:powerplane_energy_cost_eur_per_hour:sum", {}, sample.cost_eur_per_hour))
    return "".join(out)


class SeriesServer:
    """Serves each cluster's scheduler series at ``/metrics/<cluster>`` on 127.0.0.1."""

    def __init__(self, clusters: Sequence[ClusterSample]) -> None:
        self.clusters = {c.cluster: c for c in clusters}
        self.address = ""
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        sample = self.clusters.get(request.match_info["cluster"])
        if sample is None:
            raise web.HTTPNotFound()
        return web.Response(text=exposition(sample), content_type="text/plain", charset="utf-8")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/metrics/{cluster}", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.address = f"127.0.0.1:{port}"
        return f"http://{self.address}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def scrape_configs(self, job: str = "powerplane-slurm-sample") -> list[dict[str, Any]]:
        """One scrape job per cluster, the ``cluster`` label set as a target label."""
        return [
            {
                "job_name": f"{job}-{name}",
                "metrics_path": f"/metrics/{name}",
                "static_configs": [{"targets": [self.address], "labels": {"cluster": name}}],
            }
            for name in self.clusters
        ]


def demo_cluster(nodes: int, now: float) -> ClusterSample:
    """The demo's scheduler view: a CPU and a GPU partition, a queue, a maintenance tomorrow."""
    tomorrow = datetime.fromtimestamp(now, UTC).replace(
        hour=8, minute=0, second=0, microsecond=0
    ) + timedelta(days=1)
    return ClusterSample(
        "demo",
        [
            PartitionSample(
                "cpu",
                {"allocated": max(1, nodes - 1), "idle": 1, "drained": 1},
                cpus=(96 * max(1, nodes - 1), 96 * (nodes + 1)),
                memory_bytes=(0.6e12, 1.5e12),
                jobs={"running": 12, "pending": 30},
                users=("u1", "u2", "u3", "u4", "u5"),
            ),
            PartitionSample(
                "gpu",
                {"mixed": nodes, "down": 1},
                cpus=(40 * nodes, 64 * (nodes + 1)),
                gpus=(3 * nodes, 4 * (nodes + 1)),
                memory_bytes=(0.9e12, 2.0e12),
                jobs={"running": 5, "pending": 8},
                users=("u2", "u6"),
            ),
        ],
        [
            ReservationSample(
                "maint_gpu", "gpu", "maint,ignore_jobs", tomorrow.timestamp(), tomorrow.timestamp() + 4 * 3600
            )
        ],
    )


def _outages_file(path: Path, now: float) -> Path:
    start = datetime.fromtimestamp(now, UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    doc = {
        "outages": [
            {
                "title": "Scratch filesystem upgrade",
                "systems": ["demo"],
                "start": start.isoformat(),
                "end": (start + timedelta(hours=3)).isoformat(),
                "severity": "maintenance",
                "description": "/scratch is read-only during the upgrade; /home stays available.",
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def statuspage_component(ctx: Any) -> None:
    """The status page for the demo cluster (and its scheduler series until Slurm is in the demo)."""
    now = time.time()
    if not any(str(job.get("job_name", "")).startswith("powerplane-slurm") for job in ctx.scrape_configs):
        series = SeriesServer([demo_cluster(len(ctx.nodes), now)])
        await series.start()
        ctx.stack.push_async_callback(series.stop)
        ctx.scrape_configs.extend(series.scrape_configs())
    outages = _outages_file(ctx.workdir / "statuspage" / "outages.yaml", now)
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "title": "powerplane demo: system status",
                # Replaced by the demo's Prometheus once it runs (it starts after every part).
                "prometheus": {"url": "http://127.0.0.1:9", "timeout_seconds": 5},
                "outages_file": str(outages),
                "refresh": {"data_seconds": 15, "page_seconds": 60},
                "power": {"enabled": True},
                "systems": [
                    {"name": "demo", "title": "Demo cluster", "cluster": "demo", "partitions": ["cpu", "gpu"]}
                ],
            }
        ),
        "demo status page",
    )
    page = StatusPage(config)
    await ctx.serve(StatusServer(page), "Status page")

    async def follow_prometheus() -> None:
        # The demo publishes its Prometheus in ctx.shared once started, with nothing to wait on.
        while "prometheus" not in ctx.shared:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        page.prometheus.url = ctx.shared["prometheus"].url

    task = asyncio.ensure_future(follow_prometheus())

    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    ctx.stack.push_async_callback(cancel)
