"""Shared fixtures: real components, with a loud skip locally and a failure in CI when missing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from powerplane.lab import procs

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
