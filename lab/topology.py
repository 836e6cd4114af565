"""The scale-out topology on real components: sharded scraping, remote write, global rules.

Each cluster's probe targets are spread over ``shards`` Prometheus instances by ``hashmod``
relabelling; every shard adds the external labels ``cluster`` and ``replica`` and remote-writes
to one VictoriaMetrics, where vmalert evaluates the shipped rules globally and sends the alerts
to Alertmanager::

    cluster east: shard 0 ─┐                          ┌─ vmalert ─ Alertmanager
                  shard 1 ─┼─ remote write ─ VictoriaMetrics
    cluster west: shard 0 ─┤                          └─ queries (dashboards, reports)
                  shard 1 ─┘

Within a shard, probes are spread over the multi-target exporter replicas by a second hash
(``spread``), so a device always goes to the same replica (its sessions and caches stay warm)
whichever shard scrapes it.  Used by the scale tests and ``bench/fleet.py``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import procs

#: What a probe target is, for sharding: the device and the parameters that select what is read
#: (lab PDUs share one snmpsim address and differ by their auth).
SHARD_KEY = ("__address__", "__param_auth", "__param_module")
#: What picks a target's exporter replica: independent of the shard hash, stable across shards.
SPREAD_KEY = ("job", "__param_target", "__param_auth")


def hashmod(values: Sequence[str], modulus: int) -> int:
    """The bucket Prometheus' ``hashmod`` relabel action gives ``values`` (joined by ``;``): the
    last 8 bytes of their MD5 as a big-endian integer, modulo ``modulus``."""
    digest = hashlib.md5(";".join(values).encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def shard_relabel(shard: int, shards: int, key: Sequence[str] = SHARD_KEY) -> list[dict[str, Any]]:
    """Relabel rules keeping the targets of shard ``shard`` of ``shards`` (put them first)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not within 0..{shards - 1}")
    return [
        {"source_labels": list(key), "modulus": shards, "target_label": "__tmp_shard", "action": "hashmod"},
        {"source_labels": ["__tmp_shard"], "regex": str(shard), "action": "keep"},
    ]


def spread(exporters: Sequence[str], key: Sequence[str] = SPREAD_KEY) -> list[dict[str, Any]]:
    """Relabel rules sending each probe to one of the exporter replicas ``exporters``."""
    if not exporters:
        raise ValueError("spread needs at least one exporter address")
    rules: list[dict[str, Any]] = [
        {
            "source_labels": list(key),
            "modulus": len(exporters),
            "target_label": "__tmp_exporter",
            "action": "hashmod",
        }
    ]
    for i, address in enumerate(exporters):
        rules.append(
            {
                "source_labels": ["__tmp_exporter"],
                "regex": str(i),
                "target_label": "__address__",
                "replacement": address,
            }
        )
    return rules


def probe_job(
    name: str,
    exporters: Sequence[str],
    targets: Sequence[Mapping[str, Any]],
    params: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """A multi-target scrape job: the device is the target, one of ``exporters`` is scraped."""
    return {
        "job_name": name,
        "metrics_path": "/probe",
        "params": {k: list(v) for k, v in (params or {}).items()},
        "static_configs": [dict(t) for t in targets],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            *spread(exporters),
        ],
    }


def sharded(jobs: Sequence[Mapping[str, Any]], shard: int, shards: int) -> list[dict[str, Any]]:
    """``jobs`` as shard ``shard`` of ``shards`` scrapes them: each keeps its share of targets."""
    out = []
    for job in jobs:
        doc = copy.deepcopy(dict(job))
        # Before every other rule, while __address__ is still the device's.
        doc["relabel_configs"] = [*shard_relabel(shard, shards), *doc.get("relabel_configs", [])]
        out.append(doc)
    return out


class PrometheusShard(procs.Prometheus):
    """A Prometheus scraping one shard and remote-writing it with ``cluster``/``replica`` labels."""

    def __init__(
        self,
        workdir: Path,
        scrape_configs: Sequence[Mapping[str, Any]],
        cluster: str,
        replica: str,
        remote_write: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(workdir, scrape_configs, **kwargs)
        self.cluster, self.replica = cluster, replica
        config = yaml.safe_load(self.config_path.read_text())
        config["global"]["external_labels"] = {"cluster": cluster, "replica": replica}
        config["remote_write"] = [
            {
                "url": remote_write,
                # A second, not the default 5 s: the freshness measured is the topology's.
                "queue_config": {"batch_send_deadline": "1s", "max_samples_per_send": 5000},
            }
        ]
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def kill(self) -> None:
        """SIGKILL, as a crashed or evicted shard: nothing flushed, no staleness markers sent."""
        if self.process is not None and self.process.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.proc.wait(10)


class VictoriaMetrics(procs.QueryApi, procs.Component):
    """A single-node VictoriaMetrics on 127.0.0.1 with a temporary data directory."""

    name = "victoria-metrics"
    ready_path = "/health"

    def __init__(
        self, workdir: Path, binary: str | None = None, port: int | None = None, lookback: str | None = None
    ) -> None:
        """``lookback`` bounds how far back an instant query looks for a series' last sample: a
        shard that dies sends no staleness markers, so its series end there (default: VictoriaMetrics
        derives it from the series' sample interval, up to the query step, 5 min)."""
        super().__init__(workdir)
        self.lookback = lookback
        self.binary = binary or procs.find_binary("victoria-metrics")
        if self.binary is None:
            raise FileNotFoundError("victoria-metrics is not installed (Debian package 'victoria-metrics')")
        self.port = port or procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.write_url = f"{self.url}/api/v1/write"

    def argv(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=1d",
            # Queries see samples a second old (default 30 s), so freshness is the pipeline's.
            "-search.latencyOffset=1s",
            "-search.disableCache",
            *([f"-search.maxStalenessInterval={self.lookback}"] if self.lookback else []),
        ]


class VmAlert(procs.Component):
    """vmalert evaluating rule files against VictoriaMetrics, writing recordings and ALERTS back."""

    name = "vmalert"
    ready_path = "/health"

    def __init__(
        self,
        workdir: Path,
        rule_files: Sequence[Path],
        datasource: str,
        notifiers: Sequence[str] = (),
        evaluation_interval: str = "1s",
        binary: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(workdir)
        self.binary = binary or procs.find_binary("vmalert")
        if self.binary is None:
            raise FileNotFoundError("vmalert is not installed (Debian package 'victoria-metrics')")
        self.rule_files = list(rule_files)
        self.datasource = datasource
        self.notifiers = list(notifiers)
        self.evaluation_interval = evaluation_interval
        self.port = port or procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            *(f"-rule={path}" for path in self.rule_files),
            f"-datasource.url={self.datasource}",
            f"-remoteWrite.url={self.datasource}",
            f"-remoteRead.url={self.datasource}",
            *(f"-notifier.url=http://{n}" for n in self.notifiers),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-evaluationInterval={self.evaluation_interval}",
            "-remoteWrite.flushInterval=1s",
        ]


class ShardedStack:
    """Per cluster ``shards`` Prometheus shards, one VictoriaMetrics, one vmalert.

    ``jobs`` maps each cluster to its scrape configs as one Prometheus would scrape them; each
    shard gets them through ``sharded``.  Start with ``with ShardedStack(...) as stack:``.
    """

    def __init__(
        self,
        workdir: Path,
        jobs: Mapping[str, Sequence[Mapping[str, Any]]],
        rule_files: Sequence[Path],
        shards: int = 2,
        alertmanagers: Sequence[str] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        binaries: Mapping[str, str] | None = None,
        lookback: str | None = None,
    ) -> None:
        bins = dict(binaries or {})
        self.workdir = Path(workdir)
        self.vm = VictoriaMetrics(self.workdir / "vm", binary=bins.get("victoria-metrics"), lookback=lookback)
        self.shards: dict[tuple[str, int], PrometheusShard] = {}
        for cluster, cluster_jobs in jobs.items():
            for i in range(shards):
                self.shards[(cluster, i)] = PrometheusShard(
                    self.workdir / f"shard-{cluster}-{i}",
                    sharded(cluster_jobs, i, shards),
                    cluster=cluster,
                    replica=f"{cluster}-{i}",
                    remote_write=self.vm.write_url,
                    scrape_interval=scrape_interval,
                    binary=bins.get("prometheus"),
                )
        self.vmalert = VmAlert(
            self.workdir / "vmalert",
            rule_files,
            self.vm.url,
            alertmanagers,
            evaluation_interval,
            binary=bins.get("vmalert"),
        )

    def start(self) -> ShardedStack:
        try:
            self.vm.start()
            for shard in self.shards.values():
                shard.start()
            self.vmalert.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for component in (self.vmalert, *self.shards.values(), self.vm):
            component.stop()

    def __enter__(self) -> ShardedStack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
