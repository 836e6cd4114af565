"""The inventory: schema and cross references, info metrics, reloads, file_sd output, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerplane.cli import main
from powerplane.exporters.inventory.config import KIND
from powerplane.exporters.inventory.exporter import make_server
from powerplane.exporters.inventory.sd import file_sd, write_file_sd
from powerplane.exporters.runtime import ConfigError
from powerplane.lab.inventory import demo_inventory

from .helpers import parse, undocumented, value

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "inventory.yaml"


def load(doc: Any) -> Any:
    return KIND.load_text(yaml.safe_dump(doc), "inventory.yaml")


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


async def test_exporter_serves_info_metrics_and_keeps_last_good_on_bad_reload(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(EXAMPLE.read_text())
    server = make_server(path)
    host, port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/metrics") as r:
                text = await r.text()
            samples = parse(text)
            assert undocumented(text) == set()
            assert (
                value(
                    samples,
                    "powerplane_node_info",
                    node="gpu-a01-01",
                    rack="a01",
                    row="row-a",
                    cluster="hpc-1",
                    bmc="https://10.20.2.101",
                    partition="gpu",
                )
                == 1
            )
            assert value(samples, "powerplane_pdu_outlet_info", pdu="pdu-a01-l", outlet="4") == 1
            assert value(samples, "powerplane_rack_power_budget_watts", rack="a02") == 22000
            assert value(samples, "powerplane_node_gpus", node="gpu-a01-02") == 8
            assert value(samples, "powerplane_cooler_rack_info", cooler="irc-a01", rack="a02") == 1
            assert value(samples, "powerplane_cluster_info", cluster="hpc-1") == 1
            assert value(samples, "powerplane_pdu_phase_rated_current_amperes", pdu="pdu-a02-l") == 32
            assert value(samples, "powerplane_scrape_collector_success", collector="inventory") == 1

            path.write_text("clusters: [{name: x}]\nnodes: [{name: n, rack: missing}]\n")
            async with http.get(f"http://{host}:{port}/metrics") as r:
                samples = parse(await r.text())
            assert value(samples, "powerplane_scrape_collector_success", collector="inventory") == 0
            assert value(samples, "powerplane_node_info", node="gpu-a01-01") == 1  # last good kept

            doc = demo_inventory(["solo"])
            path.write_text(yaml.safe_dump(doc))
            async with http.get(f"http://{host}:{port}/metrics") as r:
                samples = parse(await r.text())
            assert value(samples, "powerplane_scrape_collector_success", collector="inventory") == 1
            assert [dict(k)["node"] for k in samples["powerplane_node_info"]] == ["solo"]
    finally:
        await server.stop()


def test_file_sd_groups_carry_site_labels_and_probe_params(tmp_path: Path) -> None:
    inv = KIND.load(EXAMPLE)
    groups = file_sd(inv)
    bmc = groups["redfish.json"][2]
    assert bmc == {
        "targets": ["https://10.20.2.111"],
        "labels": {
            "node": "cpu-a02-01",
            "rack": "a02",
            "row": "row-a",
            "cluster": "hpc-1",
            "partition": "cpu",
            "__param_module": "idrac",
            "__param_auth": "idrac",
        },
    }
    assert [g["labels"]["pdu"] for g in groups["snmp-pdu.json"]] == ["pdu-a01-l", "pdu-a02-l"]
    assert groups["snmp-cooler.json"][0]["labels"]["cooler"] == "irc-a01"
    first = write_file_sd(inv, tmp_path)
    assert {p.name for p in first} == {"redfish.json", "snmp-pdu.json", "snmp-cooler.json"}
    assert write_file_sd(inv, tmp_path) == []  # unchanged files are not rewritten
    assert json.loads((tmp_path / "snmp-pdu.json").read_text())[1]["targets"] == ["10.20.1.12"]


def test_cli_sd_and_check_config(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["inventory", "sd", "--file", str(EXAMPLE), "--out", str(tmp_path / "sd")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sd" / "redfish.json").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters: [{name: c}]\nracks: [{name: r, row: nope}]\n")
    result = runner.invoke(main, ["inventory", "sd", "--file", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "unknown row 'nope'" in result.output
    result = runner.invoke(main, ["check-config", "--kind", "inventory", str(EXAMPLE)])
    assert result.exit_code == 0 and "valid inventory config" in result.output
    result = runner.invoke(main, ["exporter", "inventory", "--help"])
    assert result.exit_code == 0 and "--file" in result.output
