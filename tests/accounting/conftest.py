"""A real Slurm cluster for the ledger's tests: node-01 with 8 CPUs and three H100 GRES, node-02 with
4 CPUs and no GPU (started once per module: CI time matters)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from powerplane.lab.slurm import NodeSpec, SlurmCluster, missing_binaries
from tests.conftest import IN_CI


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    missing = missing_binaries()
    if missing:
        message = f"REAL COMPONENT MISSING: Slurm ({', '.join(missing)}) is not installed (run scripts/setup)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    lab = SlurmCluster(
        tmp_path_factory.mktemp("ledger-slurm"),
        [NodeSpec("node-01", cpus=8, memory_mb=16000, gpu_type="h100", gpus=3), NodeSpec("node-02", cpus=4)],
        {"batch": ["node-01", "node-02"]},
        cluster_name="ledger",
    )
    with lab:
        lab.wait_settled()
        yield lab
