"""``powerplane demo`` as a user runs it: URLs printed, Prometheus scraping, a clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from powerplane.lab import procs

from .conftest import require_binary


@pytest.mark.e2e
def test_demo_runs_scrapes_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    require_binary("prometheus")
    proc = subprocess.Popen(
        [sys.executable, "-m", "powerplane.cli", "demo", "--nodes", "2", "--workdir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    assert proc.stdout is not None

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        procs.wait_until(lambda: any("Press Ctrl-C" in line for line in lines), 120, what="the demo to start")
        urls = dict(re.findall(r"^\s+(.+?)\s{2,}(https?://\S+)$", "".join(lines), re.M))
        assert {"RAPL exporter (node-01)", "RAPL exporter (node-02)", "Prometheus"} <= set(urls)
        prom_url = urls["Prometheus"].rstrip("/")
        status, _ = procs.http_get(urls["RAPL exporter (node-01)"] + "metrics")
        assert status == 200

        def rapl_rate() -> float:
            query = urllib.parse.quote('sum(rate(powerplane_rapl_energy_joules_total{zone="package"}[15s]))')
            _, body = procs.http_get(f"{prom_url}/api/v1/query?query={query}")
            result = json.loads(body)["data"]["result"]
            return float(result[0]["value"][1]) if result else 0.0

        # Two nodes x two sockets at 160-180 W ±25 %: some hundreds of watts once the 15 s window
        # is covered (a younger series reads low, as rate() divides by the whole window).
        procs.wait_until(lambda: 400 < rapl_rate() < 1200, 90, interval=1.0, what="RAPL power in Prometheus")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        reader.join(5)
        proc.stdout.close()
    assert code == 0, "".join(lines)
    assert "powerplane demo: stopped" in "".join(lines)
