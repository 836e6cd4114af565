"""The inventory exporter: info metrics, reloads that keep the last good inventory, the CLI."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from powerplane.cli import main
from powerplane.exporters.inventory.exporter import make_server
from powerplane.lab.inventory import demo_inventory
from tests.conftest import Serve
from tests.helpers import parse, undocumented, value

from .conftest import EXAMPLE


async def test_exporter_serves_info_metrics_and_keeps_last_good_on_bad_reload(
    tmp_path: Path, serve: Serve
) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(EXAMPLE.read_text())
    served = await serve(make_server(path))
    _, text = await served.get("/metrics")
    samples = parse(text)
    assert undocumented(text) == set()
    node = {
        "rack": "a01",
        "row": "row-a",
        "cluster": "hpc-1",
        "bmc": "https://10.20.2.101",
        "partition": "gpu",
    }
    assert value(samples, "powerplane_node_info", node="gpu-a01-01", **node) == 1
    assert value(samples, "powerplane_pdu_outlet_info", pdu="pdu-a01-l", outlet="4") == 1
    assert value(samples, "powerplane_rack_power_budget_watts", rack="a02") == 22000
    assert value(samples, "powerplane_node_gpus", node="gpu-a01-02") == 8
    assert value(samples, "powerplane_cooler_rack_info", cooler="irc-a01", rack="a02") == 1
    assert value(samples, "powerplane_cluster_info", cluster="hpc-1") == 1
    assert value(samples, "powerplane_inventory_pdu_phase_rated_current_amperes", pdu="pdu-a02-l") == 32
    assert value(samples, "powerplane_inventory_pdu_rated_power_watts", pdu="pdu-a02-l") == 22000
    assert value(samples, "powerplane_inventory_pdu_info", pdu="pdu-a02-l", rack="a02") == 1
    assert value(samples, "powerplane_scrape_collector_success", collector="inventory") == 1

    path.write_text("clusters: [{name: x}]\nnodes: [{name: n, rack: missing}]\n")
    samples = parse((await served.get("/metrics"))[1])
    assert value(samples, "powerplane_scrape_collector_success", collector="inventory") == 0
    assert value(samples, "powerplane_node_info", node="gpu-a01-01") == 1  # last good kept

    path.write_text(yaml.safe_dump(demo_inventory(["solo"])))
    samples = parse((await served.get("/metrics"))[1])
    assert value(samples, "powerplane_scrape_collector_success", collector="inventory") == 1
    assert [dict(k)["node"] for k in samples["powerplane_node_info"]] == ["solo"]


def test_cli_sd_and_check_config(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["inventory", "sd", "--config", str(EXAMPLE), "--out", str(tmp_path / "sd")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sd" / "redfish.json").exists()
    # --file, the former spelling, still works.
    result = runner.invoke(main, ["inventory", "sd", "--file", str(EXAMPLE), "--out", str(tmp_path / "sd2")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sd2" / "redfish.json").read_text() == (tmp_path / "sd" / "redfish.json").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters: [{name: c}]\nracks: [{name: r, row: nope}]\n")
    result = runner.invoke(main, ["inventory", "sd", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "unknown row 'nope'" in result.output
    result = runner.invoke(main, ["check-config", "--kind", "inventory", str(EXAMPLE)])
    assert result.exit_code == 0 and "valid inventory config" in result.output
    result = runner.invoke(main, ["exporter", "inventory", "--help"])
    assert result.exit_code == 0 and "--config" in result.output
