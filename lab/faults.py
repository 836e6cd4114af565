"""Faults the demo can inject on purpose (``powerplane demo --inject NAME``), and the alerts they raise.

Without them the demo's steady state raises no alert.  Each fault acts on the lab as the real
failure would act on the hardware, and the exporters see it as they would see the real one:

- ``hot-gpu``: the first GPU's fan fails; it reads 97 °C whatever its load.
  PowerplaneGpuTemperatureCritical fires after 1 minute, PowerplaneGpuTemperatureHigh after 5.
- ``dead-bmc``: the second node's BMC dies (its port closes). PowerplaneTargetDown after 5 minutes,
  PowerplaneCollectorFailing after 15; the node's power falls back to its PDU outlets meanwhile.
- ``rack-over-budget``: the row's cooling is degraded and the facility cuts the first rack's
  budget to 40 %, below what it draws even under the controller's hardest price cap.
  PowerplaneRackOverPowerBudget after 5 minutes (PowerplaneRackNearPowerBudget after 15).
- ``leak``: the first in-row cooler's leak sensor trips. PowerplaneCoolerLeakDetected at once.

Some parts keep a state on purpose so that their dashboards have something to show; the alerts
that state raises are listed in ``STANDING_ALERTS`` and printed by the demo.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .demo import DemoContext


@dataclass(frozen=True)
class Fault:
    name: str
    #: The alerts it raises, by name.
    alerts: tuple[str, ...]
    #: Applies it; returns what it did, for the demo to print.
    apply: Callable[[DemoContext], Awaitable[str]]


async def hot_gpu(ctx: DemoContext) -> str:
    model = ctx.cluster()
    node = next(n for n in model.nodes.values() if n.nvml is not None)
    assert node.nvml is not None
    gpu = node.nvml.gpus[0]
    # The library's temperature is temp_idle + temp_per_watt · power: flat and hot, as with no fan.
    node.nvml.update(0, overrides={**gpu.overrides, "temp_idle": 97.0, "temp_per_watt": 0.0})
    return f"{node.spec.name} GPU 0 has lost its fan (97 °C)"


async def dead_bmc(ctx: DemoContext) -> str:
    bmcs = ctx.shared.get("redfish") or {}
    lab = ctx.shared.get("redfish_lab")
    if not bmcs or lab is None:
        return "no BMC to kill (the Redfish part did not start)"
    node = list(bmcs)[min(1, len(bmcs) - 1)]
    await lab.kill(bmcs[node])
    return f"the BMC of {node} is dead ({bmcs[node].address} refuses connections)"


async def rack_over_budget(ctx: DemoContext) -> str:
    import os

    import yaml

    path = ctx.shared.get("inventory_path")
    if path is None:
        return "no inventory to change (the inventory part did not start)"
    doc = yaml.safe_load(path.read_text())
    rack = doc["racks"][0]
    rack["power_budget_watts"] = round(0.4 * rack["power_budget_watts"])
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)  # the inventory exporter reloads a changed file
    return f"{rack['name']}'s budget is cut to {rack['power_budget_watts']} W"


async def leak(ctx: DemoContext) -> str:
    model = ctx.cluster()
    cooler = next(iter(model.coolers.values()))
    cooler.leak = True
    return f"the leak sensor of {cooler.spec.name} has tripped"


#: Alerts other parts raise on purpose in the steady state: alert → (the ``ctx.shared`` key of the
#: part, why).
STANDING_ALERTS: dict[str, tuple[str, str]] = {
    "PowerplaneSlurmMaintenanceSoon": ("slurm", "the Slurm part books a maintenance reservation 6 h ahead"),
    "PowerplaneSlurmNodesUnavailable": ("slurm", "the Slurm part drains a node (burn-in after a fan swap)"),
}


def standing_alerts(ctx: DemoContext) -> dict[str, str]:
    """The standing alerts of the parts this demo runs: alert → why."""
    return {alert: why for alert, (part, why) in STANDING_ALERTS.items() if ctx.shared.get(part) is not None}


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("hot-gpu", ("PowerplaneGpuTemperatureCritical", "PowerplaneGpuTemperatureHigh"), hot_gpu),
        Fault("dead-bmc", ("PowerplaneTargetDown", "PowerplaneCollectorFailing"), dead_bmc),
        Fault(
            "rack-over-budget",
            ("PowerplaneRackOverPowerBudget", "PowerplaneRackNearPowerBudget"),
            rack_over_budget,
        ),
        Fault("leak", ("PowerplaneCoolerLeakDetected",), leak),
    )
}


async def inject_faults(ctx: DemoContext, names: Sequence[str]) -> list[str]:
    """Apply the named faults (``all``: every one); returns a line per fault for the user."""
    chosen = list(FAULTS) if "all" in names else list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown faults {unknown} (known: {', '.join(FAULTS)})")
    lines = []
    for name in chosen:
        fault = FAULTS[name]
        lines.append(f"{name}: {await fault.apply(ctx)} → {', '.join(fault.alerts)}")
    return lines
