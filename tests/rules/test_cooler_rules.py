"""The cooler alerts' site setting: which coolers may stand by, and every form promtool accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from powerplane.rulegen import render
from powerplane.rulegen.config import KIND
from tests.conftest import require_binary


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, 'powerplane_cooling_operating_mode{mode="standby",cooler!=""} == 1'),
        (
            'cooler!~"inrow-0[78]"',
            'powerplane_cooling_operating_mode{mode="standby",cooler!~"inrow-0[78]"} == 1',
        ),
        ("", 'powerplane_cooling_operating_mode{mode="standby"} == 1'),
    ],
)
def test_standby_selector_leaves_backup_units_out(
    tmp_path: Path, selector: str | None, expected: str
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("{}\n" if selector is None else f"cooler_standby_selector: '{selector}'\n")
    config = KIND.load(site)
    rules = {r.get("alert") or r["record"]: r for r in render.iter_rules(render.render(config))}
    assert rules["PowerplaneCoolerInStandby"]["expr"] == expected
    out = tmp_path / "out"
    render.write(out, config)
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, out.glob("*.yaml"))], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
