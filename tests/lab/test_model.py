"""The lab's physical model: each node's parts add up, caps act on it, its meters and truth agree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from powerplane.lab.fakenvml import PROFILES
from powerplane.lab.model import (
    PDU_ACCURACY,
    PLATINUM,
    ClusterModel,
    CoolerModel,
    CoolerSpec,
    Efficiency,
    demo_layout,
    rack_of,
)

NODES = ["node-01", "node-02", "node-03"]


@pytest.fixture
def model(tmp_path: Path) -> Iterator[ClusterModel]:
    cluster = ClusterModel(demo_layout(NODES), tmp_path)
    yield cluster
    cluster.stop()


def run(model: ClusterModel, seconds: float, step: float = 0.2) -> None:
    for _ in range(round(seconds / step)):
        model.step(step)


def test_efficiency_curve_interpolates_and_clamps() -> None:
    assert PLATINUM.at(0.5) == pytest.approx(0.94)
    assert PLATINUM.at(0.35) == pytest.approx(0.92)
    assert PLATINUM.at(0.0) == PLATINUM.at(0.05) == pytest.approx(0.80)
    assert PLATINUM.at(3.0) == pytest.approx(0.91)
    assert Efficiency(((0.0, 0.5), (1.0, 1.0))).at(0.25) == pytest.approx(0.625)


def test_a_node_is_the_sum_of_its_parts(model: ClusterModel) -> None:
    run(model, 30)
    for name, r in model.snapshot.nodes.items():
        spec = model.nodes[name].spec
        assert r.dc_w == pytest.approx(sum(r.packages) + sum(r.drams) + r.gpu_w + r.fans_w + r.platform_w)
        assert sum(r.psu_output) == pytest.approx(r.dc_w)
        assert sum(r.psu_input) == pytest.approx(r.input_w)
        # Every PSU loses something, and no more than its curve allows.
        for watts_in, watts_out in zip(r.psu_input, r.psu_output, strict=True):
            assert 0.80 <= watts_out / watts_in <= 0.94
        assert r.rest_w == pytest.approx(r.fans_w + r.platform_w + r.input_w - r.dc_w)
        assert spec.idle_input_w() < r.input_w < spec.max_input_w()
        assert r.input_w == r.uncapped_input_w  # nothing is capped
        assert r.exhaust_c > r.inlet_c


def test_packages_are_independent(model: ClusterModel) -> None:
    run(model, 60)
    node = model.nodes["node-01"]
    first, second = (node.powercap.true_joules(f"intel-rapl:{s}") for s in (0, 1))
    assert first != pytest.approx(second, rel=1e-3)
    # RAPL's counters are the model's truth for the packages and DRAM.
    zones = ("intel-rapl:0", "intel-rapl:1", "intel-rapl:0:1", "intel-rapl:1:1")
    rapl = sum(node.powercap.true_joules(z) for z in zones)
    assert rapl == pytest.approx(node.energy["packages"] + node.energy["drams"])


def test_a_rapl_cap_lowers_the_node_input(model: ClusterModel) -> None:
    run(model, 5)
    node = model.nodes["node-03"]
    (node.powercap.zone_dir("intel-rapl:0") / "constraint_0_power_limit_uw").write_text("60000000\n")
    r = model.step(0.2).nodes["node-03"]
    assert r.packages[0] == pytest.approx(60.0)
    assert r.package_demand[0] > 60.0
    assert r.input_w < r.uncapped_input_w
    # The input falls by more than the package's cut: the fans slow, the PSUs lose less.
    assert r.uncapped_input_w - r.input_w > r.package_demand[0] - 60.0
    # The core subzone follows its package.
    assert node._zone_power("intel-rapl:0:0") == pytest.approx(60.0 * node.spec.packages[0].core_share)


def test_a_gpu_limit_is_what_the_model_draws_and_publishes(model: ClusterModel) -> None:
    node = model.nodes["node-01"]
    assert node.nvml is not None
    node.nvml.set_power_limit_mw(2, 250_000)
    run(model, 1)
    r = model.snapshot.nodes["node-01"]
    assert r.gpus[2] == pytest.approx(250.0)
    assert r.gpu_demand[2] > 250.0
    assert r.gpus[0] == pytest.approx(r.gpu_demand[0])
    assert r.input_w < r.uncapped_input_w
    energy = node.energy["gpus"]
    run(model, 10)
    assert node.energy["gpus"] - energy == pytest.approx(10 * r.gpu_w, rel=0.05)


def test_pdus_meter_the_psus_within_their_accuracy(model: ClusterModel) -> None:
    run(model, 30)
    snap = model.snapshot
    layout = model.layout
    for name in NODES:
        outlets = layout.outlets_of(name)
        assert len(outlets) == model.nodes[name].spec.psus
        assert len({pdu for pdu, _ in outlets}) == 2  # A and B feed
        metered = sum(
            next(o for o in snap.pdus[pdu].outlets if o.name == outlet.name).watts for pdu, outlet in outlets
        )
        assert metered == pytest.approx(snap.nodes[name].input_w, rel=PDU_ACCURACY)
    for spec in layout.pdus:
        reading = snap.pdus[spec.name]
        true = sum(snap.nodes[o.node].psu_input[o.psu] for o in spec.outlets) + spec.own_w
        assert reading.watts == pytest.approx(true, rel=PDU_ACCURACY)
        assert len(reading.outlets) == spec.size
        assert all(o.watts == 0 for o in reading.outlets[len(spec.outlets) :])
        phase = reading.phases[0]
        assert phase.amps == pytest.approx(reading.watts / (phase.volts * 0.98))
    for rack in layout.racks:
        assert snap.racks[rack.name] == pytest.approx(
            sum(model.pdus[p.name].watts for p in layout.rack_pdus(rack.name))
        )


def test_energy_counters_integrate_power(model: ClusterModel) -> None:
    first = model.truth()
    wh = {n: p.inlet_wh for n, p in model.pdus.items()}
    run(model, 60)
    mean = model.truth().mean_watts(first)
    assert mean.t == pytest.approx(60.0)
    for pdu in model.pdus.values():
        assert (pdu.inlet_wh - wh[pdu.spec.name]) * 3600 / 60 == pytest.approx(
            mean.pdus[pdu.spec.name], rel=PDU_ACCURACY
        )
    assert sum(mean.racks.values()) == pytest.approx(sum(mean.pdus.values()))
    assert mean.cluster() + sum(p.own_w for p in model.layout.pdus) == pytest.approx(sum(mean.racks.values()))
    for parts in mean.nodes.values():
        assert parts["packages"] + parts["drams"] + parts["gpus"] + parts["rest"] == pytest.approx(
            parts["input"]
        )
    with pytest.raises(ValueError, match="later truth"):
        first.mean_watts(model.truth())


def test_the_cooler_follows_its_racks_with_a_lag() -> None:
    cooler = CoolerModel(CoolerSpec("c", ("r",)))
    steady = cooler.step(0.2, 5000.0)
    assert steady.output_w == pytest.approx(steady.demand_w)  # starts in equilibrium
    assert 0.9 <= steady.output_w / 5000.0 <= 1.1
    assert steady.return_c - steady.supply_c == pytest.approx(
        steady.output_w / (1.2 * 1005 * steady.airflow_m3s)
    )
    assert steady.fluid_out_c > steady.fluid_in_c
    # The load doubles: the output follows over about a minute; the return air warms.
    after = [cooler.step(1.0, 10000.0) for _ in range(300)]
    assert after[0].output_w < 6000.0
    assert after[-1].output_w == pytest.approx(after[-1].demand_w, rel=0.01)
    assert after[-1].return_c > steady.return_c
    assert after[-1].airflow_m3s > steady.airflow_m3s


def test_the_layout_feeds_every_psu_and_budgets_below_full_load() -> None:
    layout = demo_layout([f"node-{i:02d}" for i in range(1, 10)])
    assert [rack_of(i) for i in range(4)] == ["rack-01", "rack-01", "rack-02", "rack-02"]
    fed = sorted((o.node, o.psu) for p in layout.pdus for o in p.outlets)
    assert fed == sorted((n.name, k) for n in layout.nodes for k in range(n.psus))
    assert {p.vendor for p in layout.pdus} == {"raritan-px3", "sentry4", "vertiv-v5"}
    for rack in layout.racks:
        full = sum(n.max_input_w() for n in layout.nodes if n.rack == rack.name)
        full += sum(p.own_w for p in layout.rack_pdus(rack.name))
        assert full / rack.budget_w > 1.1  # a rack at full load is over its budget
    assert [c.racks for c in layout.coolers] == [
        ("rack-01", "rack-02", "rack-03", "rack-04"),
        ("rack-05",),
    ]
    # GPUs never reach 95 % of their default limit uncapped (that would be an alert).
    for node in layout.nodes:
        for gpu in node.gpus:
            p = PROFILES[gpu.profile]
            peak = min(1.0, gpu.util_base + gpu.util_amplitude + 0.03)
            assert (
                p.power_idle_mw + (p.power_max_mw - p.power_idle_mw) * peak < 0.95 * p.power_limit_default_mw
            )


def test_a_boosted_rack_is_over_its_budget(model: ClusterModel) -> None:
    rack = model.layout.racks[0]
    assert model.boost_rack(rack.name) == ["node-01", "node-02"]
    run(model, 1)
    assert model.snapshot.racks[rack.name] > rack.budget_w
    r = model.snapshot.nodes["node-01"]
    assert r.cpu_utilization == (1.0, 1.0) and all(u == 1.0 for u in r.gpu_utilization)


def test_a_garbled_limit_never_stops_the_model(model: ClusterModel) -> None:
    node = model.nodes["node-02"]
    assert node.nvml is not None
    node.nvml.state_path.write_bytes(b"limit 0 \xff\xfe\nlimit x y z\n")
    (node.powercap.zone_dir("intel-rapl:1") / "constraint_0_power_limit_uw").write_text("-5\n")
    r = model.step(0.2).nodes["node-02"]
    assert r.input_w == r.uncapped_input_w  # nothing readable: nothing capped


def test_the_thread_steps_in_real_time(tmp_path: Path) -> None:
    cluster = ClusterModel(demo_layout(["node-01"]), tmp_path).start(interval=0.05)
    try:
        first = cluster.truth()

        def advanced() -> bool:
            return cluster.truth().t - first.t > 0.3

        from powerplane.lab.procs import wait_until

        wait_until(advanced, 10, what="the model to step")
        assert cluster.snapshot.t > 0
    finally:
        cluster.stop()
