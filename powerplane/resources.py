"""Where powerplane's files are: resources shipped inside the package, and the checkout if any.

Everything a command reads at run time (rule files, dashboards, the CRD, SNMP profiles, lab
recordings, the fake NVML's C source, templates) is package data, found through
``importlib.resources`` whether powerplane runs from a wheel or from a checkout.  Generators
that write into the tree (``rules build``, ``dashboards build``, ``chart sync``) default to the
checkout they run from and refuse, without ``--out``, to write into an installed package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import click

import powerplane

#: The package of the generated rule files (the top-level rules/ directory).
RULES_PACKAGE = "powerplane.rules"


def resource(package: str, *parts: str) -> Traversable:
    """A file or directory shipped in ``package``."""
    node = resources.files(package)
    for part in parts:
        node = node.joinpath(part)
    return node


def rule_files() -> list[Traversable]:
    """The shipped Prometheus rule files (powerplane-*.yaml)."""
    folder = resource(RULES_PACKAGE)
    return sorted(
        (f for f in folder.iterdir() if f.name.startswith("powerplane-") and f.name.endswith(".yaml")),
        key=lambda f: f.name,
    )


def copy_tree(source: Traversable, target: Path) -> Path:
    """Copy a shipped directory to ``target`` on disk (for programs that need real paths)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.is_dir():
            copy_tree(entry, target / entry.name)
        elif entry.is_file():
            (target / entry.name).write_bytes(entry.read_bytes())
    return target


@contextlib.contextmanager
def on_disk(node: Traversable) -> Iterator[Path]:
    """A real path for a shipped file or directory for as long as the block runs."""
    with resources.as_file(node) as path:
        yield Path(path)


def checkout() -> Path | None:
    """The source checkout powerplane runs from, or None for an installed package."""
    root = Path(powerplane.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return root if 'name = "powerplane"' in text and (root / "rules").is_dir() else None


def output_dir(out: Path | None, relative: str, what: str) -> Path:
    """Where a generator writes: ``out``, else ``relative`` in the checkout; never the package."""
    if out is not None:
        return out
    root = checkout()
    if root is None:
        raise click.UsageError(
            f"{what}: powerplane is installed as a package, not run from a checkout; "
            "give --out DIR (it will not write into the installed package)"
        )
    return root / relative


def require_checkout(what: str) -> Path:
    """The checkout, for commands that only make sense in one (keeping the chart in step)."""
    root = checkout()
    if root is None:
        raise click.UsageError(f"{what} works on a powerplane checkout; give --root DIR")
    return root


__all__ = [
    "RULES_PACKAGE",
    "checkout",
    "copy_tree",
    "on_disk",
    "output_dir",
    "require_checkout",
    "resource",
    "rule_files",
]
