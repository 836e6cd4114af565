"""The performance-power model of ``powerplane simulate``: what a cap costs in throughput.

A device class (a CPU package, a GPU model) has one throughput curve per kind of work: the
throughput kept, as a share of the uncapped throughput, when the device is held at a share of
the power it would draw uncapped.  A curve is a list of points ``[power_ratio,
throughput_ratio]``; ``(1, 1)`` is implied, values between points are interpolated linearly, and
below the lowest point throughput is taken as proportional to power (pessimistic: nothing
below the lowest measurement is assumed to be free).  The shipped curves are concave
(throughput falls more slowly than power: a cap lowers clocks and voltage together) and
memory-bound work keeps more throughput than compute-bound work (its speed is set by the
memory system, which a package or board power cap slows little).

For a device drawing ``P`` watts uncapped in a period and capped at ``C``:

- ``C >= P``: nothing changes (power ``P``, throughput 1);
- ``C < P``: it draws ``C`` and keeps ``curve(C / P)`` of its throughput, the curve being the
  node's mix of kinds of work (``mix: {compute: 0.6, memory: 0.4}`` averages the two curves);
- at or below the class's ``idle_watts`` the device is idle: it does no work and loses none.

Work is counted in busy device-hours times the class's ``weight`` (so that a GPU-hour can count
for more than a CPU-package-hour): the work lost is throughput-weighted, a period at 80 % of
its throughput loses a fifth of that period's work.

A site's own curves (``powerplane measure`` at several caps gives them) go in a ``model.yaml``:

    classes:
      h100:
        kind: gpu
        min_watts: 200
        max_watts: 700
        idle_watts: 90
        curves:
          compute: [[0.5, 0.74], [0.7, 0.9], [0.85, 0.97]]
    nodes:
      - {match: "gpu-.*", gpu: h100, mix: {compute: 0.8, memory: 0.2}}
    default: {cpu: cpu, gpu: gpu}

Classes given there replace the shipped classes of the same name; ``powerplane check-config
--kind capping-model model.yaml`` checks a file.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from powerplane.exporters.runtime.config import (
    ConfigError,
    ConfigKind,
    from_document,
    setting,
    settings_schema,
    strict_object,
)

Point = tuple[float, float]

#: The shipped throughput curves (power ratio → throughput ratio), coarse shapes after the
#: published measurements cited in docs/capping-economics.md ("The default curves"); a site
#: should measure its own.
DEFAULT_CURVES: dict[str, dict[str, tuple[Point, ...]]] = {
    "cpu": {
        # Compute-bound (DGEMM/HPL-like): clock ~ (dynamic power)^(1/3) above static power.
        "compute": ((0.4, 0.6), (0.5, 0.7), (0.6, 0.79), (0.7, 0.87), (0.8, 0.93), (0.9, 0.97)),
        # Memory-bound (STREAM-like): bandwidth holds until the cap starves the uncore.
        "memory": ((0.4, 0.78), (0.5, 0.88), (0.6, 0.94), (0.7, 0.98), (0.8, 1.0)),
    },
    "gpu": {
        # Dense training/inference kernels: the SM clock falls with the board power limit.
        "compute": ((0.4, 0.62), (0.5, 0.72), (0.6, 0.82), (0.7, 0.9), (0.8, 0.96), (0.9, 0.99)),
        # Bandwidth-bound kernels: the memory clock is not lowered by the board limit.
        "memory": ((0.4, 0.75), (0.5, 0.85), (0.6, 0.92), (0.7, 0.97), (0.8, 0.99)),
    },
}
#: A workload name: a key of a class's ``curves`` (``compute``, ``memory`` or a site's own).
_NAME = "^[a-z][a-z0-9_-]{0,62}$"
_POINTS_SCHEMA = {
    "type": "array",
    "maxItems": 64,
    "items": {
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "items": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
_MIX_SCHEMA = {
    "type": "object",
    "maxProperties": 16,
    "propertyNames": {"pattern": _NAME},
    "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1000},
}


@dataclass(frozen=True)
class Curve:
    """Throughput ratio as a function of the power ratio (``points`` sorted, ``(1, 1)`` implied)."""

    points: tuple[Point, ...]

    def __call__(self, ratio: Any) -> Any:
        """The throughput ratio at ``ratio`` (a number or an array): linear between the points,
        proportional to power below the lowest one (the line to the origin), 1 from ratio 1 on."""
        xs = np.array([0.0, *(p[0] for p in self.points)])
        ys = np.array([0.0, *(p[1] for p in self.points)])
        out = np.interp(np.clip(ratio, 0.0, 1.0), xs, ys)
        return float(out) if np.ndim(out) == 0 else out


def curve_errors(points: Sequence[Sequence[float]], where: str) -> list[str]:
    """What is wrong with a curve's points (empty: nothing); each error names the point."""
    errors = []
    for i, (x, y) in enumerate(points):
        if not 0 < x < 1:
            errors.append(f"{where}[{i}]: the power ratio {x:g} must be within 0..1 (exclusive)")
        if not 0 < y <= 1:
            errors.append(f"{where}[{i}]: the throughput ratio {y:g} must be within 0..1 (0 exclusive)")
        if i and x <= points[i - 1][0]:
            errors.append(f"{where}[{i}]: power ratios must increase")
        if i and y < points[i - 1][1]:
            errors.append(f"{where}[{i}]: throughput must not fall as power rises")
    return errors


def make_curve(points: Sequence[Sequence[float]]) -> Curve:
    clean = tuple((float(x), float(y)) for x, y in points if x < 1.0)
    return Curve((*clean, (1.0, 1.0)))


@dataclass(frozen=True)
class DeviceClass:
    """A kind of device: its range (when the data has none), idle power, work weight and curves."""

    kind: Literal["cpu", "gpu"] = setting(schema={"enum": ["cpu", "gpu"]}, doc="CPU package or GPU.")
    min_watts: float = setting(
        0.0, schema={"minimum": 0, "maximum": 100000}, doc="Hardware minimum cap (0: the data's)."
    )
    max_watts: float = setting(
        0.0,
        schema={"minimum": 0, "maximum": 100000},
        doc="Hardware maximum and original limit (0: the data's).",
    )
    idle_watts: float = setting(
        0.0, schema={"minimum": 0, "maximum": 100000}, doc="At or below this draw the device is idle."
    )
    weight: float = setting(1.0, schema={"minimum": 0, "maximum": 1000}, doc="Work units per busy hour.")
    curves: Mapping[str, Curve] = setting(
        {},
        schema={"type": "object", "maxProperties": 16, "additionalProperties": _POINTS_SCHEMA},
        doc="Throughput curves by kind of work: `[[power_ratio, throughput_ratio], ...]`.",
    )


@dataclass(frozen=True)
class NodeRule:
    """Which classes and mix of work a node has, by its name."""

    match: str = setting(
        ".*",
        schema={"minLength": 1, "maxLength": 512},
        doc="Regular expression on the node name (full match).",
    )
    cpu: str = setting("cpu", schema={"pattern": _NAME}, doc="Device class of its CPU packages.")
    gpu: str = setting("gpu", schema={"pattern": _NAME}, doc="Device class of its GPUs.")
    mix: Mapping[str, float] = setting(
        {"compute": 0.5, "memory": 0.5}, schema=_MIX_SCHEMA, doc="Share of each kind of work."
    )

    def matches(self, node: str) -> bool:
        return _compiled(self.match).fullmatch(node) is not None


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@functools.cache
def _shipped() -> dict[str, DeviceClass]:
    return _default_classes()


def _default_classes() -> dict[str, DeviceClass]:
    return {
        kind: DeviceClass(kind=kind, idle_watts=30.0 if kind == "cpu" else 60.0,  # type: ignore[arg-type]
                          curves={k: make_curve(v) for k, v in curves.items()})
        for kind, curves in DEFAULT_CURVES.items()
    }  # fmt: skip


@dataclass(frozen=True)
class Model:
    """Device classes and node rules; ``for_node`` says what applies to a node."""

    classes: Mapping[str, DeviceClass] = field(default_factory=_default_classes)
    nodes: tuple[NodeRule, ...] = ()
    default: NodeRule = field(default_factory=NodeRule)

    def for_node(self, node: str) -> NodeRule:
        for rule in self.nodes:
            if rule.matches(node):
                return rule
        return self.default

    def device_class(self, node: str, kind: str) -> DeviceClass:
        rule = self.for_node(node)
        return self.classes[rule.cpu if kind == "cpu" else rule.gpu]

    def throughput(self, cls: DeviceClass, mix: Mapping[str, float], ratio: Any) -> Any:
        """The mix's throughput ratio at ``ratio`` of the uncapped power (a number or an array);
        a kind of work the class has no curve for uses the shipped curve of that kind."""
        total = sum(mix.values())
        if total <= 0:
            return np.ones_like(ratio) if np.ndim(ratio) else 1.0
        shipped = _shipped()[cls.kind].curves
        kept: Any = 0.0
        for work, share in mix.items():
            curve = cls.curves.get(work) or shipped.get(work) or shipped["compute"]
            kept = kept + share * curve(ratio)
        return kept / total


def flat() -> Model:
    """A model in which a cap costs no throughput (tests: the saved cost is then plain arithmetic)."""
    one = Curve(((0.01, 1.0), (1.0, 1.0)))
    classes = {k: DeviceClass(kind=k, curves={"compute": one, "memory": one}) for k in ("cpu", "gpu")}
    return Model(classes=classes)


_CLASS_SCHEMA = settings_schema(DeviceClass)
_RULE_SCHEMA = settings_schema(NodeRule)
SCHEMA = strict_object(
    {
        "classes": {
            "type": "object",
            "maxProperties": 256,
            "propertyNames": {"pattern": _NAME},
            "additionalProperties": _CLASS_SCHEMA,
        },
        "nodes": {"type": "array", "maxItems": 1024, "items": _RULE_SCHEMA},
        "default": _RULE_SCHEMA,
    }
)


def _rule(
    doc: Mapping[str, Any], where: str, errors: list[str], classes: Mapping[str, DeviceClass]
) -> NodeRule:
    rule = from_document(NodeRule, doc)
    try:
        _compiled(rule.match)
    except re.error as exc:
        errors.append(f"{where}.match: not a regular expression: {exc}")
        rule = NodeRule("(?!)", rule.cpu, rule.gpu, rule.mix)
    for kind in ("cpu", "gpu"):
        name = getattr(rule, kind)
        if name not in classes:
            errors.append(f"{where}.{kind}: unknown device class {name!r}")
        elif classes[name].kind != kind:
            errors.append(f"{where}.{kind}: class {name!r} is a {classes[name].kind} class")
    if rule.mix and sum(rule.mix.values()) <= 0:
        errors.append(f"{where}.mix: the shares must not all be 0")
    return rule


def build(doc: Mapping[str, Any]) -> Model:
    errors: list[str] = []
    classes = dict(_default_classes())
    for name, body in (doc.get("classes") or {}).items():
        curves = {}
        for work, points in (body.get("curves") or {}).items():
            where = f"classes.{name}.curves.{work}"
            problems = curve_errors(points, where)
            errors += problems
            if not re.match(_NAME, work):
                errors.append(f"{where}: {work!r} is not a workload name ({_NAME})")
            if not problems:
                curves[work] = make_curve(points)
        cls = from_document(DeviceClass, body, curves=curves)
        if cls.max_watts and cls.min_watts > cls.max_watts:
            errors.append(f"classes.{name}: min_watts is above max_watts")
        classes[name] = cls
    nodes = tuple(_rule(r, f"nodes[{i}]", errors, classes) for i, r in enumerate(doc.get("nodes") or []))
    default = _rule(doc.get("default") or {}, "default", errors, classes)
    if errors:
        raise ConfigError(errors)
    return Model(classes, nodes, default)


KIND: ConfigKind[Model] = ConfigKind("capping-model", SCHEMA, build)
