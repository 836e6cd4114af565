"""Golden exposition: what ``/metrics`` of the GPU exporter answers for three lab GPUs, line for line.

An H100 (HBM, ECC counts), an L40S (GDDR: no memory temperature) and an A100 in MIG mode, on the
fake NVML with constant utilisation; the energy counters follow the wall clock and the durations
the machine, so their values are normalised to NaN.  The dcgm naming profile is left out: its
names and camelCase labels are dcgm-exporter's on purpose, which ``promtool check metrics``
flags (tests/gpu/test_dcgm.py checks them one by one).  ``POWERPLANE_UPDATE_GOLDEN=1`` rewrites
golden/ after a deliberate change.
"""

from __future__ import annotations

from pathlib import Path

from powerplane.lab.fakenvml import FakeGpu, FakeNvml, MigDevice
from tests.conftest import require_binary
from tests.helpers import check_golden, normalised, without_runtime_noise

from .conftest import exporter

GOLDEN = Path(__file__).resolve().parent / "golden"
VOLATILE = (
    "powerplane_scrape_collector_duration_seconds",
    "powerplane_gpu_energy_joules_total",
    "powerplane_gpu_energy_start_timestamp_seconds",
)


def _uuid(index: int) -> str:
    # The fake derives UUIDs from its directory unless told; a golden file needs fixed ones.
    return f"GPU-00000000-0000-4000-8000-{index:012d}"


async def test_golden_exposition(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    FakeNvml(
        tmp_path,
        [
            FakeGpu("h100-sxm", uuid=_uuid(0), util_base=0.8, ecc_corrected=2, pcie_replays=1),
            FakeGpu("l40s", uuid=_uuid(1), util_base=0.1),
            FakeGpu("a100-sxm", uuid=_uuid(2), util_base=0.5, mig=[MigDevice(1, 0, 10 << 30, 1 << 30)]),
        ],
        driver_version="550.54.15",
    ).activate()
    async with exporter(hostname="node-01") as server:
        text, _ = await server.scrape()
    check_golden(normalised(without_runtime_noise(text), VOLATILE), GOLDEN / "three-gpus.prom", promtool)


async def test_golden_eight_gpus_one_lost(tmp_path: Path) -> None:
    """Eight GPUs (six H100s, an L40S, an A100 in MIG mode), GPU 3 fallen off the bus after the
    first scrape: the other seven expose every series, GPU 3 only its failed collector.  The
    golden file was written by the exporter of one collector per GPU, so the one collector of
    every GPU must expose the same text."""
    promtool = require_binary("promtool")
    gpus = [
        *(FakeGpu("h100-sxm", uuid=_uuid(i), util_base=0.1 * (i + 2), ecc_corrected=i) for i in range(6)),
        FakeGpu("l40s", uuid=_uuid(6), util_base=0.3, pcie_replays=4),
        FakeGpu(
            "a100-sxm", uuid=_uuid(7), mig=[MigDevice(1, 0, 10 << 30, 1 << 30), MigDevice(2, 0, 20 << 30, 0)]
        ),
    ]
    machine = FakeNvml(tmp_path, gpus, driver_version="550.54.15").activate()
    async with exporter(hostname="node-01") as server:
        await server.scrape()
        machine.lose(3)
        text, _ = await server.scrape()
    check_golden(
        normalised(without_runtime_noise(text), VOLATILE), GOLDEN / "eight-gpus-one-lost.prom", promtool
    )
