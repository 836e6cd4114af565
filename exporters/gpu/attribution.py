"""Attribution: which pod (kubelet pod-resources) and which HPC job (mapping directory) holds a GPU.

Both are info metrics joined in PromQL, never labels on every series; the dcgm profile takes
its pod and job labels from the same ``Attribution``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import Metric

from ..runtime import Collector, CollectorError, Deadline, NoData, Partial
from .metrics import JOB_INFO, POD_INFO
from .nvml import Identity, Nvml
from .podresources import DeviceAssignment, list_assignments

logger = logging.getLogger("powerplane.gpu")


class Attribution:
    """The latest pod and job assignments, for the info collectors and the dcgm profile's labels."""

    def __init__(self) -> None:
        self.pods: list[tuple[int, str, str, DeviceAssignment]] = []  # (gpu, uuid, gpu_instance, who)
        self.jobs: dict[int, list[str]] = {}

    def dcgm_labels(self, ident: Identity) -> dict[str, str]:
        # dcgm-exporter puts pod labels on every series of a GPU held by one container; a GPU
        # shared by several keeps none rather than multiplying series.
        holders = {
            (a.namespace, a.pod, a.container) for g, _u, gi, a in self.pods if g == ident.index and not gi
        }
        labels: dict[str, str] = {}
        if len(holders) == 1:
            namespace, pod, container = holders.pop()
            labels.update(namespace=namespace, pod=pod, container=container)
        jobs = self.jobs.get(ident.index, [])
        if len(jobs) == 1:
            labels["hpc_job"] = jobs[0]
        return labels


@dataclass(frozen=True)
class PodSnapshot:
    rows: tuple[tuple[int, str, str, DeviceAssignment], ...]


class PodCollector(Collector[PodSnapshot]):
    """Which container holds which GPU, from the kubelet's pod-resources socket."""

    name = "pods"

    def __init__(
        self, nvml: Nvml, socket_path: str, attribution: Attribution, resources: Sequence[str]
    ) -> None:
        self.nvml = nvml
        self.socket_path = socket_path
        self.attribution = attribution
        self.resources = tuple(resources)

    async def fetch(self, deadline: Deadline) -> PodSnapshot | Partial[PodSnapshot]:
        if not os.path.exists(self.socket_path):  # noqa: ASYNC240 - one stat of a local socket
            self.attribution.pods = []
            raise NoData(f"no kubelet pod-resources socket at {self.socket_path}")
        try:
            assignments = await list_assignments(self.socket_path, deadline.remaining())
        except ValueError as exc:
            raise CollectorError(f"pod-resources {self.socket_path}: malformed response: {exc}") from None
        except Exception as exc:  # grpc.aio.AioRpcError and friends
            detail = getattr(exc, "details", lambda: None)() or str(exc) or type(exc).__name__
            raise CollectorError(f"pod-resources {self.socket_path}: {detail}") from None
        identities = await asyncio.to_thread(self.nvml.identities_now)
        by_uuid = {ident.uuid: ident for ident in identities.values()}
        with self.nvml.lock:
            migs = dict(self.nvml.mig_uuids)
        rows: list[tuple[int, str, str, DeviceAssignment]] = []
        unknown = 0
        for a in assignments:
            if not a.resource.startswith(self.resources):
                continue
            # Time-sliced GPUs are advertised as "<uuid>::<replica>".
            device = a.device_id.split("::", 1)[0]
            if device in by_uuid:
                rows.append((by_uuid[device].index, device, "", a))
            elif device in migs:
                index, gi = migs[device]
                parent = identities.get(index)
                if parent is not None:
                    rows.append((index, parent.uuid, str(gi), a))
            else:
                unknown += 1
        self.attribution.pods = rows
        if unknown:
            logger.debug("%d device IDs from pod-resources match no GPU here", unknown)
        return PodSnapshot(tuple(rows))

    def render(self, snapshot: PodSnapshot) -> Iterable[Metric]:
        family = POD_INFO.family()
        seen = set()
        for index, uuid, gi, a in snapshot.rows:
            key = (index, uuid, gi, a.namespace, a.pod, a.container)
            if key not in seen:
                seen.add(key)
                family.add_metric([str(index), uuid, gi, a.namespace, a.pod, a.container], 1.0)
        yield family


@dataclass(frozen=True)
class JobSnapshot:
    #: (GPU, MIG GPU instance or "", job ID)
    jobs: tuple[tuple[Identity, str, str], ...]


#: A mapping file's name: a GPU index, or ``<gpu>.<gpu instance>`` for a MIG instance (dcgm-exporter's).
_MAPPING_NAME = re.compile(r"([0-9]{1,6})(?:\.([0-9]{1,6}))?")


class JobCollector(Collector[JobSnapshot]):
    """HPC jobs per GPU from a directory of files named by GPU index (``<gpu>.<gpu instance>`` for
    a MIG instance), one job ID per line."""

    name = "jobs"
    MAX_BYTES = 64 * 1024

    def __init__(self, nvml: Nvml, directory: Path, attribution: Attribution) -> None:
        self.nvml = nvml
        self.directory = Path(directory)
        self.attribution = attribution

    async def fetch(self, deadline: Deadline) -> JobSnapshot | Partial[JobSnapshot]:
        return await asyncio.to_thread(self._read)

    def _read(self) -> JobSnapshot | Partial[JobSnapshot]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            self.attribution.jobs = {}
            raise NoData(f"no HPC job mapping directory at {self.directory}") from None
        except OSError as exc:
            raise CollectorError(f"{self.directory}: {exc.strerror}") from None
        errors: list[str] = []
        jobs: dict[tuple[int, str], list[str]] = {}
        for name in names:
            if name.startswith("."):
                continue  # editors' and atomic writers' temporary files
            match = _MAPPING_NAME.fullmatch(name)
            if match is None:
                errors.append(f"{self.directory}/{name}: not named by a GPU index (or <gpu>.<gpu instance>)")
                continue
            ids = self._job_ids(name, errors)
            if ids:
                jobs[(int(match.group(1)), match.group(2) or "")] = ids
        # dcgm labels go on whole GPUs only: a MIG instance's job is not the GPU's.
        self.attribution.jobs = {index: ids for (index, gi), ids in jobs.items() if not gi}
        rows = []
        identities = self.nvml.identities_now()
        for (index, gi), ids in sorted(jobs.items()):
            ident = identities.get(index)
            if ident is None:
                if index >= self.nvml.count:
                    name = f"{index}.{gi}" if gi else str(index)
                    errors.append(f"{self.directory}/{name}: no GPU {index} on this node")
                continue
            rows += [(ident, gi, job) for job in ids]
        snapshot = JobSnapshot(tuple(rows))
        return Partial(snapshot, errors) if errors else snapshot

    def _job_ids(self, name: str, errors: list[str]) -> list[str]:
        try:
            with open(self.directory / name, "rb") as f:
                data = f.read(self.MAX_BYTES + 1)
        except OSError as exc:
            errors.append(f"{self.directory}/{name}: {exc.strerror}")
            return []
        if len(data) > self.MAX_BYTES:
            errors.append(f"{self.directory}/{name}: larger than {self.MAX_BYTES} bytes, ignored")
            return []
        ids = []
        for line in data.decode("utf-8", "replace").splitlines():
            job = line.strip()
            if not job:
                continue
            if len(job) > 128 or not job.isprintable():
                errors.append(f"{self.directory}/{name}: job id {job[:32]!r} rejected")
                continue
            ids.append(job)
        return ids

    def render(self, snapshot: JobSnapshot) -> Iterable[Metric]:
        family = JOB_INFO.family()
        for ident, gi, job in snapshot.jobs:
            family.add_metric([*ident.labels, gi, job], 1.0)
        yield family
