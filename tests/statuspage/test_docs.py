"""The examples in docs/status-page.md are valid as written."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from powerplane.exporters.runtime.config import collecting_unresolved
from powerplane.statuspage.config import KIND
from powerplane.statuspage.outages import KIND as OUTAGES
from powerplane.statuspage.queries import DEFAULTS
from tests.conftest import require_binary

DOC = (Path(__file__).resolve().parent.parent.parent / "docs" / "status-page.md").read_text()
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC, re.S)


def test_the_config_example_validates() -> None:
    with collecting_unresolved() as unresolved:  # its secret files and variables are the reader's
        config = KIND.load_text(BLOCKS[0], "docs/status-page.md")
    assert unresolved == [
        "prometheus.basic_auth.password: cannot read secret file /etc/powerplane/prometheus-password: "
        "No such file or directory",
        "alertmanager.bearer_token: environment variable ALERTMANAGER_TOKEN is not set",
    ]
    assert config.system("alpha") is not None


def test_the_alert_rule_example_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "example", "rules": yaml.safe_load(BLOCKS[1])}]}))
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_outages_example_validates() -> None:
    (announcement,) = OUTAGES.load_text(BLOCKS[2], "docs/status-page.md")
    assert announcement.systems == ("alpha",)


def test_every_default_query_is_documented() -> None:
    for name in DEFAULTS:
        # A table row may list a family: `partition_cpu_ratio`, `_gpu_ratio`, `_memory_ratio`.
        assert f"`{name}`" in DOC or f"`_{name.split('_', 1)[1]}`" in DOC, name
