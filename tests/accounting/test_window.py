"""Where a job's window comes from: job IDs, scontrol's records (real and hostile), host lists."""

from __future__ import annotations

import time

import pytest

from powerplane.accounting.window import (
    MAX_NODES,
    JobNotFound,
    expand_hostlist,
    from_scontrol,
    parse_scontrol,
    valid_job_id,
)
from powerplane.lab import procs
from powerplane.lab.slurm import SlurmCluster


@pytest.mark.parametrize("job", ["1", "4242", "123_7", "55+1"])
def test_slurm_job_ids_are_accepted(job: str) -> None:
    assert valid_job_id(job) == job


@pytest.mark.parametrize(
    "job", ["", "abc", '1"} or vector(1) #', "1;rm -rf /", "1 2", "9" * 40, "-1", "1_", "\u0661"]
)
def test_anything_else_is_refused_before_a_query_or_a_command_sees_it(job: str) -> None:
    with pytest.raises(ValueError, match="not a Slurm job ID"):
        valid_job_id(job)


def test_a_record_is_read_field_by_field() -> None:
    text = (
        "JobId=77 JobName=train UserId=alice(1000) GroupId=alice(1000) Account=physics "
        "JobState=COMPLETED Reason=None StartTime=2025-03-04T09:00:12 EndTime=2025-03-04T11:30:40 "
        "Partition=gpu NodeList=gpu-[07-08] Command=/home/alice/my job.sh\n"
    )
    fields = parse_scontrol(text, "77")
    assert fields["UserId"] == "alice(1000)" and fields["NodeList"] == "gpu-[07-08]"
    assert fields["StartTime"] == "2025-03-04T09:00:12"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "slurm_load_jobs error: Invalid job id specified\n",
        "JobId=78 JobState=RUNNING\n",
        "\x00\xff garbage",
    ],
)
def test_a_record_of_another_job_or_none_is_not_taken(text: str) -> None:
    with pytest.raises(JobNotFound, match="77"):
        parse_scontrol(text, "77")


def test_host_lists_expand_and_are_bounded() -> None:
    calls: list[list[str]] = []

    def run(args: list[str]) -> str:
        calls.append(list(args))
        return "n1\nn2\n"

    assert expand_hostlist("(null)", run) == ()
    assert expand_hostlist("a,b", run) == ("a", "b") and calls == []
    assert expand_hostlist("n[1-2]", run) == ("n1", "n2")
    with pytest.raises(ValueError, match="not believed"):
        expand_hostlist("n[1-9999999]", lambda _a: "n\n" * (MAX_NODES + 1))


def test_scontrol_gives_the_window_of_running_finished_and_never_started_jobs(
    slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))  # what an epilog on the controller has
    running = slurm.sbatch("-w", "node-02", "-n", "1", "--mem=500", "--account=chem", "-J", "w")
    slurm.wait_job(running)
    window = from_scontrol(running)
    assert window.state == "RUNNING" and window.end is None and window.nodes == ("node-02",)
    assert window.account == "chem" and window.user == "root"
    assert window.start is not None and abs(window.start - time.time()) < 120
    slurm.run("scancel", running)
    ended = procs.wait_until(
        lambda: (w := from_scontrol(running)).state == "CANCELLED" and w, 30, 0.3, "the job cancelled"
    )
    assert ended.state == "CANCELLED" and ended.end is not None and ended.end >= ended.start  # type: ignore[operator]
    pending = slurm.sbatch("-n", "64", "--mem=500")
    assert from_scontrol(pending).nodes == ()
    slurm.run("scancel", pending)
    with pytest.raises(JobNotFound, match="999999"):
        from_scontrol("999999")
