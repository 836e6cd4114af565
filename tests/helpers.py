"""Helpers for tests that read exporter output."""

from __future__ import annotations

import difflib
import math
import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from powerplane.components import all_specs


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Exposition text → {sample name: {sorted label pairs: value}}."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


class FakeClock:
    """A monotonic clock that moves only when a test says so (``clock.now += 601``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def logged(caplog: Any) -> str:
    """Every captured log line with its structured fields, as the logfmt output would show them."""
    return "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)


def without_runtime_noise(text: str) -> str:
    """``/metrics`` without the machine-dependent ``process_``/``python_`` families and with the
    version in ``powerplane_build_info`` as ``VERSION``: what a golden file can hold."""
    lines = [
        line
        for line in text.splitlines()
        if not line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith(("process_", "python_"))
    ]
    joined = "\n".join(lines) + "\n"
    return re.sub(r'(powerplane_build_info\{[^}]*version=")[^"]*"', r'\1VERSION"', joined)


def value(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    matches = [v for k, v in samples.get(name, {}).items() if set(labels.items()) <= set(k)]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples in {sorted(samples.get(name, {}))}"
    return matches[0]


def undocumented(text: str) -> set[str]:
    """Families in the exposition that docs/METRICS.md (the METRICS declarations) does not list."""
    specs = all_specs()
    names = set()
    for family in text_string_to_metric_families(text):
        if family.name.startswith(("process_", "python_")):
            continue
        exposed = family.name + "_total" if family.type == "counter" else family.name
        if exposed not in specs:
            names.add(exposed)
    return names


#: ``POWERPLANE_UPDATE_GOLDEN=1 pytest …`` rewrites the golden expositions instead of comparing.
UPDATE_GOLDEN = os.environ.get("POWERPLANE_UPDATE_GOLDEN", "") not in ("", "0")


def normalised(text: str, volatile: Iterable[str]) -> str:
    """An exposition with the values of ``volatile`` families (durations, moving meters) as NaN."""
    names = tuple(volatile)
    lines = []
    for line in text.splitlines():
        if not line.startswith("#") and line.split("{", 1)[0].split(" ", 1)[0] in names:
            line = line.rsplit(" ", 1)[0] + " NaN"
        lines.append(line)
    return "\n".join(lines) + "\n"


#: promtool's findings on names that are stable API: renaming them would break the dashboards and
#: rules that use them, so they are known and accepted rather than fixed (docs/METRICS.md).
KNOWN_LINT = frozenset(
    {"powerplane_redfish_temperature_summary_celsius metric name should not include type 'summary'"}
)


def check_golden(text: str, path: Path, promtool: str) -> None:
    """``text`` passes ``promtool check metrics`` and equals the golden file (or rewrites it)."""
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    findings = {line.strip() for line in (lint.stdout + lint.stderr).splitlines() if line.strip()}
    assert lint.returncode == 0 or findings <= KNOWN_LINT, (
        f"promtool check metrics:\n{lint.stdout}{lint.stderr}"
    )
    if UPDATE_GOLDEN or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        assert UPDATE_GOLDEN, f"{path} was missing and has been written: review and commit it"
        return
    expected = path.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "probe"))
    assert not diff, f"the exposition changed (POWERPLANE_UPDATE_GOLDEN=1 to accept):\n{diff}"


def assert_same_document(a: Any, b: Any, rel_tol: float, where: str = "") -> None:
    """``a`` and ``b`` (nested dicts, lists and scalars) equal, floats within ``rel_tol``; a
    difference is named by its path in the document."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12), f"{where}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_document(a[key], b[key], rel_tol, f"{where}/{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_document(x, y, rel_tol, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
