"""SNMP v1, v2c and v3 authPriv against the net-snmp agent."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from powerplane.exporters.snmp.config import KIND
from powerplane.exporters.snmp.exporter import make_server
from powerplane.lab.snmp import V3_AUTH, V3_PRIV, Snmpd
from tests.conftest import Serve
from tests.helpers import parse, value

from .conftest import V3_AUTH_SPEC, probe


@pytest.mark.parametrize("auth", ["v1", "v2c", "v3", "v3-wrong"])
async def test_versions_against_snmpd(
    tmp_path: Path,
    snmpd: Snmpd,
    serve: Serve,
    auth: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("T_COMMUNITY", "public")
    monkeypatch.setenv("T_AUTH", V3_AUTH)
    monkeypatch.setenv("T_PRIV", V3_PRIV if auth != "v3-wrong" else "not-the-password")
    profile = tmp_path / "host.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "name": "host_probe",
                "kind": "pdu",
                "sys_object_ids": ["1.3.6.1.4.1.8072.3.2"],
                "tables": [
                    {
                        "name": "uptime",
                        "columns": {"services": "1.3.6.1.2.1.1.7"},
                        "metrics": [{"metric": "powerplane_pdu_power_watts", "column": "services"}],
                    }
                ],
            }
        )
    )
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "auths": {
                    "v1": {"version": 1, "community": {"env": "T_COMMUNITY"}},
                    "v2c": {"version": 2, "community": {"env": "T_COMMUNITY"}},
                    "v3": V3_AUTH_SPEC,
                    "v3-wrong": V3_AUTH_SPEC,
                },
                "default_auth": "v2c",
                "allow": ["127.0.0.1/32:*"],
                "timeout": 3,
                "profile_files": [str(profile)],
            }
        )
    )
    status, text = await probe(
        await serve(make_server(config)), f"target=127.0.0.1:{snmpd.port}&auth={auth}", "2"
    )
    samples = parse(text)
    assert status == 200
    if auth == "v3-wrong":
        assert value(samples, "powerplane_target_up") == 0
        assert "not-the-password" not in text
    else:
        assert value(samples, "powerplane_target_up") == 1
        assert value(samples, "powerplane_pdu_power_watts") == 72.0  # sysServices from the generated config
