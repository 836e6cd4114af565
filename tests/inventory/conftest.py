"""The documented example inventory and a loader for inventories built in tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from powerplane.exporters.inventory.config import KIND

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "docs" / "examples" / "inventory.yaml"


def load(doc: Any) -> Any:
    return KIND.load_text(yaml.safe_dump(doc), "inventory.yaml")
