"""One physical model per simulated node: the truth every simulated meter of the lab reads.

Per node, each CPU package draws a load- and cap-dependent power (its own utilisation wave and
noise, limited by the ``long_term`` limit written into the node's powercap tree), each GPU draws
what its utilisation asks for up to its NVML limit, the fans follow the heat (their power grows
with the cube of their speed), the board, NICs and disks draw a constant ``platform`` power, and
the power supplies share the DC load and lose what their efficiency curve says.  The node's
input power is what the PSUs draw from the wall::

    DC    = packages + DRAM + GPUs + fans + platform
    input = sum over PSUs of (DC share / efficiency(load of that PSU))
    rest  = input - RAPL (packages + DRAM) - GPUs = fans + platform + PSU losses

Every meter reads this one model: the powercap tree's ``energy_uj`` counters (RAPL), the fake
NVML's shared state (the GPU exporter and the controller), the simulated BMC (input power, its
PSUs' split, fans, temperatures, energy), the PDU outlet feeding each PSU (outlet energy
integrates it; a PDU's total is its outlets plus its own draw) and the in-row cooler, whose
output follows the IT load of its racks with a thermal lag (cooling output / IT power stays
near 1; return air and water temperatures follow the load).  Caps act on the model, so a RAPL
limit or a GPU limit lowers the node's input power and with it the BMC, PDU, rack and cluster
figures.

``ClusterModel`` steps every part five times a second from one thread; ``snapshot`` is the
latest reading of everything (immutable, safe to read from any thread) and ``truth()`` the
energies integrated since the start, per node and part, per PDU, per rack and per cooler, which
tests compare the exporters' figures against.  A sample of one node's reading::

    NodeReading(node="node-01", packages=(171.2, 158.4), drams=(17.6, 17.2),
                gpus=(448.1, 812.0, ...), fans_w=172.9, platform_w=200.0,
                psu_input=(1397.0, 1376.4, ...), input_w=2773.4, rest_w=...)
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .fakenvml import PROFILES, FakeGpu, FakeNvml, MigDevice, SharedReading
from .powercap import ConstraintSpec, PowercapLab, ZoneSpec, intel_package_constraints

AIR_DENSITY = 1.2  # kg/m³ at the cold aisle
AIR_HEAT_CAPACITY = 1005.0  # J/(kg·K)
WATER_HEAT_CAPACITY = 4186.0  # J/(kg·K)
LINE_VOLTS = 230.0
#: Active-PFC server supplies draw nearly sinusoidal current.
POWER_FACTOR = 0.98
#: Metering accuracy of the lab's PDUs (IEC 62053-21 class 1): every outlet and inlet reads within it.
PDU_ACCURACY = 0.01
#: Seconds between model steps.
STEP_S = 0.2


def _clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return low if value < low else high if value > high else value


@dataclass(frozen=True)
class Efficiency:
    """A PSU efficiency curve: (load as a share of capacity, efficiency) points, interpolated."""

    points: tuple[tuple[float, float], ...]

    def at(self, load: float) -> float:
        points = self.points
        if load <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if load <= x1:
                return y0 + (y1 - y0) * (load - x0) / (x1 - x0)
        return points[-1][1]


#: An 80 PLUS Platinum supply at 230 V: 90 % at 20 % load, 94 % at half load, 91 % at full load.
PLATINUM = Efficiency(((0.05, 0.80), (0.1, 0.86), (0.2, 0.90), (0.5, 0.94), (1.0, 0.91)))


@dataclass(frozen=True)
class Wave:
    """A utilisation swinging ``depth`` around ``mean`` over ``period_s`` (``phase`` in periods)."""

    mean: float
    depth: float = 0.0
    period_s: float = 600.0
    phase: float = 0.0

    def at(self, t: float) -> float:
        if not self.depth or self.period_s <= 0:
            return self.mean
        return self.mean + self.depth * math.sin(2 * math.pi * (t / self.period_s + self.phase))


class Jitter:
    """Ornstein-Uhlenbeck noise: zero mean, standard deviation ``sigma``, correlated over ``tau_s``."""

    def __init__(self, sigma: float, tau_s: float, rng: random.Random) -> None:
        self.sigma = sigma
        self.tau_s = tau_s
        self.rng = rng
        self.value = 0.0

    def step(self, dt: float) -> float:
        if self.sigma > 0 and dt > 0:
            decay = math.exp(-dt / self.tau_s)
            self.value = self.value * decay + self.sigma * math.sqrt(1 - decay * decay) * self.rng.gauss()
        return self.value


@dataclass(frozen=True)
class CpuPackage:
    """One CPU socket: its package power between ``idle_w`` and ``tdp_w`` (the shipped PL1)."""

    idle_w: float = 45.0
    tdp_w: float = 250.0
    dram_idle_w: float = 12.0
    dram_dynamic_w: float = 10.0
    #: The core subzone's share of the package (the rest is uncore).
    core_share: float = 0.7
    load: Wave = Wave(0.55, 0.25)
    #: Standard deviation of the utilisation's noise (correlated over a few seconds).
    jitter: float = 0.01


@dataclass(frozen=True)
class NodeSpec:
    """A simulated server: its parts, fans, power supplies and which BMC model it has."""

    name: str
    rack: str
    packages: tuple[CpuPackage, ...]
    gpus: tuple[FakeGpu, ...] = ()
    #: Board, NICs and disks: drawn whatever the load.
    platform_w: float = 100.0
    #: All fans at full speed.
    fan_max_w: float = 200.0
    fans: int = 6
    fan_max_rpm: float = 16000.0
    fan_min_ratio: float = 0.2
    #: Air through the node at full fan speed.
    airflow_m3s: float = 0.15
    psus: int = 2
    psu_capacity_w: float = 1400.0
    #: How the PSUs share the load (normalised; equal when empty).
    psu_shares: tuple[float, ...] = ()
    efficiency: Efficiency = PLATINUM
    gpu_jitter: float = 0.005
    #: The name of the BMC model (``powerplane.lab.redfish.MODELS``).
    bmc: str = "idrac9-r760"
    seed: int = 0

    def zones(self) -> list[ZoneSpec]:
        """The powercap zones: per socket a package with PL1/PL2/PL4, its core and dram subzones."""
        zones = []
        for s, package in enumerate(self.packages):
            top = f"intel-rapl:{s:x}"
            window = [ConstraintSpec("long_term", 0.0, 0.000976)]
            zones += [
                ZoneSpec(
                    top, f"package-{s}", package.idle_w, constraints=intel_package_constraints(package.tdp_w)
                ),
                ZoneSpec(f"{top}:0", "core", package.idle_w * package.core_share, constraints=window),
                ZoneSpec(f"{top}:1", "dram", package.dram_idle_w, 65_532_610_987, window),
            ]
        return zones

    def shares(self) -> tuple[float, ...]:
        raw = self.psu_shares or (1.0,) * self.psus
        total = sum(raw)
        return tuple(s / total for s in raw)

    def heat_max_w(self) -> float:
        """CPUs, DRAM and GPUs at full load and default limits: what the fans are sized for."""
        cpu = sum(p.tdp_w + p.dram_idle_w + p.dram_dynamic_w for p in self.packages)
        return cpu + sum(PROFILES[g.profile].power_limit_default_mw / 1e3 for g in self.gpus)

    def electrical(self, heat_w: float) -> Electrical:
        """Fans, DC load and PSU draw for ``heat_w`` of CPU, DRAM and GPU power."""
        ratio = _clamp(self.fan_min_ratio + (1 - self.fan_min_ratio) * heat_w / self.heat_max_w(), 0.0, 1.0)
        fans = self.fan_max_w * ratio**3
        dc = heat_w + fans + self.platform_w
        outputs = tuple(dc * share for share in self.shares())
        inputs = tuple(o / self.efficiency.at(o / self.psu_capacity_w) for o in outputs)
        return Electrical(ratio, fans, dc, inputs, outputs)

    def max_input_w(self) -> float:
        return sum(self.electrical(self.heat_max_w()).psu_input)

    def idle_input_w(self) -> float:
        heat = sum(p.idle_w + p.dram_idle_w for p in self.packages)
        return sum(
            self.electrical(heat + sum(PROFILES[g.profile].power_idle_mw / 1e3 for g in self.gpus)).psu_input
        )


@dataclass(frozen=True)
class Electrical:
    fan_ratio: float
    fans_w: float
    dc_w: float
    psu_input: tuple[float, ...]
    psu_output: tuple[float, ...]


@dataclass(frozen=True)
class NodeReading:
    """One node at one instant (watts, °C; ``*_j`` are energies since the model started)."""

    node: str
    packages: tuple[float, ...]
    package_demand: tuple[float, ...]
    drams: tuple[float, ...]
    cpu_utilization: tuple[float, ...]
    gpus: tuple[float, ...]
    gpu_demand: tuple[float, ...]
    gpu_utilization: tuple[float, ...]
    fan_ratio: float
    fans_w: float
    platform_w: float
    dc_w: float
    psu_input: tuple[float, ...]
    psu_output: tuple[float, ...]
    input_w: float
    #: What the node would draw now without any cap.
    uncapped_input_w: float
    inlet_c: float
    exhaust_c: float
    cpu_c: tuple[float, ...]
    input_j: float = 0.0

    @property
    def rapl_w(self) -> float:
        """What RAPL meters: the packages (cores included) and the DRAM zones."""
        return sum(self.packages) + sum(self.drams)

    @property
    def gpu_w(self) -> float:
        return sum(self.gpus)

    @property
    def rest_w(self) -> float:
        """What neither RAPL nor NVML meters: fans, platform and PSU losses."""
        return self.input_w - self.rapl_w - self.gpu_w


#: The parts whose energy ``NodeModel`` integrates (the truth tests read).
NODE_PARTS = ("packages", "drams", "gpus", "fans", "platform", "psu_loss", "rest", "input", "uncapped_input")


class NodeModel:
    """One node: its powercap tree and fake NVML machine, driven by its physical state."""

    def __init__(self, spec: NodeSpec, directory: Path) -> None:
        self.spec = spec
        self.directory = Path(directory)
        self._zone_watts: dict[str, float] = {}
        self.powercap = PowercapLab(self.directory / "sys", spec.zones(), source=self._zone_power).create()
        self.nvml: FakeNvml | None = None
        if spec.gpus:
            self.nvml = FakeNvml(self.directory / "nvml", list(spec.gpus), shared=True)
            self.nvml.write()
        rng = random.Random(zlib.crc32(f"{spec.name}:{spec.seed}".encode()))
        self._cpu_jitter = [Jitter(p.jitter, 4.0, rng) for p in spec.packages]
        self._gpu_jitter = [Jitter(spec.gpu_jitter, 4.0, rng) for _ in spec.gpus]
        self._gpu_energy_mj = [
            g.energy_offset_mj + 3600.0 * PROFILES[g.profile].power_idle_mw for g in spec.gpus
        ]
        self.energy: dict[str, float] = dict.fromkeys(NODE_PARTS, 0.0)
        #: Joules through each PSU's input (what the outlet feeding it meters).
        self.psu_energy = [0.0] * spec.psus
        #: A fault: every part at full load (a runaway job).
        self.boost = False
        self.reading = self.step(0.0, 0.0, 21.0)

    def _zone_power(self, dirname: str) -> float:
        return self._zone_watts.get(dirname, 0.0)

    def _gpu_limits_w(self) -> list[float]:
        set_mw = self.nvml.power_limits_mw() if self.nvml is not None else {}
        limits = []
        for i, gpu in enumerate(self.spec.gpus):
            default = int(
                gpu.overrides.get("power_limit_default_mw", PROFILES[gpu.profile].power_limit_default_mw)
            )
            limits.append(set_mw.get(i, default) / 1e3)
        return limits

    def _cpu(self, t: float, dt: float) -> tuple[list[float], list[float], list[float], list[float]]:
        power, demand, dram, util = [], [], [], []
        for s, package in enumerate(self.spec.packages):
            u = 1.0 if self.boost else _clamp(package.load.at(t) + self._cpu_jitter[s].step(dt))
            want = package.idle_w + (package.tdp_w - package.idle_w) * u
            cap = self.powercap.limit_w(f"intel-rapl:{s:x}", "long_term")
            power.append(min(want, cap) if cap is not None else want)
            demand.append(want)
            dram.append(package.dram_idle_w + package.dram_dynamic_w * u)
            util.append(u)
        return power, demand, dram, util

    def _gpu(self, t: float, dt: float) -> tuple[list[float], list[float], list[float]]:
        power, demand, util = [], [], []
        for i, (gpu, limit) in enumerate(zip(self.spec.gpus, self._gpu_limits_w(), strict=True)):
            profile = PROFILES[gpu.profile]
            wave = Wave(gpu.util_base, gpu.util_amplitude, gpu.util_period_s, gpu.phase)
            u = 1.0 if self.boost else _clamp(wave.at(t) + self._gpu_jitter[i].step(dt))
            want = (profile.power_idle_mw + (profile.power_max_mw - profile.power_idle_mw) * u) / 1e3
            power.append(min(want, limit))
            demand.append(want)
            util.append(u)
        return power, demand, util

    def step(self, t: float, dt: float, inlet_c: float) -> NodeReading:
        """Advance to model time ``t`` (``dt`` seconds later), integrate, and publish to the meters."""
        spec = self.spec
        packages, package_demand, drams, cpu_util = self._cpu(t, dt)
        gpus, gpu_demand, gpu_util = self._gpu(t, dt)
        heat = sum(packages) + sum(drams) + sum(gpus)
        now = spec.electrical(heat)
        uncapped = spec.electrical(sum(package_demand) + sum(drams) + sum(gpu_demand))
        input_w = sum(now.psu_input)
        airflow = max(spec.airflow_m3s * now.fan_ratio, 1e-3)
        reading = NodeReading(
            spec.name,
            tuple(packages),
            tuple(package_demand),
            tuple(drams),
            tuple(cpu_util),
            tuple(gpus),
            tuple(gpu_demand),
            tuple(gpu_util),
            now.fan_ratio,
            now.fans_w,
            spec.platform_w,
            now.dc_w,
            now.psu_input,
            now.psu_output,
            input_w,
            sum(uncapped.psu_input),
            inlet_c,
            inlet_c + now.dc_w / (AIR_DENSITY * AIR_HEAT_CAPACITY * airflow),
            tuple(inlet_c + 10.0 + 0.16 * p for p in packages),
        )
        self._integrate(reading, dt)
        self.reading = reading = replace(reading, input_j=self.energy["input"])
        self._publish(reading, dt)
        return reading

    def _integrate(self, r: NodeReading, dt: float) -> None:
        parts = {
            "packages": sum(r.packages),
            "drams": sum(r.drams),
            "gpus": r.gpu_w,
            "fans": r.fans_w,
            "platform": r.platform_w,
            "psu_loss": r.input_w - r.dc_w,
            "rest": r.rest_w,
            "input": r.input_w,
            "uncapped_input": r.uncapped_input_w,
        }
        for part, watts in parts.items():
            self.energy[part] += watts * dt
        for i, watts in enumerate(r.psu_input):
            self.psu_energy[i] += watts * dt

    def _publish(self, r: NodeReading, dt: float) -> None:
        """What the node's own meters show: RAPL counters and the GPUs' NVML readings."""
        for s, package in enumerate(self.spec.packages):
            top = f"intel-rapl:{s:x}"
            self._zone_watts[top] = r.packages[s]
            self._zone_watts[f"{top}:0"] = r.packages[s] * package.core_share
            self._zone_watts[f"{top}:1"] = r.drams[s]
        self.powercap.advance(dt)
        if self.nvml is not None and self.nvml.shared is not None:
            readings = []
            for i, watts in enumerate(r.gpus):
                self._gpu_energy_mj[i] += watts * 1e3 * dt
                readings.append(
                    SharedReading(
                        r.gpu_demand[i] * 1e3, watts * 1e3, self._gpu_energy_mj[i], r.gpu_utilization[i]
                    )
                )
            self.nvml.shared.publish(readings)

    def close(self) -> None:
        if self.nvml is not None:
            self.nvml.close()


# --- PDUs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outlet:
    """An outlet of a PDU and the PSU (index into the node's supplies) plugged into it."""

    number: int
    node: str
    psu: int

    @property
    def name(self) -> str:
        return f"{self.node}-psu{self.psu + 1}"


@dataclass(frozen=True)
class PduSpec:
    """A metered rack PDU (single phase): its vendor recording, outlets and its own draw."""

    name: str
    rack: str
    #: The recording that plays it (``powerplane.lab.snmp.BUILDERS``).
    vendor: str
    outlets: tuple[Outlet, ...]
    size: int = 8
    own_w: float = 18.0
    rated_w: float = 7360.0
    rated_a: float = 32.0
    seed: int = 0


@dataclass(frozen=True)
class OutletReading:
    name: str
    watts: float
    amps: float
    wh: float


@dataclass(frozen=True)
class PhaseReading:
    label: str
    volts: float
    amps: float
    watts: float


@dataclass(frozen=True)
class PduReading:
    """What a PDU displays: totals, phases, outlets (1..n) and its sensors (None: no probe)."""

    watts: float
    wh: float
    phases: tuple[PhaseReading, ...]
    outlets: tuple[OutletReading, ...]
    temperatures: tuple[float | None, ...] = ()
    humidities: tuple[float | None, ...] = ()


class PduModel:
    """A PDU metering the PSU inputs plugged into it, each meter within ``PDU_ACCURACY``."""

    def __init__(self, spec: PduSpec) -> None:
        self.spec = spec
        rng = random.Random(zlib.crc32(f"{spec.name}:{spec.seed}".encode()))
        # Fixed calibration errors, well inside the class: a PDU and a BMC never agree exactly.
        self.gains = {o.number: 1 + rng.uniform(-0.4, 0.4) * PDU_ACCURACY for o in spec.outlets}
        self.inlet_gain = 1 + rng.uniform(-0.4, 0.4) * PDU_ACCURACY
        # Lifetime counters: the PDUs have been in service for a while.
        self.outlet_wh = {
            n: rng.uniform(2e5, 9e5) if n in self.gains else 0.0 for n in range(1, spec.size + 1)
        }
        self.inlet_wh = sum(self.outlet_wh.values()) + rng.uniform(1e4, 5e4)
        self.phase = rng.uniform(0, 1)
        #: True joules through the PDU (its outlets and its own draw).
        self.energy = 0.0
        self.watts = 0.0
        self.reading: PduReading | None = None

    def step(
        self, t: float, dt: float, nodes: Mapping[str, NodeReading], air_c: float, humidity: float
    ) -> None:
        volts = LINE_VOLTS + 1.5 * math.sin(2 * math.pi * (t / 900.0 + self.phase))
        by_number = {o.number: o for o in self.spec.outlets}
        outlets, true_total = [], self.spec.own_w
        for n in range(1, self.spec.size + 1):
            outlet = by_number.get(n)
            true = nodes[outlet.node].psu_input[outlet.psu] if outlet and outlet.node in nodes else 0.0
            true_total += true
            metered = true * self.gains.get(n, 1.0)
            self.outlet_wh[n] += metered * dt / 3600.0
            name = outlet.name if outlet else f"outlet-{n}"
            outlets.append(OutletReading(name, metered, metered / (volts * POWER_FACTOR), self.outlet_wh[n]))
        metered_total = true_total * self.inlet_gain
        self.inlet_wh += metered_total * dt / 3600.0
        self.energy += true_total * dt
        self.watts = true_total
        amps = metered_total / (volts * POWER_FACTOR)
        self.reading = PduReading(
            metered_total,
            self.inlet_wh,
            (PhaseReading("L1", volts, amps, metered_total),),
            tuple(outlets),
            (air_c + 2.5,),
            (humidity,),
        )


# --- coolers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoolerSpec:
    """An in-row chilled-water cooler holding its supply air at ``setpoint_c`` for its racks."""

    name: str
    racks: tuple[str, ...]
    setpoint_c: float = 20.0
    #: Fans: a floor, then airflow in proportion to the heat (the return air warms with load).
    airflow_min_m3s: float = 0.12
    airflow_max_m3s: float = 1.4
    airflow_per_kelvin_w: float = 16.0
    fan_max_w: float = 900.0
    water_in_c: float = 12.0
    water_flow_kg_s: float = 0.6
    #: Thermal lag of coil and room air: the output follows the load within a minute.
    lag_s: float = 30.0
    humidity: float = 0.45


@dataclass(frozen=True)
class CoolerReading:
    output_w: float
    demand_w: float
    airflow_m3s: float
    fan_ratio: float
    rack_inlet_c: float
    supply_c: float
    return_c: float
    fluid_in_c: float
    fluid_out_c: float
    humidity: float
    leak: bool
    group_output_w: float
    group_demand_w: float


class CoolerModel:
    def __init__(self, spec: CoolerSpec) -> None:
        self.spec = spec
        self.output_w: float | None = None
        self.fan_w = 0.0
        #: A fault: the leak sensor under the coil is wet.
        self.leak = False
        #: Joules of heat removed.
        self.energy = 0.0
        self.reading: CoolerReading | None = None

    def step(self, dt: float, it_w: float) -> CoolerReading:
        spec = self.spec
        demand = it_w + self.fan_w
        if self.output_w is None:
            self.output_w = demand  # the room has been running: start in equilibrium
        else:
            self.output_w += (demand - self.output_w) * (1 - math.exp(-dt / spec.lag_s))
        heat_per_kelvin = AIR_DENSITY * AIR_HEAT_CAPACITY
        airflow = _clamp(
            spec.airflow_min_m3s + self.output_w / (heat_per_kelvin * spec.airflow_per_kelvin_w),
            spec.airflow_min_m3s,
            spec.airflow_max_m3s,
        )
        ratio = airflow / spec.airflow_max_m3s
        self.fan_w = spec.fan_max_w * ratio**3
        self.energy += self.output_w * dt
        supply = spec.setpoint_c
        self.reading = CoolerReading(
            self.output_w,
            demand,
            airflow,
            ratio,
            supply + 1.0,
            supply,
            supply + self.output_w / (heat_per_kelvin * airflow),
            spec.water_in_c,
            spec.water_in_c + self.output_w / (spec.water_flow_kg_s * WATER_HEAT_CAPACITY),
            spec.humidity,
            self.leak,
            self.output_w,
            demand,
        )
        return self.reading


# --- the cluster ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RackSpec:
    name: str
    row: str
    #: The power the rack may draw (what the site's feeds and cooling allow).
    budget_w: float


@dataclass(frozen=True)
class Layout:
    nodes: tuple[NodeSpec, ...]
    racks: tuple[RackSpec, ...]
    pdus: tuple[PduSpec, ...]
    coolers: tuple[CoolerSpec, ...]

    def rack_pdus(self, rack: str) -> list[PduSpec]:
        return [p for p in self.pdus if p.rack == rack]

    def outlets_of(self, node: str) -> list[tuple[str, Outlet]]:
        """(PDU name, outlet) for each PSU of ``node``, in PSU order."""
        found = [(p.name, o) for p in self.pdus for o in p.outlets if o.node == node]
        return sorted(found, key=lambda po: po[1].psu)


@dataclass(frozen=True)
class Truth:
    """Energies (J) since the model started, or mean powers (W) from ``mean_watts``.

    ``at`` is the wall-clock time it was taken (to line up with Prometheus samples), ``t`` the
    model's time in seconds (its span for mean powers).
    """

    at: float
    t: float
    nodes: Mapping[str, Mapping[str, float]]
    pdus: Mapping[str, float]
    racks: Mapping[str, float]
    coolers: Mapping[str, float]

    def mean_watts(self, since: Truth) -> Truth:
        """The mean power of every part between ``since`` and this truth (``at`` is the span)."""
        span = self.t - since.t
        if span <= 0:
            raise ValueError("mean_watts needs a later truth than `since`")

        def per(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
            return {k: (a[k] - b[k]) / span for k in a}

        return Truth(
            self.at,
            span,
            {n: per(parts, since.nodes[n]) for n, parts in self.nodes.items()},
            per(self.pdus, since.pdus),
            per(self.racks, since.racks),
            per(self.coolers, since.coolers),
        )

    def cluster(self, part: str = "input") -> float:
        return sum(parts[part] for parts in self.nodes.values())


@dataclass(frozen=True)
class ClusterReading:
    """Everything at one instant: what every meter reads from."""

    t: float
    nodes: Mapping[str, NodeReading]
    pdus: Mapping[str, PduReading]
    coolers: Mapping[str, CoolerReading]
    #: Electrical power into each rack (its PDUs: node inputs and the PDUs' own draw).
    racks: Mapping[str, float]


class ClusterModel:
    """The lab's physical world: nodes, PDUs, racks and coolers, stepped from one thread."""

    def __init__(self, layout: Layout, directory: Path) -> None:
        self.layout = layout
        self.nodes = {spec.name: NodeModel(spec, Path(directory) / spec.name) for spec in layout.nodes}
        self.pdus = {spec.name: PduModel(spec) for spec in layout.pdus}
        self.coolers = {spec.name: CoolerModel(spec) for spec in layout.coolers}
        self._cooler_of = {rack: c for c in layout.coolers for rack in c.racks}
        self.rack_energy = {r.name: 0.0 for r in layout.racks}
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._last = self._t0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.snapshot = self._step(0.0, 0.0)

    def _inlet_c(self, rack: str) -> float:
        cooler = self._cooler_of.get(rack)
        reading = self.coolers[cooler.name].reading if cooler else None
        return reading.rack_inlet_c if reading else 21.0

    def _step(self, t: float, dt: float) -> ClusterReading:
        nodes = {name: node.step(t, dt, self._inlet_c(node.spec.rack)) for name, node in self.nodes.items()}
        for pdu in self.pdus.values():
            cooler = self._cooler_of.get(pdu.spec.rack)
            reading = self.coolers[cooler.name].reading if cooler else None
            air = reading.rack_inlet_c if reading else 21.0
            pdu.step(t, dt, nodes, air, reading.humidity if reading else 0.45)
        racks = {
            r.name: sum(p.watts for p in self.pdus.values() if p.spec.rack == r.name)
            for r in self.layout.racks
        }
        for rack, watts in racks.items():
            self.rack_energy[rack] += watts * dt
        coolers = {
            name: model.step(dt, sum(racks.get(r, 0.0) for r in model.spec.racks))
            for name, model in self.coolers.items()
        }
        group_out = sum(c.output_w for c in coolers.values())
        group_demand = sum(c.demand_w for c in coolers.values())
        coolers = {
            n: replace(c, group_output_w=group_out, group_demand_w=group_demand) for n, c in coolers.items()
        }
        pdus = {n: p.reading for n, p in self.pdus.items() if p.reading is not None}
        return ClusterReading(t, nodes, pdus, coolers, racks)

    def step(self, dt: float) -> ClusterReading:
        """Advance ``dt`` seconds of model time (the thread calls this; tests may too)."""
        with self._lock:
            self._last += dt
            self.snapshot = self._step(self._last - self._t0, dt)
            return self.snapshot

    def truth(self) -> Truth:
        """The energies integrated so far (a consistent copy)."""
        with self._lock:
            return Truth(
                time.time(),
                self._last - self._t0,
                {n: dict(node.energy) for n, node in self.nodes.items()},
                {n: p.energy for n, p in self.pdus.items()},
                dict(self.rack_energy),
                {n: c.energy for n, c in self.coolers.items()},
            )

    def start(self, interval: float = STEP_S) -> ClusterModel:
        """Step in real time from a background thread until ``stop``."""
        self._stop.clear()
        with self._lock:
            self._last = time.monotonic()

        def loop() -> None:
            while not self._stop.wait(interval):
                self.step(time.monotonic() - self._last)

        self._thread = threading.Thread(target=loop, name="lab-model", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for node in self.nodes.values():
            node.close()

    # --- faults --------------------------------------------------------------------------------

    def boost_rack(self, rack: str, on: bool = True) -> list[str]:
        """Every node of ``rack`` at full load (a runaway job); returns the nodes."""
        names = [n for n, node in self.nodes.items() if node.spec.rack == rack]
        for name in names:
            self.nodes[name].boost = on
        return names


# --- the demo's cluster -------------------------------------------------------------------------

NODES_PER_RACK = 2
RACKS_PER_COOLER = 4
#: PDU vendors in the order the racks' A and B feeds take them.
PDU_VENDORS = ("raritan-px3", "sentry4", "vertiv-v5")


def rack_of(index: int) -> str:
    return f"rack-{index // NODES_PER_RACK + 1:02d}"


def node_gpus(i: int) -> list[FakeGpu]:
    """The GPUs of demo node ``i`` (0-based): busy, out of phase, so the sums move.

    Their peaks stay below 95 % of the default power limit (where PowerplaneGpuPowerNearLimit
    starts): a GPU that sits at its limit without a cap is a fault, not a steady state.
    """
    kind = i % 3
    if kind == 0:
        return [FakeGpu("h100-sxm", util_base=0.6, util_amplitude=0.3, util_period_s=300, phase=g / 4)
                for g in range(4)]  # fmt: skip
    if kind == 1:
        return [
            FakeGpu("a100-sxm", util_base=0.65, util_amplitude=0.2, util_period_s=240),
            FakeGpu(
                "a100-sxm", mig=[MigDevice(1, 0, 40 << 30, 12 << 30), MigDevice(2, 0, 40 << 30, 30 << 30)]
            ),
        ]
    return [
        FakeGpu("l40s", util_base=0.4, util_amplitude=0.3, util_period_s=180, phase=g / 2) for g in range(2)
    ]


def demo_node(i: int, name: str) -> NodeSpec:
    """Demo node ``i``: an H100 HGX server, an A100 server or an L40S server, in turn."""
    kind = i % 3

    def packages(tdp: float) -> tuple[CpuPackage, ...]:
        mean = 0.5 + 0.05 * kind
        return tuple(
            CpuPackage(tdp_w=tdp, load=Wave(mean, 0.25, 600.0, 0.13 * i + 0.3 * s)) for s in range(2)
        )

    base = NodeSpec(name, rack_of(i), packages(250.0), tuple(node_gpus(i)), seed=i)
    if kind == 0:
        return replace(
            base, packages=packages(300.0), platform_w=200.0, fan_max_w=480.0, fans=8, fan_max_rpm=14000.0,
            airflow_m3s=0.45, psus=4, psu_capacity_w=2800.0, psu_shares=(1.02, 1.0, 0.99, 0.99),
            bmc="idrac-xe8640",
        )  # fmt: skip
    if kind == 1:
        return replace(
            base, packages=packages(270.0), platform_w=110.0, fan_max_w=240.0, airflow_m3s=0.18,
            psu_capacity_w=1400.0, psu_shares=(1.03, 0.97), bmc="idrac9-r760",
        )  # fmt: skip
    return replace(
        base, platform_w=100.0, fan_max_w=260.0, airflow_m3s=0.2, psu_capacity_w=2400.0,
        psu_shares=(0.98, 1.02), bmc="idrac9-r750xa",
    )  # fmt: skip


def _feeds(nodes: Sequence[NodeSpec], racks: Sequence[str]) -> list[PduSpec]:
    """Two PDUs per rack (A and B feed); a node's odd PSUs on A, its even ones on B."""
    pdus = []
    for r, rack in enumerate(racks):
        members = [n for n in nodes if n.rack == rack]
        for f, feed in enumerate("ab"):
            outlets: list[Outlet] = []
            for node in members:
                for psu in range(f, node.psus, 2):
                    outlets.append(Outlet(len(outlets) + 1, node.name, psu))
            vendor = PDU_VENDORS[(2 * r + f) % len(PDU_VENDORS)]
            pdus.append(PduSpec(f"pdu-{rack}-{feed}", rack, vendor, tuple(outlets), seed=2 * r + f))
    return pdus


def demo_layout(names: Sequence[str]) -> Layout:
    """The demo cluster: two nodes a rack, A/B-fed PDUs, an in-row cooler per four racks.

    Each rack's budget is 90 % of what its nodes and PDUs draw at full load (racks are
    oversubscribed, as usual), so the steady state stays below it and a runaway rack does not.
    """
    nodes = [demo_node(i, name) for i, name in enumerate(names)]
    rack_names = sorted({n.rack for n in nodes})
    pdus = _feeds(nodes, rack_names)
    racks = []
    for rack in rack_names:
        full = sum(n.max_input_w() for n in nodes if n.rack == rack)
        full += sum(p.own_w for p in pdus if p.rack == rack)
        racks.append(RackSpec(rack, "row-a", math.floor(0.9 * full / 100) * 100))
    coolers = [
        CoolerSpec(f"inrow-{k // RACKS_PER_COOLER + 1:02d}", tuple(rack_names[k : k + RACKS_PER_COOLER]))
        for k in range(0, len(rack_names), RACKS_PER_COOLER)
    ]
    return Layout(tuple(nodes), tuple(racks), tuple(pdus), tuple(coolers))
