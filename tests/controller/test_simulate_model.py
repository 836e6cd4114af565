"""The performance-power model of ``powerplane simulate``: curves, shipped defaults, model.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from powerplane.cli import main
from powerplane.controller.perfmodel import DEFAULT_CURVES, KIND, Curve, Model, make_curve
from powerplane.exporters.runtime import ConfigError


def test_curve_interpolates_and_is_proportional_below_its_lowest_point() -> None:
    curve = make_curve([[0.5, 0.8], [0.75, 0.95]])
    assert curve(1.0) == 1.0 and curve(1.7) == 1.0
    assert curve(0.5) == pytest.approx(0.8)
    assert curve(0.625) == pytest.approx(0.875)
    assert curve(0.875) == pytest.approx(0.975)
    assert curve(0.25) == pytest.approx(0.4)  # the line to the origin: 0.8 * 0.25 / 0.5
    assert curve(0.0) == 0.0 and curve(-1.0) == 0.0
    assert list(curve(np.array([0.25, 0.5, 2.0]))) == pytest.approx([0.4, 0.8, 1.0])


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_shipped_curves_are_concave_and_memory_bound_work_keeps_more(kind: str) -> None:
    xs = np.linspace(0.4, 1.0, 61)
    for work in ("compute", "memory"):
        ys = make_curve(DEFAULT_CURVES[kind][work])(xs)
        assert (np.diff(ys) >= -1e-12).all()  # never less throughput for more power
        slopes = np.diff(ys) / np.diff(xs)
        assert (np.diff(slopes) <= 1e-9).all(), work  # concave: the slope never rises
        assert (ys >= xs - 1e-12).all()  # a cap never costs more throughput than it saves power
    compute = make_curve(DEFAULT_CURVES[kind]["compute"])(xs)
    memory = make_curve(DEFAULT_CURVES[kind]["memory"])(xs)
    assert (memory >= compute).all()


def test_the_mix_averages_the_curves() -> None:
    model = Model()
    cpu = model.classes["cpu"]
    both = model.throughput(cpu, {"compute": 1, "memory": 1}, 0.6)
    assert both == pytest.approx((0.79 + 0.94) / 2)
    assert model.throughput(cpu, {"compute": 3, "memory": 1}, 0.6) == pytest.approx(0.79 * 0.75 + 0.94 * 0.25)
    assert model.throughput(cpu, {"unknown-kind": 1}, 0.6) == pytest.approx(0.79)  # falls back to compute


MODEL = """
classes:
  h100:
    kind: gpu
    min_watts: 200
    max_watts: 700
    idle_watts: 90
    weight: 4
    curves:
      compute: [[0.5, 0.74], [0.7, 0.9], [0.85, 0.97]]
  zen4: {kind: cpu, max_watts: 360}
nodes:
  - {match: "gpu-[0-9]+", gpu: h100, cpu: zen4, mix: {compute: 0.8, memory: 0.2}}
default: {cpu: zen4}
"""


def test_a_site_model_names_classes_and_nodes(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(MODEL)
    model = KIND.load(path)
    h100 = model.device_class("gpu-12", "gpu")
    assert (h100.min_watts, h100.max_watts, h100.idle_watts, h100.weight) == (200, 700, 90, 4)
    assert h100.curves["compute"](0.7) == pytest.approx(0.9)
    assert "memory" not in h100.curves  # the shipped memory-bound GPU curve is used for it
    assert model.throughput(h100, {"memory": 1}, 0.5) == pytest.approx(0.85)
    assert model.device_class("login-1", "cpu").max_watts == 360
    assert model.device_class("login-1", "gpu") is model.classes["gpu"]
    assert model.for_node("gpu-12x") is model.default  # a full match, not a prefix


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "classes: {x: {kind: gpu, curves: {compute: [[0.5, 0.9], [0.4, 0.95]]}}}",
            "compute[1]: power ratios must increase",
        ),
        (
            "classes: {x: {kind: gpu, curves: {compute: [[0.5, 0.9], [0.6, 0.8]]}}}",
            "throughput must not fall",
        ),
        ("classes: {x: {kind: gpu, curves: {compute: [[0.5, 0.0]]}}}", "throughput ratio 0 must be within"),
        ("classes: {x: {kind: gpu, curves: {compute: [[1.5, 0.9]]}}}", "greater than the maximum of 1"),
        ("classes: {x: {kind: tpu}}", "kind"),
        ("classes: {x: {kind: gpu, min_watts: 500, max_watts: 100}}", "min_watts is above max_watts"),
        ("classes: {x: {kind: gpu, colour: red}}", "colour"),
        ("nodes: [{match: '(', gpu: gpu}]", "nodes[0].match: not a regular expression"),
        ("nodes: [{gpu: nope}]", "nodes[0].gpu: unknown device class 'nope'"),
        ("nodes: [{cpu: gpu}]", "nodes[0].cpu: class 'gpu' is a gpu class"),
        ("default: {mix: {compute: 0, memory: 0}}", "default.mix: the shares must not all be 0"),
        ("classes: {x: {kind: gpu, curves: {compute: [[0.5, .nan]]}}}", "compute"),
    ],
)
def test_a_bad_model_names_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        KIND.load_text(text, "model.yaml")
    assert message in str(caught.value)


def test_every_error_at_once() -> None:
    text = (
        "classes: {x: {kind: gpu, curves: {compute: [[0.5, 0.9], [0.4, 0.95]]}}}\n"
        "nodes: [{gpu: nope}, {cpu: x}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        KIND.load_text(text, "model.yaml")
    assert len(caught.value.errors) == 3


def test_check_config_prints_a_valid_model(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(MODEL)
    result = CliRunner().invoke(main, ["check-config", "--kind", "capping-model", str(path)])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output.split("\n", 1)[1])
    assert shown["classes"]["h100"]["max_watts"] == 700
    assert shown["nodes"][0]["match"] == "gpu-[0-9]+"
    # Told from the file's keys without --kind.
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0 and "valid capping-model config" in result.output


@given(points=st.lists(st.tuples(st.floats(0.01, 0.99), st.floats(0.01, 1.0)), max_size=8))
def test_any_valid_curve_stays_within_0_and_1(points: list[tuple[float, float]]) -> None:
    pts = sorted(set(points))
    ys = [y for _, y in pts]
    xs = [x for x, _ in pts]
    if len(set(xs)) != len(xs) or ys != sorted(ys):
        return
    curve = Curve((*pts, (1.0, 1.0)))
    values = curve(np.linspace(-1, 2, 50))
    assert ((values >= 0) & (values <= 1)).all()


def test_the_docs_model_example_is_valid() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "capping-economics.md"
    blocks = [b.split("```")[0] for b in docs.read_text().split("```yaml")[1:]]
    models = [b for b in blocks if b.lstrip().startswith("classes:")]
    assert models
    for text in models:
        model = KIND.load_text(text, "capping-economics.md")
        assert model.device_class("gpu-7", "gpu").weight == 4
