"""The parsers against the real JSON of the installed Slurm, recorded from the running cluster.

What the JSON says is checked against an independent view of the same cluster: the text of
``scontrol -d show jobs`` and ``sinfo``, and the setup the fixture made.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from typing import Any

import pytest

from powerplane.exporters.slurm import model, textformat
from powerplane.exporters.slurm.config import Limits
from powerplane.exporters.slurm.sources import (
    DIAG,
    JOBS,
    NODES,
    PARTITIONS,
    PING,
    RESERVATIONS,
    Endpoint,
    Listing,
    parse_stream,
)
from powerplane.exporters.slurm.stream import chunks_of

from .conftest import Cluster, Recorded


def parse(data: bytes, endpoint: Endpoint[Any], chunk: int = 4096) -> Listing[Any]:
    return asyncio.run(parse_stream(chunks_of(data, chunk), endpoint, Limits()))


@pytest.fixture(scope="module")
def rest(recorded: Recorded) -> dict[str, bytes]:
    if not recorded.rest:
        pytest.skip("slurmrestd is not installed")
    return recorded.rest


def test_nodes_from_rest_and_sinfo_agree(rest: dict[str, bytes], recorded: Recorded) -> None:
    from_rest = parse(rest["nodes"], NODES)
    from_cli = parse(recorded.cli["nodes"], NODES)
    assert not from_rest.errors and not from_cli.errors
    assert from_rest.meta.release.startswith("22.05") and from_rest.meta.api == "v0.0.38"
    by_name = {n.name: n for n in from_rest.records}
    assert set(by_name) == {"node-01", "node-02"}
    n1 = by_name["node-01"]
    assert n1.partitions == ("cpu", "gpu")
    assert n1.cpus == 8 and n1.memory_bytes == 16000 * 2**20
    assert n1.gpus == (("h100", 4),)
    # The GPU job holds 2 GPUs, 2 CPUs and 2000 MB; the wide job 1 CPU and 1000 MB on each node.
    assert n1.alloc_gpus == (("h100", 2),)
    assert n1.alloc_cpus == 3 and n1.alloc_memory_bytes == 3000 * 2**20
    assert n1.state == "mixed" and by_name["node-02"].state == "mixed"
    assert [(n.name, n.state, n.alloc_cpus) for n in from_cli.records] == [
        (n.name, n.state, n.alloc_cpus) for n in from_rest.records
    ]


def _text_gres(text: str) -> dict[tuple[str, str], tuple[int, ...]]:
    """(job, node) → GPU indexes from ``scontrol -d -o show jobs``: the text, not the JSON."""
    out: dict[tuple[str, str], tuple[int, ...]] = {}
    for line in text.splitlines():
        job = re.search(r"JobId=(\d+)", line)
        for node, idx in re.findall(r"Nodes=(\S+) CPU_IDs=\S+ Mem=\d+ GRES=gpu:\w+:\d+\(IDX:([^)]*)\)", line):
            assert job
            out[job.group(1), node] = model.parse_ranges(idx)
    return out


def test_jobs_and_their_gpu_indexes_match_scontrol(
    rest: dict[str, bytes], recorded: Recorded, slurm: Cluster
) -> None:
    listing = parse(rest["jobs"], JOBS, chunk=1000)
    assert not listing.errors
    jobs = {j.job_id: j for j in listing.records}
    gpu = jobs[slurm.gpu_job]
    assert (gpu.state, gpu.user, gpu.account, gpu.partitions) == ("running", "nobody", "physics", ("gpu",))
    assert gpu.name == "train" and gpu.cpus == 2 and gpu.start_time
    (alloc,) = gpu.allocations
    assert alloc.node == "node-01" and alloc.cpus == 2 and alloc.memory_bytes == 2000 * 2**20
    text = _text_gres(recorded.text["jobs"])
    assert tuple(i for _t, i in alloc.gpus) == text[slurm.gpu_job, "node-01"]
    assert len(alloc.gpus) == 2 and {t for t, _i in alloc.gpus} == {"h100"}
    wide = jobs[slurm.wide_job]
    assert [(a.node, a.cpus, a.memory_bytes, a.gpus) for a in wide.allocations] == [
        ("node-01", 1, 1000 * 2**20, ()),
        ("node-02", 1, 1000 * 2**20, ()),
    ]
    pending = jobs[slurm.pending_job]
    assert pending.state == "pending" and pending.allocations == () and pending.reason
    # squeue --json is the same vocabulary.
    cli = {j.job_id: j for j in parse(recorded.cli["jobs"], JOBS).records}
    assert cli[slurm.gpu_job] == gpu and cli[slurm.wide_job].allocations == wide.allocations


def test_partitions_ping_diag_from_rest_and_text_agree(rest: dict[str, bytes], recorded: Recorded) -> None:
    parts = {p.name: p for p in parse(rest["partitions"], PARTITIONS).records}
    assert parts["cpu"].default and not parts["gpu"].default
    assert parts["cpu"].state == "up" and parts["cpu"].max_time_seconds == float("inf")
    assert parts["cpu"].total_cpus == 16 and parts["gpu"].total_nodes == 1
    text_doc = json.dumps({"partitions": list(textformat.partitions(recorded.text["partitions"]))}).encode()
    assert {p.name: p for p in parse(text_doc, PARTITIONS).records} == parts
    (controller,) = parse(rest["ping"], PING).records
    text_ping = json.dumps({"pings": list(textformat.pings(recorded.text["ping"]))}).encode()
    assert parse(text_ping, PING).records == [controller] and controller.up
    (diag,) = parse(rest["diag"], DIAG).records
    (text_diag,) = parse(
        json.dumps({"statistics": textformat.sdiag(recorded.text["sdiag"])}).encode(), DIAG
    ).records
    assert diag.values["jobs_submitted"] >= 3 and "schedule_cycle_last" in diag.values
    # sdiag prints some means only once a cycle ran; these lines are always there.
    always = {"server_thread_count", "jobs_submitted", "schedule_cycle_last", "schedule_cycle_max"}
    always |= {"schedule_cycle_total", "schedule_queue_length", "bf_backfilled_jobs", "req_time_start"}
    assert always <= set(text_diag.values) and always <= set(diag.values)
    # Counters only grow between the two reads (the text was read after the JSON).
    for key in ("jobs_submitted", "schedule_cycle_total"):
        assert text_diag.values[key] >= diag.values[key]
    assert text_diag.values["req_time_start"] == diag.values["req_time_start"]
    assert {r.type for r in diag.rpcs} >= {"REQUEST_SUBMIT_BATCH_JOB", "REQUEST_NODE_INFO"}


def test_reservation_from_rest_and_text_agree(slurm: Cluster) -> None:
    lab = slurm.lab
    if not lab.rest_binary:
        pytest.skip("slurmrestd is not installed")
    lab.reserve("parse_maint", "node-02", start="now+3hours", minutes=60)
    try:
        from powerplane.lab import procs

        status, body = procs.http_get(
            f"{lab.rest_url}/slurm/v0.0.38/reservations", headers=lab.rest_headers()
        )
        text = lab.run("scontrol", "-o", "show", "reservations")
    finally:
        lab.delete_reservation("parse_maint")
    assert status == 200
    (from_rest,) = [r for r in parse(body, RESERVATIONS).records if r.name == "parse_maint"]
    text_doc = json.dumps({"reservations": list(textformat.reservations(text))}).encode()
    (from_text,) = [r for r in parse(text_doc, RESERVATIONS).records if r.name == "parse_maint"]
    assert from_rest == from_text
    assert "maint" in from_rest.flags and from_rest.node_count == 1 and from_rest.partition == ""
    assert (
        from_rest.end is not None and from_rest.start is not None and from_rest.end - from_rest.start == 3600
    )


# --- the newer data parsers' forms, made from the real v0.0.38 records --------------------------


def _numbers(value: Any) -> Any:
    """v0.0.39+ writes most numbers as {set, infinite, number}."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return {"set": True, "infinite": False, "number": value}


def newer_node(node: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(node)
    out["state"] = [node["state"].upper(), *node.pop("state_flags", [])]
    out["reason_changed_at"] = _numbers(node["reason_changed_at"])
    out["effective_cpus"] = node["cpus"]
    return out


def newer_job(job: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(job)
    out["job_state"] = [job["job_state"]]
    for key in ("start_time", "cpus", "job_id"):
        out[key] = _numbers(job[key])
    resources = job.get("job_resources")
    if resources:
        out["job_resources"] = {
            "nodes": {
                "count": resources["allocated_hosts"],
                "list": resources["nodes"],
                "allocation": [
                    {
                        "index": i,
                        "name": n["nodename"],
                        "cpus": {"count": sum(len(s["cores"]) for s in n["sockets"].values()), "used": 0},
                        "memory": {"used": 0, "allocated": n["memory_allocated"]},
                    }
                    for i, n in enumerate(resources["allocated_nodes"])
                ],
            }
        }
    return out


def test_newer_forms_of_the_same_records_parse_the_same(rest: dict[str, bytes]) -> None:
    nodes = json.loads(rest["nodes"])
    jobs = json.loads(rest["jobs"])
    for name, doc, endpoint, convert in (
        ("nodes", nodes, NODES, newer_node),
        ("jobs", jobs, JOBS, newer_job),
    ):
        newer = {
            "meta": {
                "slurm": {"release": "25.11.0", "cluster": "lab"},
                "plugin": {"data_parser": "data_parser/v0.0.44"},
            }
        }
        newer[name] = [convert(r) for r in doc[name]]
        old, new = parse(json.dumps(doc).encode(), endpoint), parse(json.dumps(newer).encode(), endpoint)
        assert not new.errors and new.records == old.records
        assert new.meta.cluster == "lab" and new.meta.api == "v0.0.44"


# --- hostile records ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cpus", "eight", "cpus: expected a number"),
        ("state", 7, "state: expected a string or a list"),
        ("partitions", {"cpu": 1}, "partitions: expected a string or a list of strings, got object"),
        ("gres", "gpu:h100:4(IDX:9-1)", "gres: index range"),
        ("name", None, "name: missing"),
        ("real_memory", True, "real_memory: expected a number"),
    ],
)
def test_a_bad_node_field_is_named_and_the_others_are_kept(
    rest: dict[str, bytes], field: str, value: Any, message: str
) -> None:
    doc = json.loads(rest["nodes"])
    doc["nodes"][0][field] = value
    listing = parse(json.dumps(doc).encode(), NODES)
    assert [n.name for n in listing.records] == ["node-02"]
    assert (
        len(listing.errors) == 1
        and listing.errors[0].startswith("nodes[0].")
        and message in listing.errors[0]
    )


def test_unknown_states_and_missing_fields_do_not_fail(rest: dict[str, bytes]) -> None:
    doc = json.loads(rest["nodes"])
    doc["nodes"][0]["state"] = "quantum"
    doc["nodes"][0]["state_flags"] = ["ENTANGLED"]
    for key in ("gres", "gres_used", "partitions", "alloc_cpus", "reason_changed_at"):
        doc["nodes"][1].pop(key)
    listing = parse(json.dumps(doc).encode(), NODES)
    assert not listing.errors
    assert [(n.state, n.partitions, n.gpus) for n in listing.records] == [
        ("unknown", ("cpu", "gpu"), (("h100", 4),)),
        ("mixed", (), ()),
    ]


def test_a_job_whose_gres_detail_does_not_match_its_nodes_is_skipped(
    rest: dict[str, bytes], slurm: Cluster
) -> None:
    doc = json.loads(rest["jobs"])
    for job in doc["jobs"]:
        if str(job["job_id"]) == slurm.gpu_job:
            job["gres_detail"] = ["gpu:h100:1(IDX:0)", "gpu:h100:1(IDX:1)"]
    listing = parse(json.dumps(doc).encode(), JOBS)
    assert slurm.gpu_job not in {j.job_id for j in listing.records}
    assert any("gres_detail: 2 entries for 1 allocated nodes" in e for e in listing.errors)


def test_records_beyond_the_limit_are_counted(rest: dict[str, bytes]) -> None:
    doc = json.loads(rest["jobs"])
    doc["jobs"] = doc["jobs"] * 40
    listing = asyncio.run(parse_stream(chunks_of(json.dumps(doc).encode()), JOBS, Limits(max_records=50)))
    assert len(listing.records) == 50 and listing.dropped == len(doc["jobs"]) - 50


def test_server_errors_without_records_fail_with_the_message() -> None:
    from powerplane.exporters.runtime import CollectorError

    body = json.dumps(
        {"errors": [{"error": "Unable to contact slurm controller", "error_number": 1007}], "jobs": []}
    )
    with pytest.raises(CollectorError, match="jobs: Unable to contact slurm controller"):
        parse(body.encode(), JOBS)
