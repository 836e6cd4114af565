"""Toy collectors and a toy prober for the runtime's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from powerplane.exporters.runtime import (
    Collector,
    CollectorError,
    Deadline,
    ProbeJob,
    Prober,
    ProbeRequestError,
    Scrape,
)
from tests.helpers import parse


class Fixed(Collector[float]):
    """A collector whose fetch does what the test says."""

    def __init__(self, name: str, result: Any = 1.0, delay: float = 0.0) -> None:
        self.name = name
        self.result = result
        self.delay = delay
        self.fetches = 0

    async def fetch(self, deadline: Deadline) -> Any:
        self.fetches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result

    def render(self, snapshot: float) -> Iterable[Metric]:
        family = GaugeMetricFamily("test_value", "A test value.", labels=["collector"])
        family.add_metric([self.name], snapshot)
        yield family


def expose(outcomes: Any, exporter: str = "test") -> dict[str, Any]:
    return parse(generate_latest(Scrape(exporter, outcomes)).decode())  # type: ignore[arg-type]


class ToyProber(Prober):
    """Targets a and b are configured; everything else is refused."""

    exporter = "toy"

    def __init__(self, delay: float = 0.0, fail_connect: bool = False) -> None:
        super().__init__()
        self.collectors = {
            t: [Fixed("power", 100.0, delay), Fixed("thermal", CollectorError("GeneralError"))]
            for t in ("a", "b")
        }
        self.fail_connect = fail_connect
        self.connects = 0
        self.closed = False

    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        target = params.get("target", "")
        if target not in self.collectors:
            raise ProbeRequestError(f"target {target!r} is not configured")
        if params.get("module", "default") != "default":
            raise ProbeRequestError(f"unknown module {params['module']!r}")

        async def connect(_deadline: Deadline) -> None:
            self.connects += 1
            if self.fail_connect:
                raise CollectorError(f"{target}: connection refused")

        return ProbeJob(target, "default", 10.0, self.collectors[target], device=target, connect=connect)

    async def close(self) -> None:
        self.closed = True
