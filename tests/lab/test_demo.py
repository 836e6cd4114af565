"""``powerplane demo`` end to end: a user's run, and the coherence of its meters under a real Prometheus.

One demo lab (module-scoped: started once, stopped when these tests end) serves the coherence
tests: in steady state every node's BMC, PDU outlets and RAPL + GPU + modelled rest agree, rack
and cluster sums agree across sources, the cooler's output matches the IT load and no alert
fires; a RAPL and a GPU cap lower the cluster power by what they cut.  Prometheus figures are
averages over a window; the lab's ground truth (``ClusterModel.truth``) is integrated over the
same window.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from powerplane.lab import procs
from powerplane.lab.demo import DemoContext, run_demo, start_demo
from powerplane.lab.faults import FAULTS, standing_alerts
from powerplane.lab.model import PDU_ACCURACY, ClusterModel, Truth

from ..conftest import require_binary

#: The lab's scrape and evaluation interval: the shortest its SNMP jobs' 4 s scrape timeout allows.
SCRAPE_S = 4
#: Seconds of Prometheus history each comparison averages over: twelve scrapes.
WINDOW_S = 12 * SCRAPE_S
#: Seconds the cap's test needs after the window before it: the cap settles (15 s), its window.
CAP_S = 15 + WINDOW_S + 5


def _free_base(span: int = 40) -> int:
    """A base port with ``span`` free ports above it."""
    for base in range(24000, 60000, 97):
        try:
            for port in range(base, base + span):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:  # follows redirects, as a browser does
        return int(response.status)


@pytest.mark.e2e
def test_demo_as_a_user_runs_it(tmp_path: Path) -> None:
    """Fixed ports, working URLs on Debian's Prometheus, the injected faults alerting, a clean Ctrl-C."""
    require_binary("prometheus")
    require_binary("alertmanager")
    base = _free_base()
    argv = [
        sys.executable,
        "-m",
        "powerplane.cli",
        "demo",
        "--nodes",
        "2",
        "--workdir",
        str(tmp_path / "demo"),
    ]
    proc = subprocess.Popen(
        [*argv, "--base-port", str(base), "--inject", "all"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    assert proc.stdout is not None

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        procs.wait_until(lambda: any("Press Ctrl-C" in line for line in lines), 180, what="the demo to start")
        urls = dict(re.findall(r"^\s+(.+?)\s{2,}(https?://\S+)$", "".join(lines), re.M))
        assert urls["Prometheus graph"] == f"http://127.0.0.1:{base}/graph"
        assert urls["Alertmanager"] == f"http://127.0.0.1:{base + 1}/#/alerts"
        assert urls["RAPL exporter (node-01)"] == f"http://127.0.0.1:{base + 10}/"
        for name, url in urls.items():
            # APIs want query parameters (the fake ENTSO-E) or a token (slurmrestd).
            if not name.startswith(("Fake ENTSO-E", "slurmrestd")):
                assert _status(url) == 200, name
        injected = [line.split("injected: ", 1)[1] for line in lines if "injected: " in line]
        assert [line.split(":", 1)[0] for line in injected] == list(FAULTS), "".join(lines)
        # Each fault's alerts, and only those and the standing ones, are pending or firing soon.
        expected = {alert for fault in FAULTS.values() for alert in fault.alerts}
        expected |= {
            line.split("standing alert: ", 1)[1].split(" ")[0] for line in lines if "standing alert: " in line
        }

        def alerting() -> set[str] | None:
            _, body = procs.http_get(f"http://127.0.0.1:{base}/api/v1/query?query=ALERTS")
            names = {r["metric"]["alertname"] for r in json.loads(body)["data"]["result"]}
            return names if names >= expected else None

        assert procs.wait_until(alerting, 120, interval=2.0, what="the injected faults' alerts") == expected
        am = f"http://127.0.0.1:{base + 1}/api/v2/alerts"

        def leak_alert() -> bool:
            _, body = procs.http_get(am)
            return any(a["labels"]["alertname"] == "PowerplaneCoolerLeakDetected" for a in json.loads(body))

        procs.wait_until(leak_alert, 60, interval=2.0, what="the leak's alert in Alertmanager")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        reader.join(5)
        proc.stdout.close()
    assert code == 0, "".join(lines)
    assert "powerplane demo: stopped" in "".join(lines)


@pytest.mark.e2e
async def test_duration_ends_the_demo_by_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    await run_demo(nodes=1, duration=2.0, workdir=tmp_path, with_prometheus=False)
    out = capsys.readouterr().out
    assert "Running for 2s." in out and out.rstrip().endswith("powerplane demo: stopped")
    assert time.monotonic() - started < 120


async def test_a_taken_base_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with contextlib.AsyncExitStack() as stack:
            ctx = DemoContext(tmp_path, ["node-01"], stack, base_port=port - 10)
            with pytest.raises(
                Exception, match=rf"port {port} \(--base-port {port - 10} \+ 10\) is not free"
            ):
                ctx.port()


# --- the coherent lab ----------------------------------------------------------------------------


@dataclass
class Lab:
    ctx: DemoContext
    prom: procs.Prometheus
    model: ClusterModel
    started: float
    #: The steady-state window (mean powers, its end), for the cap to compare with.
    steady: tuple[Truth, float] | None = None

    def window(self, seconds: float = WINDOW_S) -> tuple[Truth, float]:
        """Mean powers over the next ``seconds``, and the time the window ends (for Prometheus)."""
        first = self.model.truth()
        time.sleep(seconds)  # the window is a stretch of real time, not a condition to poll for
        last = self.model.truth()
        return last.mean_watts(first), last.at

    def by(self, label: str, expr: str, at: float) -> dict[str, float]:
        return {r["metric"][label]: float(r["value"][1]) for r in self.prom.query(expr, at)}

    def one(self, expr: str, at: float) -> float:
        value = self.prom.value(expr, at)
        assert value is not None, expr
        return value


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_binary("prometheus")
    require_binary("alertmanager")
    with procs.BackgroundLoop() as loop:
        stack = contextlib.AsyncExitStack()
        ctx = loop.run(
            start_demo(stack, tmp_path_factory.mktemp("demo"), scrape_interval=f"{SCRAPE_S}s"), timeout=300
        )
        try:
            prom = ctx.shared["prometheus"]
            targets = sum(len(sc["targets"]) for job in ctx.scrape_configs for sc in job["static_configs"])
            prom.wait_targets_up(targets, timeout=120)
            # Two scrapes of everything, so every window below has its samples.
            prom.wait_value("min(count_over_time(up[1m])) >= 2", timeout=60)
            time.sleep(10)  # the start's burst of processes passes before anything is measured
            yield Lab(ctx, prom, ctx.cluster(), time.time())
        finally:
            loop.run(stack.aclose(), timeout=120)


def _node_figures(lab: Lab, at: float, span: int) -> dict[str, dict[str, float]]:
    rng = f"[{span}s]"
    figures = {
        "bmc": lab.by("node", f"avg_over_time(powerplane_redfish_power_watts{rng})", at),
        "pdu": lab.by(
            "node",
            f"sum by (node) (avg_over_time(powerplane_pdu_outlet_power_watts{rng})"
            " * on (pdu, outlet) group_left (node) max by (pdu, outlet, node) (powerplane_pdu_outlet_info))",
            at,
        ),
        "rapl": lab.by(
            "node",
            f'sum by (node) (rate(powerplane_rapl_energy_joules_total{{zone=~"package|dram"}}{rng}))',
            at,
        ),
        "gpu": lab.by("node", f"sum by (node) (avg_over_time(powerplane_gpu_power_watts{rng}))", at),
    }
    return figures


@pytest.mark.e2e
def test_steady_state_every_source_agrees(lab: Lab) -> None:
    _within_one_quarter(lab, WINDOW_S + 5)
    truth, at = lab.steady = lab.window()
    span = round(truth.t)
    figures = _node_figures(lab, at, span)
    for node, parts in truth.nodes.items():
        bmc, pdu = figures["bmc"][node], figures["pdu"][node]
        rapl, gpu = figures["rapl"][node], figures["gpu"][node]
        metered = rapl + gpu + parts["rest"]
        print(
            f"\n{node}: BMC {bmc:.1f} W, PDU {pdu:.1f} W ({pdu / bmc - 1:+.2%}), RAPL+GPU+rest "
            f"{metered:.1f} W ({metered / bmc - 1:+.2%}), truth {parts['input']:.1f} W"
        )
        # The BMC reports the node's input power; the PDU outlets feeding its PSUs meter the same.
        assert bmc == pytest.approx(parts["input"], rel=0.02), (node, figures, parts)
        assert pdu == pytest.approx(bmc, rel=PDU_ACCURACY, abs=2.0), node
        # What RAPL and NVML meter plus what nothing meters (fans, board, PSU losses) is the input.
        assert rapl == pytest.approx(parts["packages"] + parts["drams"], rel=0.02), node
        assert gpu == pytest.approx(parts["gpus"], rel=0.02), node
        assert metered == pytest.approx(bmc, rel=0.02), node
    rng = f"[{span}s]"
    bmc_racks = lab.by("rack", f"avg_over_time(rack:powerplane_power_watts:sum{rng})", at)
    pdu_racks = lab.by("rack", f"avg_over_time(rack:powerplane_pdu_power_watts:sum{rng})", at)
    model = lab.model
    for rack in model.layout.racks:
        own = sum(p.own_w for p in model.layout.rack_pdus(rack.name))
        members = [n.name for n in model.layout.nodes if n.rack == rack.name]
        metered = sum(figures["rapl"][n] + figures["gpu"][n] + truth.nodes[n]["rest"] for n in members)
        assert bmc_racks[rack.name] == pytest.approx(metered, rel=0.02), rack.name
        # A rack's PDUs carry its nodes and their own electronics.
        assert pdu_racks[rack.name] == pytest.approx(bmc_racks[rack.name] + own, rel=PDU_ACCURACY), rack.name
        assert pdu_racks[rack.name] == pytest.approx(truth.racks[rack.name], rel=PDU_ACCURACY), rack.name
    cluster = lab.one(f"avg_over_time(cluster:powerplane_power_watts:sum{rng})", at)
    assert cluster == pytest.approx(sum(bmc_racks.values()), rel=0.001)
    assert cluster == pytest.approx(truth.cluster(), rel=0.01)
    assert cluster == pytest.approx(
        sum(pdu_racks.values()) - sum(p.own_w for p in model.layout.pdus), rel=0.01
    )
    # In-row coolers remove what the racks dissipate (and their own fans' heat).
    ratio = lab.by("cooler", f"avg_over_time(cooler:powerplane_cooling_output_over_it_power:ratio{rng})", at)
    assert set(ratio) == set(model.coolers)
    assert all(0.9 <= r <= 1.1 for r in ratio.values()), ratio
    cooler = next(iter(model.coolers))
    supply = lab.one(f'avg_over_time(powerplane_cooling_temperature_celsius{{point="supply"}}{rng})', at)
    back = lab.one(f'avg_over_time(powerplane_cooling_temperature_celsius{{point="return"}}{rng})', at)
    heat = truth.coolers[cooler]
    # Return air is supply air warmed by the heat at the airflow the fans move.
    airflow = lab.one(f"avg_over_time(powerplane_cooling_airflow_cubic_meters_per_second{rng})", at)
    assert back - supply == pytest.approx(heat / (1.2 * 1005 * airflow), abs=0.3)


@pytest.mark.e2e
def test_steady_state_raises_no_alert(lab: Lab) -> None:
    span = round(time.time() - lab.started)
    # At any moment since the lab started, the standing ones aside (a Slurm node drained on
    # purpose, say), which the demo prints as such.
    standing = set(standing_alerts(lab.ctx))
    firing = lab.prom.query(f'max_over_time(ALERTS{{alertstate="firing"}}[{span}s])')
    assert [r["metric"] for r in firing if r["metric"]["alertname"] not in standing] == []
    # Pending, for more than a transition: a cap the controller sets at a quarter hour reaches
    # Prometheus through two exporters scraped at different moments (the GPU's limit, then the
    # controller's cap), which one or two evaluations can see apart; `for` absorbs that.  So:
    # never pending three evaluations in a row (a window of 2.5 evaluations holds three at most).
    in_a_row = f'count_over_time(ALERTS{{alertstate="pending"}}[{SCRAPE_S * 5 // 2}s])'
    pending = lab.prom.query(f"max_over_time({in_a_row}[{span}s:{SCRAPE_S}s])")
    longer = [r for r in pending if r["metric"]["alertname"] not in standing and float(r["value"][1]) > 2]
    print("\npending, most evaluations in a row:", {r["metric"]["alertname"]: r["value"][1] for r in pending})
    assert longer == []
    received = lab.ctx.shared["alertmanager"].alerts()
    assert [a["labels"] for a in received if a["labels"]["alertname"] not in standing] == []


def _quarter_left() -> float:
    now = datetime.now(UTC)
    return 900 - (now.minute % 15 * 60 + now.second + now.microsecond / 1e6)


def _settle_s(lab: Lab) -> float:
    """Seconds after a quarter hour before the lab is steady again.

    The controllers reconcile at the boundary (a few seconds), then the coolers' output follows
    the step in the racks' load with its thermal lag: after three lags, 5 % of the step is left.
    """
    return 10 + 3 * max(spec.lag_s for spec in lab.model.layout.coolers)


def _within_one_quarter(lab: Lab, seconds: float) -> None:
    """Wait until ``seconds`` fit in this quarter hour, and the last one's step has settled.

    At each quarter hour the demo's controllers reconcile: they set or lift price caps (the
    demo's price spike begins at one), and with no cap due they put the GPUs' default limits
    back.  A window that spans one, or starts before the coolers have followed the step, would
    compare meters sampled on both sides of it.
    """
    settle, left = _settle_s(lab), _quarter_left()
    if left < seconds:
        time.sleep(left + settle)  # the boundary is a time, not a state to poll for
    elif 900 - left < settle:
        time.sleep(settle - (900 - left))


def _before_the_cap(lab: Lab) -> tuple[Truth, float]:
    """A window before the cap, in the quarter hour the cap's window ends in."""
    needed = CAP_S
    if lab.steady is not None:
        truth, at = lab.steady
        started = at - truth.t
        if started > time.time() + _quarter_left() - 900 and _quarter_left() > needed:
            return lab.steady
    _within_one_quarter(lab, needed + WINDOW_S)
    return lab.window()


def _cap(lab: Lab) -> dict[str, Any]:
    """Node-01's GPUs at 200 W, node-02's at 100 W (their minima), node-03's packages at 100 W."""
    nodes = lab.model.nodes
    for node, watts in (("node-01", 200), ("node-02", 100)):
        nvml = nodes[node].nvml
        assert nvml is not None
        for i in range(len(nvml.gpus)):
            nvml.set_power_limit_mw(i, watts * 1000)
    powercap = nodes["node-03"].powercap
    for s in range(len(nodes["node-03"].spec.packages)):
        (powercap.zone_dir(f"intel-rapl:{s}") / "constraint_0_power_limit_uw").write_text("100000000\n")
    return {"powercap": powercap, "nvml": [nodes["node-01"].nvml, nodes["node-02"].nvml]}


def _uncap(lab: Lab, capped: dict[str, Any]) -> None:
    for nvml in capped["nvml"]:
        nvml.reset_power_limits()
    node = lab.model.nodes["node-03"]
    for s, package in enumerate(node.spec.packages):
        path = node.powercap.zone_dir(f"intel-rapl:{s}") / "constraint_0_power_limit_uw"
        path.write_text(f"{round(package.tdp_w * 1e6)}\n")


@pytest.mark.e2e
@pytest.mark.timeout(480)
def test_caps_lower_the_cluster_power_by_what_they_cut(lab: Lab) -> None:
    before, at_before = _before_the_cap(lab)
    cost_before = lab.one(
        f"avg_over_time(cluster:powerplane_energy_cost_eur_per_hour:sum[{WINDOW_S}s])", at_before
    )
    capped = _cap(lab)
    try:
        time.sleep(15)  # new readings reach every meter, then Prometheus's recording rules
        after, at_after = lab.window()
        cost_after = lab.one(
            f"avg_over_time(cluster:powerplane_energy_cost_eur_per_hour:sum[{WINDOW_S}s])", at_after
        )
        sources = {
            "bmc": "avg_over_time(cluster:powerplane_power_watts:sum[{r}])",
            "pdu": "sum(avg_over_time(rack:powerplane_pdu_power_watts:sum[{r}]))",
        }
        power = {
            source: [
                lab.one(expr.format(r=f"{round(w.t)}s"), at)
                for w, at in ((before, at_before), (after, at_after))
            ]
            for source, expr in sources.items()
        }
    finally:
        _uncap(lab, capped)
    # What the caps took: the model's counterfactual (the same loads, uncapped) minus what it drew,
    # less what the demo's controller was cutting already (at a high price).
    cut = after.cluster("uncapped_input") - after.cluster("input")
    cut -= before.cluster("uncapped_input") - before.cluster("input")
    # During the demo's price spike the controller already holds much of what these caps would
    # cut (400-620 W were left to cut in the runs seen); at lower prices, over 1,100 W.
    assert cut > 300, cut
    # The loads move by themselves meanwhile; the model knows by how much.
    drift = before.cluster("uncapped_input") - after.cluster("uncapped_input")
    print(f"\ncap: cut {cut:.0f} W, drift {drift:.0f} W, cluster before/after {power}")
    for source, (p_before, p_after) in power.items():
        assert p_before - p_after - drift == pytest.approx(cut, rel=0.02), source
    # The price did not change within the quarter: the cost falls as the power does.
    assert cost_after / cost_before == pytest.approx(power["bmc"][1] / power["bmc"][0], rel=0.01)
    # The exporter read the limits that were in force.
    limits = lab.by(
        "node",
        'sum by (node) (powerplane_rapl_power_limit_watts{constraint="long_term",zone="package"})',
        at_after,
    )
    assert limits["node-03"] == pytest.approx(200.0)
