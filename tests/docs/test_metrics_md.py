"""Generated documentation stays in step with the code."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from powerplane.cli import main
from powerplane.components import all_specs, metric_sections
from powerplane.exporters.runtime.metrics import render_markdown

ROOT = Path(__file__).resolve().parent.parent.parent


def test_metrics_md_is_current() -> None:
    committed = (ROOT / "docs" / "METRICS.md").read_text()
    assert committed == render_markdown(metric_sections()), (
        "docs/METRICS.md is stale: run `powerplane docs metrics > docs/METRICS.md`"
    )


def test_docs_metrics_command_prints_the_catalog() -> None:
    result = CliRunner().invoke(main, ["docs", "metrics"])
    assert result.exit_code == 0
    assert result.output == render_markdown(metric_sections())


def test_metric_names_follow_the_conventions() -> None:
    units = (
        "_watts",
        "_joules_total",
        "_celsius",
        "_volts",
        "_amperes",
        "_ratio",
        "_hertz",
        "_bytes",
        "_seconds",
        "_info",
        "_total",
        "_rpm",
        "_eur_per_mwh",
        "_cubic_meters_per_second",
    )
    from powerplane.accounting.metrics import INPUTS
    from powerplane.exporters.gpu import dcgm

    # The GPU exporter's dcgm naming profile reproduces dcgm-exporter's names and units verbatim;
    # the accounting rules read Kubernetes' own series (cAdvisor, kube-state-metrics) by their names.
    compat = {spec.name for spec in dcgm.METRICS} | {spec.name for spec in INPUTS}
    for name, spec in all_specs().items():
        # Recorded series are named level:metric:operation (tests/rules/test_generator.py checks them).
        if name in compat or spec.source == "recording rule":
            continue
        assert name.startswith("powerplane_"), name
        assert name == name.lower() and "__" not in name, name
        if spec.kind == "counter":
            assert name.endswith("_total"), name
        # no vendor or prefixed units: base units only
        # The brief names grid carbon intensity in the unit it is always given in (gCO2eq/kWh).
        stem = name.removesuffix("_grams_per_kwh")
        for bad in ("_kw", "_kwh", "_mw_", "_milli", "_mib", "_mhz", "_percent", "_fahrenheit"):
            assert bad not in stem, name
        assert spec.help.strip() and spec.help[0].isupper(), name
        assert any(name.endswith(u) for u in units) or spec.kind == "gauge", name
