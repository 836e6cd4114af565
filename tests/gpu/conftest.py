"""The GPU exporter in-process over the fake NVML, and the helpers its tests share."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from powerplane.exporters.gpu.config import GpuOptions
from powerplane.exporters.gpu.exporter import make_server
from tests.helpers import parse, value

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@contextlib.asynccontextmanager
async def exporter(hostname: str | None = None, **options: Any) -> AsyncIterator[Any]:
    options.setdefault("pod_resources_socket", "")
    options.setdefault("job_mapping_dir", "")
    server = make_server(GpuOptions(**options), hostname=hostname)
    host, port = await server.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:

        async def scrape() -> tuple[str, Samples]:
            async with session.get(f"http://{host}:{port}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            return text, parse(text)

        server.scrape = scrape
        try:
            yield server
        finally:
            await server.stop()


def success(samples: Samples, collector: str) -> float:
    return value(samples, "powerplane_scrape_collector_success", exporter="gpu", collector=collector)


def gpu_series(samples: Samples, index: str) -> set[str]:
    return {name for name, series in samples.items() for labels in series if ("gpu", index) in labels}


async def poll(server: Any, predicate: Any, seconds: float = 10.0) -> Samples:
    import time

    end = time.monotonic() + seconds
    while True:
        _, s = await server.scrape()
        if predicate(s):
            return s
        if time.monotonic() > end:
            raise AssertionError(f"condition not met; XIDs: {s.get('powerplane_gpu_xid_errors_total')}")
        await asyncio.sleep(0.05)


def short_socket() -> Path:
    # unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer
    return Path(tempfile.mkdtemp(prefix="pp-", dir="/tmp")) / "kubelet.sock"
