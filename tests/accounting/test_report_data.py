"""The report tests' data: two hours of a small cluster, written as OpenMetrics for promtool.

Exactly known (see the expectations in test_report.py, computed by hand from what is here):

- cluster c1 (market area DE-LU), row r1; rack-a: node-01, node-02; rack-b: node-03, node-04,
  node-05 (in the inventory, no data at all); partitions cpu (01, 02) and gpu (03, 04, 05);
- node-01: BMC energy counter, 400 W in the first hour, 500 W in the second (its power gauge
  too), RAPL counter at 200 W;
- node-02: RAPL counter only, 250 W, no samples from 00:50 to 01:10 (a gap), the counter reset
  at 01:30;
- node-03: PDU outlet counter 600 W (pdu-b outlet 3), GPU counter 300 W, GPU at 85 °C except
  92 °C from 00:25 to 00:45, GPU utilisation 0.5;
- node-04: BMC power gauge only, 350 W (integrated), GPU counter 200 W, inlet 24 °C, GPU
  utilisation 0.25;
- price 100 EUR/MWh in the first hour, 200 in the second; carbon 300 g/kWh;
- jobs 101 (alice/physics, node-03, 500 W, 00:00-01:00), 102 (bob/chem, node-03, 400 W,
  01:00-02:00), 103 (alice/physics, node-01, 200 W, 00:30-01:30); pod ml/train-0 on node-04,
  150 W; unattributed power is each node's power less its owners';
- PowerplaneGpuTemperatureHigh firing for node-03 from 00:30 to 00:45;
- facility overhead recorded for node-03 only: 60 W; another cluster (c2) has a job 101 too.

Counters and the BMC gauge are sampled on the 30 s grid; gauges that go through avg/max_over_time
(temperatures, utilisation, attributed power, ALERTS) 15 s off it, as real scrapes are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

T0 = 1_772_409_600  # 2026-03-02T00:00:00Z
HOUR = 3600
START, END = T0 - 300, T0 + 2 * HOUR + 300


def _watts(first: float, second: float) -> Callable[[float], float]:
    return lambda t: first if t < T0 + HOUR else second


def _energy(power: Callable[[float], float], t: float) -> float:
    """Joules from START to t of a power that changes only at T0 + 1 h (exact for these profiles)."""
    mid = T0 + HOUR
    if t <= mid:
        return power(START) * (t - START)
    return power(START) * (mid - START) + power(mid) * (t - mid)


def _series(
    name: str, labels: str, value: Callable[[float], float | None], offset: int = 0
) -> Iterator[tuple[float, str]]:
    for t in range(START + offset, END + 1, 30):
        v = value(t)
        if v is not None:
            yield t, f"{name}{{{labels}}} {v:.6f} {t}\n"


def _in_gap(t: float) -> bool:
    return T0 + 3000 < t < T0 + 4200


def _node02_rapl(t: float) -> float | None:
    if _in_gap(t):
        return None
    reset = T0 + 5370  # the meter restarts from zero right after the 01:29:30 sample
    return 250.0 * (t - START) if t <= reset else 250.0 * (t - reset)


def _window(first: float, last: float, watts: float) -> Callable[[float], float | None]:
    return lambda t: watts if first <= t < last else None


def lines() -> Iterator[str]:
    parts: list[Iterator[tuple[float, str]]] = []
    add = parts.append
    info = [
        ("powerplane_node_info", 'node="node-01",rack="rack-a",row="r1",cluster="c1"'),
        ("powerplane_node_info", 'node="node-02",rack="rack-a",row="r1",cluster="c1"'),
        ("powerplane_node_info", 'node="node-03",rack="rack-b",row="r1",cluster="c1"'),
        ("powerplane_node_info", 'node="node-04",rack="rack-b",row="r1",cluster="c1"'),
        ("powerplane_node_info", 'node="node-05",rack="rack-b",row="r1",cluster="c1"'),
        ("powerplane_cluster_info", 'cluster="c1",area="DE-LU"'),
        ("powerplane_pdu_outlet_info", 'pdu="pdu-b",outlet="3",node="node-03"'),
        *(
            ("powerplane_slurm_node_partition_info", f'node="node-0{n}",partition="{p}"')
            for n, p in ((1, "cpu"), (2, "cpu"), (3, "gpu"), (4, "gpu"), (5, "gpu"))
        ),
        ("powerplane_slurm_job_info", 'job_id="101",user="alice",account="physics",partition="gpu"'),
        ("powerplane_slurm_job_info", 'job_id="102",user="bob",account="chem",partition="gpu"'),
        ("powerplane_slurm_job_info", 'job_id="103",user="alice",account="physics",partition="cpu"'),
        # Another cluster's job 101: job ids repeat across clusters and must not mix.
        ("powerplane_slurm_job_info", 'cluster="c2",job_id="101",user="mallory",account="x",partition="p"'),
    ]
    for name, labels in info:
        add(_series(name, labels, lambda _t: 1.0))
    n01 = _watts(400, 500)
    add(_series("powerplane_redfish_energy_joules_total", 'node="node-01"', lambda t: 1e6 + _energy(n01, t)))
    add(_series("powerplane_redfish_power_watts", 'node="node-01"', n01))
    rapl = 'node="node-01",zone="package",index="0"'
    add(_series("powerplane_rapl_energy_joules_total", rapl, lambda t: 200.0 * (t - START)))
    add(
        _series(
            "powerplane_rapl_energy_joules_total", 'node="node-02",zone="package",index="0"', _node02_rapl
        )
    )
    outlet = 'pdu="pdu-b",outlet="3",outlet_name="node-03"'
    add(_series("powerplane_pdu_outlet_energy_joules_total", outlet, lambda t: 600.0 * (t - START)))
    add(
        _series("powerplane_gpu_energy_joules_total", 'node="node-03",gpu="0"', lambda t: 300.0 * (t - START))
    )
    hot = _window(T0 + 1500, T0 + 2700, 92.0)
    add(
        _series(
            "powerplane_gpu_temperature_celsius",
            'node="node-03",gpu="0",sensor="gpu"',
            lambda t: hot(t) or 85.0,
            15,
        )
    )
    add(_series("powerplane_gpu_utilization_ratio", 'node="node-03",gpu="0"', lambda _t: 0.5, 15))
    add(_series("node:powerplane_facility_power_watts:overhead", 'node="node-03"', lambda _t: 60.0, 15))
    add(_series("powerplane_redfish_power_watts", 'node="node-04"', lambda _t: 350.0))
    add(
        _series("powerplane_gpu_energy_joules_total", 'node="node-04",gpu="0"', lambda t: 200.0 * (t - START))
    )
    add(
        _series(
            "powerplane_redfish_temperature_celsius",
            'node="node-04",sensor="inlet",context="Intake"',
            lambda _t: 24.0,
            15,
        )
    )
    add(_series("powerplane_gpu_utilization_ratio", 'node="node-04",gpu="0"', lambda _t: 0.25, 15))
    add(_series("powerplane_market_price_eur_per_mwh", 'area="DE-LU"', _watts(100, 200)))
    add(_series("powerplane_grid_carbon_intensity_grams_per_kwh", 'area="DE-LU"', lambda _t: 300.0))
    job = "hpc_job:powerplane_power_watts:attributed"
    add(_series(job, 'hpc_job="101",node="node-03"', _window(T0, T0 + HOUR, 500.0), 15))
    add(_series(job, 'hpc_job="102",node="node-03"', _window(T0 + HOUR, T0 + 2 * HOUR, 400.0), 15))
    add(_series(job, 'hpc_job="103",node="node-01"', _window(T0 + 1800, T0 + 5400, 200.0), 15))
    add(
        _series(
            "pod:powerplane_power_watts:attributed",
            'namespace="ml",pod="train-0",node="node-04"',
            lambda _t: 150.0,
            15,
        )
    )
    un = "node:powerplane_power_watts:unattributed"
    add(_series(un, 'node="node-01"', lambda t: n01(t) - (200.0 if T0 + 1800 <= t < T0 + 5400 else 0.0), 15))
    add(_series(un, 'node="node-02"', lambda t: None if _in_gap(t) else 250.0, 15))
    add(_series(un, 'node="node-03"', _watts(100, 200), 15))
    add(_series(un, 'node="node-04"', lambda _t: 200.0, 15))
    firing = _window(T0 + 1800, T0 + 2700, 1.0)
    alert = 'alertname="PowerplaneGpuTemperatureHigh",alertstate="firing",severity="warning",'
    alert += 'node="node-03",gpu="0"'
    add(_series("ALERTS", alert, firing, 15))
    for part in parts:
        for _t, line in part:
            yield line
