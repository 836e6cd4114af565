"""The repository layout: every package directory is packaged, each source file exists once."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_dirs() -> dict[str, Path]:
    """Every directory with an ``__init__.py`` under a mapped directory, by its package name."""
    found: dict[str, Path] = {}
    for package, directory in SETUPTOOLS["package-dir"].items():
        base = ROOT / directory
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base)
            name = ".".join([package, *relative.parts])
            # A mapped child directory is reached through its own mapping.
            if name in SETUPTOOLS["package-dir"] and name != package:
                continue
            found.setdefault(name, init.parent)
    return found


def test_packages_list_names_every_package_directory() -> None:
    assert sorted(SETUPTOOLS["packages"]) == sorted(_package_dirs())


def test_every_mapped_directory_exists_and_is_a_package() -> None:
    for package, directory in SETUPTOOLS["package-dir"].items():
        assert (ROOT / directory / "__init__.py").is_file(), f"{package} → {directory}/ has no __init__.py"


def test_the_tree_holds_no_symbolic_links() -> None:
    listing = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    links = [line.split("\t", 1)[1] for line in listing.splitlines() if line.startswith("120000")]
    assert links == []


def test_modules_import_from_their_real_paths() -> None:
    import powerplane.controller.policy
    import powerplane.exporters.rapl

    assert Path(powerplane.exporters.rapl.__file__) == ROOT / "exporters" / "rapl" / "__init__.py"
    assert Path(powerplane.controller.policy.__file__) == ROOT / "controller" / "policy.py"
