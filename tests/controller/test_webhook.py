"""The Alertmanager webhook: bearer token, declared actions, idempotency, Events."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from powerplane.controller.agent import LocalBackend
from powerplane.controller.cli import build
from powerplane.controller.webhook import GPU_TEMPERATURE_ALERT, MAX_CRITICAL, GpuSteps
from powerplane.lab import procs
from powerplane.lab.powercap import PowercapLab, intel_server
from tests.conftest import require_binary
from tests.controller.conftest import FakeNvml

TOKEN = "s3cret-token"


POLICY = {
    "kind": "PowerCapPolicy",
    "metadata": {"name": "p"},
    "spec": {
        "signal": {"static": {"value": 0}},
        "policy": {"type": "linear", "linear": {"minWatts": 100, "maxWatts": 2000, "signalMax": 100}},
        "budget": {"cpuShare": 0.1},
    },
}


def alert(
    status: str, fingerprint: str = "", starts: str = "2026-05-04T10:00:00Z", **labels: str
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": {},
        "startsAt": starts,
        "fingerprint": fingerprint or "abc" + labels.get("alertname", ""),
    }


def notification(status: str, **labels: str) -> dict[str, Any]:
    return {"version": "4", "status": status, "alerts": [alert(status, **labels)]}


@pytest.fixture
async def controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN)
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    backend = LocalBackend("n1", documents=[POLICY])
    nvml = FakeNvml()
    agent, server = build(
        "n1",
        backend,
        lab.root,
        tmp_path / "state.json",
        nvml,
        token_spec={"env": "WEBHOOK_TOKEN"},
        steps=GpuSteps((GPU_TEMPERATURE_ALERT, "PowerplaneGpuPowerHigh"), 100.0, 150.0, 600.0),
    )
    _, port = await server.start("127.0.0.1", 0)
    await agent.reconcile()
    yield f"http://127.0.0.1:{port}/webhook/alertmanager", agent, backend, nvml
    await agent.shutdown()
    await server.stop()


async def post(url: str, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def test_gpu_step_down_once_and_ended_on_resolve(controller: Any) -> None:
    url, agent, backend, nvml = controller
    assert nvml.limits == [700_000, 700_000]  # 2000 W * 0.9 = 900 W per GPU, clamped to 700
    alert = notification(
        "firing", alertname="PowerplaneGpuTemperatureCritical", node="n1", gpu="1", severity="critical"
    )
    for _ in range(3):  # Alertmanager repeats notifications
        status, body = await post(url, alert)
        assert status == 200
    assert nvml.limits == [700_000, 600_000]
    assert agent.webhook_actions == {"gpu-step-down": 1}
    assert [e[1] for e in backend.events].count("AlertActionGpuStepDown") == 1
    status, body = await post(
        url, notification("resolved", alertname="PowerplaneGpuTemperatureCritical", node="n1", gpu="1")
    )
    assert body["actions"] == [{"action": "gpu-step-down-ended", "domain": "gpu-1"}]
    assert nvml.limits == [700_000, 700_000]


async def test_critical_node_alert_labels_degraded(controller: Any) -> None:
    url, agent, backend, _ = controller
    await post(url, notification("firing", alertname="PowerplaneNodeDown", node="n1", severity="critical"))
    await post(url, notification("firing", alertname="PowerplaneNodeDown", node="n1", severity="critical"))
    assert backend.labels["powerplane.io/degraded"] == "true"
    assert agent.webhook_actions == {"node-degraded": 1}
    await post(url, notification("resolved", alertname="PowerplaneNodeDown", node="n1", severity="critical"))
    assert "powerplane.io/degraded" not in backend.labels


async def test_other_nodes_and_warnings_are_ignored(controller: Any) -> None:
    url, agent, _backend, nvml = controller
    _, body = await post(
        url, notification("firing", alertname="PowerplaneGpuTemperatureCritical", node="n2", gpu="0")
    )
    _, body2 = await post(
        url, notification("firing", alertname="PowerplaneRackHot", node="n1", severity="warning")
    )
    assert body["actions"] == [] and body2["actions"] == []
    assert agent.webhook_actions == {} and nvml.limits == [700_000, 700_000]


@pytest.mark.parametrize(
    ("token", "body", "status"),
    [
        (None, {"alerts": []}, 401),
        ("wrong", {"alerts": []}, 401),
        (TOKEN, {"alerts": "x"}, 400),
        (TOKEN, [1, 2], 400),
    ],
)
async def test_refuses_bad_requests(controller: Any, token: str | None, body: Any, status: int) -> None:
    url, agent, _, _ = controller
    assert (await post(url, body, token))[0] == status
    assert agent.webhook_actions == {}


@pytest.mark.e2e
def test_real_alertmanager_posts_and_the_action_happens_once(
    tmp_path: Path, background_loop: procs.BackgroundLoop
) -> None:
    binary = require_binary("alertmanager")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    backend = LocalBackend("n1", documents=[POLICY])
    nvml = FakeNvml()
    agent, server = build(
        "n1", backend, lab.root, tmp_path / "state.json", nvml, token_spec={"file": str(token_file)}
    )

    async def start() -> int:
        _, port = await server.start("127.0.0.1", 0)
        await agent.reconcile()
        return port

    port = background_loop.run(start())
    config = {
        "route": {
            "receiver": "controller",
            "group_by": ["node"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "controller",
                "webhook_configs": [
                    {
                        "url": f"http://127.0.0.1:{port}/webhook/alertmanager",
                        "send_resolved": True,
                        "http_config": {"authorization": {"credentials_file": str(token_file)}},
                    }
                ],
            }
        ],
    }
    am = procs.Alertmanager(tmp_path / "am", binary=binary)
    am.config_path.write_text(yaml.safe_dump(config))
    try:
        am.start()
        am_port = am.port

        def fire(*alerts: dict[str, str]) -> None:
            body = json.dumps(
                [{"labels": labels, "annotations": {"summary": "hot"}} for labels in alerts]
            ).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{am_port}/api/v2/alerts",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200

        def log_tail() -> str:
            return am.process.log_tail(200) if am.process else ""

        def wait(condition: Any, what: str) -> None:
            try:
                procs.wait_until(condition, 60, what=what)
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\nAlertmanager log:\n{log_tail()}") from None

        hot = {
            "alertname": "PowerplaneGpuTemperatureCritical",
            "node": "n1",
            "gpu": "0",
            "severity": "critical",
        }
        fire(hot)
        fire(hot)  # Prometheus re-sends firing alerts every evaluation
        wait(lambda: nvml.limits[0] == 600_000, "the GPU step-down written")
        assert agent.webhook_actions == {"gpu-step-down": 1}
        # A second alert in the same group makes Alertmanager notify again with both alerts:
        # the node is marked degraded, the GPU is not stepped down a second time.
        fire(hot, {"alertname": "PowerplaneNodePowerCritical", "node": "n1", "severity": "critical"})
        wait(lambda: agent.webhook_actions.get("node-degraded") == 1, "the degraded label")
        assert agent.webhook_actions == {"gpu-step-down": 1, "node-degraded": 1}
        assert nvml.limits[0] == 600_000
        assert backend.labels["powerplane.io/degraded"] == "true"
        assert [e[1] for e in backend.events].count("AlertActionGpuStepDown") == 1
        assert TOKEN not in log_tail()
    finally:
        am.stop()
        background_loop.run(agent.shutdown())
        background_loop.run(server.stop())


HOT = {"alertname": GPU_TEMPERATURE_ALERT, "node": "n1", "severity": "critical"}


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        ("\u0661", "not a GPU index"),  # ARABIC-INDIC DIGIT ONE: isdigit() and int() accept it
        ("\u00b2", "not a GPU index"),  # SUPERSCRIPT TWO: isdigit() accepts it, int() raises
        ("1" * 20, "not a GPU index"),
        ("-1", "not a GPU index"),
        (" 1", "not a GPU index"),
        ("7", "has no GPU 7"),
        ("0007", "has no GPU 7"),
    ],
)
async def test_gpu_label_must_name_a_gpu_of_this_node(controller: Any, gpu: str, message: str) -> None:
    url, agent, backend, nvml = controller
    events = list(backend.events)
    body = {"alerts": [alert("firing", **HOT, gpu="0", fingerprint="ok"), alert("firing", **HOT, gpu=gpu)]}
    status, answer = await post(url, body)
    # The bad alert is refused alone: the valid one in the same notification still acts
    # (Alertmanager would not resend a notification answered with a 4xx).
    assert status == 200
    assert len(answer["refused"]) == 1 and message in answer["refused"][0]
    assert {"action": "gpu-step-down", "domain": "gpu-0"} in answer["actions"]
    assert agent.webhook_actions == {"gpu-step-down": 1, "refused": 1}
    assert nvml.limits[1] == 700_000 and nvml.limits[0] < 700_000
    assert len(backend.events) > len(events)


async def test_a_notification_of_only_bad_alerts_does_nothing(controller: Any) -> None:
    url, agent, backend, nvml = controller
    events = list(backend.events)
    status, answer = await post(url, {"alerts": [{"labels": "x"}, alert("firing", **HOT, gpu="9")]})
    assert status == 200 and len(answer["refused"]) == 2 and answer["actions"] == []
    assert agent.webhook_actions == {"refused": 2} and agent.adjustments == {}
    assert backend.events == events and nvml.limits == [700_000, 700_000]


async def test_new_fingerprints_share_one_step_and_resolution_restores(controller: Any) -> None:
    url, agent, _backend, nvml = controller
    # Three alerts of the rule for gpu-1 (two sensors, and the first one firing again later).
    alerts = [
        alert("firing", "f1", "2026-05-04T10:00:00Z", **HOT, gpu="1", sensor="gpu"),
        alert("firing", "f2", "2026-05-04T10:01:00Z", **HOT, gpu="1", sensor="memory"),
        alert("firing", "f1", "2026-05-04T11:00:00Z", **HOT, gpu="1", sensor="gpu"),
    ]
    for a in alerts:
        assert (await post(url, {"alerts": [a]}))[0] == 200
    assert nvml.limits == [700_000, 600_000]  # one step, not three
    assert agent.webhook_actions == {"gpu-step-down": 1}
    await post(url, {"alerts": [alert("resolved", "f1", **HOT, gpu="1")]})
    assert nvml.limits == [700_000, 600_000]  # the memory sensor is still hot
    _, body = await post(url, {"alerts": [alert("resolved", "f2", **HOT, gpu="1")]})
    assert body["actions"] == [{"action": "gpu-step-down-ended", "domain": "gpu-1"}]
    assert nvml.limits == [700_000, 700_000] and agent.adjustments == {}


async def test_steps_of_one_gpu_have_a_bounded_total(controller: Any) -> None:
    url, _agent, _backend, nvml = controller
    power = {**HOT, "alertname": "PowerplaneGpuPowerHigh"}
    await post(
        url, {"alerts": [alert("firing", "t", **HOT, gpu="0"), alert("firing", "p", **power, gpu="0")]}
    )
    assert nvml.limits == [550_000, 700_000]  # 100 W + 50 W: the 150 W total
    await post(url, {"alerts": [alert("resolved", "t", **HOT, gpu="0")]})
    assert nvml.limits == [650_000, 700_000]
    await post(url, {"alerts": [alert("resolved", "p", **power, gpu="0")]})
    assert nvml.limits == [700_000, 700_000]


async def test_critical_alerts_are_remembered_within_a_bound(tmp_path: Path) -> None:
    from powerplane.controller.actuators import Actuators
    from powerplane.controller.agent import Agent
    from powerplane.controller.webhook import WEBHOOK_PATH, WebhookReceiver
    from powerplane.exporters.runtime import ExporterServer, Secret

    backend = LocalBackend("n1", documents=[POLICY])
    agent = Agent("n1", backend, Actuators(tmp_path / "nosys", tmp_path / "state.json"))
    receiver = WebhookReceiver(agent, Secret("test", TOKEN))
    server = ExporterServer("controller", collectors=[], routes=[("POST", WEBHOOK_PATH, receiver.handle)])
    _, port = await server.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    try:
        storm = [
            alert("firing", f"c{i}", alertname="PowerplaneNodeDown", node="n1", severity="critical")
            for i in range(MAX_CRITICAL + 50)
        ]
        assert (await post(url, {"alerts": storm}))[0] == 200
        assert len(receiver.critical) == MAX_CRITICAL
        assert backend.labels["powerplane.io/degraded"] == "true"
        assert agent.webhook_actions == {"node-degraded": 1}
        resolved = [{**a, "status": "resolved"} for a in storm]
        assert (await post(url, {"alerts": resolved}))[0] == 200
        assert receiver.critical == {} and "powerplane.io/degraded" not in backend.labels
    finally:
        await server.stop()
