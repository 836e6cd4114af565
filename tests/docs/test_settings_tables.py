"""The settings tables in docs/ are generated from the dataclasses that hold the defaults.

A block ``<!-- settings: module:Class -->`` … ``<!-- /settings -->`` in a document under docs/
holds ``settings_table(Class)``; ``POWERPLANE_REGENERATE=1`` rewrites the blocks instead of
failing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from powerplane.components import resolve
from powerplane.exporters.runtime.config import settings_table

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
BLOCK = re.compile(r"(<!-- settings: (\S+) -->\n)(.*?)(<!-- /settings -->)", re.S)


def _fill(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + settings_table(resolve(m.group(2))) + m.group(4), text)


def test_settings_tables_are_current() -> None:
    stale = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        fresh = _fill(text)
        if fresh != text:
            if os.environ.get("POWERPLANE_REGENERATE") == "1":
                path.write_text(fresh, encoding="utf-8")
            else:
                stale.append(path.name)
    assert stale == [], f"settings tables stale in {stale}: rerun with POWERPLANE_REGENERATE=1"


def test_the_blocks_exist() -> None:
    refs = {m.group(2) for path in DOCS.glob("*.md") for m in BLOCK.finditer(path.read_text())}
    assert "powerplane.rulegen.config:RulesConfig" in refs
