"""A small adapter over the Helm v4 engine shipped in the ``helm-python-sdk`` wheel.

The wheel (import name ``helm_python``) binds Helm's Go SDK through ctypes, so charts render and
lint offline with the real template engine and no ``helm`` binary. Everything powerplane needs
from Helm goes through the three functions here, so a change of that package's API touches one
file. The package is a test/tooling dependency, imported only when a function is called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class HelmUnavailable(RuntimeError):
    """The helm-python-sdk package is not installed."""


class ValuesRejected(ValueError):
    """The values do not satisfy the chart's values.schema.json."""


class RenderFailed(RuntimeError):
    """A template failed to render."""


@dataclass(frozen=True)
class LintMessage:
    severity: str
    path: str
    error: str


_SEVERITIES = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


def _helm() -> Any:
    try:
        import helm_python
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise HelmUnavailable(
            "the Helm engine is missing: install the test extra (pip install -e '.[test]')"
        ) from exc
    return helm_python


@contextlib.contextmanager
def _chart(path: Path) -> Iterator[Any]:
    helm = _helm()
    chart = helm.Chart.load(str(path))
    try:
        yield chart
    finally:
        chart.close()


def render(
    chart_dir: Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "powerplane",
    namespace: str = "powerplane",
    include_crds: bool = False,
) -> dict[str, str]:
    """Render the chart like ``helm template``: {template path: manifest text}.

    Values are validated against values.schema.json first, as ``helm install`` does, and a
    violation raises ``ValuesRejected`` (every error listed) rather than a render error.
    Templates that render to nothing but whitespace are left out. With ``include_crds`` the
    files under crds/ are added under their chart paths.
    """
    helm = _helm()
    with _chart(chart_dir) as chart:
        try:
            chart.validate_schema(dict(values or {}))
        except helm.HelmError as exc:
            raise ValuesRejected(str(exc)) from None
        try:
            rendered: dict[str, str] = chart.render(
                dict(values or {}), name=release, namespace=namespace, is_install=True
            )
        except helm.HelmError as exc:
            raise RenderFailed(str(exc)) from None
        prefix = chart.name
        crds = chart.crds if include_crds else []
    out: dict[str, str] = {}
    for crd in crds:
        # Keyed like the templates ("<chart>/crds/<file>") so callers can tell them apart.
        path = str(crd.get("filename") or f"{prefix}/{crd.get('name', '')}")
        out[path] = str(crd.get("data", ""))
    for path, text in sorted(rendered.items()):
        if text.strip():
            out[path] = text
    return out


def objects(manifests: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in rendered manifests (NOTES.txt and empty documents skipped)."""
    found: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                found.append(doc)
    return found


def lint(
    chart_dir: Path, values: Mapping[str, Any] | None = None, *, strict: bool = True
) -> list[LintMessage]:
    """Lint the chart like ``helm lint --strict``: the findings (an empty list when clean)."""
    helm = _helm()
    report = helm.lint(str(chart_dir), dict(values or {}), strict=strict)
    messages = [
        LintMessage(
            _SEVERITIES.get(int(m.get("severity", 0)), "unknown"),
            str(m.get("path", "")),
            str(m.get("error", "")),
        )
        for m in report.get("messages", [])
    ]
    messages.extend(LintMessage("error", "", str(e)) for e in report.get("errors", []) or [])
    return messages
