"""inventory.yaml: schema, defaults, cross references, hostile documents."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplane.exporters.inventory.config import KIND
from powerplane.exporters.runtime import ConfigError
from powerplane.lab.inventory import demo_inventory

from .conftest import EXAMPLE, load


def test_example_inventory_is_valid_and_complete() -> None:
    inv = KIND.load(EXAMPLE)
    assert [n.name for n in inv.nodes] == ["gpu-a01-01", "gpu-a01-02", "cpu-a02-01"]
    assert inv.racks["a01"].cluster == "hpc-1"
    assert inv.nodes[0].pdu_outlets == (("pdu-a01-l", "1"), ("pdu-a01-l", "2"))
    assert inv.nodes[0].bmc is not None and inv.nodes[0].bmc.auth == "idrac"


def test_cross_references_are_all_reported() -> None:
    doc = demo_inventory(["n1", "n2", "n3"])
    doc["racks"].append({"name": "rack-x", "row": "no-such-row"})
    doc["nodes"][0]["rack"] = "nowhere"
    doc["nodes"][1]["pdu_outlets"] = [{"pdu": "ghost", "outlet": 1}]
    doc["nodes"][2]["pdu_outlets"] = [{"pdu": "pdu-rack-01-a", "outlet": "1"}]  # node n1 has it already
    doc["nodes"].append({"name": "n1", "rack": "rack-01"})
    with pytest.raises(ConfigError) as err:
        load(doc)
    text = "\n".join(err.value.errors)
    assert "racks.2.row: unknown row 'no-such-row'" in text
    assert "nodes.0.rack: unknown rack 'nowhere'" in text
    assert "nodes.1.pdu_outlets.0.pdu: unknown pdu 'ghost'" in text
    assert "outlet 1 of pdu-rack-01-a already feeds 'n1'" in text
    assert "nodes: 'n1' is defined twice" in text


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(extra=1), "unknown key(s) 'extra'"),
        (lambda d: d["racks"][0].update(power_budget_watts=-5), "racks.0.power_budget_watts"),
        (lambda d: d["racks"][0].update(power_budget_watts="12kW"), "racks.0.power_budget_watts"),
        (lambda d: d["nodes"][0].update(name='evil"} 1\nfoo{'), "nodes.0.name"),
        (lambda d: d["nodes"][0].update(name=""), "nodes.0.name"),
        (lambda d: d["nodes"][0].update(gpus={"count": -1}), "nodes.0.gpus.count"),
        (lambda d: d.pop("clusters"), "'clusters' is a required property"),
        (lambda d: d["nodes"][0].update(bmc={"address": "x", "password": "hunter2"}), "nodes.0.bmc"),
    ],
)
def test_schema_rejects_bad_input(mutate: Any, expected: str) -> None:
    doc = demo_inventory(["n1", "n2"])
    mutate(doc)
    with pytest.raises(ConfigError) as err:
        load(doc)
    assert any(expected in e for e in err.value.errors), err.value.errors
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("text", ["", "[]", "clusters: 5", "{{{", "clusters:\n- name: [1]"])
def test_garbage_documents_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        KIND.load_text(text, "inv.yaml")


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(["name", "rack", "row", "clusters", "nodes", "racks", "pdus"]), c, max_size=4
            )
        ),
        max_leaves=12,
    )
)
def test_arbitrary_documents_never_crash(doc: Any) -> None:
    try:
        KIND.load_text(yaml.safe_dump(doc), "inv.yaml")
    except ConfigError:
        pass
