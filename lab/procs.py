"""Starting real components (Prometheus, Alertmanager, node_exporter, ...) on 127.0.0.1.

Every process gets a free port, a log file and a readiness poll (never a fixed sleep),
and is stopped by PID.  Used by ``powerplane demo``, the tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml

T = TypeVar("T")

#: Where Debian installs the components, for when they are not on PATH.
_KNOWN = {
    "prometheus": ["/usr/bin/prometheus"],
    "promtool": ["/usr/bin/promtool"],
    "alertmanager": ["/usr/bin/prometheus-alertmanager"],
    "node_exporter": ["/usr/bin/prometheus-node-exporter"],
    "snmp_exporter": ["/usr/bin/prometheus-snmp-exporter"],
    "snmpd": ["/usr/sbin/snmpd"],
}


def find_binary(name: str) -> str | None:
    """The path of a component's binary, or None when it is not installed."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in _KNOWN.get(name, []):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


#: Ports ``free_port`` handed out in this process: none is handed out twice.
_GIVEN: set[int] = set()
#: The lowest port ``free_port`` picks from (below the kernel's ephemeral range).
_LOWEST_PORT = 10000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now (TCP and UDP) for a server about to start.

    Picked below the kernel's ephemeral range: a port from that range (what binding port 0 gives)
    may be taken by any outgoing connection between now and the server's bind (a slurmd started
    after slurmctld's first connections failed so), one below it is never handed out that way."""
    top = _ephemeral_start()
    rng = random.SystemRandom()
    for _ in range(200 if top - _LOWEST_PORT >= 1000 else 0):
        port = rng.randrange(_LOWEST_PORT, top)
        if port not in _GIVEN and _bindable(host, port):
            if len(_GIVEN) >= 10_000:
                _GIVEN.clear()
            _GIVEN.add(port)
            return port
    with socket.socket() as s:  # an unusual range: the kernel's pick, as before
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    end = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # retried until the deadline
            last_exc = exc
        if time.monotonic() >= end:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_exc})" if last_exc else "")
            )
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """The CPU seconds of a process's threads, as the scheduler counts them (nanoseconds).

    /proc/PID/stat counts in clock ticks (10 ms, as long as a probe of snmpsim); the
    scheduler's run time of each thread (``schedstat``) is exact, for Go and Python alike."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total / 1e9


def stat_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a running process so far, in clock ticks (/proc/PID/stat).

    Enough over a bench's intervals of seconds; for single probes, ``cpu_seconds``."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/PID/status in MiB: resident now, or ``VmHWM``, the peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def http_get(url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Process:
    """A subprocess with its output in a log file, stopped by PID."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        **popen: Any,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            **popen,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, url: str, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode}:\n{self.log_tail()}")
            return http_get(url, timeout=1.0)[0] == 200

        try:
            wait_until(ready, timeout, what=f"{self.argv[0]} at {url}")
        except RuntimeError:
            self.stop()
            raise
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class Component:
    """A real component run as a subprocess: ``argv()`` says how, ``ready_path`` when it is up."""

    name = "component"
    ready_path = "/-/ready"
    url = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process: Process | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> Self:
        self.process = Process(self.argv(), self.workdir / f"{self.name}.log")
        self.process.wait_ready(self.url + self.ready_path, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class QueryApi:
    """The Prometheus HTTP query API, as Prometheus and VictoriaMetrics both serve it at ``url``."""

    url = ""

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        status, body = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=10.0)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            error = doc.get("error", body[:200])
            raise RuntimeError(f"{type(self).__name__} {path} failed ({status}): {error}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the result vector."""
        data = self.api("query", query=expr, time=at)
        return list(data["result"]) if data["resultType"] == "vector" else [data["result"]]

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of an instant query, or None if it returned nothing."""
        result = self.query(expr, at)
        if not result:
            return None
        return float(result[0]["value"][1])

    def wait_value(self, expr: str, timeout: float = 60.0) -> float:
        """Wait until ``expr`` returns a value, and return it."""

        def read() -> tuple[float] | None:
            value = self.value(expr)
            return None if value is None else (value,)

        found: tuple[float] = wait_until(read, timeout, interval=0.5, what=f"a value for {expr!r}")  # type: ignore[assignment]
        return found[0]


class Prometheus(QueryApi, Component):
    """A real Prometheus on 127.0.0.1 with a temporary TSDB."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        scrape_configs: Sequence[Mapping[str, Any]],
        rule_files: Sequence[Path] = (),
        alertmanagers: Sequence[str] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        binary: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(workdir)
        self.binary = binary or find_binary("prometheus")
        if self.binary is None:
            raise FileNotFoundError("prometheus is not installed (Debian package 'prometheus')")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": scrape_interval,
                "evaluation_interval": evaluation_interval,
                "scrape_timeout": scrape_interval,
            },
            "scrape_configs": list(scrape_configs),
        }
        if rule_files:
            config["rule_files"] = [str(p) for p in rule_files]
        if alertmanagers:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def argv(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
        ]

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets")["activeTargets"])

    def wait_targets_up(self, count: int, timeout: float = 60.0) -> None:
        def up() -> bool:
            targets = self.targets()
            return len(targets) >= count and all(t["health"] == "up" for t in targets)

        wait_until(up, timeout, interval=0.5, what=f"{count} targets up")


class BackgroundLoop:
    """An asyncio event loop in a thread, for running exporters beside synchronous code.

    Tests and benchmarks that poll Prometheus with blocking calls run the exporters here, so
    the exporters keep answering while the caller blocks::

        with BackgroundLoop() as loop:
            host, port = loop.run(server.start())
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="background-loop", daemon=True)

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():  # the coroutine's own timeout, not ours
                raise
            # Left running, a half-done start would go on opening servers and sockets that no
            # one closes, and fail later tests when they are collected.
            future.cancel()
            name = getattr(coro, "__qualname__", repr(coro))
            raise TimeoutError(f"{name} did not finish within {timeout}s") from None

    def __exit__(self, *_exc: object) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(drain(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Alertmanager(Component):
    """A real Alertmanager on 127.0.0.1, single-node (no cluster port), receiving into nothing.

    Tests read what arrived through ``alerts()`` (the v2 API, which leaves resolved alerts out).
    """

    name = "alertmanager"

    def __init__(self, workdir: Path, binary: str | None = None, port: int | None = None) -> None:
        super().__init__(workdir)
        self.binary = binary or find_binary("alertmanager")
        if self.binary is None:
            raise FileNotFoundError(
                "alertmanager is not installed (Debian package 'prometheus-alertmanager')"
            )
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        config = {
            "route": {
                "receiver": "null",
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "null"}],
        }
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def argv(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """Active (not resolved) alerts."""
        status, body = http_get(f"{self.url}/api/v2/alerts", timeout=5.0)
        if status != 200:
            raise RuntimeError(f"Alertmanager alerts failed ({status}): {body[:200]!r}")
        return list(json.loads(body))

    def active(self, alertname: str, **labels: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.alerts()
            if a["labels"].get("alertname") == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]
