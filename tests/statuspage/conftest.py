"""A world with known states for the status page: a real Prometheus, Alertmanager and node_exporter.

- Scheduler series (the Slurm exporter's names) for cluster ``alpha`` from ``SeriesServer``: a
  drained GPU node, 37 pending GPU jobs, a down and two reserved CPU nodes, a maintenance
  reservation on ``cpu`` and a user reservation (not maintenance) on ``gpu``.  Cluster ``beta``
  has no series at all.
- Login nodes: ``login1.alpha`` is a real node_exporter on a fake procfs (load 1.50 on 4 CPUs,
  /home read-write, /scratch read-only), ``login2.alpha`` a target that does not answer.
- Alerts: Prometheus rules fire ``ScratchSlow`` (labelled public, with a user label that must
  not show) and ``InternalOnly`` (not public) into a real Alertmanager.
- An outages file with an active, a planned, an ended and a hostile announcement.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane.lab import procs
from powerplane.statuspage.config import KIND, StatusPageConfig
from powerplane.statuspage.lab import ClusterSample, PartitionSample, ReservationSample, SeriesServer
from powerplane.statuspage.page import StatusPage
from powerplane.statuspage.server import StatusServer
from tests.conftest import require_binary

USERS = ("alice", "bob", "carol", "dave")
HOSTILE = "<script>alert('x')</script> & <b>friends</b>"

RULES = {
    "groups": [
        {
            "name": "statuspage-test",
            "rules": [
                {
                    "alert": "ScratchSlow",
                    "expr": "vector(1)",
                    "labels": {"public": "true", "cluster": "alpha", "severity": "warning", "user": "alice"},
                    "annotations": {"summary": "Scratch filesystem is slow", "description": "seen by alice"},
                },
                {
                    "alert": "InternalOnly",
                    "expr": "vector(1)",
                    "labels": {"cluster": "alpha", "severity": "critical"},
                    "annotations": {"summary": "Internal: breaker in rack 7"},
                },
            ],
        }
    ]
}


class NodeExporter(procs.Component):
    """A real node_exporter reading a fake procfs (load, CPUs, mounts) and the real filesystems."""

    name = "node_exporter"
    ready_path = "/metrics"

    def __init__(self, workdir: Path, binary: str) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.port = procs.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        proc = workdir / "proc"
        (proc / "1").mkdir(parents=True)
        self.home, self.scratch = workdir / "home", workdir / "scratch"
        self.home.mkdir()
        self.scratch.mkdir()
        (proc / "loadavg").write_text("1.50 1.20 1.00 1/100 12345\n")
        cpus = [f"cpu{i} 25 0 25 250 0 0 0 0 0 0" for i in range(4)]
        stat = ["cpu  100 0 100 1000 0 0 0 0 0 0", *cpus, "intr 0 0", "ctxt 0", "btime 1700000000"]
        stat += ["processes 1", "procs_running 1", "procs_blocked 0", "softirq 0 0 0 0 0 0 0 0 0 0 0"]
        (proc / "stat").write_text("\n".join(stat) + "\n")
        mounts = [
            f"nfs1:/home {self.home} ext4 rw,relatime 0 0",
            f"nfs2:/scratch {self.scratch} ext4 ro,relatime 0 0",
        ]
        (proc / "1" / "mounts").write_text("\n".join(mounts) + "\n")
        self.procfs = proc

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--web.listen-address={self.address}",
            f"--path.procfs={self.procfs}",
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.cpu",
            "--collector.filesystem",
        ]


class Prometheus(procs.Prometheus):
    """Prometheus resending alerts every second: its first send, before it has discovered the
    Alertmanager, is otherwise repeated only after the default resend delay of a minute."""

    def argv(self) -> list[str]:
        return [*super().argv(), "--rules.alert.resend-delay=1s"]


def alpha(now: float) -> ClusterSample:
    return ClusterSample(
        "alpha",
        [
            PartitionSample(
                "gpu",
                {"allocated": 3, "mixed": 1, "drained": 1},
                cpus=(200, 256),
                gpus=(14, 20),
                memory_bytes=(1.2e12, 2.0e12),
                jobs={"running": 6, "pending": 37},
                users=USERS[:3],
            ),
            PartitionSample(
                "cpu",
                {"idle": 4, "allocated": 2, "reserved": 2, "down": 1},
                cpus=(96, 864),
                memory_bytes=(0.3e12, 3.0e12),
                jobs={"running": 10, "pending": 0},
                users=USERS[3:],
            ),
        ],
        [
            ReservationSample("root_7", "cpu", "ignore_jobs,maint", now + 3600, now + 3 * 3600),
            ReservationSample("alice_course", "gpu", "", now + 600, now + 7200),
        ],
        power_watts=42_000.0,
        cost_eur_per_hour=8.4,
    )


def outages_doc(now: datetime) -> dict[str, Any]:
    def at(hours: float) -> str:
        return (now + timedelta(hours=hours)).isoformat()

    return {
        "outages": [
            {"title": "Network maintenance", "start": at(-1), "end": at(1), "severity": "warning"},
            {
                "title": "GPU firmware update",
                "systems": ["alpha"],
                "start": at(24),
                "end": at(26),
                "severity": "maintenance",
                "description": "GPU nodes are drained in turn.",
                "url": "https://wiki.example/gpu-firmware",
            },
            {"title": "Old outage", "start": at(-72), "end": at(-48), "severity": "critical"},
            {"title": HOSTILE, "systems": ["beta"], "start": at(2), "severity": "info"},
        ]
    }


class Clock:
    """A clock that tests move forward (the page's idea of now)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Served:
    page: StatusPage
    server: StatusServer
    url: str


@dataclass
class World:
    tmp: Path
    loop: procs.BackgroundLoop
    prometheus: Prometheus
    alertmanager: procs.Alertmanager
    node: NodeExporter
    series: SeriesServer
    outages: Path
    served: list[Served] = field(default_factory=list)

    def config_doc(self, **overrides: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "title": "Example HPC centre",
            "timezone": "Europe/Berlin",
            "prometheus": {"url": self.prometheus.url, "timeout_seconds": 5},
            "alertmanager": {"url": self.alertmanager.url, "timeout_seconds": 5},
            "outages_file": str(self.outages),
            "refresh": {"data_seconds": 3600, "page_seconds": 300},
            "power": {"enabled": True},
            "systems": [
                {
                    "name": "alpha",
                    "title": "Alpha (H100)",
                    "description": "GPU and CPU partitions.",
                    "partitions": ["gpu", "cpu"],
                    "login_nodes": ["login1.alpha", "login2.alpha"],
                    "filesystems": [
                        {"name": "home", "instance": "login1.alpha", "mountpoint": str(self.node.home)},
                        {"name": "scratch", "instance": "login1.alpha", "mountpoint": str(self.node.scratch)},
                        {"name": "archive", "check": 'min(up{instance="login2.alpha"})'},
                    ],
                },
                {"name": "beta", "title": "Beta (Zen 4)", "login_nodes": ["login1.beta"]},
            ],
        }
        doc.update(overrides)
        return doc

    def config(self, **overrides: Any) -> StatusPageConfig:
        return KIND.load_text(yaml.safe_dump(self.config_doc(**overrides)), "test status page")

    def serve(self, config: StatusPageConfig | None = None, clock: Callable[[], float] = time.time) -> Served:
        page = StatusPage(config or self.config(), clock=clock)
        server = StatusServer(page)
        host, port = self.loop.run(server.start("127.0.0.1", 0))
        served = Served(page, server, f"http://{host}:{port}")
        self.served.append(served)
        return served

    def query_requests(self) -> float:
        """Instant-query requests Prometheus has answered (its own counter)."""
        _status, body = procs.http_get(f"{self.prometheus.url}/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prometheus_bin = require_binary("prometheus")
    alertmanager_bin = require_binary("alertmanager")
    node_bin = require_binary("node_exporter")
    tmp = tmp_path_factory.mktemp("statuspage")
    now = time.time()
    with contextlib.ExitStack() as stack:
        loop = stack.enter_context(procs.BackgroundLoop())
        series = SeriesServer([alpha(now)])
        loop.run(series.start())
        stack.callback(lambda: loop.run(series.stop()))
        node = stack.enter_context(NodeExporter(tmp / "node", node_bin))
        alertmanager = stack.enter_context(procs.Alertmanager(tmp / "alertmanager", alertmanager_bin))
        rules = tmp / "rules.yaml"
        rules.write_text(yaml.safe_dump(RULES))
        dead = f"127.0.0.1:{procs.free_port()}"
        scrape = [
            *series.scrape_configs(),
            _login_job("login1", node.address),
            _login_job("login2", dead),
        ]
        prometheus = Prometheus(
            tmp / "prometheus", scrape, [rules], [alertmanager.address], binary=prometheus_bin
        )
        stack.enter_context(prometheus)
        outages = tmp / "outages.yaml"
        outages.write_text(yaml.safe_dump(outages_doc(datetime.fromtimestamp(now, UTC)), sort_keys=False))
        prometheus.wait_value('powerplane_slurm_partition_nodes{cluster="alpha"}')
        prometheus.wait_value('node_load1{instance="login1.alpha"}')
        prometheus.wait_value('up{instance="login2.alpha"} == 0')
        procs.wait_until(lambda: alertmanager.active("ScratchSlow"), 60, 0.5, "the ScratchSlow alert")
        world = World(tmp, loop, prometheus, alertmanager, node, series, outages)
        yield world
        for served in world.served:
            loop.run(served.server.stop())


def _login_job(name: str, address: str) -> dict[str, Any]:
    return {
        "job_name": f"node-{name}",
        "static_configs": [{"targets": [address]}],
        "relabel_configs": [{"target_label": "instance", "replacement": f"{name}.alpha"}],
    }
