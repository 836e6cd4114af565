"""Profiles and the SNMP config: validated, every error at once, no secret echoed, 400s for the rest."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from powerplane.exporters.runtime import ConfigError
from powerplane.exporters.snmp.config import KIND
from powerplane.exporters.snmp.engine import TableWalk
from powerplane.exporters.snmp.exporter import make_server
from powerplane.exporters.snmp.metrics import CATALOGUE
from powerplane.exporters.snmp.profiles import PROFILE_SCHEMA, profile_kind
from tests.conftest import Serve

from .conftest import probe, snmp_config


def test_every_builtin_profile_validates_and_only_declared_metrics() -> None:
    config = KIND.load_text("auths: {a: {version: 2, community: {env: HOME}}}\n")
    assert set(config.profiles) == {
        "apc_rpdu2",
        "raritan_pdu2",
        "servertech_sentry4",
        "vertiv_geist_v5",
        "apc_inrow",
        "apc_inrow_rp",
        "apc_inrow_rd",
    }
    for profile in config.profiles.values():
        for table in profile.tables:
            for rule in table.rules:
                assert rule.metric in CATALOGUE


def _table(metric: str, column: str) -> dict[str, object]:
    """A one-table profile fragment mapping ``metric`` to ``column`` (only column p exists)."""
    return {"name": "t", "columns": {"p": "1.2.3"}, "metrics": [{"metric": metric, "column": column}]}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"tables": [_table("powerplane_pdu_power_watts", "q")]}, "column 'q'"),
        ({"tables": [_table("powerplane_pdu_nope_watts", "p")]}, "unknown metric"),
        ({"tables": [_table("powerplane_pdu_phase_power_watts", "p")]}, "needs labels"),
        ({"tables": [_table("powerplane_pdu_energy_joules_total", "p")]}, "counter"),
        ({"sys_object_ids": ["not-an-oid"]}, "sys_object_ids.0"),
        ({"surprise": 1}, "unknown key"),
    ],
)
def test_bad_profiles_are_rejected_with_the_field(patch: dict[str, object], expected: str) -> None:
    doc: dict[str, object] = {
        "name": "x",
        "kind": "pdu",
        "sys_object_ids": ["1.3.6.1.4.1.99"],
        "tables": [
            {
                "name": "t",
                "columns": {"p": "1.2.3"},
                "metrics": [{"metric": "powerplane_pdu_power_watts", "column": "p"}],
            }
        ],
    }
    doc.update(patch)
    with pytest.raises(ConfigError) as info:
        profile_kind(CATALOGUE).load_text(yaml.safe_dump(doc))
    assert expected in str(info.value)
    assert PROFILE_SCHEMA["additionalProperties"] is False


def test_per_device_concurrency_is_explicit_and_bounded(tmp_path: Path) -> None:
    (tmp_path / "c").write_text("public")
    base = f"auths:\n  a: {{version: 2, community: {{file: {tmp_path / 'c'}}}}}\n"
    assert KIND.load_text(base).per_device_concurrency == 2  # the runtime's default
    config = KIND.load_text(base + "per_device_concurrency: 6\n")
    assert make_server(config)._probe_concurrency[1] == 6
    for bad in ("0", "65", "two"):
        with pytest.raises(ConfigError):
            KIND.load_text(base + f"per_device_concurrency: {bad}\n")


async def test_profile_max_repetitions_reach_every_walk(tmp_path: Path) -> None:
    from powerplane.exporters.runtime import Deadline, FailureLog, run_collectors
    from powerplane.exporters.snmp.exporter import SnmpProber

    sizes: list[int | None] = []

    class Recording:
        """A session that records the GETBULK size each walk asks for."""

        def __init__(self, *_args: object) -> None:
            pass

        async def get(self, oids: object, deadline: object) -> dict[str, object]:
            return {}

        async def walk(
            self, column: str, deadline: object, max_rows: int, max_repetitions: int | None = None
        ) -> list:
            raise AssertionError("tables are walked with walk_table")

        async def walk_table(
            self,
            columns: list[str],
            deadline: object,
            max_rows: int,
            max_repetitions: int | None = None,
            expected_rows: int | None = None,
        ) -> TableWalk:
            sizes.append(max_repetitions)
            return TableWalk()

        async def close(self) -> None:
            pass

    (tmp_path / "c").write_text("public")
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "small_bulk",
                "kind": "pdu",
                "sys_object_ids": ["1.3.6.1.4.1.99999"],
                "max_repetitions": 7,
                "tables": [_table("powerplane_pdu_power_watts", "p")],
            }
        )
    )
    config = KIND.load_text(
        f"auths:\n  a: {{version: 2, community: {{file: {tmp_path / 'c'}}}}}\n"
        f"allow: [127.0.0.1/32]\nprofile_files: [{tmp_path / 'p.yaml'}]\n"
    )
    job = SnmpProber(config, session_factory=Recording).resolve(
        {"target": "127.0.0.1:161", "module": "small_bulk", "auth": "a"}
    )
    await run_collectors("snmp", job.collectors, Deadline.after(5), FailureLog(logging.getLogger("t")))
    assert sizes == [7]


def test_config_errors_all_at_once_and_no_secret_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNMP_SECRET_X", "hunter2-secret")
    text = (
        "auths:\n"
        "  a: {version: 3, username: u, auth_protocol: SHA, auth_password: {env: SNMP_SECRET_X}}\n"
        "  b: {version: 2, community: public}\n"
        "targets:\n  t: {address: 'h:99999', auth: zz}\n"
        "allow: ['no good!']\n"
    )
    with pytest.raises(ConfigError) as info:
        KIND.load_text(text)
    message = str(info.value)
    assert "secrets cannot be written inline" in message
    with pytest.raises(ConfigError) as info:
        KIND.load_text(text.replace("community: public", "community: {env: SNMP_SECRET_X}"))
    message = str(info.value)
    for expected in ("authPriv needs priv_protocol", "invalid port", "unknown auth 'zz'", "allow[0]"):
        assert expected in message
    assert "hunter2" not in message


async def test_unknown_targets_modules_and_auths_get_400(tmp_path: Path, serve: Serve) -> None:
    config = snmp_config(
        tmp_path, ["apc-8641"], "targets:\n  pdu1: {address: '127.0.0.1:1', auth: apc-8641}\n"
    )
    served = await serve(make_server(config))
    for query, fragment in (
        ("target=10.1.2.3", "neither configured nor allowed"),
        ("target=evil.example.com", "neither configured nor allowed"),
        ("target=127.0.0.1.example", "neither configured nor allowed"),  # a name: CIDRs match addresses
        ("", "missing 'target'"),
        ("target=udp://127.0.0.1:161", "scheme 'udp' not allowed"),
        ("target=pdu1&module=nope", "unknown module"),
        ("target=pdu1&auth=nope", "unknown auth"),
    ):
        status, body = await probe(served, query)
        assert status == 400, query
        assert fragment in body, (query, body)


def test_the_documented_config_is_valid() -> None:
    """docs/snmp.md's example: the schema accepts it and its targets and allow rules parse."""
    import re

    from powerplane.exporters.runtime.config import validate
    from powerplane.exporters.runtime.targets import build_policy
    from powerplane.exporters.snmp.config import CONFIG_SCHEMA, PROTOCOL

    text = (Path(__file__).resolve().parents[2] / "docs" / "snmp.md").read_text()
    doc = yaml.safe_load(re.search(r"## Configuration\n\n```yaml\n(.*?)```", text, re.S).group(1))
    assert validate(doc, CONFIG_SCHEMA) == []
    errors: list[str] = []
    modules = {"apc_rpdu2": "profile"}
    policy = build_policy(doc, PROTOCOL, modules, dict.fromkeys(doc["auths"], "auth"), errors)
    assert errors == []
    assert len(policy.allow) == 3 and policy.resolve({"target": "10.1.0.21"}).name == "pdu-a01"
