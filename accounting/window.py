"""Where and when a Slurm job ran: its window and nodes, from Slurm itself or from the exporter's series.

``scontrol -o show job`` knows a job while slurmctld keeps it (running, and ``MinJobAge`` after
it ends: an epilog runs well within that); it gives the start and end to the second and the node
list.  The Prometheus source reads what the Slurm exporter recorded: the start timestamp, the
nodes it was allocated and the last scrape that still listed it (the end, to within a scrape).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Most node names a job's node list may expand to: anything beyond is not believed.
MAX_NODES = 100_000
_TOKEN = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(\S*)")
_JOB_ID = re.compile(r"[0-9]{1,12}(?:_[0-9]{1,12})?(?:\+[0-9]{1,6})?")
#: Slurm's states of a job that has finished, one way or another.
FINISHED = {
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
}

Query = Callable[[str, float], list[dict[str, Any]]]


class JobNotFound(LookupError):
    """No source knows the job."""


@dataclass(frozen=True)
class JobWindow:
    job_id: str
    source: str
    state: str = ""
    start: float | None = None
    #: None while the job runs.
    end: float | None = None
    nodes: tuple[str, ...] = ()
    user: str = ""
    account: str = ""
    partition: str = ""
    cluster: str = ""
    notes: tuple[str, ...] = field(default=())


def valid_job_id(job_id: str) -> str:
    """``job_id`` when it looks like a Slurm job ID (``123``, ``123_4``, ``123+1``); ValueError otherwise."""
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"job ID {job_id[:40]!r}: not a Slurm job ID (digits, array _N or het +N)")
    return job_id


# --- scontrol ------------------------------------------------------------------------------------


def _local_time(text: str) -> float | None:
    """scontrol's times are the controller's local time without a zone (``2024-05-01T10:00:00``)."""
    if not text or text in ("Unknown", "None", "N/A"):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None


def parse_scontrol(text: str, job_id: str) -> dict[str, str]:
    """The ``key=value`` fields of one job in ``scontrol -o show job`` output (the first record)."""
    for line in text.splitlines():
        fields = dict(_TOKEN.findall(line))
        if fields.get("JobId") == job_id.split("+")[0].split("_")[0] or fields.get("JobId") == job_id:
            return fields
    raise JobNotFound(f"job {job_id}: scontrol answered no record for it")


def expand_hostlist(hostlist: str, run: Callable[[Sequence[str]], str]) -> tuple[str, ...]:
    """Slurm's compressed host list (``node-[01-03,07]``) as names, by ``scontrol show hostnames``."""
    if not hostlist or hostlist in ("(null)", "None"):
        return ()
    if not re.search(r"[\[\]]", hostlist):
        names = tuple(n for n in hostlist.split(",") if n)
    else:
        names = tuple(
            line.strip() for line in run(["show", "hostnames", hostlist]).splitlines() if line.strip()
        )
    if len(names) > MAX_NODES:
        raise ValueError(f"node list {hostlist[:40]!r}: more than {MAX_NODES} nodes, not believed")
    return names


def from_scontrol(job_id: str, env: Mapping[str, str] | None = None, timeout: float = 30.0) -> JobWindow:
    binary = shutil.which("scontrol")
    if binary is None:
        raise JobNotFound("scontrol is not installed here")

    def run(args: Sequence[str]) -> str:
        result = subprocess.run(
            [binary, *args], capture_output=True, text=True, timeout=timeout, env=dict(env) if env else None
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            command = " ".join(args)[:80]
            raise JobNotFound(f"scontrol {command}: {detail[-1][:200] if detail else 'failed'}")
        return result.stdout

    fields = parse_scontrol(run(["-o", "show", "job", job_id]), job_id)
    state = fields.get("JobState", "")
    start = _local_time(fields.get("StartTime", ""))
    end = _local_time(fields.get("EndTime", "")) if state in FINISHED else None
    notes = []
    if state in FINISHED and start is not None and end is not None and end < start:
        notes.append(f"Slurm reports the job ended ({fields.get('EndTime')}) before it started")
        end = start
    return JobWindow(
        job_id=job_id,
        source="scontrol",
        state=state,
        start=start if fields.get("NodeList") not in (None, "", "(null)") else None,
        end=end,
        nodes=expand_hostlist(fields.get("NodeList", ""), run),
        user=fields.get("UserId", "").split("(")[0],
        account=fields.get("Account", "").replace("(null)", ""),
        partition=fields.get("Partition", ""),
        notes=tuple(notes),
    )


# --- Prometheus ----------------------------------------------------------------------------------


def from_prometheus(job_id: str, query: Query, cluster: str = "", lookback: float = 30 * 86400) -> JobWindow:
    """The job as the Slurm exporter's series saw it (running jobs only: an end is the last scrape)."""
    now = time.time()
    matchers = f'job_id="{job_id}"' + (f', cluster="{cluster}"' if cluster else "")
    window = f"{int(lookback)}s"
    info = query(f"last_over_time(powerplane_slurm_job_info{{{matchers}}}[{window}])", now)
    clusters = sorted({r["metric"].get("cluster", "") for r in info})
    if len(clusters) > 1:
        raise ValueError(f"job {job_id} exists on clusters {', '.join(clusters)}: choose one with --cluster")
    starts = query(
        f"max(last_over_time(powerplane_slurm_job_start_timestamp_seconds{{{matchers}}}[{window}]))", now
    )
    if not info and not starts:
        raise JobNotFound(f"job {job_id}: Prometheus has no Slurm series for it in the last {window}")
    labels = info[0]["metric"] if info else {}
    start = float(starts[0]["value"][1]) if starts else None
    end = _last_seen(f"powerplane_slurm_job_info{{{matchers}}}", query, now, now - (start or now - lookback))
    nodes = query(
        f"max by (node) (last_over_time(powerplane_slurm_job_allocation{{{matchers}}}[{window}]))", now
    )
    notes = ["the end is the last scrape that listed the job (to within a scrape interval)"]
    # A listed job is still in the last scrape; one that ended went stale with it.
    running = bool(query(f"max(powerplane_slurm_job_info{{{matchers}}})", now))
    return JobWindow(
        job_id=job_id,
        source="prometheus",
        state="RUNNING" if running else "ENDED",
        start=start,
        end=None if running else end,
        nodes=tuple(sorted(r["metric"]["node"] for r in nodes if r["metric"].get("node"))),
        user=labels.get("user", ""),
        account=labels.get("account", ""),
        partition=labels.get("partition", ""),
        cluster=labels.get("cluster", cluster),
        notes=tuple(notes),
    )


def _last_seen(selector: str, query: Query, now: float, span: float) -> float | None:
    """The time of the last sample of ``selector``: found at a coarse step, then to the second."""
    coarse = max(15, math.ceil(span / 5000))
    found = query(f"max(max_over_time(timestamp({selector})[{int(span) + 60}s:{coarse}s]))", now)
    if not found:
        return None
    near = float(found[0]["value"][1])
    at = min(now, near + 2 * coarse)
    fine = query(f"max(max_over_time(timestamp({selector})[{3 * coarse}s:1s] @ {at:.3f}))", now)
    return float(fine[0]["value"][1]) if fine else near
