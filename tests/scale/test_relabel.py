"""lab/topology.py's relabel builders: refused arguments, and sharding that leaves its input alone."""

from __future__ import annotations

import copy

import pytest

from powerplane.lab.topology import SHARD_KEY, probe_job, shard_relabel, sharded, spread


@pytest.mark.parametrize(("shard", "shards"), [(2, 2), (-1, 2), (0, 0)])
def test_a_shard_outside_the_set_is_refused(shard: int, shards: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        shard_relabel(shard, shards)


def test_spread_needs_an_exporter() -> None:
    with pytest.raises(ValueError, match="at least one"):
        spread([])


def test_sharded_jobs_keep_their_share_first_and_leave_the_input_alone() -> None:
    jobs = [
        probe_job("powerplane-redfish-probe", ["a:1", "b:1"], [{"targets": ["10.0.0.1"]}], {"auth": ["x"]}),
        {"job_name": "powerplane-inventory", "static_configs": [{"targets": ["inv:1"]}]},
    ]
    before = copy.deepcopy(jobs)
    out = sharded(jobs, 1, 3)
    assert jobs == before
    for job in out:
        hashmod, keep = job["relabel_configs"][:2]
        assert hashmod == {
            "source_labels": list(SHARD_KEY),
            "modulus": 3,
            "target_label": "__tmp_shard",
            "action": "hashmod",
        }
        assert keep == {"source_labels": ["__tmp_shard"], "regex": "1", "action": "keep"}
    # The probe job still rewrites __address__ last, to one exporter per hash bucket.
    rewrites = [r for r in out[0]["relabel_configs"] if r.get("target_label") == "__address__"]
    assert [r["replacement"] for r in rewrites] == ["a:1", "b:1"]
    assert out[0]["relabel_configs"][-1] is not jobs[0]["relabel_configs"][-1]
