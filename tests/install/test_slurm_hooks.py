"""deploy/slurm/powerplane-slurm run as slurmd and slurmctld run it: no PATH, only Slurm's variables.

Slurm runs Prolog/Epilog as root with SLURM_SCRIPT_CONTEXT, SLURM_JOB_ID, SLURM_JOB_GPUS, ...
and no search path; a prolog that fails drains the node, so every run must exit 0. Most tests
run the hook with that environment directly (hostile values included); the mapping it writes is
read by the real GPU exporter (against the fake NVML); and at the end a real slurmd and slurmctld
(Debian's 22.05, tests/install/slurm.py) run it as Prolog, Epilog and EpilogSlurmctld around
real jobs holding GRES GPUs.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from powerplane.lab import procs
from powerplane.lab.fakenvml import FakeGpu, FakeNvml
from tests.conftest import require_binary

from .slurm import SlurmCluster
from .units import ROOT

HOOK = ROOT / "deploy" / "slurm" / "powerplane-slurm"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A settings file pointing the hook at directories of this test."""
    (tmp_path / "slurm-hooks.conf").write_text(
        f"# test site\nJOB_MAPPING_DIR={tmp_path / 'map'}\nJOB_SUMMARY_DIR={tmp_path / 'jobs'}\n"
    )
    return tmp_path


def run_hook(
    site: Path, context: str, job: str, gpus: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    env: dict[str, str] = {
        "POWERPLANE_SLURM_HOOKS_CONF": str(site / "slurm-hooks.conf"),
        "SLURM_SCRIPT_CONTEXT": context,
        "SLURM_JOB_ID": job,
        "SLURM_JOBID": job,
        "SLURM_JOB_USER": "alice",
        "SLURM_JOB_UID": "1000",
        "SLURM_JOB_PARTITION": "gpu",
        "SLURM_CLUSTER_NAME": "hpc-1",
        "SLURMD_NODENAME": "gpu-a01-01",
        **extra,
    }
    if gpus is not None:
        env["SLURM_JOB_GPUS"] = gpus
    done = subprocess.run([str(HOOK)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"the hook must never fail a job: {done.stderr}"
    return done


def mapping(site: Path) -> dict[str, list[str]]:
    directory = site / "map"
    if not directory.is_dir():
        return {}
    return {
        p.name: p.read_text().splitlines() for p in sorted(directory.iterdir()) if not p.name.startswith(".")
    }


def test_prolog_records_the_job_on_each_gpu_and_epilog_removes_it(site: Path) -> None:
    run_hook(site, "prolog_slurmd", "4242", "0,2")
    assert mapping(site) == {"0": ["4242"], "2": ["4242"]}
    run_hook(site, "prolog_slurmd", "4243", "2-3")
    assert mapping(site) == {"0": ["4242"], "2": ["4242", "4243"], "3": ["4243"]}
    run_hook(site, "epilog_slurmd", "4242", "0,2")
    assert mapping(site) == {"2": ["4243"], "3": ["4243"]}
    # The epilog cleans every file, even when Slurm gives it no GPU list.
    run_hook(site, "epilog_slurmd", "4243")
    assert mapping(site) == {}


def test_a_second_prolog_run_does_not_duplicate(site: Path) -> None:
    run_hook(site, "prolog_slurmd", "7", "1")
    run_hook(site, "prolog_slurmd", "7", "1")
    assert mapping(site) == {"1": ["7"]}


def test_a_job_without_gpus_writes_nothing(site: Path) -> None:
    run_hook(site, "prolog_slurmd", "8")
    run_hook(site, "prolog_slurmd", "9", "")
    assert mapping(site) == {}


def test_concurrent_prologs_and_epilogs_on_one_gpu_lose_nothing(site: Path) -> None:
    jobs = [str(1000 + n) for n in range(12)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda job: run_hook(site, "prolog_slurmd", job, "0,1"), jobs))
    assert sorted(mapping(site)["0"]) == jobs and sorted(mapping(site)["1"]) == jobs
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda job: run_hook(site, "epilog_slurmd", job, "0,1"), jobs[:6]))
    assert sorted(mapping(site)["0"]) == jobs[6:]


@pytest.mark.parametrize(
    "job, gpus",
    [
        ("1;touch /tmp/x", "0"),
        ("../../etc/passwd", "0"),
        ("", "0"),
        ("12 13", "0"),
        ("42", "0,../../etc"),
        ("42", "0;reboot"),
        ("42", "0-99999"),
        ("42", "1-2-3"),
        ("42", "99999999999999999999"),
        ("42", "$(id)"),
    ],
)
def test_hostile_values_write_nothing_and_say_why(site: Path, job: str, gpus: str) -> None:
    done = run_hook(site, "prolog_slurmd", job, gpus)
    assert mapping(site) == {}
    assert "powerplane-slurm: " in done.stderr
    assert "\x1b" not in done.stderr and "\n" not in done.stderr.rstrip("\n").split("powerplane-slurm: ")[-1]


def test_leading_zeros_are_indexes_not_octal(site: Path) -> None:
    run_hook(site, "prolog_slurmd", "5", "08,010")
    assert mapping(site) == {"10": ["5"], "8": ["5"]}


def test_without_a_slurm_context_it_does_nothing(site: Path) -> None:
    done = run_hook(site, "", "5", "0")
    assert mapping(site) == {}
    assert "Prolog, Epilog or EpilogSlurmctld" in done.stderr


def test_settings_are_read_not_executed(site: Path) -> None:
    marker = site / "executed"
    conf = site / "slurm-hooks.conf"
    conf.write_text(conf.read_text() + f"$(touch {marker})\nBOGUS=1\n`touch {marker}`\nJOB_SUMMARY_DELAY=x\n")
    done = run_hook(site, "prolog_slurmd", "6", "0")
    assert mapping(site) == {"0": ["6"]}
    assert not marker.exists()
    assert "unknown key BOGUS" in done.stderr and "JOB_SUMMARY_DELAY" in done.stderr


def test_the_gpu_exporter_reads_what_the_prolog_wrote(site: Path, tmp_path: Path) -> None:
    require_binary("gcc")
    run_hook(site, "prolog_slurmd", "4242", "0")
    run_hook(site, "prolog_slurmd", "4243", "0,1")
    machine = FakeNvml(tmp_path / "nvml", [FakeGpu("h100-sxm"), FakeGpu("h100-sxm")])
    (tmp_path / "nvml").mkdir()
    port = procs.free_port()
    exporter = procs.Process(
        [
            str(ROOT / ".venv/bin/powerplane"),
            "exporter",
            "gpu",
            "--no-xid-events",
            "--pod-resources.socket=",
            f"--hpc-job-mapping.dir={site / 'map'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "gpu.log",
        env=machine.env(),
    )
    try:
        exporter.wait_ready(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        _, body = procs.http_get(f"http://127.0.0.1:{port}/metrics")
    finally:
        exporter.stop()
    text = body.decode()
    found = r'powerplane_gpu_job_info\{gpu="(\d)",uuid="[^"]+",gpu_instance="",hpc_job="(\d+)"\} 1'
    jobs = sorted(re.findall(found, text))
    assert jobs == [("0", "4242"), ("0", "4243"), ("1", "4243")], text[-2000:]
    assert 'powerplane_scrape_collector_success{exporter="gpu",collector="jobs"} 1' in text


# --- EpilogSlurmctld: the job summary from `powerplane job` -----------------------------------------


def summary_settings(site: Path, powerplane: Path, extra: Mapping[str, str] | None = None) -> None:
    lines = [
        f"POWERPLANE={powerplane}",
        "JOB_SUMMARY_DELAY=0",
        *(f"{k}={v}" for k, v in (extra or {}).items()),
    ]
    conf = site / "slurm-hooks.conf"
    conf.write_text(conf.read_text() + "\n".join(lines) + "\n")


def test_summary_says_an_older_powerplane_lacks_powerplane_job(site: Path) -> None:
    older = site / "powerplane"
    older.write_text("#!/bin/sh\necho \"Error: No such command '$1'.\" >&2\nexit 2\n")
    older.chmod(0o755)
    summary_settings(site, older)
    done = run_hook(site, "epilog_slurmctld", "4242", SLURM_JOB_NODELIST="gpu-a01-[01-02]")
    assert "no 'powerplane job' command" in done.stderr and "job 4242" in done.stderr
    assert not (site / "jobs").exists() or not any((site / "jobs").iterdir())


def stand_in_powerplane(path: Path) -> Path:
    """A stand-in with the documented interface (`powerplane job ID [--json]`) that writes the
    arguments the hook passes; tests/accounting/test_e2e.py runs the real command through the hook."""
    path.write_text(
        "#!/bin/sh\n"
        '[ "$1" = job ] || exit 2\n'
        'shift; [ "$1" = --help ] && exit 0\n'
        'case " $* " in *" --json "*) printf \'{"job": "%s", "args": "%s"}\\n\' "$1" "$*" ;;'
        ' *) echo "job $1: $*" ;; esac\n'
    )
    path.chmod(0o755)
    return path


def test_summary_runs_powerplane_job_and_writes_both_formats(site: Path) -> None:
    stand_in = stand_in_powerplane(site / "powerplane")
    summary_settings(site, stand_in, {"JOB_ARGS": "--prometheus http://127.0.0.1:9090"})
    run_hook(site, "epilog_slurmctld", "4242")
    jobs = site / "jobs"
    procs.wait_until(
        lambda: (jobs / "4242.json").exists() and (jobs / "4242.txt").exists(), 30, what="summaries"
    )
    assert (jobs / "4242.json").read_text() == (
        '{"job": "4242", "args": "4242 --json --prometheus http://127.0.0.1:9090"}\n'
    )
    assert (jobs / "4242.txt").read_text() == "job 4242: 4242 --prometheus http://127.0.0.1:9090\n"
    assert sorted(p.name for p in jobs.iterdir()) == ["4242.json", "4242.txt"]


# --- under a real slurmd and slurmctld ------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[tuple[SlurmCluster, Path]]:
    for binary in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "mknod"):
        require_binary(binary)
    # Outside pytest's private tmp_path: munged insists on a socket directory others can enter.
    with tempfile.TemporaryDirectory(prefix="pp-slurm-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        (work / "slurm-hooks.conf").write_text(
            f"JOB_MAPPING_DIR={work / 'map'}\nJOB_SUMMARY_DIR={work / 'jobs'}\n"
            # An older powerplane without `powerplane job`: the hook says so for each job at once
            # (test_slurmctld_keeps_the_detached_summaries replaces it with one that has it).
            f"POWERPLANE={work / 'powerplane'}\n"
        )
        older = work / "powerplane"
        older.write_text("#!/bin/sh\necho \"Error: No such command '$1'.\" >&2\nexit 2\n")
        older.chmod(0o755)
        # Slurm passes its own environment only; the settings file's location is the one addition.
        wrapper = work / "hook"
        wrapper.write_text(
            f"#!/bin/sh\nPOWERPLANE_SLURM_HOOKS_CONF={work / 'slurm-hooks.conf'} "
            f"exec {HOOK} 2>>{work / 'hook.log'}\n"
        )
        wrapper.chmod(0o755)
        slurm = SlurmCluster(work / "slurm", wrapper)
        try:
            yield slurm.start(), work
        finally:
            slurm.stop()


def test_slurm_runs_the_hook_around_real_jobs(cluster: tuple[SlurmCluster, Path]) -> None:
    slurm, work = cluster
    jobs = [
        slurm.command(
            "sbatch", "--parsable", "--gres=gpu:1", f"--output={work}/%j.out", "--wrap", "sleep 60"
        ).strip()
        for _ in range(2)
    ]

    def mapped() -> dict[str, list[str]]:
        return mapping(work)

    both = procs.wait_until(
        lambda: len(mapped()) == 2 and mapped(), 60, interval=0.3, what="both jobs mapped"
    )
    assert sorted(both) == ["0", "1"] and sorted(j for ids in both.values() for j in ids) == sorted(jobs)
    slurm.command("scancel", jobs[0])
    left = procs.wait_until(lambda: len(mapped()) == 1 and mapped(), 60, interval=0.3, what="the epilog")
    assert list(left.values()) == [[jobs[1]]]
    slurm.command("scancel", jobs[1])
    procs.wait_until(lambda: mapped() == {}, 60, interval=0.3, what="the second epilog")
    # slurmctld ran the same script as EpilogSlurmctld for each job.
    log = procs.wait_until(
        lambda: (
            (work / "hook.log").exists()
            and (work / "hook.log").read_text().count("no summary") == 2
            and (work / "hook.log").read_text()
        ),
        60,
        what="the EpilogSlurmctld runs",
    )
    for job in jobs:
        assert f"job {job}: no summary: " in log and "no 'powerplane job' command" in log
    assert "not a job ID" not in log and "SLURM_SCRIPT_CONTEXT=" not in log


def test_slurmctld_keeps_the_detached_summaries(cluster: tuple[SlurmCluster, Path]) -> None:
    # slurmctld kills the EpilogSlurmctld's process group when the epilog exits: a summary that had
    # not left it by then was lost.  With a delay the summaries are written long after that kill.
    slurm, work = cluster
    stand_in = stand_in_powerplane(work / "powerplane")
    conf = work / "slurm-hooks.conf"
    conf.write_text(
        f"JOB_MAPPING_DIR={work / 'map'}\nJOB_SUMMARY_DIR={work / 'jobs'}\nPOWERPLANE={stand_in}\n"
        "JOB_SUMMARY_DELAY=2\nJOB_ARGS=--slurm prometheus\n"
    )
    jobs = [
        slurm.command("sbatch", "--parsable", f"--output={work}/%j.out", "--wrap", "true").strip()
        for _ in range(3)
    ]
    written = [work / "jobs" / f"{job}.{kind}" for job in jobs for kind in ("json", "txt")]
    procs.wait_until(lambda: all(p.exists() for p in written), 90, 0.3, "every job's summaries")
    for job in jobs:
        assert json.loads((work / "jobs" / f"{job}.json").read_text()) == {
            "job": job,
            "args": f"{job} --json --slurm prometheus",
        }
        assert (work / "jobs" / f"{job}.txt").read_text() == f"job {job}: {job} --slurm prometheus\n"
    assert sorted(p.name for p in (work / "jobs").iterdir()) == sorted(p.name for p in written)
    log = (work / "hook.log").read_text() if (work / "hook.log").exists() else ""
    assert "no summary" not in log and "failed" not in log, log


def test_doctor_finds_the_running_slurmctld(cluster: tuple[SlurmCluster, Path]) -> None:
    slurm, _work = cluster
    done = subprocess.run(
        [str(ROOT / ".venv/bin/powerplane"), "doctor", "--check=slurm", "--json"],
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    (found,) = json.loads(done.stdout)
    assert done.returncode == 0 and found["status"] == "ok", found
    assert found["summary"].startswith("scontrol ping: Slurmctld(primary) at ") and found["summary"].endswith(
        " is UP"
    )
