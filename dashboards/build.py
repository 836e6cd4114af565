"""Render the dashboards to Grafana JSON, and the one place that fixes grafanalib's output up.

grafanalib 0.7 (its last release, January 2024) writes ``schemaVersion: 12`` and keys from
Grafana 4-7 (``rows``, ``style``, ``span``, per-target ``query``/``step``, bar gauges'
``options.fieldOptions``, threshold steps whose base value is the *string* ``"null"``).  Grafana
11/12 would push such a document through every migration from version 12 on, and the bar gauges
would lose their unit and thresholds on the way.  ``grafana11()`` turns the output into the
current dashboard model (``SCHEMA_VERSION``), so Grafana loads it as it is; the test suite
validates the result against a JSON Schema of that model (``schema.json``).

    powerplane dashboards build [--out DIR] [--rules-config site-rules.yaml]
                                               # writes DIR/<uid>.json (default: dashboards/json)
    powerplane dashboards check                # exits 1 when the committed JSON is stale
    powerplane dashboards preview --out DIR    # PNG previews from the lab (see preview.py)
"""

from __future__ import annotations

import importlib
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import click
import grafanalib.core as g
from grafanalib._gen import DashboardEncoder

from powerplane.rulegen.config import KIND as RULES_KIND
from powerplane.rulegen.config import RulesConfig
from powerplane.rulegen.model import scoped

from .common import for_rules

#: The dashboard modules; each has ``UID`` and ``build() -> grafanalib.core.Dashboard``.
MODULES = ("fleet", "gpu", "node", "rack", "market", "jobs", "status")
#: Grafana 11.0's dashboard schema version; Grafana 11.x and 12 load it without migrating panels.
SCHEMA_VERSION = 39
#: The shipped JSON (package data): what `check` compares and the chart copies.
JSON_DIR = Path(str(resources.files("powerplane.dashboards").joinpath("json")))
SCHEMA_PATH = Path(str(resources.files("powerplane.dashboards").joinpath("schema.json")))

_LEGACY_DASHBOARD_KEYS = ("rows", "style", "hideControls", "sharedCrosshair", "gnetId", "__inputs", "id")
_LEGACY_PANEL_KEYS = (
    "span", "height", "minSpan", "error", "editable", "cacheTimeout", "hideTimeOverride",
    "columns", "fontSize", "color", "styles", "repeatDirection", "maxPerRow",
)  # fmt: skip
_LEGACY_TARGET_KEYS = ("query", "target", "metric", "step", "intervalFactor")
_LEGACY_VARIABLE_KEYS = ("useTags", "tagsQuery", "tagValuesQuery", "auto", "auto_min", "auto_count")


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # grafanalib writes the base step's value as the string "null" and adds Graph-panel keys.
    return [
        {"color": s["color"], "value": None if i == 0 else float(s["value"])} for i, s in enumerate(steps)
    ]


def _panel(panel: dict[str, Any]) -> dict[str, Any]:
    options = panel.setdefault("options", {})
    defaults = panel.setdefault("fieldConfig", {}).setdefault("defaults", {})
    panel["fieldConfig"].setdefault("overrides", [])
    legacy = options.pop("fieldOptions", None)
    if legacy is not None:  # bar gauge: Grafana 6 layout → field config and reduce options
        for key in ("unit", "min", "max", "decimals", "links"):
            defaults[key] = legacy["defaults"].get(key)
        defaults["mappings"] = legacy.get("mappings") or []
        defaults["thresholds"] = {"mode": "absolute", "steps": legacy["thresholds"]}
        options["reduceOptions"] = {"calcs": legacy["calcs"], "fields": "", "values": legacy["values"]}
    if "mappings" in panel:  # table: top-level mappings moved into the field config in Grafana 8
        defaults["mappings"] = panel.pop("mappings") or defaults.get("mappings", [])
    if "thresholds" in defaults:
        defaults["thresholds"]["steps"] = _steps(defaults["thresholds"]["steps"])
    for key in _LEGACY_PANEL_KEYS:
        panel.pop(key, None)
    if not panel.get("repeat"):
        panel.pop("repeat", None)
    panel["targets"] = [
        {
            **{k: v for k, v in t.items() if k not in _LEGACY_TARGET_KEYS and v not in ("", None)},
            "range": not t["instant"],
            "editorMode": "code",
        }
        for t in panel.get("targets", [])
    ]
    if panel["type"] == "row":
        for key in (
            "targets",
            "fieldConfig",
            "options",
            "datasource",
            "transformations",
            "links",
            "maxDataPoints",
            "transparent",
            "description",
        ):
            panel.pop(key, None)
        panel["panels"] = [_panel(p) for p in panel.get("panels", [])]
    return panel


def _variable(var: dict[str, Any]) -> dict[str, Any]:
    for key in _LEGACY_VARIABLE_KEYS:
        var.pop(key, None)
    current = var.get("current") or {}
    if var["type"] == "query":
        var["definition"] = var["query"]
        if current.get("value") == "$__all":
            all_ = ["$__all"] if var["multi"] else "$__all"
            var["current"] = {"text": ["All"] if var["multi"] else "All", "value": all_}
    else:
        var["current"] = {}
    return var


def grafana11(doc: dict[str, Any]) -> dict[str, Any]:
    """grafanalib's dashboard JSON → the Grafana 11 dashboard model (schema ``SCHEMA_VERSION``).

    Drops the keys Grafana removed (dashboard ``rows``/``style``/..., panel ``span``/...,
    target ``query``/``step``/...), moves bar-gauge and table settings where Grafana 8+ reads
    them, writes threshold base steps as JSON null, marks each target as range or instant
    query, and gives query variables their ``definition``.  Pure; returns a new document.
    """
    doc = json.loads(json.dumps(doc))
    for key in _LEGACY_DASHBOARD_KEYS:
        doc.pop(key, None)
    doc["schemaVersion"] = SCHEMA_VERSION
    doc["timepicker"] = {"refresh_intervals": doc["timepicker"]["refresh_intervals"]}
    doc["panels"] = [_panel(p) for p in doc["panels"]]
    doc["templating"]["list"] = [_variable(v) for v in doc["templating"]["list"]]
    doc["fiscalYearStartMonth"] = 0
    doc["liveNow"] = False
    doc["weekStart"] = ""
    steps_null = _drop_none(doc)
    # _drop_none removed the base steps' null values: put them back (Grafana requires the key).
    for panel in _walk(steps_null["panels"]):
        thresholds = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds")
        if thresholds:
            thresholds["steps"][0]["value"] = None
    return steps_null  # type: ignore[no-any-return]


def _walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_walk(panel.get("panels", [])))
    return out


def dashboards() -> dict[str, g.Dashboard]:
    """uid → grafanalib dashboard, for every powerplane dashboard."""
    out: dict[str, g.Dashboard] = {}
    for name in MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        out[module.UID] = module.build()
    return out


def render(rules: RulesConfig | None = None) -> dict[str, str]:
    """File name → the JSON text Grafana loads; thresholds from ``rules`` (default: the shipped rules)."""
    files = {}
    rules = rules or RulesConfig()
    with for_rules(rules):
        built = dashboards()
    for uid, dash in built.items():
        raw = grafana11(json.loads(json.dumps(dash.to_json_data(), cls=DashboardEncoder)))
        # The rules' scope labels (`cluster` for a global view) scope the panels' joins alike.
        for panel in _walk(raw.get("panels", [])) if rules.scope_labels else ():
            for target in panel.get("targets", []):
                target["expr"] = scoped(target["expr"], rules.scope_labels)
        text = json.dumps(raw, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        files[f"{uid}.json"] = text
    return files


def stale(directory: Path = JSON_DIR) -> list[str]:
    """Files under ``directory`` that differ from a fresh build (missing, changed or extra)."""
    fresh = render()
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    changed = [n for n, text in fresh.items() if n not in present or (directory / n).read_text() != text]
    return sorted(changed + sorted(present - set(fresh)))


@click.group("dashboards")
def command() -> None:
    """Grafana dashboards generated with grafanalib."""


@command.command("build")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to write <uid>.json into (default: dashboards/json of the checkout; required for "
    "an installed package).",
)
@click.option(
    "--rules-config",
    "rules_config",
    type=click.Path(exists=True, dir_okay=False),
    help="The site's rules overrides (as for `powerplane rules build`): the panels' thresholds.",
)
def build_command(out: Path | None, rules_config: str | None) -> None:
    """Write every dashboard's JSON (the files Grafana imports or provisions)."""
    from powerplane.exporters.runtime.cli import load_or_exit
    from powerplane.resources import output_dir

    out = output_dir(out, "dashboards/json", "dashboards build")
    rules = load_or_exit(RULES_KIND, rules_config) if rules_config else None
    out.mkdir(parents=True, exist_ok=True)
    files = render(rules)
    for stale_file in set(p.name for p in out.glob("powerplane-*.json")) - set(files):
        (out / stale_file).unlink()
    for name, text in files.items():
        (out / name).write_text(text)
    click.echo(f"wrote {len(files)} dashboards to {out}")


@command.command("check")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=JSON_DIR)
def check_command(directory: Path) -> None:
    """Exit 1 when the committed JSON differs from a fresh build."""
    changed = stale(directory)
    if changed:
        click.echo(f"stale dashboards (run `powerplane dashboards build`): {', '.join(changed)}", err=True)
        sys.exit(1)
    click.echo("dashboards up to date")


@command.command("preview")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/img"), show_default=True
)
@click.option(
    "--seconds", type=click.FloatRange(10, 3600), default=900.0, show_default=True, help="The window drawn."
)
@click.option(
    "--spike/--no-spike", default=True, show_default=True, help="Center it on the demo's price spike."
)
def preview_command(out: Path, seconds: float, spike: bool) -> None:
    """Render PNG previews from a real Prometheus scraping the lab (needs the docs extra)."""
    from .preview import write_previews

    for path in write_previews(out, seconds, around_spike=spike):
        click.echo(f"wrote {path}")
