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
VOLATILE = ("powerplane_scrape_collector_duration_seconds", "powerplane_gpu_energy_joules_total")


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
