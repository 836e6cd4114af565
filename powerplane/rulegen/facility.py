"""Alerts on the facility: PDU load and phases, rack power budgets, in-row coolers and the
electricity market data the power caps depend on."""

from __future__ import annotations

from .config import RulesConfig
from .model import Alert, Family, fmt

_PHASE = "powerplane_pdu_phase_current_amperes"


def _pdu(c: RulesConfig) -> list[Alert]:
    load = fmt(c.pdu_load_ratio * 100)
    return [
        Alert(
            "PowerplanePduPowerNearRating",
            "powerplane_pdu_power_watts\n"
            "/ on (pdu) group_left () max by (pdu) (powerplane_inventory_pdu_rated_power_watts)\n"
            f"> {fmt(c.pdu_load_ratio)}",
            "15m",
            "warning",
            f"PDU {{{{ $labels.pdu }}}} is loaded above {load} % of its rating",
            "PDU {{ $labels.pdu }} carries {{ $value | humanizePercentage }} of its rated power.",
        ),
        Alert(
            "PowerplanePduPhaseNearRating",
            f"{_PHASE}\n/ on (pdu) group_left ()"
            " max by (pdu) (powerplane_inventory_pdu_phase_rated_current_amperes)\n"
            f"> {fmt(c.pdu_load_ratio)}",
            "15m",
            "warning",
            "Phase {{ $labels.phase }} of PDU {{ $labels.pdu }} is loaded above "
            f"{load} % of its rating",
            "Phase {{ $labels.phase }} of PDU {{ $labels.pdu }} carries {{ $value | humanizePercentage }} "
            "of its rated current; its breaker may trip.",
        ),
        Alert(
            "PowerplanePduPhaseImbalance",
            f"(max by (pdu) ({_PHASE}) - min by (pdu) ({_PHASE})) / max by (pdu) ({_PHASE})\n"
            f"> {fmt(c.phase_imbalance_ratio)}\n"
            f"and on (pdu) max by (pdu) ({_PHASE}) > {fmt(c.phase_imbalance_min_amperes)}\n"
            f"and on (pdu) count by (pdu) ({_PHASE}) > 1",
            "30m",
            "info",
            "The phases of PDU {{ $labels.pdu }} are unbalanced",
            "The lightest phase of PDU {{ $labels.pdu }} carries {{ $value | humanizePercentage }} less "
            "current than the busiest one.",
        ),
    ]


def _rack(c: RulesConfig) -> list[Alert]:
    return [
        Alert(
            "PowerplaneRackNearPowerBudget",
            f"rack:powerplane_power_budget_ratio > {fmt(c.rack_budget_warning_ratio)}",
            "15m",
            "warning",
            f"Rack {{{{ $labels.rack }}}} is above {fmt(c.rack_budget_warning_ratio * 100)} % of its "
            "power budget",
            "Rack {{ $labels.rack }} draws {{ $value | humanizePercentage }} of its power budget.",
        ),
        Alert(
            "PowerplaneRackOverPowerBudget",
            "rack:powerplane_power_budget_ratio > 1",
            "5m",
            "critical",
            "Rack {{ $labels.rack }} is over its power budget",
            "Rack {{ $labels.rack }} draws {{ $value | humanizePercentage }} of its power budget.",
        ),
    ]


def _cooler(c: RulesConfig) -> list[Alert]:
    point = "powerplane_cooling_temperature_celsius"
    return [
        Alert(
            "PowerplaneCoolerSupplyTemperatureHigh",
            f'{point}{{point="supply"}} > {fmt(c.cooler_supply_max_celsius)}',
            "10m",
            "warning",
            f"Cooler {{{{ $labels.cooler }}}} supplies air above {fmt(c.cooler_supply_max_celsius)} °C",
            "Cooler {{ $labels.cooler }} supplies air at {{ $value }} °C.",
        ),
        Alert(
            "PowerplaneCoolerReturnTemperatureHigh",
            f'{point}{{point="return"}} > {fmt(c.cooler_return_max_celsius)}',
            "10m",
            "warning",
            f"Cooler {{{{ $labels.cooler }}}} return air is above {fmt(c.cooler_return_max_celsius)} °C",
            "Cooler {{ $labels.cooler }} receives return air at {{ $value }} °C.",
        ),
        Alert(
            "PowerplaneCoolerHumidityLow",
            f"powerplane_cooling_humidity_ratio < {fmt(c.humidity_min_ratio)}",
            "30m",
            "warning",
            "Humidity at cooler {{ $labels.cooler }} is low",
            "Relative humidity at cooler {{ $labels.cooler }} is {{ $value | humanizePercentage }}; "
            "electrostatic discharge risk.",
        ),
        Alert(
            "PowerplaneCoolerHumidityHigh",
            f"powerplane_cooling_humidity_ratio > {fmt(c.humidity_max_ratio)}",
            "30m",
            "warning",
            "Humidity at cooler {{ $labels.cooler }} is high",
            "Relative humidity at cooler {{ $labels.cooler }} is {{ $value | humanizePercentage }}; "
            "condensation risk.",
        ),
        Alert(
            "PowerplaneCoolerLeakDetected",
            "powerplane_cooling_leak_detected > 0",
            "0s",
            "critical",
            "Cooler {{ $labels.cooler }} detects a leak",
            "The leak sensor of cooler {{ $labels.cooler }} has tripped.",
        ),
        Alert(
            "PowerplaneCoolerInAlarm",
            "powerplane_cooling_active_alarms > 0",
            "5m",
            "warning",
            "Cooler {{ $labels.cooler }} reports an active alarm",
            "Cooler {{ $labels.cooler }} reports {{ $value }} active alarm condition(s); "
            "read them on the unit's display or web interface.",
        ),
        Alert(
            "PowerplaneCoolerInStandby",
            _matching('powerplane_cooling_operating_mode{mode="standby"', c.cooler_standby_selector)
            + " == 1",
            "15m",
            "warning",
            "Cooler {{ $labels.cooler }} is in standby",
            "Cooler {{ $labels.cooler }} has been in standby for 15 minutes and removes no heat.",
        ),
        Alert(
            "PowerplaneCoolerFilterServiceDue",
            "powerplane_cooling_filter_run_seconds > powerplane_cooling_filter_service_interval_seconds\n"
            "and powerplane_cooling_filter_service_interval_seconds > 0",
            "1h",
            "warning",
            "The air filter of cooler {{ $labels.cooler }} is past its service interval",
            "The air filter of cooler {{ $labels.cooler }} has run {{ $value | humanizeDuration }} "
            "since its last service, longer than the interval set on the unit.",
        ),
        Alert(
            # The same incident seen by a server's BMC (liquid-cooled chassis), next to the coolers'.
            "PowerplaneNodeLeakDetected",
            "powerplane_redfish_leak_detected > 0",
            "0s",
            "critical",
            "{{ $labels.node }} detects a leak",
            "Leak detector {{ $labels.detector }} of {{ $labels.node }} reports a leak (BMC LeakDetection).",
        ),
    ]


def _matching(opening: str, selector: str) -> str:
    """``opening`` (a selector without its closing brace) with the site's matchers added."""
    return f"{opening},{selector}}}" if selector.strip() else f"{opening}}}"


def _market(c: RulesConfig) -> list[Alert]:
    return [
        Alert(
            "PowerplaneMarketTomorrowMissing",
            f"powerplane_market_tomorrow_published == 0 and on () hour() >= {c.market_tomorrow_hour_utc}",
            "30m",
            "warning",
            "Tomorrow's day-ahead prices for {{ $labels.area }} are missing",
            f"It is past {c.market_tomorrow_hour_utc}:00 UTC and tomorrow's prices for "
            "{{ $labels.area }} "
            "are not published or not fetched; power caps tomorrow will have no price signal.",
        ),
        Alert(
            "PowerplaneMarketDataStale",
            f"powerplane_market_data_age_seconds > {fmt(c.market_data_max_age_seconds)}",
            "15m",
            "warning",
            "Market data for {{ $labels.area }} is stale",
            "The market data for {{ $labels.area }} was fetched {{ $value | humanizeDuration }} ago.",
        ),
    ]


def alerts(c: RulesConfig) -> list[Alert]:
    return [*_pdu(c), *_rack(c), *_cooler(c), *_market(c)]


FAMILY = Family("facility", tests="alerts-facility.yaml", alerts=alerts)
