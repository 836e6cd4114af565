"""Shared fixtures: real components, with a loud skip locally and a failure in CI when missing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from powerplane.exporters.runtime import ExporterServer
from powerplane.lab import procs

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: Seconds the whole demo lab (Slurm included) may take to start: 7 s on a quiet machine, many
#: times that on a busy CI runner.
LAB_START_S = 180.0


def require_binary(name: str) -> str:
    """The path of a real component; in CI its absence fails the test, locally it skips loudly."""
    path = procs.find_binary(name)
    if path is None:
        message = f"REAL COMPONENT MISSING: {name} is not installed (run scripts/setup)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def background_loop() -> Iterator[procs.BackgroundLoop]:
    with procs.BackgroundLoop() as loop:
        yield loop


PrometheusFactory = Callable[..., procs.Prometheus]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Start a real Prometheus: ``prometheus(scrape_configs, rule_files=..., alertmanagers=...)``."""
    binary = require_binary("prometheus")
    started: list[procs.Prometheus] = []

    def start(
        scrape_configs: Sequence[Mapping[str, Any]],
        rule_files: Sequence[Path] = (),
        alertmanagers: Sequence[str] = (),
        **kwargs: Any,
    ) -> procs.Prometheus:
        prom = procs.Prometheus(
            tmp_path / f"prometheus-{len(started)}",
            scrape_configs,
            rule_files,
            alertmanagers,
            binary=binary,
            **kwargs,
        )
        started.append(prom)
        return prom.start()

    yield start
    for prom in started:
        prom.stop()


@dataclass
class Served:
    """An exporter serving on 127.0.0.1, and a client session to ask it."""

    server: ExporterServer
    url: str
    http: aiohttp.ClientSession

    async def get(
        self, path: str, params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, str]:
        async with self.http.get(self.url + path, params=params, headers=headers) as response:
            return response.status, await response.text()

    async def probe(
        self, target: str, headers: Mapping[str, str] | None = None, **params: str
    ) -> tuple[int, str]:
        return await self.get("/probe", {"target": target, **params}, headers)


Serve = Callable[[ExporterServer], Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``served = await serve(server)``: start it on a free port; it is stopped after the test."""
    started: list[ExporterServer] = []
    async with aiohttp.ClientSession() as http:

        async def start(server: ExporterServer) -> Served:
            host, port = await server.start("127.0.0.1", 0)
            started.append(server)
            return Served(server, f"{server.scheme}://{host}:{port}", http)

        yield start
        for server in reversed(started):
            await server.stop()
