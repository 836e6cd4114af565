"""A real Slurm cluster on 127.0.0.1: Debian's munged, slurmctld, slurmd and slurmrestd run as root.

``SlurmCluster`` writes a slurm.conf with free ports and its state, spool and log directories
under a work directory, ``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none``
(no cgroups needed), munge with its own key and socket, and ``auth/jwt`` as the alternative
authentication when ``slurm-wlm-jwt-plugin`` is installed.  One slurmd process per node name
(``slurmd -N node-01``, each on its own port, all ``NodeHostname=localhost``), so a demo cluster
of several nodes runs on one machine.  GPUs are GRES declared over empty device files
(``File=.../nvidia0``): slurmd only checks that they exist, so jobs get real GPU indexes.

slurmrestd (22.05) refuses to run as root unless ``SLURMRESTD_SECURITY=disable_user_check``,
loads only the non-database API plugins (``-s``: there is no slurmdbd), and takes JWTs when
started with ``SLURM_JWT=daemon``; it also listens on a unix socket (local auth).  It rejects
tokens for root and SlurmUser, so clients use a token for an ordinary user (``nobody``).
``SLURM_JWT`` is never put in the environment of the commands unless JWT is configured.

Used by the demo (``slurm_component``), the tests (tests/slurm) and bench/slurm.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import procs
from .demo import DemoContext

logger = logging.getLogger("powerplane.lab.slurm")

#: The binaries a cluster needs (Debian packages slurmctld, slurmd, slurm-client, munge).
BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo", "sdiag")
PLUGIN_DIR = Path("/usr/lib/x86_64-linux-gnu/slurm-wlm")
#: The user whose token clients present to slurmrestd (it rejects root's).
REST_USER = "nobody"


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]


def jwt_available() -> bool:
    return (PLUGIN_DIR / "auth_jwt.so").exists() and (PLUGIN_DIR / "rest_auth_jwt.so").exists()


def slurmrestd_binary() -> str | None:
    return shutil.which("slurmrestd") or (
        "/usr/sbin/slurmrestd" if Path("/usr/sbin/slurmrestd").exists() else None
    )


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpus: int = 8
    memory_mb: int = 16000
    gpu_type: str = ""
    gpus: int = 0


class SlurmCluster:
    """munged, slurmctld, one slurmd per node and slurmrestd, started and stopped by PID."""

    def __init__(
        self,
        workdir: Path,
        nodes: Sequence[NodeSpec],
        partitions: Mapping[str, Sequence[str]] | None = None,
        cluster_name: str = "lab",
        with_rest: bool = True,
    ) -> None:
        if os.geteuid() != 0:
            raise PermissionError("the lab's Slurm runs as root (slurmd launches jobs as their users)")
        missing = missing_binaries()
        if missing:
            raise FileNotFoundError(
                f"Slurm is not installed ({', '.join(missing)} missing): Debian packages "
                "slurmctld slurmd slurm-client munge (scripts/setup)"
            )
        self.workdir = Path(workdir)
        self.nodes = list(nodes)
        self.partitions = dict(partitions or {"batch": [n.name for n in self.nodes]})
        self.cluster_name = cluster_name
        self.jwt = jwt_available()
        self.rest_binary = slurmrestd_binary() if with_rest else None
        # unix socket paths are limited to 107 bytes: sockets go to a short directory of their own.
        self.sockdir = Path(tempfile.mkdtemp(prefix="pp-slurm-"))
        self.sockdir.chmod(0o755)  # munged wants a socket directory others can enter
        self.munge_socket = self.sockdir / "munge.sock"
        self.rest_socket = self.sockdir / "slurmrestd.sock"
        self.conf = self.workdir / "slurm.conf"
        self.ctld_port = procs.free_port()
        self.node_ports = {n.name: procs.free_port() for n in self.nodes}
        self.rest_port = procs.free_port()
        self.rest_url = f"http://127.0.0.1:{self.rest_port}"
        self._procs: list[procs.Process] = []

    # --- configuration -------------------------------------------------------------------------

    def _write_config(self) -> None:
        w = self.workdir
        for sub in ("state", "log", "dev", "munge"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        lines = [
            f"ClusterName={self.cluster_name}",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={w / 'state'}",
            # Job scripts run as their users from the spool: it lives where every user can enter.
            f"SlurmdSpoolDir={self.sockdir / 'spool'}/%n",
            f"SlurmctldPidFile={w / 'slurmctld.pid'}",
            f"SlurmdPidFile={w / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={w / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={w / 'log' / 'slurmd-%n.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "GresTypes=gpu",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            # The nodes claim more CPUs and memory than this machine has: slurmd takes the config.
            "SlurmdParameters=config_overrides",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=300",
            "MinJobAge=60",
        ]
        if self.jwt:
            key = w / "jwt.key"
            key.write_bytes(secrets.token_bytes(32))
            key.chmod(0o600)
            lines += ["AuthAltTypes=auth/jwt", f"AuthAltParameters=jwt_key={key}"]
        gres = []
        for n in self.nodes:
            line = (
                f"NodeName={n.name} NodeAddr=127.0.0.1 NodeHostname=localhost Port={self.node_ports[n.name]} "
                f"CPUs={n.cpus} RealMemory={n.memory_mb} State=UNKNOWN"
            )
            if n.gpus:
                line += f" Gres=gpu:{n.gpu_type}:{n.gpus}"
                files = []
                for i in range(n.gpus):
                    dev = w / "dev" / n.name / f"nvidia{i}"
                    dev.parent.mkdir(parents=True, exist_ok=True)
                    dev.touch()
                    files.append(str(dev))
                gres.append(f"NodeName={n.name} Name=gpu Type={n.gpu_type} File={','.join(files)}")
            lines.append(line)
            (self.sockdir / "spool" / n.name).mkdir(parents=True, exist_ok=True)
        for i, (name, members) in enumerate(self.partitions.items()):
            default = "YES" if i == 0 else "NO"
            lines.append(
                f"PartitionName={name} Nodes={','.join(members)} Default={default} MaxTime=INFINITE State=UP"
            )
        self.conf.write_text("\n".join(lines) + "\n")
        (w / "gres.conf").write_text("\n".join(gres) + "\n")

    def env(self) -> dict[str, str]:
        """The environment for Slurm commands against this cluster (no SLURM_JWT)."""
        env = {k: v for k, v in os.environ.items() if k != "SLURM_JWT"}
        env["SLURM_CONF"] = str(self.conf)
        return env

    # --- lifecycle -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> procs.Process:
        process = procs.Process(argv, self.workdir / "log" / f"{name}.out", env={**self.env(), **(env or {})})
        self._procs.append(process)
        return process

    def _wait(self, what: str, process: procs.Process, check: Any, timeout: float = 60.0) -> None:
        def ready() -> Any:
            if not process.alive():
                raise RuntimeError(f"{what} exited:\n{process.log_tail()}")
            return check()

        try:
            procs.wait_until(ready, timeout, interval=0.2, what=what)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{process.log_tail()}") from None

    def start(self) -> SlurmCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._write_config()
        key = self.workdir / "munge" / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        munged = self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.workdir / 'munge' / 'munged.pid'}",
                f"--log-file={self.workdir / 'munge' / 'munged.log'}",
                f"--seed-file={self.workdir / 'munge' / 'munged.seed'}",
            ],
        )
        self._wait("munged", munged, self.munge_socket.exists, 30)
        ctld = self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._wait("slurmctld", ctld, lambda: "is UP" in self.run("scontrol", "ping", check=False), 60)
        slurmds = [
            self._spawn(f"slurmd-{n.name}", ["slurmd", "-D", "-f", str(self.conf), "-N", n.name])
            for n in self.nodes
        ]
        names = ",".join(n.name for n in self.nodes)
        for slurmd in slurmds:
            self._wait("the nodes to register", slurmd, lambda: self._nodes_up(names), 90)
        if self.rest_binary:
            self._start_rest()

    def _nodes_up(self, names: str) -> bool:
        out = self.run("sinfo", "-h", "-N", "-n", names, "-o", "%N %t", check=False)
        # One line per node and partition; '*' marks a node that does not respond (yet).
        states = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
        return len(states) == len(self.nodes) and all(
            not s.endswith("*") and s != "unk" for s in states.values()
        )

    def _start_rest(self) -> None:
        assert self.rest_binary is not None
        # The non-database API plugins (there is no slurmdbd): openapi_v0_0_38.so → openapi/v0.0.38.
        plugins = ",".join(
            "openapi/" + p.stem.removeprefix("openapi_").replace("_", ".")
            for p in sorted(PLUGIN_DIR.glob("openapi_v*.so"))
        )
        auth = ["-a", "rest_auth/local,rest_auth/jwt"] if self.jwt else ["-a", "rest_auth/local"]
        env = {"SLURMRESTD_SECURITY": "disable_user_check"}
        if self.jwt:
            env["SLURM_JWT"] = "daemon"
        rest = self._spawn(
            "slurmrestd",
            [
                self.rest_binary,
                "-f",
                str(self.conf),
                *auth,
                "-s",
                plugins,
                f"127.0.0.1:{self.rest_port}",
                f"unix:{self.rest_socket}",
            ],
            env,
        )
        headers = self.rest_headers()
        self._wait(
            "slurmrestd",
            rest,
            lambda: procs.http_get(f"{self.rest_url}/openapi/v3", timeout=5.0, headers=headers)[0] == 200,
            60,
        )

    def stop(self) -> None:
        """Cancel the jobs, then stop every daemon by PID (slurmrestd first, munged last)."""
        if any(p.alive() for p in self._procs):
            with contextlib.suppress(Exception):
                self.run("scancel", "--full", "--quiet", "--user=root", check=False)
                self.run("scancel", "--full", "--quiet", f"--user={REST_USER}", check=False)
                procs.wait_until(
                    lambda: not self.run("squeue", "-h", check=False).strip(), 15, 0.3, "jobs to end"
                )
        for process in reversed(self._procs):
            process.stop()
        self._procs.clear()
        shutil.rmtree(self.sockdir, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- using it ------------------------------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 30.0) -> str:
        """A Slurm command's stdout (the cluster's SLURM_CONF, no SLURM_JWT)."""
        result = subprocess.run(list(argv), capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def token(self, user: str = REST_USER, lifespan: int = 86400) -> str:
        """A JWT for ``user`` from slurmctld (needs the jwt plugin)."""
        if not self.jwt:
            raise RuntimeError("slurm-wlm-jwt-plugin is not installed: no JWT")
        out = self.run("scontrol", "token", f"username={user}", f"lifespan={lifespan}")
        return out.strip().removeprefix("SLURM_JWT=")

    def rest_headers(self) -> dict[str, str]:
        if not self.jwt:
            return {}
        return {"X-SLURM-USER-NAME": REST_USER, "X-SLURM-USER-TOKEN": self.token()}

    def sbatch(self, *options: str, command: str = "sleep 3600", user: str | None = None) -> str:
        """Submit ``command`` with ``options``; returns the job id."""
        extra = [f"--uid={user}", "--chdir=/tmp"] if user else []
        out = self.run("sbatch", "--parsable", "--output=/dev/null", *extra, *options, f"--wrap={command}")
        return out.strip().split(";")[0]

    def wait_job(self, job_id: str, state: str = "RUNNING", timeout: float = 60.0) -> None:
        procs.wait_until(
            lambda: self.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).strip() == state,
            timeout,
            0.3,
            f"job {job_id} {state}",
        )

    def drain(self, node: str, reason: str) -> None:
        self.run("scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}")

    def resume(self, node: str, timeout: float = 60.0) -> None:
        """Return a drained node to service and wait until it answers and takes work again."""
        self.run("scontrol", "update", f"nodename={node}", "state=resume")
        self.wait_settled(timeout)

    def wait_settled(self, timeout: float = 60.0) -> None:
        """Wait until every node responds and none is draining or drained.

        slurmctld marks a node that misses a ping NOT_RESPONDING until the next one succeeds (on
        a loaded machine that can outlast a drain and resume): readers that compare two views of
        the cluster need it settled first.
        """
        names = ",".join(n.name for n in self.nodes)

        def settled() -> bool:
            out = self.run("sinfo", "-h", "-N", "-n", names, "-o", "%N %t", check=False)
            states = [line.split()[1] for line in out.splitlines() if len(line.split()) == 2]
            return bool(states) and all(not s.endswith("*") and not s.startswith("dr") for s in states)

        if not settled():
            # Ask for a ping now instead of waiting for the next one.
            self.run("scontrol", "reconfigure", check=False)
            procs.wait_until(settled, timeout, interval=0.5, what="the Slurm nodes to settle")

    def reserve(
        self,
        name: str,
        nodes: str,
        start: str = "now+2hours",
        minutes: int = 120,
        flags: str = "maint,ignore_jobs",
    ) -> None:
        argv = ["scontrol", "create", "reservation", f"reservationname={name}", f"starttime={start}"]
        self.run(*argv, f"duration={minutes}", f"nodes={nodes}", "users=root", f"flags={flags}")

    def delete_reservation(self, name: str) -> None:
        self.run("scontrol", "delete", f"reservationname={name}", check=False)

    def exporter_config(self, source: str = "slurmrestd", **extra: Any) -> dict[str, Any]:
        """A slurm.yml (as a document) reading this cluster; a REST token goes to a file next to it."""
        doc: dict[str, Any] = {"source": source}
        if source == "slurmrestd" and self.jwt:
            token = self.workdir / "exporter.jwt"
            token.write_text(self.token() + "\n")
            token.chmod(0o600)
            doc["slurmrestd"] = {"url": self.rest_url, "user": REST_USER, "token": {"file": str(token)}}
        elif source == "slurmrestd":
            doc["slurmrestd"] = {"url": f"unix:{self.rest_socket}"}
        else:
            doc["cli"] = {"slurm_conf": str(self.conf)}
        doc.update(extra)
        return doc


# --- the demo -----------------------------------------------------------------------------------


def demo_nodes(names: Sequence[str]) -> list[NodeSpec]:
    """The demo's nodes as Slurm sees them, with the GPUs the demo's fake NVML gives them."""
    from .gpu import node_gpus

    specs = []
    for i, name in enumerate(names):
        gpus = node_gpus(i)
        kind = gpus[0].profile.split("-")[0] if gpus else ""
        specs.append(NodeSpec(name, cpus=16, memory_mb=64000, gpu_type=kind, gpus=len(gpus)))
    return specs


def demo_jobs(cluster: SlurmCluster) -> list[str]:
    """A few jobs holding GPUs and CPUs, one pending, so the scheduler's view is alive."""
    jobs = []
    gpu_nodes = [n for n in cluster.nodes if n.gpus]
    for n in gpu_nodes:
        gres = f"--gres=gpu:{max(1, n.gpus // 2)}"
        options = ["-p", "gpu", "-w", n.name, gres, "-n", "4", "--mem=8000", "-J", f"train-{n.name}"]
        jobs.append(cluster.sbatch(*options, "--account=physics", user=REST_USER))
    jobs.append(cluster.sbatch("-p", "cpu", "-n", "6", "--mem=4000", "-J", "sim", "--account=chemistry"))
    jobs.append(cluster.sbatch("-p", "cpu", "-N", str(len(cluster.nodes)), "--exclusive", "-J", "wide"))
    cluster.reserve("maint", cluster.nodes[-1].name, start="now+6hours", minutes=120)
    # One node draining (its job runs on), so the status board's drained-node table has a row.
    cluster.drain(cluster.nodes[-1].name, "demo: fan replaced, burn-in pending")
    return jobs


async def slurm_component(ctx: DemoContext) -> None:
    """A real Slurm cluster whose nodes are the demo's, a few jobs, and the Slurm exporter."""
    from powerplane.exporters.slurm.config import KIND
    from powerplane.exporters.slurm.exporter import make_server

    try:
        cluster = SlurmCluster(
            ctx.workdir / "slurm",
            demo_nodes(ctx.nodes),
            {"cpu": list(ctx.nodes), "gpu": list(ctx.nodes)},
            cluster_name="demo",
        )
    except (FileNotFoundError, PermissionError) as exc:
        logger.warning("no Slurm in the demo: %s", exc)
        return
    await asyncio.to_thread(cluster.start)
    ctx.stack.callback(cluster.stop)
    await asyncio.to_thread(demo_jobs, cluster)
    source = "slurmrestd" if cluster.rest_binary else "cli"
    path = ctx.workdir / "slurm.yml"
    path.write_text(yaml.safe_dump(cluster.exporter_config(source, min_interval=5), sort_keys=False))
    ctx.shared["slurm"] = cluster
    address = await ctx.serve(make_server(KIND.load(path)), "Slurm exporter")
    if cluster.rest_binary:
        ctx.urls.append(("slurmrestd", cluster.rest_url + "/openapi/v3"))
    # The cluster label comes from the Prometheus side (one exporter per Slurm cluster).
    target = {"targets": [address], "labels": {"cluster": "demo"}}
    ctx.scrape_configs.append({"job_name": "powerplane-slurm", "static_configs": [target]})
