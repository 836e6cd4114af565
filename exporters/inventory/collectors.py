"""The inventory collector: the file, re-read on change, rendered as info metrics."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client.core import Metric

from ..runtime import (
    Collector,
    CollectorError,
    ConfigError,
    Deadline,
    Partial,
)
from .config import KIND, Inventory
from .metrics import METRICS

logger = logging.getLogger("powerplane.inventory")


def render(inv: Inventory) -> list[Metric]:
    """The info metrics of an inventory (pure: also used by the tests and the rules benchmark)."""
    node_info, gpus, outlet, pdu_info, rated, phase_rated, budget, cooler, cluster = (
        spec.family() for spec in METRICS
    )
    for n in inv.nodes:
        rack = inv.racks[n.rack]
        node_info.add_metric(
            [n.name, rack.name, rack.row, rack.cluster, n.bmc.address if n.bmc else "", n.partition], 1.0
        )
        if n.gpus is not None and n.gpus.count:
            gpus.add_metric([n.name, n.gpus.model], float(n.gpus.count))
        for pdu, number in n.pdu_outlets:
            outlet.add_metric([pdu, number, n.name], 1.0)
    for p in inv.pdus:
        rack = inv.racks[p.rack]
        pdu_info.add_metric([p.name, rack.name, rack.row, rack.cluster], 1.0)
        if p.rated_power_watts is not None:
            rated.add_metric([p.name], p.rated_power_watts)
        if p.phase_rated_current_amperes is not None:
            phase_rated.add_metric([p.name], p.phase_rated_current_amperes)
    for r in inv.racks.values():
        if r.power_budget_watts is not None:
            budget.add_metric([r.name, r.row, r.cluster], r.power_budget_watts)
    for c in inv.coolers:
        for rack_name in c.racks:
            cooler.add_metric([c.name, rack_name], 1.0)
    for cl in inv.clusters:
        if cl.market_area:
            cluster.add_metric([cl.name, cl.market_area], 1.0)
    return [node_info, gpus, outlet, pdu_info, rated, phase_rated, budget, cooler, cluster]


class InventoryFile:
    """An inventory file re-read when its modification time or size changes."""

    def __init__(self, path: Path, initial: Inventory | None = None) -> None:
        self.path = Path(path)
        self.current = initial
        self._stamp: tuple[int, int] | None = self._stat() if initial is not None else None
        self.error = ""

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> None:
        stamp = self._stat()
        if stamp is not None and stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.current = KIND.load(self.path)
            self.error = ""
        except ConfigError as exc:
            # Keep serving the last good inventory: a typo must not blank every join.
            self.error = "; ".join(f"{exc.source}: {e}" for e in exc.errors)


class InventoryCollector(Collector[Inventory]):
    name = "inventory"

    def __init__(self, source: InventoryFile) -> None:
        self.source = source

    async def fetch(self, deadline: Deadline) -> Inventory | Partial[Inventory]:
        self.source.refresh()
        if self.source.current is None:
            raise CollectorError(self.source.error or f"{self.source.path}: no inventory")
        if self.source.error:
            return Partial(self.source.current, [f"{self.source.error} (serving the last good inventory)"])
        return self.source.current

    def render(self, snapshot: Inventory) -> Iterable[Metric]:
        return render(snapshot)
