"""A Debian 12 machine booted with systemd as its PID 1 (systemd-nspawn), powerplane installed
from its wheel in /opt/powerplane and the shipped units in /etc/systemd/system: the units run
as they would on a node, hardening and all, instead of only being parsed.

The root comes from mmdebstrap (a tarball cached for a week beside the image's base); the
wheels from this host's pip. Commands run inside through nsenter, since the host has no
systemd to ask for the container.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from powerplane.lab import procs

from .units import ROOT, SYSTEMD

BOOT_TIMEOUT_S = 240

PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates"


def cache_dir() -> Path:
    base = os.environ.get("POWERPLANE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return (Path(base) / "powerplane" if base else Path.home() / ".cache" / "powerplane") / "image"


def root_tarball() -> Path:
    tar = cache_dir() / "debian-bookworm-systemd.tar"
    if not tar.exists() or time.time() - tar.stat().st_mtime > 7 * 86400:
        tar.parent.mkdir(parents=True, exist_ok=True)
        partial = tar.with_suffix(".partial")
        subprocess.run(
            [
                *("mmdebstrap", "--quiet", "--variant=minbase", "--format=tar", f"--include={PACKAGES}"),
                *("bookworm", str(partial), "deb http://deb.debian.org/debian bookworm main"),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            timeout=900,
        )
        partial.replace(tar)
    return tar


class BootedNode:
    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.process: procs.Process | None = None
        self.init_pid = 0

    def install(self, wheels: Path) -> BootedNode:
        subprocess.run(["tar", "-C", str(self.root), "-xf", str(root_tarball())], check=True, timeout=600)
        shutil.copytree(wheels, self.root / "wheels")
        self.chroot("python3", "-m", "venv", "/opt/powerplane")
        self.chroot(
            "/opt/powerplane/bin/pip", "install", "-q", "--no-index", "--find-links=/wheels", "powerplane"
        )
        units = self.root / "etc/systemd/system"
        for path in [*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.path")]:
            shutil.copy(path, units / path.name)
        for sub in ("sysusers.d", "tmpfiles.d"):
            (self.root / "etc" / sub).mkdir(parents=True, exist_ok=True)
            for path in (SYSTEMD / sub).iterdir():
                shutil.copy(path, self.root / "etc" / sub / path.name)
        (self.root / "etc/powerplane").mkdir(mode=0o755)
        return self

    def chroot(self, *argv: str) -> None:
        subprocess.run(["chroot", str(self.root), *argv], check=True, capture_output=True, timeout=600)

    def boot(self) -> BootedNode:
        argv = [
            "systemd-nspawn",
            "-D",
            str(self.root),
            "--boot",
            "-M",
            self.name,
            "--register=no",
            "--keep-unit",
        ]
        process = self.process = procs.Process(argv, self.root.parent / f"{self.name}.console")

        def init() -> int:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            return int(children[0]) if children else 0

        try:
            self.init_pid = procs.wait_until(init, 60, what="the container's init")
            # Past twice systemd's own default job timeout (90 s): a unit that hangs is failed by
            # systemd itself and the boot ends "degraded", instead of this wait ending first.
            procs.wait_until(
                lambda: self.state() in ("running", "degraded"), BOOT_TIMEOUT_S, interval=0.5,
                what="systemd to finish booting",
            )  # fmt: skip
            self.run("systemd-sysusers")
        except Exception as exc:
            # A container that never came up is still running: stopped here, with what it waited on.
            seen = ""
            if self.init_pid:
                with contextlib.suppress(Exception):
                    seen = self.diagnosis()
            console = process.log_tail(40)
            self.stop()
            raise RuntimeError(f"{exc}\n{seen}\n--- console ---\n{console}") from exc
        return self

    def state(self) -> str:
        return self.run("systemctl", "is-system-running", check=False).stdout.strip()

    def diagnosis(self) -> str:
        """The manager's state, its queued jobs and failed units: why a boot has not finished."""
        parts = [f"state: {self.state()}"]
        for argv in (("systemctl", "list-jobs", "--no-pager"), ("systemctl", "--failed", "--no-pager")):
            done = self.run(*argv, check=False)
            parts.append(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
        return "\n".join(parts)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-a", *argv], capture_output=True, text=True, timeout=120
        )
        if check:
            assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"
        return done

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def start(self, unit: str, env: dict[str, str] | None = None) -> int:
        """Start a unit listening on a free loopback port; the port."""
        port = procs.free_port()
        name = unit.split(".")[0].removeprefix("powerplane-").replace("@", "-")
        lines = [f"LISTEN_ADDRESS=127.0.0.1:{port}", *(f"{k}={v}" for k, v in (env or {}).items())]
        self.write(f"/etc/powerplane/{name}.env", "\n".join(lines) + "\n", 0o600)
        self.run("systemctl", "start", unit)
        procs.wait_until(
            lambda: procs.http_get(f"http://127.0.0.1:{port}/-/ready", timeout=1)[0] == 200,
            60,
            what=f"{unit} on :{port}\n{self.journal(unit)}",
        )
        return port

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-n", "20", check=False).stdout

    def status(self, unit: str, *fields: str) -> dict[str, str]:
        """Lines of the unit's main process's /proc status, by field name."""
        pid = self.run("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()
        text = self.run("cat", f"/proc/{pid}/status").stdout
        found = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {f: found[f].strip() for f in fields}

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=60)  # SIGTERM: nspawn shuts the container down
            self.process = None


def fetch_host_wheels(into: Path) -> Path:
    """powerplane's wheel and its dependencies, fetched by this host's pip."""
    subprocess.run(
        [
            *(str(ROOT / ".venv/bin/python"), "-m", "pip", "wheel", "-q", "--disable-pip-version-check"),
            *("--wheel-dir", str(into), str(ROOT)),
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return into
