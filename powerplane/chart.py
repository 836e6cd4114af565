"""Keep the Helm chart and the plain manifests equal to their sources.

Helm reads nothing outside a chart, so the rule files, the dashboard JSON and the CRD are copied
into it: ``powerplane chart sync`` copies

- ``rules/*.yaml`` (Prometheus rule files: documents with ``groups``; promtool test files are
  left out) → ``charts/powerplane/files/rules/``
- ``dashboards/json/*.json`` → ``charts/powerplane/files/dashboards/``
- ``controller/crd/*.yaml`` (CustomResourceDefinitions) → ``charts/powerplane/crds/``

byte for byte, and removes copies whose source is gone. A missing source directory means "no
such files yet", not an error. ``powerplane chart deploy`` renders ``deploy/`` (the manifests for
``kubectl apply``) from the chart with its default values. Both take ``--check``, which changes
nothing and exits 1 listing every difference (the drift tests call the same functions).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from powerplane.components import Component
from powerplane.resources import require_checkout

#: The repository checkout this package lives in (the tooling works from a source checkout).
REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = Path("charts/powerplane")
DEPLOY = Path("deploy")
RELEASE = "powerplane"
NAMESPACE = "powerplane"


@dataclass(frozen=True)
class Copy:
    """Files matching ``pattern`` in ``source`` (and passing ``accept``) are copied into ``target``."""

    source: Path
    pattern: str
    target: Path
    kind: str

    def accept(self, path: Path) -> bool:
        if self.kind not in ("rules", "crd"):
            return True
        docs = _documents(path)
        if docs is None:
            # A broken source file is copied, not dropped: the chart tests then report it.
            return True
        if self.kind == "rules":
            return any(isinstance(doc, dict) and "groups" in doc for doc in docs)
        return any(isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition" for doc in docs)


COPIES = (
    Copy(Path("rules"), "*.yaml", CHART / "files/rules", "rules"),
    Copy(Path("dashboards/json"), "*.json", CHART / "files/dashboards", "dashboards"),
    Copy(Path("controller/crd"), "*.yaml", CHART / "crds", "crd"),
)


def _documents(path: Path) -> list[Any] | None:
    try:
        return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


def planned(root: Path = REPO_ROOT) -> dict[Path, bytes]:
    """What the synced chart directories must hold: {path relative to root: content}."""
    files: dict[Path, bytes] = {}
    for copy in COPIES:
        source_dir = root / copy.source
        if not source_dir.is_dir():
            continue
        for path in sorted(source_dir.glob(copy.pattern)):
            if path.is_file() and copy.accept(path):
                files[copy.target / path.name] = path.read_bytes()
    return files


def _managed(root: Path) -> dict[Path, bytes]:
    files: dict[Path, bytes] = {}
    for copy in COPIES:
        target_dir = root / copy.target
        if target_dir.is_dir():
            for path in sorted(target_dir.glob(copy.pattern)):
                if path.is_file():
                    files[copy.target / path.name] = path.read_bytes()
    return files


def differences(want: Mapping[Path, bytes], have: Mapping[Path, bytes]) -> list[str]:
    """Human-readable differences between wanted and present files."""
    lines = []
    for path in sorted(set(want) | set(have)):
        if path not in have:
            lines.append(f"missing: {path}")
        elif path not in want:
            lines.append(f"stale: {path}")
        elif want[path] != have[path]:
            lines.append(f"differs: {path}")
    return lines


def _apply(root: Path, want: Mapping[Path, bytes], have: Mapping[Path, bytes]) -> list[str]:
    changes = differences(want, have)
    for path in sorted(set(have) - set(want)):
        (root / path).unlink()
    for path, content in want.items():
        if have.get(path) != content:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(content)
    return changes


def sync(root: Path = REPO_ROOT, *, check: bool = False) -> list[str]:
    """Copy the sources into the chart (or, with ``check``, only report): the differences found."""
    want, have = planned(root), _managed(root)
    return differences(want, have) if check else _apply(root, want, have)


def _dump(objects: Iterable[Mapping[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(dict(obj), sort_keys=False, width=1_000_000) for obj in objects)


#: Values for deploy/prometheus-operator.yaml: the Prometheus Operator objects alone.
OPERATOR_VALUES: dict[str, Any] = {
    "podMonitor": {"enabled": True},
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
}


def deploy_manifests(root: Path = REPO_ROOT) -> dict[Path, bytes]:
    """deploy/: the chart rendered with its default values, ready for ``kubectl apply``.

    ``deploy/crds/`` holds the CRDs (apply them first), ``deploy/powerplane.yaml`` the namespace and
    everything else, ``deploy/prometheus-operator/monitoring.yaml`` the PodMonitor and
    PrometheusRules for clusters that run the Prometheus Operator (rendered with those objects
    switched on, nothing else changed).
    """
    from powerplane import helm

    header = (
        "# Generated by `powerplane chart deploy` from charts/powerplane{what}; do not edit.\n"
        "# kubectl apply --server-side -f deploy/crds/ && kubectl apply -f deploy/\n"
    )
    chart_dir = root / CHART
    manifests = helm.render(chart_dir, {}, release=RELEASE, namespace=NAMESPACE, include_crds=True)
    files: dict[Path, bytes] = {}
    rest: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    for path, text in manifests.items():
        if "/crds/" in path:
            files[DEPLOY / "crds" / Path(path).name] = text.encode()
        else:
            rest.extend(helm.objects({path: text}))
    files[DEPLOY / "powerplane.yaml"] = (
        header.format(what=" with its default values") + _dump(rest)
    ).encode()
    operator = helm.objects(helm.render(chart_dir, OPERATOR_VALUES, release=RELEASE, namespace=NAMESPACE))
    monitoring = [o for o in operator if str(o.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
    files[DEPLOY / "prometheus-operator" / "monitoring.yaml"] = (
        header.format(what=" (PodMonitor, ServiceMonitors, PrometheusRules)") + _dump(monitoring)
    ).encode()
    return files


def deploy(root: Path = REPO_ROOT, *, check: bool = False) -> list[str]:
    """Write deploy/ from the chart (or, with ``check``, only report): the differences found."""
    want = deploy_manifests(root)
    have: dict[Path, bytes] = {}
    for pattern in ("*.yaml", "crds/*.yaml", "prometheus-operator/*.yaml"):
        for path in sorted((root / DEPLOY).glob(pattern)):
            have[path.relative_to(root)] = path.read_bytes()
    return differences(want, have) if check else _apply(root, want, have)


@click.group("chart")
def command() -> None:
    """Keep the Helm chart and deploy/ in step with rules/, dashboards/json/ and the CRD."""


def _report(changes: list[str], check: bool, what: str) -> None:
    for line in changes:
        click.echo(line, err=check)
    if check and changes:
        click.echo(f"{what} is out of date: run `powerplane chart {what}`", err=True)
        sys.exit(1)


_ROOT = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="The powerplane checkout (default: the one this command runs from).",
)


@command.command("sync")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when the chart differs from its sources.")
@_ROOT
def sync_command(check: bool, root: Path | None) -> None:
    """Copy rules/, dashboards/json/ and the CRD into charts/powerplane."""
    _report(sync(root or require_checkout("chart sync"), check=check), check, "sync")


@command.command("deploy")
@click.option(
    "--check", is_flag=True, help="Change nothing; exit 1 when deploy/ differs from a fresh render."
)
@_ROOT
def deploy_command(check: bool, root: Path | None) -> None:
    """Render deploy/ from the chart with its default values (run `chart sync` first)."""
    _report(deploy(root or require_checkout("chart deploy"), check=check), check, "deploy")


COMPONENT = Component(
    name="chart",
    order=92,
    commands=(("chart", "powerplane.chart:command"),),
)
