"""The status page's config and the outages file: schema, semantic checks, secrets, check-config."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from powerplane.cli import main
from powerplane.exporters.runtime import ConfigError
from powerplane.statuspage import config as cfg
from powerplane.statuspage.outages import KIND as OUTAGES
from powerplane.statuspage.outages import MAX_BYTES, OutagesFile
from powerplane.statuspage.page import configured_queries
from powerplane.statuspage.queries import DEFAULTS, expand

EXAMPLE = """
title: HPC system status
timezone: Europe/Berlin
prometheus:
  url: https://prometheus.example:9090/
  basic_auth: {username: status-page, password: {env: SP_TEST_PROM_PASSWORD}}
alertmanager:
  url: https://alertmanager.example:9093
  bearer_token: {env: SP_TEST_AM_TOKEN}
  public_label: {name: public, value: "true"}
outages_file: /etc/powerplane/outages.yaml
refresh: {data_seconds: 60, page_seconds: 300}
power: {enabled: true}
systems:
  - name: alpha
    title: Alpha (H100)
    cluster: alpha
    partitions: [gpu, cpu]
    login_nodes: ["login1.alpha:9100", "login2.alpha:9100"]
    filesystems:
      - {name: home, instance: "nfs1.alpha:9100", mountpoint: /home}
      - {name: scratch, check: 'probe_success{target="scratch"}'}
"""


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SP_TEST_PROM_PASSWORD", "pr0m-s3cret")
    monkeypatch.setenv("SP_TEST_AM_TOKEN", "am-t0ken")


def test_the_documented_example_loads(secrets: None) -> None:
    config = cfg.KIND.load_text(EXAMPLE)
    assert config.prometheus.url == "https://prometheus.example:9090"
    assert config.prometheus.password is not None and config.prometheus.password.reveal() == "pr0m-s3cret"
    assert "pr0m-s3cret" not in repr(config)
    assert config.alertmanager is not None and config.alertmanager.upstream.bearer_token is not None
    assert config.system("alpha").filesystems[1].check == 'probe_success{target="scratch"}'
    assert config.page_seconds == 300 and config.data_seconds == 60 and config.power
    assert config.prometheus.ssl_context() is not None  # https: verified by default
    queries = configured_queries(config)
    assert queries["fs.alpha.1.check"] == 'probe_success{target="scratch"}'
    assert set(DEFAULTS) <= set(queries)


def test_defaults_and_overrides() -> None:
    doc = {
        "prometheus": {"url": "http://127.0.0.1:9090"},
        "systems": [{"name": "alpha"}],
        "queries": {"login_up": 'min by (instance) (up{job="node"})'},
        "node_states": {"reserved": ["reserved", "maint"]},
    }
    config = cfg.build(doc)
    assert config.system("alpha").cluster == "alpha" and config.system("alpha").title == "alpha"
    assert config.page_seconds == 300 and config.warning_seconds == 600 and config.critical_seconds == 1800
    assert not config.power and "power_watts" not in configured_queries(config)
    assert configured_queries(config)["login_up"] == 'min by (instance) (up{job="node"})'
    assert config.node_classes.classify("maint") == "reserved"
    assert config.node_classes.classify("drained") == "drained"
    assert config.node_classes.classify("something_new") == "other"
    assert config.prometheus.ssl_context() is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prometheus": {"url": "ftp://x"}}, "prometheus.url"),
        ({"prometheus": {"url": "http://x", "bearer_token": "inline"}}, "secrets cannot be written inline"),
        ({"systems": []}, "systems"),
        ({"systems": [{"name": "Alpha!"}]}, "systems.0.name"),
        ({"systems": [{"name": "a"}, {"name": "a"}]}, "'a' is listed twice"),
        ({"queries": {"rm_rf": "up"}}, "queries"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"refresh": {"page_seconds": 0}}, "refresh.page_seconds"),
        ({"staleness": {"warning_seconds": 900, "critical_seconds": 60}}, "critical_seconds"),
        ({"systems": [{"name": "a", "filesystems": [{"name": "x", "instance": "n"}]}]}, "go together"),
        ({"systems": [{"name": "a", "filesystems": [{"name": "x"}]}]}, "or a check query"),
        ({"surprise": 1}, "unknown key(s) 'surprise'"),
        ({"prometheus": {"url": "http://x", "tls": {"ca_file": "/nope.pem"}}}, "is not a readable file"),
        ({"queries": {"power_watts": "vector(1)"}}, "power.enabled is false"),
        (
            {"alertmanager": {"url": "http://x", "public_label": {"name": "p", "value": 'a"b'}}},
            "may not contain",
        ),
    ],
)
def test_bad_configs_name_the_field(change: dict[str, object], message: str) -> None:
    doc: dict[str, object] = {"prometheus": {"url": "http://127.0.0.1:9090"}, "systems": [{"name": "alpha"}]}
    doc.update(change)
    with pytest.raises(ConfigError) as info:
        cfg.KIND.load_text(yaml.safe_dump(doc), "status.yml")
    assert message in str(info.value)
    assert str(info.value).startswith("status.yml: ")


def test_a_missing_secret_is_an_error_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SP_TEST_PROM_PASSWORD", raising=False)
    monkeypatch.setenv("SP_TEST_AM_TOKEN", "x")
    with pytest.raises(ConfigError, match=r"prometheus\.basic_auth\.password: environment variable"):
        cfg.KIND.load_text(EXAMPLE)


def test_check_config_redacts_the_credentials(secrets: None, tmp_path: Path) -> None:
    path = tmp_path / "status.yml"
    path.write_text(EXAMPLE)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid statuspage config" in result.output
    assert "pr0m-s3cret" not in result.output and "am-t0ken" not in result.output
    assert "<redacted> (env:SP_TEST_PROM_PASSWORD)" in result.output


def test_the_command_refuses_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "status.yml"
    path.write_text("prometheus: {url: http://x}\nsystems: [{name: alpha, color: red}]\n")
    result = CliRunner().invoke(main, ["status-page", "--config", str(path)])
    assert result.exit_code != 0
    assert "systems.0: unknown key(s) 'color'" in result.output


# --- the outages file ----------------------------------------------------------------------


def test_outages_take_unquoted_yaml_times_and_strings() -> None:
    items = OUTAGES.load_text(
        "outages:\n"
        "  - {title: A, start: 2026-12-03T08:00:00+01:00, end: '2026-12-03T12:00:00Z', systems: [alpha]}\n"
        "  - {title: B, start: 2026-12-01T00:00:00Z, severity: critical}\n"
    )
    assert [i.title for i in items] == ["B", "A"]  # by start
    a = items[1]
    assert a.start == datetime(2026, 12, 3, 7, 0, tzinfo=UTC) and a.end == datetime(
        2026, 12, 3, 12, 0, tzinfo=UTC
    )
    assert a.applies_to("alpha") and not a.applies_to("beta") and items[0].applies_to("beta")
    assert a.severity == "maintenance" and items[0].end is None
    assert OUTAGES.load_text("outages:\n") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("outages: [{title: A, start: 2026-12-03T08:00:00}]", "give an offset"),
        ("outages: [{title: A, start: 2026-12-03}]", "not only a date"),
        ("outages: [{title: A, start: soon}]", "is not an ISO 8601"),
        ("outages: [{title: A, start: 5}]", "expected a date and time"),
        (
            "outages: [{title: A, start: 2026-12-03T08:00:00Z, end: 2026-12-03T07:00:00Z}]",
            "must be after start",
        ),
        ("outages: [{title: A, start: 2026-12-03T08:00:00Z, severity: apocalyptic}]", "outages.0.severity"),
        ("outages: [{title: A, start: 2026-12-03T08:00:00Z, url: 'javascript:alert(1)'}]", "outages.0.url"),
        ("outages: [{start: 2026-12-03T08:00:00Z}]", "'title' is a required property"),
        ("outages: [{title: A, start: 2026-12-03T08:00:00Z, systems: ['../x']}]", "outages.0.systems.0"),
        ("outages: [{title: A, start: 2026-12-03T08:00:00Z}]\nextra: 1", "unknown key(s) 'extra'"),
        ("outages: [{title: A, start: 2026-12-03T08:00:00Z, title: B}]", "duplicate key"),
    ],
)
def test_bad_outages_name_the_entry_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OUTAGES.load_text(text, "outages.yaml")


def test_the_outages_file_keeps_the_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "outages.yaml"
    path.write_text("outages: [{title: First, start: 2026-12-03T08:00:00Z}]\n")
    source = OutagesFile(path)
    assert [a.title for a in source.load()] == ["First"]
    path.write_text("outages: [{title: Broken, start: tomorrow}]\n")
    os.utime(path, ns=(1, 1))
    with pytest.raises(ConfigError, match=r"outages\.0\.start"):
        source.load()
    assert [a.title for a in source.announcements] == ["First"] and not source.ok
    path.write_bytes(b"outages: []\n" + b"#" * MAX_BYTES)
    with pytest.raises(ConfigError, match="larger than"):
        source.load()
    path.write_bytes(b"outages: [{title: \xff\xfe, start: 2026-12-03T08:00:00Z}]\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        source.load()
    path.unlink()
    with pytest.raises(ConfigError, match="cannot read"):
        source.load()
    path.write_text("outages: [{title: Second, start: 2026-12-03T08:00:00Z}]\n")
    assert [a.title for a in source.load()] == ["Second"] and source.ok


def test_check_config_knows_the_outages_file(tmp_path: Path) -> None:
    path = tmp_path / "announcements.yaml"
    path.write_text("outages: [{title: Upgrade, start: 2026-12-03T08:00:00+01:00}]\n")
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid outages config" in result.output


def test_today_is_the_time_since_local_midnight_across_dst() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29: clocks go from 02:00 to 03:00; at 12:00 local 11 hours have passed.
    noon = datetime(2026, 3, 29, 10, 0, tzinfo=UTC)
    assert expand("x[$today:1m]", noon, berlin) == "x[39600s:1m]"
    assert expand("x[$today]", datetime(2026, 3, 29, 22, 0, 10, tzinfo=UTC), berlin) == "x[60s]"
    assert expand("up", noon, berlin) == "up"
