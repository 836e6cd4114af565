"""Slurm's text outputs where a version has no ``--json`` (22.05: partitions, reservations, ping, sdiag).

Each is turned into records in the JSON vocabulary (v0.0.38 names), so ``model`` reads one form:
``scontrol -o show partitions`` and ``scontrol -o show reservations`` are one ``Key=Value``
line per record, ``scontrol ping`` one line per controller, and ``sdiag`` labelled lines in
sections.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

_INFINITE = {"set": False, "infinite": True, "number": 0}


def key_values(line: str) -> dict[str, str]:
    """``A=1 B=x=y C=two words`` → {A: 1, B: x=y, C: two words} (a word without '=' continues a value)."""
    out: dict[str, str] = {}
    last = ""
    for word in line.split():
        key, sep, value = word.partition("=")
        if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9/_]*", key):
            out[key] = value
            last = key
        elif last:
            out[last] += " " + word
    return out


def _null(value: str | None) -> str:
    return "" if value in (None, "(null)", "N/A", "NONE") else str(value)


def duration_minutes(value: str) -> Any:
    """Slurm's ``[days-]hours:minutes:seconds`` (or minutes) → minutes; UNLIMITED → infinite; NONE → None."""
    value = value.strip()
    if value in ("UNLIMITED", "INFINITE"):
        return _INFINITE
    if value in ("", "NONE", "(null)", "N/A"):
        return None
    days = 0
    if "-" in value:
        d, _, value = value.partition("-")
        days = int(d)
    parts = [int(p) for p in value.split(":")]
    if len(parts) == 1:
        return days * 1440 + parts[0]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return days * 1440 + hours * 60 + minutes + seconds / 60.0


def _count(value: str | None) -> Any:
    if value is None or value in ("", "NONE", "(null)"):
        return None
    if value == "UNLIMITED":
        return _INFINITE
    return int(value)


def partitions(text: str) -> Iterator[dict[str, Any]]:
    """Records of ``scontrol -o show partitions``."""
    for line in text.splitlines():
        kv = key_values(line)
        if "PartitionName" not in kv:
            continue
        yield {
            "name": kv["PartitionName"],
            "state": kv.get("State", ""),
            "flags": ["default"] if kv.get("Default") == "YES" else [],
            "max_time_limit": duration_minutes(kv.get("MaxTime", "")),
            "default_time_limit": duration_minutes(kv.get("DefaultTime", "")),
            "maximum_nodes_per_job": _count(kv.get("MaxNodes")),
            "total_cpus": _count(kv.get("TotalCPUs")),
            "total_nodes": _count(kv.get("TotalNodes")),
        }


def _local_time(value: str) -> float | None:
    # scontrol prints local time of the process, without a zone.
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def reservations(text: str) -> Iterator[dict[str, Any]]:
    """Records of ``scontrol -o show reservations`` (none: "No reservations in the system")."""
    for line in text.splitlines():
        kv = key_values(line)
        if "ReservationName" not in kv:
            continue
        yield {
            "name": kv["ReservationName"],
            "partition": _null(kv.get("PartitionName")),
            "flags": [f for f in _null(kv.get("Flags")).split(",") if f],
            "start_time": _local_time(kv.get("StartTime", "")),
            "end_time": _local_time(kv.get("EndTime", "")),
            "node_count": _count(kv.get("NodeCnt")),
        }


_PING = re.compile(r"Slurmctld\((\w+)\) at (\S+) is (\w+)")


def pings(text: str) -> Iterator[dict[str, Any]]:
    """Records of ``scontrol ping`` (``Slurmctld(primary) at host is UP``)."""
    for match in _PING.finditer(text):
        yield {"mode": match.group(1), "hostname": match.group(2), "ping": match.group(3)}


_SDIAG_TOP = {
    "Server thread count": "server_thread_count",
    "Agent queue size": "agent_queue_size",
    "Agent count": "agent_count",
    "Agent thread count": "agent_thread_count",
    "DBD Agent queue size": "dbd_agent_queue_size",
    "Jobs submitted": "jobs_submitted",
    "Jobs started": "jobs_started",
    "Jobs completed": "jobs_completed",
    "Jobs canceled": "jobs_canceled",
    "Jobs failed": "jobs_failed",
    "Jobs pending": "jobs_pending",
    "Jobs running": "jobs_running",
}
_SDIAG_MAIN = {
    "Last cycle": "schedule_cycle_last",
    "Max cycle": "schedule_cycle_max",
    "Total cycles": "schedule_cycle_total",
    "Mean cycle": "schedule_cycle_mean",
    "Mean depth cycle": "schedule_cycle_mean_depth",
    "Cycles per minute": "schedule_cycle_per_minute",
    "Last queue length": "schedule_queue_length",
}
_SDIAG_BACKFILL = {
    "Total backfilled jobs (since last slurm start)": "bf_backfilled_jobs",
    "Total cycles": "bf_cycle_counter",
    "Last cycle": "bf_cycle_last",
    "Max cycle": "bf_cycle_max",
    "Mean cycle": "bf_cycle_mean",
    "Depth Mean": "bf_depth_mean",
    "Last queue length": "bf_queue_len",
}
_RPC = re.compile(r"^\s*(\S+)\s*\(\s*(\d+)\)\s+count:(\d+)\s+ave_time:(\d+)\s+total_time:(\d+)")
_SINCE = re.compile(r"^Data since .*\((\d+)\)")


def sdiag(text: str) -> dict[str, Any]:
    """The statistics of plain ``sdiag`` in the JSON names of ``/diag``."""
    stats: dict[str, Any] = {"rpcs_by_message_type": []}
    section = _SDIAG_TOP
    rpcs = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Main schedule statistics"):
            section, rpcs = _SDIAG_MAIN, False
            continue
        if stripped.startswith("Backfilling stats"):
            section, rpcs = _SDIAG_BACKFILL, False
            stats["bf_active"] = "WARNING" in stripped
            continue
        if stripped.startswith("Remote Procedure Call statistics by message type"):
            rpcs = True
            continue
        if stripped.startswith(("Remote Procedure Call statistics by user", "Pending RPC")):
            rpcs, section = False, {}
            continue
        since = _SINCE.match(stripped)
        if since:
            stats["req_time_start"] = int(since.group(1))
            continue
        if rpcs:
            m = _RPC.match(line)
            if m:
                stats["rpcs_by_message_type"].append(
                    {
                        "message_type": m.group(1),
                        "type_id": int(m.group(2)),
                        "count": int(m.group(3)),
                        "average_time": int(m.group(4)),
                        "total_time": int(m.group(5)),
                    }
                )
            continue
        label, sep, value = stripped.rpartition(":")
        key = section.get(label.strip()) if sep else None
        if key and value.strip().lstrip("-").isdigit():
            stats[key] = int(value)
    return stats
