"""Prometheus file_sd targets for the Redfish and SNMP probes, from the inventory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .config import Inventory, Probe


def _probe_group(probe: Probe, labels: dict[str, str]) -> dict[str, Any]:
    # __param_* labels become the probe's query parameters; relabelling moves the target.
    params = {f"__param_{k}": v for k, v in (("module", probe.module), ("auth", probe.auth)) if v}
    return {"targets": [probe.address], "labels": {**labels, **params}}


def file_sd(inv: Inventory) -> dict[str, list[dict[str, Any]]]:
    """file_sd target groups by file name: Redfish BMCs, PDUs and coolers with their site labels."""
    redfish, pdus, coolers = [], [], []
    for n in inv.nodes:
        if n.bmc is None:
            continue
        rack = inv.racks[n.rack]
        labels = {"node": n.name, "rack": rack.name, "row": rack.row, "cluster": rack.cluster}
        if n.partition:
            labels["partition"] = n.partition
        redfish.append(_probe_group(n.bmc, labels))
    for p in inv.pdus:
        if p.probe is None:
            continue
        rack = inv.racks[p.rack]
        pdus.append(
            _probe_group(
                p.probe, {"pdu": p.name, "rack": rack.name, "row": rack.row, "cluster": rack.cluster}
            )
        )
    for c in inv.coolers:
        if c.probe is None:
            continue
        rack = inv.racks[c.racks[0]]
        coolers.append(_probe_group(c.probe, {"cooler": c.name, "row": rack.row, "cluster": rack.cluster}))
    return {"redfish.json": redfish, "snmp-pdu.json": pdus, "snmp-cooler.json": coolers}


def write_file_sd(inv: Inventory, out: Path) -> list[Path]:
    """Write the file_sd files into ``out`` atomically; unchanged files are left untouched."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, groups in file_sd(inv).items():
        path = out / name
        text = json.dumps(groups, indent=2, sort_keys=True) + "\n"
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except OSError:
            pass
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # Prometheus must never read half a file
        written.append(path)
    return written
