"""The accounting rules under a site's overrides: facility overhead (PUE or a meter), Slurm GPU
indexes that are NVML's, the user level off; and the settings that do not make sense refused.

The shipped rules are unit-tested by rules/tests/accounting.yaml; these render other settings
and run promtool on them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane.accounting import model
from powerplane.exporters.runtime import ConfigError
from powerplane.rulegen import render
from powerplane.rulegen.config import KIND, RulesConfig
from powerplane.rulegen.model import ALLOCATIONS_GROUP
from tests.conftest import require_binary

#: n1: BMC 1000 W, one GPU (NVML 0, minor 3) of 400 W that Slurm gave job 9 as IDX 0, and 4 of its 8
#: CPUs; n2: 500 W, idle.  The facility meter reads 300 W for the cluster.
SITE = [
    'powerplane_node_info{node="n1",rack="r1",row="w",cluster="c1",bmc="",partition=""}',
    'powerplane_node_info{node="n2",rack="r1",row="w",cluster="c1",bmc="",partition=""}',
    'powerplane_redfish_power_watts{node="n1"}',
    'powerplane_redfish_power_watts{node="n2"}',
    'powerplane_gpu_info{node="n1",gpu="0",uuid="G",model="m",pci_bus_id="p",driver_version="d",minor_number="3"}',
    'powerplane_gpu_power_watts{node="n1",gpu="0",uuid="G"}',
    'powerplane_slurm_node_cpus{cluster="c1",node="n1",state="total"}',
    'powerplane_slurm_job_allocation{cluster="c1",job_id="9",node="n1",resource="cpus"}',
    'powerplane_slurm_job_gpu_info{cluster="c1",job_id="9",node="n1",gpu="0"}',
    'powerplane_slurm_job_info{cluster="c1",job_id="9",user="u",account="a",partition="p",qos="q"}',
    'facility_meter_watts{cluster="c1"}',
]
VALUES = ["1x30", "1x30", "1000x30", "500x30", "1x30", "400x30", "8x30", "4x30", "1x30", "1x30", "300x30"]


def _promtool(tmp_path: Path, config: RulesConfig, tests: list[dict[str, Any]]) -> None:
    promtool = require_binary("promtool")
    rules = render.write(tmp_path / "rules", config)
    doc = {
        "rule_files": [str(p) for p in rules],
        "evaluation_interval": "1m",
        # The groups in the files' order: a group reads those before it as Prometheus would, a step late.
        "group_eval_order": [g["name"] for d in render.render(config).values() for g in d["groups"]],
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in zip(SITE, VALUES, strict=True)],
                "promql_expr_test": tests,
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _on(node: str) -> str:
    return f'{model.NODE_OVERHEAD}{{node="{node}"}}'


def _expect(expr: str, *samples: tuple[str, float]) -> dict[str, Any]:
    return {
        "expr": expr,
        "eval_time": "20m",
        "exp_samples": [{"labels": lab, "value": v} for lab, v in samples],
    }


def test_pue_overhead_is_recorded_apart_and_shared_like_the_it_power(tmp_path: Path) -> None:
    facility = model.JOBS.series("powerplane_facility_power_watts", "attributed")
    _promtool(
        tmp_path,
        RulesConfig(accounting_pue=1.25, accounting_slurm_gpu_label="minor_number"),
        [
            # Slurm's IDX 0 is no minor number of n1's GPUs: the GPU stays unattributed.
            _expect(f"sum({model.JOB_POWER})", ("{}", 300)),
            _expect(model.NODE_OVERHEAD, (_on("n1"), 250), (_on("n2"), 125)),
            _expect(facility, (f'{facility}{{cluster="c1",hpc_job="9",node="n1"}}', 75)),
            # IT power is untouched by the overhead.
            _expect(f"sum({model.UNATTRIBUTED}) + sum({model.JOB_POWER})", ("{}", 1500)),
        ],
    )  # fmt: skip


def test_a_metered_facility_is_shared_among_the_cluster_nodes_by_their_power(tmp_path: Path) -> None:
    facility = model.JOBS.series("powerplane_facility_power_watts", "attributed")
    _promtool(
        tmp_path,
        RulesConfig(
            accounting_facility_power_query="sum by (cluster) (facility_meter_watts)",
            accounting_slurm_gpu_label="gpu",
        ),
        [
            # 300 W over 1500 W of IT: 200 W to n1, 100 W to n2.
            _expect(model.NODE_OVERHEAD, (_on("n1"), 200), (_on("n2"), 100)),
            # Slurm's index read as NVML's: job 9 holds GPU 0 (400 W) and half the rest (300 W).
            _expect(f"sum by (part) ({model.JOB_POWER})", ('{part="gpu"}', 400), ('{part="rest"}', 300)),
            # 700 W of the node's 1000 W: 140 W of its 200 W overhead.
            _expect(facility, (f'{facility}{{cluster="c1",hpc_job="9",node="n1"}}', 140)),
        ],
    )  # fmt: skip


def test_the_allocation_joins_can_be_evaluated_apart_at_a_longer_interval(tmp_path: Path) -> None:
    config = RulesConfig(accounting_allocation_interval="2m", accounting_slurm_gpu_label="gpu")
    groups = {g["name"]: g for g in render.render(config)[render.RECORDING_FILE]["groups"]}
    assert list(groups) == [ALLOCATIONS_GROUP, render.RECORDING_GROUP]
    assert groups[ALLOCATIONS_GROUP]["interval"] == "2m"
    assert {r["record"] for r in groups[ALLOCATIONS_GROUP]["rules"]} == {
        model.JOB_HOLDER, model.POD_HOLDER, model.GPU_HOLDERS, model.GPU_SHARE, model.JOB_CPU_SHARE,
        model.JOB_OWNER,
    }  # fmt: skip
    assert "interval" not in groups[render.RECORDING_GROUP]
    # Not apart by default: every accounting rule in the one recording group.
    default = render.render(RulesConfig())[render.RECORDING_FILE]["groups"]
    assert [g["name"] for g in default] == [render.RECORDING_GROUP]
    account = "account:powerplane_power_watts:attributed"
    _promtool(
        tmp_path,
        config,
        [
            # The power owners read the joins' last evaluation: the same ledger as in one group.
            _expect(f"sum by (part) ({model.JOB_POWER})", ('{part="gpu"}', 400), ('{part="rest"}', 300)),
            _expect(f"sum({model.UNATTRIBUTED}) + sum({model.JOB_POWER})", ("{}", 1500)),
            _expect(account, (f'{account}{{account="a",cluster="c1"}}', 700)),
        ],
    )


def test_the_user_level_can_be_left_out() -> None:
    names = {r.record for r in model.recording_rules(RulesConfig(accounting_user_series=False))}
    assert "account:powerplane_power_watts:attributed" in names
    assert not {n for n in names if n.startswith("user:")}
    assert not {n for n in render.recorded_names() if "facility" in n}  # off unless configured


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accounting_pue: 0.9", "accounting_pue"),
        ("accounting_pue: 1.2\naccounting_facility_power_query: 'sum(x)'", "exclude each other"),
        ("accounting_slurm_gpu_label: index", "accounting_slurm_gpu_label"),
        ("accounting_overattributed_ratio: 2", "accounting_overattributed_ratio"),
        ("accounting_user_series: maybe", "accounting_user_series"),
        ("accounting_allocation_interval: soon", "accounting_allocation_interval"),
    ],
)
def test_settings_that_make_no_sense_are_refused(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        KIND.load_text(text, "site.yaml")
    assert any(expected in e for e in err.value.errors), err.value.errors
