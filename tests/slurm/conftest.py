"""One real Slurm cluster for every Slurm test (started once: CI time matters), and its answers.

The cluster has two nodes (node-01 with four H100 GRES, node-02 CPU only) in partitions ``cpu``
and ``gpu``, and runs three jobs: a GPU job of user ``nobody`` (account physics), a job across
both nodes, and one that cannot start (pending).  ``recorded`` holds what slurmrestd and the
commands answered, byte for byte, for the parser tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from powerplane.lab import procs
from powerplane.lab.slurm import REST_USER, NodeSpec, SlurmCluster, missing_binaries
from tests.conftest import IN_CI


@dataclass
class Cluster:
    lab: SlurmCluster
    gpu_job: str
    wide_job: str
    pending_job: str


def _require_slurm() -> None:
    missing = missing_binaries()
    if missing:
        message = f"REAL COMPONENT MISSING: Slurm ({', '.join(missing)}) is not installed (run scripts/setup)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _require_slurm()
    lab = SlurmCluster(
        tmp_path_factory.mktemp("slurm"),
        [NodeSpec("node-01", cpus=8, memory_mb=16000, gpu_type="h100", gpus=4), NodeSpec("node-02", cpus=8)],
        {"cpu": ["node-01", "node-02"], "gpu": ["node-01"]},
    )
    with lab:
        gpu = lab.sbatch(
            "-p", "gpu", "--gres=gpu:h100:2", "-n", "2", "--mem=2000", "--account=physics", "-J", "train",
            user=REST_USER,
        )  # fmt: skip
        wide = lab.sbatch("-p", "cpu", "-N", "2", "-n", "2", "--mem=1000", "-J", "wide")
        pending = lab.sbatch("-p", "cpu", "-n", "64", "-J", "toolarge")
        lab.wait_job(gpu)
        lab.wait_job(wide)
        lab.wait_settled()
        yield Cluster(lab, gpu, wide, pending)


@dataclass
class Recorded:
    """Raw answers of the real cluster: rest[endpoint] and cli[endpoint] bytes."""

    rest: dict[str, bytes]
    cli: dict[str, bytes]
    text: dict[str, str]


@pytest.fixture(scope="session")
def recorded(slurm: Cluster) -> Recorded:
    lab = slurm.lab
    rest: dict[str, bytes] = {}
    if lab.rest_binary:
        version = "v0.0.38"
        headers = lab.rest_headers()
        for path in ("ping", "diag", "nodes", "partitions", "jobs", "reservations"):
            status, body = procs.http_get(f"{lab.rest_url}/slurm/{version}/{path}", headers=headers)
            assert status == 200, (path, body[:200])
            rest[path] = body
    env = lab.env()

    def run(*argv: str) -> bytes:
        return subprocess.run(argv, capture_output=True, env=env, check=True, timeout=30).stdout

    cli = {"jobs": run("squeue", "--all", "--json"), "nodes": run("sinfo", "--json")}
    text = {
        "partitions": run("scontrol", "-o", "show", "partitions").decode(),
        "reservations": run("scontrol", "-o", "show", "reservations").decode(),
        "ping": run("scontrol", "ping").decode(),
        "sdiag": run("sdiag").decode(),
        "jobs": run("scontrol", "-d", "-o", "show", "jobs").decode(),
    }
    return Recorded(rest, cli, text)


def save(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
