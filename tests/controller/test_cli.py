"""``powerplane controller``: reconcile-once JSON, restore, and the agent process under SIGTERM/SIGKILL."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from powerplane.cli import main
from powerplane.lab import procs
from powerplane.lab.powercap import PowercapLab, intel_server
from tests.controller.conftest import limit_uw
from tests.helpers import parse, undocumented

POLICY = {
    "apiVersion": "powerplane.io/v1alpha1",
    "kind": "PowerCapPolicy",
    "metadata": {"name": "price"},
    "spec": {
        "signal": {"market": {"url": "http://127.0.0.1:9/curve"}},
        "policy": {"type": "linear", "linear": {"minWatts": 200, "maxWatts": 500, "signalMax": 300}},
    },
}
CURVE = "start,price\n2026-03-29T00:45:00Z,50\n2026-03-29T01:00:00Z,290\n"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[PowercapLab, Path, Path]:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2)).create()
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    prices = tmp_path / "prices.csv"
    prices.write_text(CURVE)
    return lab, policy, prices


def once_result(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["controller", "reconcile-once", "--no-gpu", "--state-file", str(tmp_path / "state.json"), *args],
    )


def once(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Exit code and stdout (the JSON outcome) when it succeeds, else everything it wrote."""
    result = once_result(tmp_path, *args)
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_reconcile_once_with_prices_at_an_instant(
    setup: tuple[PowercapLab, Path, Path], tmp_path: Path
) -> None:
    lab, policy, prices = setup
    # 03:00 CEST on the spring DST day is 01:00 UTC: the expensive period.
    code, out = once(
        tmp_path, "--policy", str(policy), "--path.sysfs", str(lab.root), "--prices", str(prices),
        "--at", "2026-03-29T03:05:00+02:00", "--node", "n1",
    )  # fmt: skip
    assert code == 0, out
    doc = json.loads(out)
    assert doc["decision"]["period_start"] == "2026-03-29T01:00:00Z"
    assert doc["decision"]["signal"] == 290 and doc["decision"]["watts"] == 200
    assert [(d["domain"], d["status"], d["applied_watts"]) for d in doc["domains"]] == [
        ("package-0", "applied", 100.0),
        ("package-1", "applied", 100.0),
    ]
    assert limit_uw(lab) == 100_000_000
    # restore puts the originals back
    result = CliRunner().invoke(
        main,
        [
            "controller",
            "restore",
            "--no-gpu",
            "--path.sysfs",
            str(lab.root),
            "--state-file",
            str(tmp_path / "state.json"),
        ],
    )
    assert result.exit_code == 0 and limit_uw(lab) == 250_000_000


def test_reconcile_once_missing_period_releases(
    setup: tuple[PowercapLab, Path, Path], tmp_path: Path
) -> None:
    lab, policy, prices = setup
    code, out = once(
        tmp_path, "--policy", str(policy), "--path.sysfs", str(lab.root), "--prices", str(prices),
        "--at", "2026-03-29T05:00:00Z",
    )  # fmt: skip
    doc = json.loads(out)
    assert code == 0
    assert (doc["decision"]["watts"], doc["decision"]["reason"]) == (None, "signal-lost-release")
    assert {d["status"] for d in doc["domains"]} == {"unchanged"}
    assert limit_uw(lab) == 250_000_000


def test_reconcile_once_signal_value_dry_run(setup: tuple[PowercapLab, Path, Path], tmp_path: Path) -> None:
    lab, policy, _ = setup
    code, out = once(
        tmp_path, "--policy", str(policy), "--path.sysfs", str(lab.root), "--signal-value", "150", "--dry-run"
    )
    doc = json.loads(out)
    assert code == 0 and doc["result"] == "dry_run" and doc["decision"]["watts"] == 250
    # One spelling: the reconcile's result and each domain's status alike.
    assert {d["status"] for d in doc["domains"]} == {"dry_run"}
    assert limit_uw(lab) == 250_000_000 and not (tmp_path / "state.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "yesterday", "--signal-value", "1"], "ISO-8601"),
        (["--at", "2026-01-01T00:00:00", "--signal-value", "1"], "UTC offset"),
        (["--signal-value", "1", "--prices", "PRICES"], "not both"),
        (["--at", "0001-01-01T00:00:00+14:00", "--signal-value", "1"], "out of range"),
        (["--path.sysfs", "/sys", "--sysfs", "/sys", "--signal-value", "1"], "--path.sysfs only"),
    ],
)
def test_reconcile_once_bad_arguments(
    setup: tuple[PowercapLab, Path, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    lab, policy, prices = setup
    args = [str(prices) if a == "PRICES" else a for a in args]
    code, out = once(tmp_path, "--policy", str(policy), "--path.sysfs", str(lab.root), *args)
    assert code != 0 and message in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("signal: {}\npolicy: {type: linear}\n", "signal: {} should be non-empty"),
        ("- a\n- b\n", "is not of type 'object'"),
        ("signal: {static: {value: 1}}\npolicy: {type: linear, linaer: {}}\n", "unknown key(s) 'linaer'"),
        ("signal: {static: {value: 1}}\npolicy: {type: linear}\n", "missing field 'linear'"),
        ("kind: PowerCapPolicy\nmetadata: {name: Bad_Name}\nspec: {}\n", "metadata.name"),
        ("signal: {static: {value: 1}}\npolicy: {type: bands, bands: {thresholds: []}}\n", "thresholds"),
        (": : :\n", "invalid YAML"),
    ],
)
def test_reconcile_once_invalid_policy(
    setup: tuple[PowercapLab, Path, Path], tmp_path: Path, text: str, message: str
) -> None:
    lab, _, _ = setup
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    code, out = once(tmp_path, "--policy", str(bad), "--path.sysfs", str(lab.root), "--signal-value", "1")
    assert code != 0 and message in out


def test_reconcile_once_bad_curve(setup: tuple[PowercapLab, Path, Path], tmp_path: Path) -> None:
    lab, policy, prices = setup
    # Comment lines are skipped, and the error names the file and its own line number.
    prices.write_text("# EUR/MWh\nstart,price\n\n# spring\n2026-03-29T00:45:00Z,lots\n")
    result = once_result(
        tmp_path, "--policy", str(policy), "--path.sysfs", str(lab.root), "--prices", str(prices)
    )
    doc = json.loads(result.stdout)
    assert result.exit_code == 0
    # A broken curve is a lost signal (logged), never a cap.
    assert doc["decision"]["reason"] == "signal-lost-release" and limit_uw(lab) == 250_000_000
    assert "signal unavailable" in result.stderr
    assert f"{prices.name}: line 5: could not convert string to float: 'lots'" in result.stderr


def test_crd_command_prints_the_crd() -> None:
    result = CliRunner().invoke(main, ["controller", "crd"])
    assert yaml.safe_load(result.output)["metadata"]["name"] == "powercappolicies.powerplane.io"


def _agent(tmp_path: Path, lab: PowercapLab, policy: Path, port: int) -> procs.Process:
    return procs.Process(
        [
            sys.executable, "-m", "powerplane.cli", "controller", "run", "--no-gpu", "--node", "n1",
            "--path.sysfs", str(lab.root), "--state-file", str(tmp_path / "state.json"),
            "--local-policy", str(policy), f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "agent.log",
    )  # fmt: skip


def test_agent_process_restores_on_sigterm_and_after_a_crash(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2)).create()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump({**POLICY, "spec": {**POLICY["spec"], "signal": {"static": {"value": 300}}}})
    )
    port = procs.free_port()
    agent = _agent(tmp_path, lab, policy, port)
    try:
        procs.wait_until(lambda: limit_uw(lab, "intel-rapl:1") == 100_000_000, 30, what="the cap")
        status, body = procs.http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        text = body.decode()
        assert undocumented(text) == set()
        assert parse(text)["powerplane_controller_cap_applied_watts"]
        # A crash: the limits stay capped and the state file keeps the originals.
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
        assert limit_uw(lab) == 100_000_000 and (tmp_path / "state.json").exists()
    finally:
        agent.stop()
    # The next start restores the originals before anything else, then caps again: the state
    # file must hold the true originals (250 W), not the 100 W the crash left behind.
    policy.write_text(
        yaml.safe_dump({**POLICY, "spec": {**POLICY["spec"], "signal": {"static": {"value": 150}}}})
    )
    agent = _agent(tmp_path, lab, policy, port)
    try:
        procs.wait_until(lambda: limit_uw(lab) == 125_000_000, 30, what="the new cap")
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["rapl"]["intel-rapl:0"]["long_term"] == 250_000_000
        assert "restoring power limits left by an earlier run" in agent.log_tail(50)
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(20) == 0
    finally:
        agent.stop()
    assert limit_uw(lab) == 250_000_000 and limit_uw(lab, "intel-rapl:1") == 250_000_000
    assert not (tmp_path / "state.json").exists()


def test_check_config_knows_policy_files(setup: tuple[PowercapLab, Path, Path], tmp_path: Path) -> None:
    _, policy, _ = setup
    result = CliRunner().invoke(main, ["check-config", str(policy)])
    assert result.exit_code == 0 and "valid powercappolicy config" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**POLICY, "spec": {**POLICY["spec"], "dwell": 5}}))
    result = CliRunner().invoke(main, ["check-config", "--kind", "powercappolicy", str(bad)])
    assert result.exit_code == 1 and "unknown key(s) 'dwell'" in result.output


def test_check_config_refuses_credentials_in_a_signal_url_without_echoing_them(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    url = "http://agent:hunter2pass@127.0.0.1:9090"
    policy.write_text(
        yaml.safe_dump(
            {**POLICY, "spec": {**POLICY["spec"], "signal": {"promql": {"url": url, "query": "up"}}}}
        )
    )
    for args in (["check-config", str(policy)], ["check-config", "--kind", "powercappolicy", str(policy)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1
        assert "hunter2pass" not in result.output
    assert "spec.signal.promql.url: credentials in the URL are refused" in result.output
    # The credentials go in auth, from the environment or a file; check-config shows the reference only.
    policy.write_text(
        yaml.safe_dump(
            {
                **POLICY,
                "spec": {
                    **POLICY["spec"],
                    "signal": {
                        "promql": {
                            "url": "http://127.0.0.1:9090",
                            "query": "up",
                            "auth": {
                                "basicAuth": {"username": "agent", "password": {"env": "PROM_PASSWORD"}}
                            },
                        }
                    },
                },
            }
        )
    )
    result = CliRunner().invoke(main, ["check-config", "--kind", "powercappolicy", str(policy)])
    assert result.exit_code == 0, result.output
    assert "PROM_PASSWORD" in result.output and "hunter2pass" not in result.output


def documented_policy(name: str) -> dict[str, Any]:
    """A PowerCapPolicy example of docs/controller.md, as written there."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "controller.md").read_text()
    for block in text.split("```yaml")[1:]:
        doc = yaml.safe_load(block.split("```")[0])
        if isinstance(doc, dict) and doc.get("metadata", {}).get("name") == name:
            return doc
    raise AssertionError(f"no policy {name} in docs/controller.md")


def test_documented_price_bands_on_a_cpu_only_node_never_raise_a_limit(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2)).create()  # 250 W limits, 350 W max
    policy = tmp_path / "price-bands.yaml"
    policy.write_text(yaml.safe_dump(documented_policy("price-bands")))
    # A Monday morning in Paris (no override window); 400 EUR/MWh is the "extreme" band, 5000 W.
    code, out = once(
        tmp_path, "--policy", str(policy), "--path.sysfs", str(lab.root), "--signal-value", "400",
        "--at", "2026-05-04T10:00:00+02:00",
    )  # fmt: skip
    assert code == 0, out
    doc = json.loads(out)
    assert (doc["decision"]["watts"], doc["decision"]["level"]) == (5000, "extreme")
    assert [(d["status"], d["applied_watts"], d.get("clamped")) for d in doc["domains"]] == [
        ("applied", 250.0, True)
    ] * 2
    assert "clamped to the original limit 250 W" in doc["domains"][0]["message"]
    assert limit_uw(lab) == limit_uw(lab, "intel-rapl:1") == 250_000_000


def test_reconcile_once_keeps_the_recorded_originals(tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2)).create()
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    args = ("--policy", str(policy), "--path.sysfs", str(lab.root), "--signal-value")
    assert once(tmp_path, *args, "300")[0] == 0  # 200 W: 100 W per package
    assert limit_uw(lab) == 100_000_000
    # A second run reads 100 W in force, but the original is still the 250 W recorded first.
    code, out = once(tmp_path, *args, "0")  # 500 W: 250 W per package
    assert code == 0 and limit_uw(lab) == 250_000_000, out
    once(tmp_path, *args, "300")
    result = CliRunner().invoke(
        main,
        [
            "controller",
            "restore",
            "--no-gpu",
            "--path.sysfs",
            str(lab.root),
            "--state-file",
            str(tmp_path / "state.json"),
        ],
    )
    assert result.exit_code == 0 and limit_uw(lab) == 250_000_000


def test_reconcile_once_without_powercap_says_so(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    code, out = once(tmp_path, "--policy", str(policy), "--path.sysfs", str(tmp_path), "--signal-value", "1")
    doc = json.loads(out)
    assert code == 0 and doc["domains"] == []
    assert doc["message"].startswith("nothing to cap on this node: no powercap directory at")
    assert "NVML" in doc["message"]


def test_the_old_sysfs_flag_still_works_hidden(setup: tuple[PowercapLab, Path, Path], tmp_path: Path) -> None:
    lab, policy, _ = setup
    code, out = once(tmp_path, "--policy", str(policy), "--sysfs", str(lab.root), "--signal-value", "300")
    assert code == 0 and limit_uw(lab) == 100_000_000, out
    for command in ("run", "reconcile-once", "restore"):
        text = CliRunner().invoke(main, ["controller", command, "--help"]).output
        assert "--path.sysfs" in text and "--sysfs" not in text.replace("--path.sysfs", "")
