"""Collectors that never wait (``waits = False``) are fetched in place, without a task or a timer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric

from powerplane.exporters.runtime import Collector, CollectorError, Deadline, FailureLog, run_collectors
from powerplane.exporters.runtime.metrics import MetricSpec

VALUE = MetricSpec("test_value", "gauge", "A test value.", ("collector",))


class Recording(Collector[float]):
    def __init__(
        self, name: str, log: list[str], *, waits: bool, delay: float = 0.0, fail: bool = False
    ) -> None:
        self.name = name
        self.waits = waits
        self.log = log
        self.delay = delay
        self.fail = fail

    async def fetch(self, deadline: Deadline) -> float:
        self.log.append(f"fetch {self.name} in {asyncio.current_task().get_name()}")  # type: ignore[union-attr]
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise CollectorError(f"{self.name}/energy_uj: not an integer: 'x'")
        return 1.0

    def render(self, snapshot: float) -> Iterable[Metric]:
        self.log.append(f"render {self.name}")
        family = VALUE.family()
        family.add_metric([self.name], snapshot)
        yield family


def _run(collectors: list[Any], seconds: float = 5.0) -> Any:
    async def scrape() -> Any:
        asyncio.current_task().set_name("scrape")  # type: ignore[union-attr]
        return await run_collectors(
            "test", collectors, Deadline.after(seconds), FailureLog(logging.getLogger("t"))
        )

    return asyncio.run(scrape())


def test_collectors_that_never_wait_run_in_the_scrape_task_and_in_order() -> None:
    log: list[str] = []
    collectors = [Recording("a", log, waits=False), Recording("b", log, waits=False)]
    outcomes = _run(collectors)
    assert log == ["fetch a in scrape", "fetch b in scrape", "render a", "render b"]
    assert [(o.collector, o.success) for o in outcomes] == [("a", True), ("b", True)]
    assert all(o.duration > 0 for o in outcomes)


def test_mixed_collectors_all_fetch_before_any_render_and_keep_their_order() -> None:
    log: list[str] = []
    collectors = [
        Recording("slow", log, waits=True, delay=0.02),
        Recording("inline", log, waits=False),
        Recording("other", log, waits=True),
    ]
    outcomes = _run(collectors)
    fetches = [entry for entry in log if entry.startswith("fetch")]
    assert fetches[0] == "fetch inline in scrape"  # in place, before the others are started
    assert not any(entry.endswith("in scrape") for entry in fetches[1:])  # those ran in tasks
    assert log[3:] == ["render slow", "render inline", "render other"]
    assert [o.collector for o in outcomes] == ["slow", "inline", "other"]


def test_an_inline_collector_that_fails_fails_alone() -> None:
    log: list[str] = []
    collectors = [Recording("bad", log, waits=False, fail=True), Recording("good", log, waits=False)]
    bad, good = _run(collectors)
    assert (bad.success, bad.error) == (False, "bad/energy_uj: not an integer: 'x'")
    assert bad.metrics == []
    assert good.success and [m.name for m in good.metrics] == ["test_value"]


def test_a_waiting_collector_still_times_out_beside_inline_ones() -> None:
    log: list[str] = []
    collectors = [Recording("hung", log, waits=True, delay=30), Recording("inline", log, waits=False)]
    hung, inline = _run(collectors, seconds=0.05)
    assert (hung.success, hung.error) == (False, "deadline exceeded")
    assert inline.success
