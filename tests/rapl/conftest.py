"""The RAPL collectors scraped in-process over a lab powercap tree."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from powerplane.exporters.rapl import collectors, powercap
from powerplane.exporters.runtime import Deadline, FailureLog, Scrape, run_collectors
from tests.helpers import parse, undocumented, value


class Exporter:
    """The RAPL collectors over one tree, scraped in-process."""

    def __init__(self, sysfs: Path) -> None:
        self.tree = powercap.PowercapTree(sysfs)
        self.collectors = [
            collectors.RaplEnergyCollector(self.tree),
            collectors.RaplLimitsCollector(self.tree),
        ]
        self.failures = FailureLog(logging.getLogger("powerplane.rapl"))

    async def scrape(self) -> tuple[dict[str, Any], str]:
        outcomes = await run_collectors("rapl", self.collectors, Deadline.after(5), self.failures)
        text = generate_latest(Scrape("rapl", outcomes)).decode()  # type: ignore[arg-type]
        assert undocumented(text) == set()
        return parse(text), text


def success(samples: dict[str, Any], collector: str) -> float:
    return value(samples, "powerplane_scrape_collector_success", collector=collector)
