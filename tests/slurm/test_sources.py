"""Conditional reads (``update_time``): against the real slurmrestd 22.05, and against the forms of
the newer versions and answers that leave a doubt, served by a fake."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from powerplane.exporters.runtime import CollectorError
from powerplane.exporters.slurm.exporter import make_server
from powerplane.exporters.slurm.sources import (
    CLOCK_MARGIN,
    JOBS,
    NODES,
    Listing,
    SlurmrestdSource,
    Snapshots,
)
from powerplane.lab import procs
from tests.helpers import parse

from .conftest import Cluster
from .test_exporter import _with_fake, load, openapi, rest_config


def _state(lab: Any, job: str) -> str:
    out = lab.run("scontrol", "-o", "show", "job", job, check=False)
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "")


async def _settled(snapshots: Snapshots, within: float = 60.0, endpoint: Any = JOBS) -> Listing[Any]:
    """Read until slurmctld says the jobs (or ``endpoint``) did not change (nothing happens)."""
    deadline = time.monotonic() + within
    while True:
        listing = await snapshots.get(endpoint)
        if listing.unchanged:
            return listing
        if time.monotonic() > deadline:
            raise TimeoutError("slurmctld never answered 'no change'")
        await asyncio.sleep(1.0)


def test_conditional_reads_follow_a_submit_an_end_and_a_cancel(slurm: Cluster, tmp_path: Path) -> None:
    lab = slurm.lab
    if not lab.rest_binary:
        pytest.skip("slurmrestd is not installed")
    small = ("-p", "cpu", "-n", "1", "--mem=100")
    # It ends when told to, after the quiet read (and by itself, failed, after a minute at most).
    release = tmp_path / "end-the-job"
    ending = lab.sbatch(
        *small, "-J", "ending", command=f"for i in $(seq 600); do [ -e {release} ] && exit 0; sleep 0.1; done"
    )
    cancelled = lab.sbatch(*small, "-J", "cancelled")
    lab.wait_job(ending)
    lab.wait_job(cancelled)
    config = load(lab.exporter_config("slurmrestd"), tmp_path)
    assert config.slurmrestd is not None
    submitted = ""

    async def run() -> tuple[Listing[Any], Listing[Any], Listing[Any]]:
        nonlocal submitted
        snapshots = Snapshots(SlurmrestdSource(config.slurmrestd, config.limits, 20.0), 0)  # type: ignore[arg-type]
        first = await snapshots.get(JOBS)
        assert not first.unchanged
        quiet = await _settled(snapshots)
        # Unchanged: the very records of the last full read, confirmed now.
        assert quiet.records is first.records or quiet.full_at > first.full_at
        assert quiet.fetched_at > quiet.full_at
        release.touch()
        submitted = await asyncio.to_thread(lab.sbatch, *small, "-J", "submitted")
        await asyncio.to_thread(lab.run, "scancel", cancelled)
        await asyncio.to_thread(
            procs.wait_until,
            lambda: _state(lab, ending) == "COMPLETED" and _state(lab, cancelled) == "CANCELLED",
            60,
            0.5,
            "the jobs to end",
        )
        changed = await snapshots.get(JOBS)
        return first, quiet, changed

    try:
        _first, quiet, changed = asyncio.run(run())
    finally:
        for job in (ending, cancelled, submitted):
            if job:
                lab.run("scancel", job, check=False)
    before = {j.job_id: j.state for j in quiet.records}
    after = {j.job_id: j.state for j in changed.records}
    assert not changed.unchanged and changed.full_at > quiet.full_at
    assert before[ending] == "running" and before[cancelled] == "running" and submitted not in before
    assert after[ending] == "completed" and after[cancelled] == "cancelled"
    assert after[submitted] in ("pending", "running")
    for job in (slurm.gpu_job, slurm.wide_job, slurm.pending_job):  # the others as they were
        assert after[job] == before[job]


def test_a_full_read_comes_every_full_refresh_seconds(slurm: Cluster, tmp_path: Path) -> None:
    lab = slurm.lab
    if not lab.rest_binary:
        pytest.skip("slurmrestd is not installed")
    doc = lab.exporter_config("slurmrestd")
    doc["slurmrestd"]["full_refresh"] = CLOCK_MARGIN + 4
    config = load(doc, tmp_path)

    async def run() -> list[Listing[Any]]:
        snapshots = Snapshots(SlurmrestdSource(config.slurmrestd, config.limits, 20.0), 0)  # type: ignore[arg-type]
        seen = [await _settled(snapshots)]
        while seen[-1].full_at == seen[0].full_at and time.time() - seen[0].full_at < 60:
            await asyncio.sleep(0.5)
            seen.append(await snapshots.get(JOBS))
        return seen

    seen = asyncio.run(run())
    quiet, full = seen[0], seen[-1]
    assert not full.unchanged and full.full_at - quiet.full_at >= CLOCK_MARGIN + 4  # nothing changed
    assert len(seen) > 2 and all(s.unchanged and s.records is quiet.records for s in seen[1:-1])


def test_a_node_that_changes_is_read_in_full_at_once(slurm: Cluster, tmp_path: Path) -> None:
    """22.05 answers ``/nodes?update_time`` with HTTP 500 when a node changed and no partition did."""
    lab = slurm.lab
    if not lab.rest_binary:
        pytest.skip("slurmrestd is not installed")
    config = load(lab.exporter_config("slurmrestd"), tmp_path)
    assert config.slurmrestd is not None
    source = SlurmrestdSource(config.slurmrestd, config.limits, 20.0)
    asked: list[str] = []
    get = source._get

    def recording(path: str, query: str = "") -> Any:
        asked.append(query)
        return get(path, query)

    source._get = recording  # type: ignore[method-assign]
    reason = "powerplane test: a node that changes"

    async def run() -> tuple[Listing[Any], Listing[Any]]:
        snapshots = Snapshots(source, 0)
        quiet = await _settled(snapshots, endpoint=NODES)
        asked.clear()
        await asyncio.to_thread(lab.drain, "node-02", reason)
        try:
            return quiet, await snapshots.get(NODES)
        finally:
            await asyncio.to_thread(lab.resume, "node-02")

    quiet, changed = asyncio.run(run())
    assert quiet.unchanged and not changed.unchanged and not changed.errors
    assert changed.full_at > quiet.full_at
    assert {n.name: n.reason for n in changed.records}["node-02"] == reason
    if source.version == "v0.0.38":  # the conditional read failed, and the full one followed
        assert [bool(q) for q in asked] == [True, False], asked


def _series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The series of a scrape, without the ones that change by themselves (times, durations)."""
    moving = ("_timestamp_seconds", "_duration_seconds", "scheduler_", "rpc", "cycle", "backfill")
    return {(n, k) for n, samples in parse(text).items() if not any(w in n for w in moving) for k in samples}


def test_a_scrape_from_an_unchanged_answer_shows_what_the_full_read_showed(
    slurm: Cluster, tmp_path: Path
) -> None:
    lab = slurm.lab
    if not lab.rest_binary:
        pytest.skip("slurmrestd is not installed")
    config = load(lab.exporter_config("slurmrestd", min_interval=0), tmp_path)

    async def run() -> tuple[str, str, bool]:
        server = make_server(config)
        host, port = await server.start()
        try:
            async with aiohttp.ClientSession() as session:

                async def one() -> str:
                    async with session.get(f"http://{host}:{port}/metrics") as r:
                        return await r.text()

                full = await one()
                entry = server.snapshots._entries["jobs"]  # type: ignore[attr-defined]
                deadline = time.monotonic() + 60
                while True:  # until slurmctld says "no change" (the cluster is quiet)
                    await asyncio.sleep(1.0)
                    again = await one()
                    if entry.last.unchanged or time.monotonic() > deadline:
                        return full, again, entry.last.unchanged
        finally:
            await server.stop()

    full, again, unchanged = asyncio.run(run())
    assert unchanged
    names = {name for name, _labels in _series(full)}
    assert {
        "powerplane_slurm_job_allocation",
        "powerplane_slurm_node_state",
        "powerplane_slurm_jobs",
    } <= names
    assert _series(again) == _series(full) and 'collector="jobs"} 1.0' in again


# --- what the newer versions answer, and answers that leave a doubt --------------------------------

Routes = dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def _jobs(*ids: int, **extra: Any) -> dict[str, Any]:
    return {"jobs": [{"job_id": i, "job_state": ["PENDING"], "partition": "cpu"} for i in ids], **extra}


def _server(answers: list[Callable[[web.Request], web.Response]], asked: list[str]) -> Routes:
    async def jobs(request: web.Request) -> web.Response:
        asked.append(request.query.get("update_time", ""))
        return answers[min(len(asked), len(answers)) - 1](request)

    return {"/openapi/v3": openapi("v0.0.41"), "/slurm/v0.0.41/jobs": jobs}


def _read(tmp_path: Path, routes: Routes, times: int, **rest: Any) -> list[Any]:
    """``times`` reads through one Snapshots: each a listing or the exception it raised."""

    async def body(url: str) -> list[Any]:
        config = rest_config(url, tmp_path)
        assert config.slurmrestd is not None
        snapshots = Snapshots(SlurmrestdSource(replace(config.slurmrestd, **rest), config.limits, 5.0), 0)
        out: list[Any] = []
        for _ in range(times):
            try:
                out.append(await snapshots.get(JOBS))
            except CollectorError as exc:
                out.append(exc)
        return out

    result: list[Any] = asyncio.run(_with_fake(routes, body))
    return result


def respond(doc: dict[str, Any], status: int = 200) -> Callable[[web.Request], web.Response]:
    return lambda _request: web.json_response(doc, status=status)


def test_the_newer_no_change_answer_keeps_the_records_and_last_update_is_asked_back(tmp_path: Path) -> None:
    asked: list[str] = []
    stamp = {"set": True, "infinite": False, "number": 1_790_000_000}
    no_change = {
        "jobs": [],
        "warnings": [{"description": "No job changes since update_time[1790000000]=..."}],
    }
    routes = _server([respond(_jobs(1, 2, last_update=stamp)), respond(no_change)], asked)
    first, second, third = _read(tmp_path, routes, 3)
    assert asked == ["", "1790000000", "1790000000"]  # slurmctld's own time, not the exporter's
    assert not first.unchanged and second.unchanged and third.unchanged
    assert second.records is first.records and [j.job_id for j in third.records] == ["1", "2"]


def test_an_answer_that_empties_the_listing_is_read_again_in_full(tmp_path: Path) -> None:
    asked: list[str] = []
    routes = _server([respond(_jobs(1, 2)), respond(_jobs()), respond(_jobs(3))], asked)
    _first, second = _read(tmp_path, routes, 2)
    assert asked[0] == "" and asked[1] and asked[2] == ""  # the empty answer is not trusted alone
    assert int(asked[1]) <= time.time() - CLOCK_MARGIN
    assert [j.job_id for j in second.records] == ["3"] and not second.unchanged


def test_doubt_means_a_full_read(tmp_path: Path) -> None:
    asked: list[str] = []
    bad = {"jobs": [{"job_id": 1}, {"job_id": "x"}]}  # a record that cannot be read
    routes = _server([respond(bad), respond(_jobs(1)), respond(_jobs(1))], asked)
    first, _second, _third = _read(tmp_path, routes, 3)
    assert first.errors and asked[:2] == ["", ""]  # after a partial answer: no update_time
    assert asked[2]  # a clean answer: asked conditionally again

    asked.clear()
    failing = respond({"errors": [{"error": "busy"}]}, 500)
    routes = _server([respond(_jobs(1)), failing, respond(_jobs(2))], asked)
    _ok, changed = _read(tmp_path, routes, 2)
    assert asked[1] and asked[2] == ""  # a conditional read that fails: a full one at once
    assert [j.job_id for j in changed.records] == ["2"] and not changed.unchanged

    asked.clear()
    routes = _server([respond(_jobs(1)), failing, failing, respond(_jobs(1))], asked)
    _ok, failed, _again = _read(tmp_path, routes, 3)
    assert "HTTP 500: busy" in str(failed)  # the full read's own failure
    assert asked[1] and asked[2] == "" and asked[3] == ""  # after a failure: no update_time

    asked.clear()
    routes = _server([respond(_jobs(1))], asked)
    _read(tmp_path, routes, 3, full_refresh=0.0)
    assert asked == ["", "", ""]  # full_refresh 0: never conditional


def test_a_304_without_update_time_is_an_error(tmp_path: Path) -> None:
    asked: list[str] = []
    routes = _server([lambda _r: web.Response(status=304)], asked)
    (failed,) = _read(tmp_path, routes, 1)
    assert "HTTP 304" in str(failed) and asked == [""]


def test_nodes_are_asked_conditionally_too_and_a_304_keeps_them(tmp_path: Path) -> None:
    asked: list[str] = []
    nodes = {"nodes": [{"name": "n1", "state": "idle", "cpus": 4}]}

    async def handler(request: web.Request) -> web.Response:
        asked.append(request.query.get("update_time", ""))
        if asked[-1]:
            return web.Response(status=304)
        return web.Response(body=json.dumps(nodes).encode(), content_type="application/json")

    async def body(url: str) -> list[Listing[Any]]:
        config = rest_config(url, tmp_path)
        snapshots = Snapshots(SlurmrestdSource(config.slurmrestd, config.limits, 5.0), 0)  # type: ignore[arg-type]
        return [await snapshots.get(NODES) for _ in range(2)]

    routes = {"/openapi/v3": openapi("v0.0.38"), "/slurm/v0.0.38/nodes": handler}
    first, second = asyncio.run(_with_fake(routes, body))
    assert asked[0] == "" and asked[1] and second.unchanged and second.records is first.records
