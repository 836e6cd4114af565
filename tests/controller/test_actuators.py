"""Actuators on the lab's powercap tree: the right constraint written, read back, restored."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from powerplane.controller.actuators import Actuators, HostState, RaplActuator
from powerplane.controller.policy import DomainCap
from powerplane.lab.powercap import PowercapLab, amd_zen
from tests.controller.conftest import FakeNvml, limit_uw


def caps(watts: float | None, *domains: str) -> list[DomainCap]:
    return [DomainCap(d, "cpu", watts) for d in domains]


def test_long_term_only_by_name_readback_and_restore(intel: PowercapLab, tmp_path: Path) -> None:
    act = Actuators(intel.root, tmp_path / "state.json")
    limits = {d.domain: d for d in act.limits()}
    assert sorted(limits, key=lambda d: int(d.split("-")[1])) == [f"package-{i}" for i in range(17)]
    # The constraint max of intel-rapl:a is 350 W, but a cap never goes above the original.
    assert limits["package-10"].max_watts == limits["package-10"].original_watts == 250.0

    results = act.apply(caps(180.0, "package-0", "package-10"))
    assert [(r.domain, r.status, r.applied_watts) for r in results] == [
        ("package-0", "applied", 180.0),
        ("package-10", "applied", 180.0),
    ]
    for dirname in ("intel-rapl:0", "intel-rapl:a"):
        assert limit_uw(intel, dirname, 0) == 180_000_000  # long_term
        assert limit_uw(intel, dirname, 1) == 300_000_000  # short_term untouched
        assert limit_uw(intel, dirname, 2) == 500_000_000  # peak_power (PL4) never touched
    assert limit_uw(intel, "intel-rapl:1", 0) == 250_000_000  # a package not asked for
    # The originals were recorded before the write.
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["rapl"]["intel-rapl:a"] == {"long_term": 250_000_000, "short_term": 300_000_000}

    assert act.restore() == []
    assert limit_uw(intel, "intel-rapl:a", 0) == 250_000_000
    assert not (tmp_path / "state.json").exists()


def test_short_term_only_when_asked(intel: PowercapLab, tmp_path: Path) -> None:
    act = Actuators(intel.root, tmp_path / "state.json")
    act.apply(caps(200.0, "package-0"))
    assert limit_uw(intel, "intel-rapl:0", 1) == 300_000_000
    act.apply(caps(200.0, "package-0"), short_term_ratio=1.2)
    assert limit_uw(intel, "intel-rapl:0", 1) == 240_000_000
    act.restore()
    assert (limit_uw(intel, "intel-rapl:0", 0), limit_uw(intel, "intel-rapl:0", 1)) == (
        250_000_000,
        300_000_000,
    )


def test_release_restores_the_original_and_out_of_range_is_refused(
    intel: PowercapLab, tmp_path: Path
) -> None:
    act = Actuators(intel.root, tmp_path / "state.json")
    assert act.apply(caps(None, "package-0"))[0].status == "unchanged"
    assert act.apply(caps(400.0, "package-0"))[0].status == "refused"  # above max 350
    assert act.apply(caps(-1.0, "package-0"))[0].status == "refused"
    assert limit_uw(intel, "intel-rapl:0", 0) == 250_000_000
    act.apply(caps(100.0, "package-0"))
    released = act.apply(caps(None, "package-0"))[0]
    assert (released.status, released.applied_watts) == ("released", 250.0)


def test_crash_recovery_restores_recorded_originals(intel: PowercapLab, tmp_path: Path) -> None:
    first = Actuators(intel.root, tmp_path / "state.json")
    first.apply(caps(150.0, "package-0", "package-1"))
    # The process dies here without restoring.  A second run with the caps still in place must
    # not record 150 W as the original: it restores from the file first.
    second = Actuators(intel.root, tmp_path / "state.json")
    assert second.recover() == []
    assert limit_uw(intel, "intel-rapl:1", 0) == 250_000_000
    assert not (tmp_path / "state.json").exists()
    second.apply(caps(120.0, "package-1"))
    assert (
        json.loads((tmp_path / "state.json").read_text())["rapl"]["intel-rapl:1"]["long_term"] == 250_000_000
    )


def test_corrupt_state_file_is_ignored(intel: PowercapLab, tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    act = Actuators(intel.root, tmp_path / "state.json")
    assert act.recover() == []
    assert HostState(tmp_path / "state.json").load() is False


def test_amd_zones_are_reported_unsupported(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", amd_zen(sockets=2)).create()
    act = Actuators(lab.root, tmp_path / "state.json")
    assert act.limits() == []
    results = act.apply(caps(150.0, "package-0", "package-1"))
    assert {r.status for r in results} == {"unsupported"}
    assert "AMD" in results[0].message
    assert not (tmp_path / "state.json").exists()


def test_no_powercap_at_all(tmp_path: Path) -> None:
    act = Actuators(tmp_path / "empty", tmp_path / "state.json")
    assert act.limits() == []
    assert act.apply(caps(100.0, "package-0"))[0].status == "failed"


@pytest.mark.parametrize(
    ("code", "status"), [(errno.EACCES, "unsupported"), (errno.ENODATA, "unsupported"), (errno.EIO, "failed")]
)
def test_write_errors_are_reported_not_retried_forever(
    intel: PowercapLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, status: str
) -> None:
    act = Actuators(intel.root, tmp_path / "state.json")
    writes: list[Path] = []

    def refuse(self: RaplActuator, path: Path, value: int) -> None:
        writes.append(path)
        raise OSError(code, "refused", str(path))

    monkeypatch.setattr(RaplActuator, "_write_uw", refuse)
    first = act.apply(caps(100.0, "package-0"))[0]
    second = act.apply(caps(100.0, "package-0"))[0]
    assert (first.status, second.status) == (status, status)
    # A permanent error is not written again; a transient one is retried next period.
    assert len(writes) == (1 if status == "unsupported" else 2)
    # Nothing was changed, so the restore at exit writes nothing and succeeds.
    assert act.restore() == []
    if status == "unsupported":
        assert "BIOS-locked" in first.message
        act.reset()
        act.apply(caps(100.0, "package-0"))
        assert len(writes) == 2


def test_readback_mismatch_is_a_failure(
    intel: PowercapLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    act = Actuators(intel.root, tmp_path / "state.json")
    real = RaplActuator._write_uw

    def clamp(self: RaplActuator, path: Path, value: int) -> None:
        real(self, path, min(value, 90_000_000))  # firmware that silently clamps

    monkeypatch.setattr(RaplActuator, "_write_uw", clamp)
    result = act.apply(caps(200.0, "package-0"))[0]
    assert result.status == "failed" and result.applied_watts == 90.0


def test_garbage_in_limit_file(intel: PowercapLab, tmp_path: Path) -> None:
    (intel.zone_dir("intel-rapl:0") / "constraint_0_power_limit_uw").write_text("banana\n")
    act = Actuators(intel.root, tmp_path / "state.json")
    assert "package-0" not in {d.domain for d in act.limits()}
    assert "package-1" in {d.domain for d in act.limits()}


def test_dry_run_writes_nothing(intel: PowercapLab, tmp_path: Path) -> None:
    act = Actuators(intel.root, tmp_path / "state.json")
    result = act.apply(caps(100.0, "package-0"), dry_run=True)[0]
    assert (result.status, result.applied_watts, result.message) == ("dry_run", None, "would write 100 W")
    assert limit_uw(intel, "intel-rapl:0", 0) == 250_000_000
    assert not (tmp_path / "state.json").exists()


def test_lab_power_follows_the_cap(intel: PowercapLab, tmp_path: Path) -> None:
    act = Actuators(intel.root, tmp_path / "state.json")
    before = intel.power("intel-rapl:0")
    act.apply(caps(90.0, "package-0"))
    assert before == 180.0 and intel.power("intel-rapl:0") == 90.0


# --- NVML through a Python stand-in (the C fake NVML is used when it is available) ---------


def test_gpu_caps_within_constraints_and_restored(intel: PowercapLab, tmp_path: Path) -> None:
    nvml: Any = FakeNvml()
    act = Actuators(intel.root, tmp_path / "state.json", nvml=nvml)
    assert [d.domain for d in act.limits() if d.kind == "gpu"] == ["gpu-0", "gpu-1"]
    results = act.apply([DomainCap("gpu-0", "gpu", 450.0), DomainCap("gpu-1", "gpu", 100.0)])
    assert [(r.status, r.applied_watts, r.enforced_watts) for r in results] == [
        ("applied", 450.0, 450.0),
        ("refused", None, None),
    ]
    assert nvml.limits == [450_000, 700_000]
    assert json.loads((tmp_path / "state.json").read_text())["gpu"] == {
        "GPU-00000000": 700_000,
        "GPU-00000001": 700_000,
    }
    assert act.restore() == []
    assert nvml.limits == [700_000, 700_000]


def test_gpu_permission_denied_is_reported(intel: PowercapLab, tmp_path: Path) -> None:
    act = Actuators(intel.root, tmp_path / "state.json", nvml=FakeNvml(writable=False))
    result = act.apply([DomainCap("gpu-0", "gpu", 450.0)])[0]
    assert result.status == "unsupported" and "NoPermission" not in result.message
    assert "needs root" in result.message


# --- the C fake NVML through the real nvidia-ml-py ---------------------------------------


@pytest.fixture
def fake_gpus(tmp_path: Path) -> Any:
    from powerplane.lab.fakenvml import FakeGpu, FakeNvml

    machine = FakeNvml(
        tmp_path / "nvml",
        [
            FakeGpu("h100-sxm"),
            FakeGpu("a100-sxm", set_limit="deny"),
            FakeGpu("l40s", unsupported={"power_limit"}),
        ],
    ).activate()
    return machine


def test_fake_nvml_constraints_readback_restore(intel: PowercapLab, tmp_path: Path, fake_gpus: Any) -> None:
    from powerplane.controller.actuators import load_nvml

    nvml = load_nvml()
    assert nvml is not None
    act = Actuators(intel.root, tmp_path / "state.json", nvml=nvml)
    gpu_limits = {
        d.domain: (d.min_watts, d.max_watts, d.original_watts) for d in act.limits() if d.kind == "gpu"
    }
    # The L40S has no power-limit support: it is reported, not offered.
    assert gpu_limits == {"gpu-0": (200.0, 700.0, 700.0), "gpu-1": (100.0, 400.0, 400.0)}
    assert "gpu-2" in act.unsupported()

    results = {
        r.domain: r
        for r in act.apply(
            [
                DomainCap("gpu-0", "gpu", 450.0),
                DomainCap("gpu-1", "gpu", 300.0),
                DomainCap("gpu-2", "gpu", 300.0),
            ]
        )
    }
    assert (results["gpu-0"].status, results["gpu-0"].applied_watts, results["gpu-0"].enforced_watts) == (
        "applied",
        450.0,
        450.0,
    )
    # The A100 refuses without permission (a non-root agent): reported, not retried.
    assert results["gpu-1"].status == "unsupported" and "needs root" in results["gpu-1"].message
    assert results["gpu-2"].status == "unsupported"
    assert fake_gpus.power_limits_mw() == {0: 450_000}
    assert act.apply([DomainCap("gpu-0", "gpu", 800.0)])[0].status == "refused"  # above the 700 W maximum
    assert act.apply([DomainCap("gpu-0", "gpu", 150.0)])[0].status == "refused"  # below the 200 W minimum
    assert fake_gpus.power_limits_mw() == {0: 450_000}

    # The simulated board's power follows the limit.
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetPowerUsage(handle) <= 450_000

    assert act.restore() == []
    assert fake_gpus.power_limits_mw() == {}
    assert not (tmp_path / "state.json").exists()


def test_fake_nvml_crash_recovery(intel: PowercapLab, tmp_path: Path, fake_gpus: Any) -> None:
    from powerplane.controller.actuators import load_nvml

    nvml = load_nvml()
    first = Actuators(intel.root, tmp_path / "state.json", nvml=nvml)
    first.apply([DomainCap("gpu-0", "gpu", 300.0)])
    assert fake_gpus.power_limits_mw() == {0: 300_000}
    second = Actuators(intel.root, tmp_path / "state.json", nvml=nvml)
    assert second.recover() == []
    assert fake_gpus.power_limits_mw() == {}


def test_fake_nvml_release_goes_back_to_the_original(
    intel: PowercapLab, tmp_path: Path, fake_gpus: Any
) -> None:
    from powerplane.controller.actuators import load_nvml

    nvml = load_nvml()
    act = Actuators(intel.root, tmp_path / "state.json", nvml=nvml)
    assert act.apply([DomainCap("gpu-0", "gpu", None)])[0].status == "unchanged"
    act.apply([DomainCap("gpu-0", "gpu", 500.0)])
    released = act.apply([DomainCap("gpu-0", "gpu", None)])[0]
    assert (released.status, released.applied_watts) == ("released", 700.0)
    assert fake_gpus.power_limits_mw() == {}


# --- a cap never raises a limit -------------------------------------------------------------


def test_a_cap_never_raises_a_limit_above_the_original(intel: PowercapLab, tmp_path: Path) -> None:
    act = Actuators(intel.root, tmp_path / "state.json")
    # The hardware accepts up to 350 W, but 250 W was in force before powerplane touched it.
    assert {d.max_watts for d in act.limits()} == {250.0}
    result = act.apply(caps(300.0, "package-0"))[0]
    assert (result.status, result.applied_watts) == ("applied", 250.0)
    assert result.clamped and "original limit 250" in result.message
    assert result.desired_watts == 250.0  # what is written, so desired and applied agree
    assert limit_uw(intel, "intel-rapl:0") == 250_000_000
    # Capped to 100 W, the original stays the ceiling, also for the next process.
    act.apply(caps(100.0, "package-0"))
    again = Actuators(intel.root, tmp_path / "state.json")
    again.state.load()
    assert {d.domain: d.max_watts for d in again.limits()}["package-0"] == 250.0
    assert again.apply(caps(349.0, "package-0"))[0].applied_watts == 250.0
    # Outside the hardware's range is refused, not clamped.
    assert act.apply(caps(400.0, "package-0"))[0].status == "refused"


def test_a_limit_lowered_by_the_operator_is_the_ceiling(intel: PowercapLab, tmp_path: Path) -> None:
    (intel.zone_dir("intel-rapl:1") / "constraint_0_power_limit_uw").write_text("200000000\n")
    act = Actuators(intel.root, tmp_path / "state.json")
    assert {d.domain: d.max_watts for d in act.limits()}["package-1"] == 200.0
    assert act.apply(caps(240.0, "package-1"))[0].applied_watts == 200.0
    assert limit_uw(intel, "intel-rapl:1") == 200_000_000


@pytest.mark.parametrize("watts", [float("nan"), float("inf"), -float("inf"), 1e308])
def test_non_finite_caps_are_refused_without_a_write(
    intel: PowercapLab, tmp_path: Path, watts: float
) -> None:
    nvml: Any = FakeNvml()
    act = Actuators(intel.root, tmp_path / "state.json", nvml=nvml)
    results = act.apply([DomainCap("package-0", "cpu", watts), DomainCap("gpu-0", "gpu", watts)])
    assert [r.status for r in results] == ["refused", "refused"]
    assert limit_uw(intel, "intel-rapl:0") == 250_000_000 and nvml.limits == [700_000, 700_000]


@pytest.mark.parametrize(
    ("cap", "ratio", "pl2"),
    [
        (100.0, 1.0, 100_000_000),  # PL2 = ratio x PL1
        (200.0, 1.5, 300_000_000),
        (240.0, 1.5, 300_000_000),  # 360 W: above PL2's original 300 W, so 300 W
        (300.0, 1.2, 300_000_000),  # PL1 clamped to its original 250 W, PL2 to 300 W
    ],
)
def test_short_term_follows_the_ratio_never_above_its_original(
    intel: PowercapLab, tmp_path: Path, cap: float, ratio: float, pl2: int
) -> None:
    act = Actuators(intel.root, tmp_path / "state.json")
    result = act.apply(caps(cap, "package-0"), short_term_ratio=ratio)[0]
    assert limit_uw(intel, "intel-rapl:0", 1) == pl2
    assert result.short_term_applied_watts == pl2 / 1e6
    assert limit_uw(intel, "intel-rapl:0", 2) == 500_000_000  # peak_power never touched
    assert act.restore() == []
    assert (limit_uw(intel, "intel-rapl:0", 0), limit_uw(intel, "intel-rapl:0", 1)) == (
        250_000_000,
        300_000_000,
    )


def test_gpu_cap_never_above_its_original(intel: PowercapLab, tmp_path: Path) -> None:
    nvml: Any = FakeNvml(limit_mw=500_000)  # an operator set 500 W on a 700 W board
    act = Actuators(intel.root, tmp_path / "state.json", nvml=nvml)
    assert {d.domain: d.max_watts for d in act.limits() if d.kind == "gpu"} == {
        "gpu-0": 500.0,
        "gpu-1": 500.0,
    }
    result = act.apply([DomainCap("gpu-0", "gpu", 650.0)])[0]
    assert (result.status, result.applied_watts, result.clamped) == ("applied", 500.0, True)
    assert nvml.limits == [500_000, 500_000]
    act.apply([DomainCap("gpu-0", "gpu", 300.0)])
    assert act.apply([DomainCap("gpu-0", "gpu", 600.0)])[0].applied_watts == 500.0


def test_domain_labels_join_the_exporters(intel: PowercapLab, tmp_path: Path) -> None:
    from powerplane.controller.actuators import join_labels

    # The same values as powerplane_rapl_power_limit_watts{zone,index,constraint} and the GPU
    # exporter's gpu label: intel-rapl:a is package index 10.
    assert join_labels("package-10") == {"zone": "package", "index": "10"}
    assert join_labels("gpu-3") == {"gpu": "3"}


def test_no_powercap_says_so(tmp_path: Path) -> None:
    act = Actuators(tmp_path / "empty", tmp_path / "state.json")
    assert act.domains() == {}
    assert any("no powercap" in reason for reason in act.absent())
