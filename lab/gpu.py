"""GPUs for the demo: each node's fake NVML machine, a fake kubelet and a GPU exporter process.

The NVML library is process-global, so each node's exporter runs as its own
``powerplane exporter gpu`` process whose environment points the dynamic loader at the fake
library and the library at that node's config.  The lab's node model drives the GPUs through
the library's shared state, so NVML reports the same power the node's BMC and PDU outlets see.
Node 1 has H100s held by Kubernetes pods, node 2 A100s (one in MIG mode) running HPC jobs,
node 3 L40S boards; further nodes repeat the pattern (``powerplane.lab.model.node_gpus``).
``ctx.shared["gpu"]`` maps node → ``FakeNvml`` (the controller sets limits through it).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from powerplane.exporters.gpu.podresources import DeviceAssignment

from . import procs
from .demo import DemoContext
from .fakenvml import FakeNvml
from .kubelet import FakePodResources
from .model import node_gpus

__all__ = ["exporter_argv", "gpu_component", "node_gpus", "socket_dir", "start_exporter"]


def exporter_argv(port: int, extra: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from powerplane.cli import main; main()",
        "exporter",
        "gpu",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        *extra,
    ]


def start_exporter(
    nvml: FakeNvml, log_path: Path, extra: Sequence[str] = (), port: int | None = None
) -> tuple[procs.Process, str]:
    """``powerplane exporter gpu`` in its own process against ``nvml``; returns it and host:port."""
    port = port or procs.free_port()
    process = procs.Process(exporter_argv(port, extra), log_path, env=nvml.env())
    address = f"127.0.0.1:{port}"
    process.wait_ready(f"http://{address}/-/ready", timeout=30.0)
    return process, address


def socket_dir(preferred: Path) -> Path:
    # unix socket paths are limited to 107 bytes
    if len(str(preferred / "kubelet.sock")) < 100:
        preferred.mkdir(parents=True, exist_ok=True)
        return preferred
    return Path(tempfile.mkdtemp(prefix="pp-kubelet-"))


async def gpu_component(ctx: DemoContext) -> None:
    """A fake kubelet and HPC job files per node, and a GPU exporter process on its fake NVML."""
    import pynvml  # noqa: F401 - fail early, with a clear error, if nvidia-ml-py is missing

    model = ctx.cluster()
    machines: dict[str, FakeNvml] = {}
    targets = []
    for i, node in enumerate(ctx.nodes):
        nvml = model.nodes[node].nvml
        if nvml is None:
            continue
        machines[node] = nvml
        extra: list[str] = ["--pod-resources.socket="]
        if i % 3 == 0:
            kubelet = FakePodResources(socket_dir(ctx.workdir / node / "kubelet") / "kubelet.sock")
            uuids = [line.split(" ", 1)[1] for line in nvml.render().splitlines() if line.startswith("uuid ")]
            kubelet.assignments = [
                DeviceAssignment("ml", "llm-train-0", "trainer", "nvidia.com/gpu", uuids[0]),
                DeviceAssignment("ml", "llm-train-0", "trainer", "nvidia.com/gpu", uuids[1]),
                DeviceAssignment("ml", "llm-serve-7f9c", "server", "nvidia.com/gpu", uuids[2]),
            ]
            await kubelet.start()
            ctx.stack.push_async_callback(kubelet.stop)
            extra = [f"--pod-resources.socket={kubelet.socket_path}"]
        elif i % 3 == 1:
            jobs = ctx.workdir / node / "hpc-jobs"
            jobs.mkdir(parents=True, exist_ok=True)
            (jobs / "0").write_text(f"{41000 + i}\n")
            extra.append(f"--hpc-job-mapping.dir={jobs}")
        port = ctx.port()
        process, address = await asyncio.to_thread(
            start_exporter, nvml, ctx.workdir / node / "gpu-exporter.log", extra, port
        )
        ctx.stack.callback(process.stop)
        ctx.urls.append((f"GPU exporter ({node})", f"http://{address}/"))
        targets.append({"targets": [address], "labels": {"node": node}})
    ctx.shared["gpu"] = machines
    ctx.scrape_configs.append({"job_name": "powerplane-gpu", "static_configs": targets})
