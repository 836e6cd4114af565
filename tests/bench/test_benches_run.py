"""The benches of the exposition, GPU and RAPL paths run at a tiny size and end in their RESULT
line (the figures themselves are not checked: benches are not timed tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]


def _result(*argv: str) -> dict[str, str]:
    return _run(*argv)[0]


def _run(*argv: str) -> tuple[dict[str, str], str]:
    """The bench's RESULT fields, and all it printed."""
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT "), done.stdout[-2000:]
    return dict(field.split("=", 1) for field in last.split()[1:]), done.stdout


def _spread(text: str) -> tuple[float, float]:
    low, high = (float(x) for x in text.split("-"))
    assert 0 < low <= high
    return low, high


def test_render_bench_gives_ratios_and_spreads() -> None:
    result = _result("bench/render.py", "--series", "200", "--runs", "2", "--rounds", "1")
    for case in ("text_changing", "text_static", "openmetrics_changing", "openmetrics_static"):
        low, high = _spread(result[f"render_{case}_spread"])
        assert low <= float(result[f"render_{case}_ratio"]) <= high


def test_gpu_bench_counts_nvml_calls() -> None:
    require_binary("gcc")  # the fake NVML is compiled on first use
    result = _result("bench/gpu.py", "--runs", "2", "--scrapes", "3")
    assert float(result["gpu_nvml_calls_per_scrape"]) > 0
    assert result["gpu_nvml_calls_growing"] == "no"
    low, high = _spread(result["gpu_scrape_p50_spread"])
    assert low <= float(result["gpu_scrape_p50_ms"]) <= high


def test_rapl_bench_runs_against_node_exporter() -> None:
    require_binary("node_exporter")
    result = _result("bench/rapl.py", "--runs", "1", "--scrapes", "5")
    for key in ("p50", "p99"):
        low, high = _spread(result[f"rapl_{key}_ratio_spread"])
        assert low == high == float(result[f"rapl_{key}_ratio"])  # one run: no spread
    float(result["rapl_cpu_ratio"])  # nan when 5 scrapes are under the clock tick


def test_http_client_bench_runs_both_clients() -> None:
    result = _result("bench/http_client.py", "--requests", "50", "--rounds", "1")
    assert float(result["aiohttp_us_per_request"]) > 0 and float(result["lean_us_per_request"]) > 0


def test_rapl_reads_bench_compares_the_two_readers() -> None:
    result = _result("bench/rapl.py", "--reads", "--runs", "2", "--scrapes", "20")
    low, high = _spread(result["rapl_reads_ratio_spread"])
    assert low <= float(result["rapl_reads_ratio"]) <= high
    assert float(result["rapl_reads_held_us"]) > 0 and float(result["rapl_reads_reopen_us"]) > 0


def test_redfish_bench_gives_spread_and_busy_figures_beside_the_echo_anchor() -> None:
    result, printed = _run(
        "bench/redfish.py", "--bmcs", "4", "--interval", "1", "--intervals", "2", "--latency", "0.01", "0.02"
    )
    assert result["redfish_bmcs_per_interval"] == "4"
    # Two spread intervals, then the busy one, every probe of it answered.
    assert "interval 3 [busy: all at once]: 4/4 probes in time, 4 up" in printed
    assert float(result["redfish_requests_per_probe"]) > 0
    for key in ("redfish_cpu_ms_per_probe", "redfish_cpu_ms_per_probe_busy"):
        assert float(result[key]) >= 0  # four probes may fall within one clock tick
    # The anchor is timed in nanoseconds: an echo always costs something.
    assert float(result["anchor_echo_us_spread"]) > 0 and float(result["anchor_echo_us_busy"]) > 0
