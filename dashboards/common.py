"""Building blocks every powerplane dashboard shares: variables, links, panels, thresholds, layout.

Every panel reads from the ``$datasource`` variable, carries a unit, names its series in the
legend, and uses ``$__rate_interval`` in rate()/increase() so that it follows the scrape interval.
Thresholds are the alert rules' thresholds (``THRESHOLDS``, read from the rules' ``RulesConfig``
with a site's overrides when there are any), so a panel turns red exactly when the matching alert
would fire.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grafanalib.core as g

from powerplane.rulegen.config import RulesConfig

#: Every query is sent to the data source the ``datasource`` variable names.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAG = "powerplane"


def thresholds(c: RulesConfig) -> dict[str, tuple[float, ...]]:
    """Panel thresholds from the rules' settings, so a panel turns orange or red where an alert fires."""
    return {
        "gpu_temperature_celsius": (c.gpu_temperature_warning_celsius, c.gpu_temperature_critical_celsius),
        "gpu_memory_ratio": (c.gpu_memory_ratio,),
        "gpu_power_over_limit_ratio": (c.gpu_power_limit_ratio,),
        "inlet_temperature_celsius": (c.inlet_min_celsius, c.inlet_max_celsius),
        # PowerplaneRackOverPowerBudget fires over the whole budget.
        "rack_budget_ratio": (c.rack_budget_warning_ratio, 1.0),
        "pdu_load_ratio": (c.pdu_load_ratio,),
        "cooler_supply_celsius": (c.cooler_supply_max_celsius,),
        "cooler_return_celsius": (c.cooler_return_max_celsius,),
        "cooler_humidity_ratio": (c.humidity_min_ratio, c.humidity_max_ratio),
        "market_data_age_seconds": (c.market_data_max_age_seconds,),
        "controller_reconcile_age_seconds": (c.controller_max_silence_seconds,),
        # The original status board flagged data older than 10 minutes (no alert: a display rule).
        "data_age_seconds": (600.0,),
    }


_RULES: ContextVar[RulesConfig | None] = ContextVar("powerplane_dashboards_rules", default=None)


def _current() -> dict[str, tuple[float, ...]]:
    return thresholds(_RULES.get() or RulesConfig())


class _Thresholds(Mapping[str, tuple[float, ...]]):
    """``thresholds()`` of the rules config the dashboards are being built for (``for_rules``)."""

    def __getitem__(self, key: str) -> tuple[float, ...]:
        return _current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_current())

    def __len__(self) -> int:
        return len(_current())


#: The panels' thresholds: the shipped rules' defaults, or a site's overrides inside ``for_rules``.
THRESHOLDS: Mapping[str, tuple[float, ...]] = _Thresholds()


@contextmanager
def for_rules(c: RulesConfig) -> Iterator[None]:
    """Build dashboards whose thresholds are those of the rules rendered from ``c``."""
    token = _RULES.set(c)
    try:
        yield
    finally:
        _RULES.reset(token)


#: Dashboard uid → title; uids are stable (links and bookmarks use them), files are named by uid.
DASHBOARDS: dict[str, str] = {
    "powerplane-fleet": "Fleet overview",
    "powerplane-gpu": "GPU",
    "powerplane-node": "Node",
    "powerplane-rack": "Rack and cooling",
    "powerplane-market": "Energy market and power caps",
    "powerplane-jobs": "Jobs and pods",
    "powerplane-status": "System status",
}


# --- variables -----------------------------------------------------------------------------------


def _query_var(name: str, label: str, query: str, *, multi: bool = True) -> g.Template:
    return g.Template(
        name=name,
        label=label,
        query=query,
        dataSource=DATASOURCE,
        includeAll=multi,
        multi=multi,
        default="$__all" if multi else None,
        refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
        sort=g.SORT_ALPHA_ASC,
    )


def datasource_var() -> g.Template:
    return g.Template(name="datasource", label="Data source", query="prometheus", type="datasource")


#: The shared variables; each narrows the next, so picking a rack lists only its nodes.
VARIABLES: dict[str, tuple[str, str]] = {
    "cluster": ("Cluster", "label_values(powerplane_node_info, cluster)"),
    "row": ("Row", 'label_values(powerplane_node_info{cluster=~"$cluster"}, row)'),
    "rack": ("Rack", 'label_values(powerplane_node_info{cluster=~"$cluster", row=~"$row"}, rack)'),
    "node": (
        "Node",
        'label_values(powerplane_node_info{cluster=~"$cluster", row=~"$row", rack=~"$rack"}, node)',
    ),
    "gpu": ("GPU", 'label_values(powerplane_gpu_info{node=~"$node"}, gpu)'),
    "area": ("Market area", "label_values(powerplane_market_price_eur_per_mwh, area)"),
    "namespace": ("Namespace", "label_values(pod:powerplane_power_watts:attributed, namespace)"),
    "hpc_job": ("HPC job", "label_values(hpc_job:powerplane_power_watts:attributed, hpc_job)"),
}


def templating(*names: str) -> g.Templating:
    """The datasource variable followed by the named shared variables, in dependency order."""
    return g.Templating(
        list=[datasource_var()] + [_query_var(n, *VARIABLES[n]) for n in VARIABLES if n in names]
    )


# --- links ---------------------------------------------------------------------------------------


def dashboard_links(current: str) -> list[g.DashboardLink]:
    """A link to every other powerplane dashboard, carrying the time range and the variables."""
    return [
        g.DashboardLink(
            title=title,
            type="link",
            uri=f"/d/{uid}",
            includeVars=True,
            keepTime=True,
            icon="dashboard",
            tooltip=f"powerplane: {title}",
        )
        for uid, title in DASHBOARDS.items()
        if uid != current
    ]


def drilldown(uid: str, title: str, **vars: str) -> dict[str, Any]:
    """A data link from a series to another dashboard, with variables taken from the series."""
    query = "&".join(f"var-{k}={v}" for k, v in vars.items())
    return {"title": title, "url": f"/d/{uid}?{query}&${{__url_time_range}}"}


def _data_links(links: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    # Data links (with ${__field.labels.*}) belong to the field config, not the panel header.
    return {"fieldConfig": {"defaults": {"links": links}}} if links else None


# --- queries and panels --------------------------------------------------------------------------


def target(expr: str, legend: str, ref: str = "A", *, instant: bool = False, table: bool = False) -> g.Target:
    return g.Target(
        expr=expr,
        legendFormat=legend,
        refId=ref,
        instant=instant,
        format="table" if table else "time_series",
        datasource=DATASOURCE,
    )


def targets(*queries: tuple[str, str], instant: bool = False, table: bool = False) -> list[g.Target]:
    """``(expr, legend)`` pairs as targets A, B, C, ..."""
    return [
        target(expr, legend, chr(ord("A") + i), instant=instant, table=table)
        for i, (expr, legend) in enumerate(queries)
    ]


def steps(
    *levels: float, base: str = "green", colors: Sequence[str] = ("orange", "red")
) -> list[g.Threshold]:
    """Threshold steps: ``base`` below the first level, then orange, red, ..."""
    out = [g.Threshold(base, 0, 0.0)]
    for i, level in enumerate(levels):
        out.append(g.Threshold(colors[min(i, len(colors) - 1)], i + 1, float(level)))
    return out


def band(low: float, high: float) -> list[g.Threshold]:
    """Blue below ``low``, green inside, red above ``high`` (a recommended range)."""
    return [g.Threshold("blue", 0, 0.0), g.Threshold("green", 1, low), g.Threshold("red", 2, high)]


@dataclass
class Panel:
    """A panel and how wide and tall it is; ``Layout`` places it on the grid."""

    panel: Any
    w: int
    h: int


def timeseries(
    title: str,
    queries: Sequence[tuple[str, str]],
    unit: str,
    *,
    description: str = "",
    thresholds: list[g.Threshold] | None = None,
    stacked: bool = False,
    bars: bool = False,
    max_value: int | None = None,
    links: list[dict[str, Any]] | None = None,
    w: int = 12,
    h: int = 8,
) -> Panel:
    return Panel(
        g.TimeSeries(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=targets(*queries),
            unit=unit,
            thresholds=thresholds or steps(),
            thresholdsStyleMode="line" if thresholds else "off",
            stacking={"mode": "normal", "group": "A"} if stacked else {"mode": "none", "group": "A"},
            drawStyle="bars" if bars else "line",
            fillOpacity=40 if stacked or bars else 10,
            valueMin=0 if unit not in ("celsius", "currencyEUR", "suffix: €/MWh") else None,
            valueMax=max_value,
            legendDisplayMode="table",
            legendPlacement="right" if w >= 16 else "bottom",
            legendCalcs=["lastNotNull", "max"],
            tooltipMode="multi",
            tooltipSort="desc",
            extraJson=_data_links(links),
            maxDataPoints=500,
        ),
        w,
        h,
    )


def stat(
    title: str,
    queries: Sequence[tuple[str, str]],
    unit: str,
    *,
    description: str = "",
    thresholds: list[g.Threshold] | None = None,
    decimals: int | None = None,
    mappings: list[dict[str, Any]] | None = None,
    time_from: str | None = None,
    instant: bool = True,
    links: list[dict[str, Any]] | None = None,
    w: int = 4,
    h: int = 4,
) -> Panel:
    return Panel(
        g.Stat(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=targets(*queries, instant=instant),
            format=unit,
            thresholds=thresholds or steps(),
            decimals=decimals,
            mappings=mappings or [],
            colorMode="value",
            graphMode="none" if instant else "area",
            reduceCalc="lastNotNull",
            noValue="no data",
            timeFrom=time_from,
            extraJson=_data_links(links),
        ),
        w,
        h,
    )


def bargauge(
    title: str,
    queries: Sequence[tuple[str, str]],
    unit: str,
    *,
    description: str = "",
    thresholds: list[g.Threshold] | None = None,
    max_value: float | None = None,
    time_from: str | None = None,
    links: list[dict[str, Any]] | None = None,
    w: int = 12,
    h: int = 8,
) -> Panel:
    return Panel(
        g.BarGauge(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=targets(*queries, instant=True),
            format=unit,
            thresholds=thresholds or steps(),
            calc="lastNotNull",
            displayMode=g.GAUGE_DISPLAY_MODE_GRADIENT,
            min=0,
            max=max_value,
            timeFrom=time_from,
            dataLinks=links or [],
        ),
        w,
        h,
    )


def table(
    title: str,
    queries: Sequence[tuple[str, str]],
    unit: str,
    *,
    description: str = "",
    thresholds: list[g.Threshold] | None = None,
    hide: Sequence[str] = ("Time", "__name__", "instance", "job"),
    links: list[dict[str, Any]] | None = None,
    link_field: str = "node",
    w: int = 12,
    h: int = 8,
) -> Panel:
    overrides: list[dict[str, Any]] = []
    if links:
        overrides.append(
            {
                "matcher": {"id": "byName", "options": link_field},
                "properties": [{"id": "links", "value": links}],
            }
        )
    return Panel(
        g.Table(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=targets(*queries, instant=True, table=True),
            unit=unit,
            thresholds=thresholds or steps(),
            overrides=overrides,
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {"excludeByName": dict.fromkeys(hide, True), "renameByName": {}},
                },
            ],
            filterable=True,
        ),
        w,
        h,
    )


def state_timeline(
    title: str,
    queries: Sequence[tuple[str, str]],
    unit: str,
    *,
    description: str = "",
    thresholds: list[g.Threshold] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    w: int = 24,
    h: int = 8,
) -> Panel:
    return Panel(
        g.StateTimeline(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=targets(*queries),
            thresholds=thresholds or steps(),
            mappings=mappings or [],
            extraJson={"fieldConfig": {"defaults": {"unit": unit}}},
            maxDataPoints=200,
        ),
        w,
        h,
    )


def value_map(*entries: tuple[float, str, str]) -> list[dict[str, Any]]:
    """Value mappings ``(value, text, colour)`` in the Grafana 8+ form."""
    return [
        {
            "type": "value",
            "options": {str(int(v)): {"text": text, "color": color, "index": i}},
        }
        for i, (v, text, color) in enumerate(entries)
    ]


STATUS_MAPPINGS = value_map((0, "healthy", "green"), (1, "degraded", "orange"), (2, "offline", "red"))


# --- layout --------------------------------------------------------------------------------------


@dataclass
class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping lines, with row headers."""

    panels: list[Any] = field(default_factory=list)
    x: int = 0
    y: int = 0
    line_h: int = 0

    def row(self, title: str) -> Layout:
        self._newline()
        self.panels.append(g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=24, x=0, y=self.y)))
        self.y += 1
        return self

    def add(self, *items: Panel) -> Layout:
        for item in items:
            if self.x + item.w > 24:
                self._newline()
            item.panel.gridPos = g.GridPos(h=item.h, w=item.w, x=self.x, y=self.y)
            self.panels.append(item.panel)
            self.x += item.w
            self.line_h = max(self.line_h, item.h)
        return self

    def _newline(self) -> None:
        if self.x:
            self.y += self.line_h
        self.x = 0
        self.line_h = 0


def dashboard(
    uid: str,
    description: str,
    layout: Layout,
    variables: Sequence[str],
    *,
    refresh: str = "1m",
    time_from: str = "now-6h",
    extra_tags: Sequence[str] = (),
) -> g.Dashboard:
    return g.Dashboard(
        title=f"powerplane / {DASHBOARDS[uid]}",
        uid=uid,
        description=description,
        tags=[TAG, *extra_tags],
        timezone="browser",
        refresh=refresh,
        time=g.Time(time_from, "now"),
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        templating=templating(*variables),
        links=dashboard_links(uid),
        panels=layout.panels,
        editable=False,
    ).auto_panel_ids()
