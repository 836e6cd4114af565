"""Prometheus file_sd output for the Redfish and SNMP probes."""

from __future__ import annotations

import json
from pathlib import Path

from powerplane.exporters.inventory.config import KIND
from powerplane.exporters.inventory.sd import file_sd, write_file_sd

from .conftest import EXAMPLE


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
