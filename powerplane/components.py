"""The component registry: every part of powerplane declares itself once, here is where they meet.

A component is a package whose ``__init__.py`` holds one ``COMPONENT = Component(...)``: its
name, the commands it adds, its config kinds, its metric declarations and its part of the demo.
The CLI (``powerplane exporter …``, top-level commands, ``check-config``), the METRICS.md
generator and the demo read this registry and nothing else.  References are ``"module:attr"``
strings resolved on use, so ``powerplane --help`` imports no exporter code and a broken optional
dependency breaks only its own command.

Exporters are found by listing the packages of ``powerplane.exporters`` (adding one is a package
and its declaration); the other components are the top-level packages named in ``TOP_LEVEL``
(each also needs its ``package-dir`` line in pyproject.toml).  The exporter runtime imports
none of them.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from powerplane.exporters.runtime.metrics import MetricSpec

#: Components outside ``powerplane.exporters``.
TOP_LEVEL: tuple[str, ...] = (
    "powerplane.controller",
    "powerplane.accounting",
    "powerplane.rulegen",
    "powerplane.dashboards",
    "powerplane.chart",
    "powerplane.lab",
    "powerplane.statuspage",
    "powerplane.doctor",
)


@dataclass(frozen=True)
class Component:
    """One part of powerplane as the CLI, the docs and the demo see it."""

    #: Short name: the section of docs/METRICS.md and, for exporters, ``powerplane exporter NAME``.
    name: str
    #: Where the component sits in docs/METRICS.md and in the demo's start order (low first).
    order: int
    #: ``module:attr`` of the click command run as ``powerplane exporter NAME``.
    exporter: str | None = None
    #: Top-level commands: (command name, ``module:attr`` of a click command or group).
    commands: tuple[tuple[str, str], ...] = ()
    #: Config kinds for ``check-config``: (kind name, ``module:attr`` of a ``ConfigKind``).
    config_kinds: tuple[tuple[str, str], ...] = ()
    #: ``module:attr`` of tuples of ``MetricSpec`` this component emits (docs/METRICS.md).
    metrics: tuple[str, ...] = ()
    #: ``module:attr`` of the demo part: ``async def part(ctx: DemoContext) -> None``.
    demo: str | None = None


def resolve(ref: str) -> Any:
    """The object a ``module:attr`` reference names."""
    module, _, attr = ref.partition(":")
    if not attr:
        raise ValueError(f"reference {ref!r} names no attribute (module:attr)")
    return getattr(importlib.import_module(module), attr)


def _packages() -> Iterator[str]:
    exporters = importlib.import_module("powerplane.exporters")
    for info in pkgutil.iter_modules(exporters.__path__, "powerplane.exporters."):
        yield info.name
    yield from TOP_LEVEL


@functools.cache
def components() -> tuple[Component, ...]:
    """Every declared component, in ``order``."""
    found: list[Component] = []
    for name in _packages():
        component = getattr(importlib.import_module(name), "COMPONENT", None)
        if isinstance(component, Component):
            found.append(component)
    names = [c.name for c in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"components declared twice: {', '.join(duplicates)}")
    return tuple(sorted(found, key=lambda c: (c.order, c.name)))


def exporters() -> dict[str, str]:
    """``powerplane exporter`` subcommands: name → reference."""
    return {c.name: c.exporter for c in components() if c.exporter}


def commands() -> dict[str, str]:
    """Top-level subcommands: name → reference."""
    return _unique("command", ((name, ref) for c in components() for name, ref in c.commands))


def config_kinds() -> dict[str, str]:
    """Config kinds: name → reference to the ``ConfigKind``."""
    return _unique("config kind", ((name, ref) for c in components() for name, ref in c.config_kinds))


def demo_parts() -> list[str]:
    """The demo's parts in start order."""
    return [c.demo for c in components() if c.demo]


def metric_sections() -> list[tuple[str, tuple[MetricSpec, ...]]]:
    """(component name, its metric specs) in docs/METRICS.md's order."""
    return [
        (c.name, tuple(spec for ref in c.metrics for spec in resolve(ref))) for c in components() if c.metrics
    ]


def all_specs() -> dict[str, MetricSpec]:
    """Every declared metric by its exposed name."""
    return {spec.name: spec for _name, specs in metric_sections() for spec in specs}


def _unique(what: str, pairs: Iterator[tuple[str, str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, ref in pairs:
        if name in result:
            raise RuntimeError(f"{what} {name!r} is declared by two components")
        result[name] = ref
    return result
