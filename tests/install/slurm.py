"""A real one-node Slurm (Debian's 22.05) with two GRES GPUs, whose Prolog, Epilog and
EpilogSlurmctld are the shipped hook, for tests/install/test_slurm_hooks.py.

munged with its own key and socket, slurmctld and slurmd as root on 127.0.0.1 (free ports, state
in the work directory, proctrack/linuxproc, task/none); the GPUs are character devices made with
mknod (gres.conf refuses anything else); nothing touches the machine's own Slurm or munge.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from powerplane.lab import procs

NODE = "pp-node-1"


class SlurmCluster:
    def __init__(self, workdir: Path, prolog: Path) -> None:
        self.dir = workdir
        self.prolog = prolog
        self.processes: list[procs.Process] = []
        self.env = {**os.environ, "SLURM_CONF": str(workdir / "slurm.conf")}

    def start(self) -> SlurmCluster:
        d = self.dir
        for sub in ("munge", "state", "spool", "dev"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
        (d / "munge").chmod(0o755)  # munged wants a socket directory others can enter
        for n in range(2):
            subprocess.run(["mknod", str(d / f"dev/nvidia{n}"), "c", "195", str(n)], check=True)
        key = d / "munge/munge.key"
        subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True)
        key.chmod(0o400)
        socket = d / "munge/munge.sock"
        munged = ["munged", "-F", "-f", f"--key-file={key}", f"--socket={socket}"]
        munged += [f"--seed-file={d / 'munge/seed'}", f"--pid-file={d / 'munge/munged.pid'}"]
        self._run([*munged, f"--log-file={d / 'munge/munged.log'}"], "munged")
        procs.wait_until(socket.exists, 30, what="munged's socket")
        ctld, slurmd = procs.free_port(), procs.free_port()
        hook = str(self.prolog)
        (d / "slurm.conf").write_text(
            "\n".join(
                [
                    "ClusterName=pptest",
                    "SlurmctldHost=localhost(127.0.0.1)",
                    f"SlurmctldPort={ctld}",
                    f"SlurmdPort={slurmd}",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={socket}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={d / 'state'}",
                    f"SlurmdSpoolDir={d / 'spool'}",
                    f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                    f"SlurmdPidFile={d / 'slurmd.pid'}",
                    f"SlurmctldLogFile={d / 'slurmctld.log'}",
                    f"SlurmdLogFile={d / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "GresTypes=gpu",
                    f"Prolog={hook}",
                    f"Epilog={hook}",
                    "PrologFlags=Alloc",
                    f"EpilogSlurmctld={hook}",
                    "JobCompType=jobcomp/none",
                    "AccountingStorageType=accounting_storage/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "SlurmdParameters=config_overrides",
                    f"NodeName={NODE} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=2 Gres=gpu:2",
                    f"PartitionName=gpu Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        (d / "gres.conf").write_text(f"NodeName={NODE} Name=gpu File={d / 'dev'}/nvidia[0-1]\n")
        self._run(["slurmctld", "-D", "-i"], "slurmctld")
        self._run(["slurmd", "-D", "-N", NODE], "slurmd")
        procs.wait_until(lambda: "idle" in self.sinfo(), 60, interval=0.5, what="an idle Slurm node")
        return self

    def _run(self, argv: list[str], name: str) -> None:
        self.processes.append(procs.Process(argv, self.dir / f"{name}.out", env=self.env))

    def sinfo(self) -> str:
        return self.command("sinfo", "-h", "-N", "-o", "%N %t")

    def command(self, *argv: str) -> str:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
