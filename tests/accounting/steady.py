"""A source of exactly known series for the ledger's end-to-end tests.

It stands in for the meters whose values must be known to the watt (BMC power, GPU power and
energy, cAdvisor's CPU time, the market curve): each series is a function of the scrape's wall
clock, so the truth of any window is arithmetic.  The names and labels are the exporters' own
(docs/METRICS.md); a function returning None leaves the series out of that scrape (a gap).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from powerplane.lab import procs

Value = Callable[[float], float | None]


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    value: Value


@dataclass
class SteadySource:
    series: list[Series] = field(default_factory=list)

    def add(self, name: str, value: Value | float, **labels: str) -> None:
        fn: Value = value if callable(value) else (lambda _t, v=float(value): v)
        self.series.append(Series(name, labels, fn))

    def render(self, now: float) -> str:
        lines = []
        for s in self.series:
            v = s.value(now)
            if v is None:
                continue
            labels = ",".join(f'{k}="{val}"' for k, val in sorted(s.labels.items()))
            lines.append(f"{s.name}{{{labels}}} {v!r}")
        return "\n".join(lines) + "\n"

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.render(time.time()), content_type="text/plain")

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        port = procs.free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, f"127.0.0.1:{port}"


@contextmanager
def serving(source: SteadySource, loop: procs.BackgroundLoop) -> Iterator[str]:
    runner, address = loop.run(source.start())
    try:
        yield address
    finally:
        loop.run(runner.cleanup())


def step_curve(period: float, values: dict[int, float | None], origin: float) -> Value:
    """A value per period ``k`` counted from ``origin`` (the last one given holds after it)."""
    last = max(values)

    def value(t: float) -> float | None:
        k = int((t - origin) // period)
        if k < 0:
            return values[min(values)]
        return values.get(k, values[last] if k > last else None)

    return value
