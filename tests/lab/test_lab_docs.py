"""docs/lab.md: its example runs as written, and its tables name what the lab has."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from powerplane.cli import main
from powerplane.lab.faults import FAULTS, STANDING_ALERTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "lab.md"


def test_the_python_example_runs_as_written() -> None:
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, check=True).stdout
    assert re.match(
        r"10 s: node-01 drew \d+ W: RAPL \d+ W, GPUs \d+ W,\nthe rest \d+ W; rack-01 drew \d+ W", out
    )


def test_the_demo_commands_use_its_options() -> None:
    text = DOC.read_text()
    help_text = CliRunner().invoke(main, ["demo", "--help"]).output
    for command in re.findall(r"^\.venv/bin/powerplane demo(.*?)\s*(?:#.*)?$", text, re.M):
        for option in re.findall(r"--[a-z.-]+", command):
            assert option in help_text, option


def test_the_fault_table_is_the_faults() -> None:
    text = DOC.read_text()
    table = re.findall(r"^\| `([a-z-]+)` \|", text, re.M)
    assert table == [*FAULTS, "all"]
    for fault in FAULTS.values():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{fault.name}` |"))
        assert all(alert in row for alert in fault.alerts), fault.name
    assert all(alert in text for alert in STANDING_ALERTS)
