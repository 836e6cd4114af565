"""Energy market and power caps: the price curve and what the controller did with it."""

from __future__ import annotations

import grafanalib.core as g

from .common import THRESHOLDS, Layout, bargauge, dashboard, stat, steps, timeseries

UID = "powerplane-market"
A = 'area=~"$area"'
N = 'node=~"$node"'
PRICE = "suffix: €/MWh"


def _day_ahead_price(layout: Layout) -> None:
    layout.row("Day-ahead price").add(
        stat("Price now", [(f"powerplane_market_price_eur_per_mwh{{{A}}}", "{{area}}")], PRICE),
        stat("Next period", [(f"powerplane_market_next_price_eur_per_mwh{{{A}}}", "{{area}}")], PRICE),
        stat(
            "Rank of this period today",
            [(f"powerplane_market_price_rank_ratio{{{A}}}", "{{area}}")],
            "percentunit",
            thresholds=steps(0.5, 0.8),
            description="0 %: the cheapest period of the day, 100 %: the most expensive.",
        ),
        stat(
            "Tomorrow published",
            [(f"powerplane_market_tomorrow_published{{{A}}}", "{{area}}")],
            "none",
            mappings=[
                {"type": "value", "options": {"0": {"text": "not yet", "color": "orange", "index": 0}}},
                {"type": "value", "options": {"1": {"text": "yes", "color": "green", "index": 1}}},
            ],
        ),
        stat(
            "Price data age",
            [(f"powerplane_market_data_age_seconds{{{A}}}", "{{area}}")],
            "s",
            thresholds=steps(*THRESHOLDS["market_data_age_seconds"], colors=("red",)),
        ),
        stat(
            "Period length",
            [(f"powerplane_market_period_seconds{{{A}}}", "{{area}}")],
            "s",
        ),
    )
    layout.add(
        timeseries(
            "Price and today's range",
            [
                (f"powerplane_market_price_eur_per_mwh{{{A}}}", "{{area}} price"),
                (f"powerplane_market_next_price_eur_per_mwh{{{A}}}", "{{area}} next period"),
                (f'powerplane_market_day_min_eur_per_mwh{{{A}, day="today"}}', "{{area}} today min"),
                (f'powerplane_market_day_max_eur_per_mwh{{{A}, day="today"}}', "{{area}} today max"),
                (f'powerplane_market_day_mean_eur_per_mwh{{{A}, day="today"}}', "{{area}} today mean"),
            ],
            PRICE,
            w=16,
        ),
        bargauge(
            "Price ahead",
            [(f"powerplane_market_price_ahead_eur_per_mwh{{{A}}}", "{{area}} in {{horizon}}")],
            PRICE,
            description="Price of the period containing now + each horizon (15 min to 24 h).",
            w=8,
        ),
    )


def _power_caps(layout: Layout) -> None:
    layout.row("Power caps").add(
        timeseries(
            "Desired and applied caps",
            [
                (f"powerplane_controller_cap_desired_watts{{{N}}}", "{{node}} {{domain}} desired"),
                (f"powerplane_controller_cap_applied_watts{{{N}}}", "{{node}} {{domain}} applied"),
                (f"powerplane_controller_cap_enforced_watts{{{N}}}", "{{node}} {{domain}} enforced"),
            ],
            "watt",
            description="What the policy asked for and what the hardware reports back; a gap means"
            " the write failed or was clamped.",
            w=16,
        ),
        timeseries(
            "Signal the controller acted on",
            [("powerplane_controller_signal_value", "{{policy}}")],
            "none",
            w=8,
        ),
        timeseries(
            "Power drawn against the cap",
            [
                (
                    "sum by (node, zone, index) (rate(powerplane_rapl_energy_joules_total"
                    f'{{{N}, zone="package"}}[$__rate_interval])) / on (node, zone, index) '
                    f'powerplane_controller_cap_applied_watts{{{N}, constraint="long_term"}}',
                    "{{node}} package {{index}}",
                ),
                (
                    f"max by (node, gpu) (powerplane_gpu_power_watts{{{N}}}) / on (node, gpu) "
                    f'powerplane_controller_cap_applied_watts{{{N}, gpu!=""}}',
                    "{{node}} GPU {{gpu}}",
                ),
            ],
            "percentunit",
            description="Measured power over the limit in force, per CPU package and GPU: the cap"
            " metrics carry the exporters' zone/index and gpu labels, so they join directly.",
            w=24,
        ),
    )


def _controller_health(layout: Layout) -> None:
    layout.row("Controller health").add(
        timeseries(
            "Reconciles by result",
            [
                (
                    "sum by (node, result) (increase(powerplane_controller_reconcile_total"
                    f"{{{N}}}[$__rate_interval]))",
                    "{{node}} {{result}}",
                )
            ],
            "short",
            bars=True,
        ),
        timeseries(
            "Time since last reconcile",
            [(f"time() - powerplane_controller_last_reconcile_timestamp_seconds{{{N}}}", "{{node}}")],
            "s",
            thresholds=steps(*THRESHOLDS["controller_reconcile_age_seconds"]),
            description="The controller reconciles every market period (15 min).",
        ),
    )


def build() -> g.Dashboard:
    layout = Layout()
    _day_ahead_price(layout)
    _power_caps(layout)
    _controller_health(layout)
    return dashboard(
        UID,
        "The day-ahead price curve (now, next, today's range) and the caps the controller set from it.",
        layout,
        ["area", "cluster", "row", "rack", "node"],
        time_from="now-24h",
    )
