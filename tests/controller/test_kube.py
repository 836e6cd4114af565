"""Kubernetes I/O with the real ``kubernetes`` client against kmock's emulated API server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import kmock
import pytest
import yaml

from powerplane.controller.actuators import Actuators
from powerplane.controller.agent import Agent
from powerplane.controller.config import KIND
from powerplane.controller.kube import (
    ANNOTATION,
    LABEL_CAP,
    LABEL_LEVEL,
    Kube,
    KubeError,
    crd_manifest,
    spec_schema,
)
from powerplane.lab.powercap import PowercapLab, intel_server

NODES = kmock.resource("", "v1", "nodes")
POLICIES = kmock.resource("powerplane.io", "v1alpha1", "powercappolicies")
EVENTS = kmock.resource("", "v1", "events")

POLICY = {
    "apiVersion": "powerplane.io/v1alpha1",
    "kind": "PowerCapPolicy",
    "metadata": {"name": "price", "resourceVersion": "7"},
    "spec": {
        "nodeSelector": {"matchLabels": {"powerplane.io/capped": "yes"}},
        "signal": {"static": {"value": 250}},
        "policy": {"type": "linear", "linear": {"minWatts": 200, "maxWatts": 600, "signalMax": 300}},
    },
}


@pytest.fixture
def api(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    kmock.objects[NODES, None, "n1"] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "n1",
            "uid": "6b9e2c1a-0000-4000-8000-000000000001",
            "resourceVersion": "1",
            "labels": {"powerplane.io/capped": "yes", "keep": "me"},
        },
    }
    kmock.objects[NODES, None, "n2"] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}
    kmock.objects[POLICIES, None, "price"] = json.loads(json.dumps(POLICY))
    return kmock


def kube(api: kmock.KubernetesEmulator, node: str = "n1") -> Kube:
    return Kube.for_host(node, str(api.url))


def patches(api: kmock.KubernetesEmulator, path: str) -> list[Any]:
    return list(api[f"patch {path}"])


async def test_label_patch_retries_a_conflict_and_touches_only_its_keys(
    api: kmock.KubernetesEmulator,
) -> None:
    # Another writer changes the node between our read and our patch: the first patch is
    # refused with 409, and the second read shows the new resourceVersion.
    meta = {"name": "n1", "labels": {"powerplane.io/capped": "yes", "keep": "me"}}
    stale = {"apiVersion": "v1", "kind": "Node", "metadata": {**meta, "resourceVersion": "1"}}
    fresh = {"apiVersion": "v1", "kind": "Node", "metadata": {**meta, "resourceVersion": "2"}}
    api["get /api/v1/nodes/n1"][:1] << stale
    api["get /api/v1/nodes/n1"][1:2] << fresh
    api["patch /api/v1/nodes/n1"][:1] << 409
    k = kube(api)
    attempts = await asyncio.to_thread(k.patch_node, {LABEL_CAP: "300"}, {ANNOTATION: '{"a": 1}'})
    assert attempts == 2
    sent = patches(api, "/api/v1/nodes/n1")
    assert [p.data["metadata"]["resourceVersion"] for p in sent] == ["1", "2"]
    # The patch carries the resourceVersion it was computed from, and only our keys.
    assert sent[-1].data == {
        "metadata": {
            "resourceVersion": "2",
            "labels": {LABEL_CAP: "300"},
            "annotations": {ANNOTATION: '{"a": 1}'},
        }
    }
    labels = await asyncio.to_thread(k.node_labels)
    assert labels == {"powerplane.io/capped": "yes", "keep": "me", LABEL_CAP: "300"}
    # Nothing to change: no request.
    before = len(patches(api, "/api/v1/nodes/n1"))
    assert await asyncio.to_thread(k.patch_node, {LABEL_CAP: "300"}) == 1
    assert len(patches(api, "/api/v1/nodes/n1")) == before


async def test_persistent_conflict_gives_up(api: kmock.KubernetesEmulator) -> None:
    # Another writer keeps winning: every read shows the old state, every patch conflicts.
    api["get /api/v1/nodes/n1"] << {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "resourceVersion": "1"},
    }
    api["patch /api/v1/nodes/n1"] << 409
    with pytest.raises(KubeError, match="409"):
        await asyncio.to_thread(kube(api).patch_node, {LABEL_CAP: "1"})
    assert len(patches(api, "/api/v1/nodes/n1")) == 5


async def test_forbidden_patch_is_a_clear_error(api: kmock.KubernetesEmulator) -> None:
    api["patch /api/v1/nodes/n1"] << 403
    with pytest.raises(KubeError, match="patch node n1: HTTP 403"):
        await asyncio.to_thread(kube(api).patch_node, {LABEL_CAP: "1"})


async def test_only_its_own_node(api: kmock.KubernetesEmulator) -> None:
    with pytest.raises(KubeError, match="NODE_NAME"):
        kube(api, node="")
    await asyncio.to_thread(kube(api).patch_node, {LABEL_CAP: "5"})
    assert patches(api, "/api/v1/nodes/n2") == []


async def test_missing_node_is_a_clear_error(api: kmock.KubernetesEmulator) -> None:
    with pytest.raises(KubeError, match="node ghost: HTTP 404"):
        await asyncio.to_thread(kube(api, "ghost").node_labels)


async def test_events_name_the_node(api: kmock.KubernetesEmulator) -> None:
    k = kube(api)
    await asyncio.to_thread(k.node_labels)
    await asyncio.to_thread(k.event, "PowerCapApplied", "cap 300 W", "Normal", "price")
    posted = [r for r in api["post /api/v1/namespaces/default/events"]]
    assert len(posted) == 1
    body = posted[0].data
    assert body["involvedObject"]["kind"] == "Node" and body["involvedObject"]["name"] == "n1"
    assert body["involvedObject"]["uid"] == "6b9e2c1a-0000-4000-8000-000000000001"
    assert body["reason"] == "PowerCapApplied" and body["related"]["name"] == "price"


async def test_event_failures_do_not_raise(api: kmock.KubernetesEmulator) -> None:
    api["post /api/v1/namespaces/default/events"] << 403
    await asyncio.to_thread(kube(api).event, "X", "y")


async def test_policy_status_entry_and_totals_with_conflict(api: kmock.KubernetesEmulator) -> None:
    api["patch /apis/powerplane.io/v1alpha1/powercappolicies/price/status"][:1] << 409
    k1, k2 = kube(api, "n1"), kube(api, "n2")
    assert await asyncio.to_thread(k1.report, "price", {"result": "ok", "watts": 300}, "static") == 2
    await asyncio.to_thread(k2.report, "price", {"result": "failure", "message": "locked"})
    status = (await asyncio.to_thread(k1.policy, "price"))["status"]
    assert status["nodes"]["n1"]["watts"] == 300
    assert status["nodes"]["n2"]["message"] == "locked"
    assert (status["nodesApplied"], status["nodesFailing"]) == (1, 1)
    assert [p["metadata"]["name"] for p in await asyncio.to_thread(k1.policies)] == ["price"]


async def test_agent_against_the_api(api: kmock.KubernetesEmulator, tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2)).create()
    agent = Agent("n1", kube(api), Actuators(lab.root, tmp_path / "state.json"))
    outcome = await agent.reconcile()
    assert outcome.result == "success" and outcome.decision is not None
    assert outcome.decision.watts == 200.0  # 600 * (1 - 250/300) = 100, clamped to 200
    node = api.objects[NODES, None, "n1"]
    labels = node["metadata"]["labels"]
    assert labels[LABEL_CAP] == "200" and labels[LABEL_LEVEL] == "high" and labels["keep"] == "me"
    assert json.loads(node["metadata"]["annotations"][ANNOTATION])["domains"]["package-0"]["watts"] == 100.0
    events = [r.data["reason"] for r in api["post /api/v1/namespaces/default/events"]]
    assert events == ["PowerCapApplied"]
    status = api.objects[POLICIES, None, "price"]["status"]
    assert status["nodes"]["n1"]["result"] == "ok" and status["signalSource"] == "static"
    # Same decision next period: no new event.
    await agent.reconcile()
    assert [r.data["reason"] for r in api["post /api/v1/namespaces/default/events"]] == ["PowerCapApplied"]
    await agent.shutdown()
    assert LABEL_CAP not in api.objects[NODES, None, "n1"]["metadata"]["labels"] or (
        api.objects[NODES, None, "n1"]["metadata"]["labels"][LABEL_CAP] is None
    )
    assert int((lab.zone_dir("intel-rapl:0") / "constraint_0_power_limit_uw").read_text()) == 250_000_000


async def test_agent_not_selected_node_does_nothing(api: kmock.KubernetesEmulator, tmp_path: Path) -> None:
    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=1)).create()
    agent = Agent("n2", kube(api, "n2"), Actuators(lab.root, tmp_path / "state.json"))
    outcome = await agent.reconcile()
    assert outcome.policy is None and outcome.results == []
    assert patches(api, "/api/v1/nodes/n2") == []


def test_crd_manifest_is_cluster_scoped_with_status_and_columns() -> None:
    crd = crd_manifest()
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["scope"] == "Cluster"
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Type", "Applied", "Failing"}
    jsonschema.Draft202012Validator.check_schema(spec_schema())


def _no_key(schema: Any, key: str) -> bool:
    if isinstance(schema, dict):
        return key not in schema and all(_no_key(v, key) for v in schema.values())
    if isinstance(schema, list):
        return all(_no_key(v, key) for v in schema)
    return True


def test_crd_schema_is_structural_enough() -> None:
    # Kubernetes' OpenAPI v3.0 subset: no JSON-Schema-only keywords.
    schema = crd_manifest()["spec"]["versions"][0]["schema"]
    for key in ("exclusiveMinimum", "const", "$ref", "oneOf"):
        assert _no_key(schema, key), key


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        (POLICY["spec"], True),
        ({**POLICY["spec"], "signal": {}}, False),
        (
            {
                **POLICY["spec"],
                "signal": {"static": {"value": 1}, "promql": {"url": "http://p", "query": "x"}},
            },
            False,
        ),
        ({**POLICY["spec"], "signal": {"market": {"url": "file:///etc/passwd"}}}, False),
        (
            {
                **POLICY["spec"],
                "policy": {"type": "linear", "linear": {"minWatts": 0, "maxWatts": 1, "signalMax": 1}},
            },
            False,
        ),
        ({**POLICY["spec"], "unknown": 1}, True),  # pruned by the API server, ignored here
        ({**POLICY["spec"], "schedule": {"overrides": [{"start": "7:00"}]}}, False),
    ],
)
def test_crd_schema_validates_specs(spec: dict[str, Any], ok: bool) -> None:
    errors = list(jsonschema.Draft202012Validator(spec_schema()).iter_errors(spec))
    assert (not errors) is ok, errors


def test_docs_examples_are_valid_policies() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "controller.md"
    blocks = docs.read_text().split("```yaml")[1:]
    policies = [yaml.safe_load(b.split("```")[0]) for b in blocks]
    policies = [p for p in policies if isinstance(p, dict) and p.get("kind") == "PowerCapPolicy"]
    assert len(policies) >= 3
    for policy in policies:
        errors = list(jsonschema.Draft202012Validator(spec_schema()).iter_errors(policy["spec"]))
        assert not errors, (policy["metadata"]["name"], errors)
        # ... and strictly, as check-config and reconcile-once read them.
        assert KIND.load_text(yaml.safe_dump(policy)).name == policy["metadata"]["name"]


async def test_agent_process_with_a_kubeconfig(api: kmock.KubernetesEmulator, tmp_path: Path) -> None:
    """``powerplane controller run`` as a process, talking to the emulated API server."""
    import signal
    import sys

    from powerplane.lab import procs

    lab = PowercapLab(tmp_path / "sys", intel_server(sockets=2)).create()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "lab", "cluster": {"server": str(api.url).rstrip("/")}}],
                "users": [{"name": "agent", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "agent"}}],
                "current-context": "lab",
            }
        )
    )
    port = procs.free_port()
    agent = procs.Process(
        [
            sys.executable, "-m", "powerplane.cli", "controller", "run", "--no-gpu",
            f"--path.sysfs={lab.root}", f"--state-file={tmp_path / 'state.json'}",
            f"--kubeconfig={kubeconfig}",
            f"--web.listen-address=127.0.0.1:{port}", "--poll-seconds=0.2",
        ],
        tmp_path / "agent.log",
        env={"NODE_NAME": "n1"},
    )  # fmt: skip

    def labels() -> dict[str, str]:
        return dict(api.objects[NODES, None, "n1"]["metadata"].get("labels") or {})

    async def until(condition: Any, what: str) -> None:
        try:
            async with asyncio.timeout(60):
                while not condition():
                    assert agent.alive(), agent.log_tail()
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}\n{agent.log_tail()}") from None

    try:
        await until(lambda: labels().get(LABEL_CAP) == "200", "the cap label")
        assert int((lab.zone_dir("intel-rapl:1") / "constraint_0_power_limit_uw").read_text()) == 100_000_000
        # A policy change is noticed without waiting for the period boundary.
        policy = api.objects[POLICIES, None, "price"]
        api.objects[POLICIES, None, "price"] = {
            **policy.raw,
            "spec": {**policy.raw["spec"], "signal": {"static": {"value": 0}}},
        }
        await until(lambda: labels().get(LABEL_CAP) == "600", "the new cap label")
        agent.proc.send_signal(signal.SIGTERM)
        await until(lambda: not agent.alive(), "the agent to exit")
        assert agent.proc.returncode == 0
    finally:
        agent.stop()
    assert labels().get(LABEL_CAP) in (None, "")
    assert int((lab.zone_dir("intel-rapl:0") / "constraint_0_power_limit_uw").read_text()) == 250_000_000


def _leaves(schema: Any, path: str = "") -> Any:
    """(field path, schema) of every property in the spec schema, ``[]`` for list items."""
    for key, sub in (schema.get("properties") or {}).items():
        here = f"{path}.{key}" if path else key
        yield here, sub
        yield from _leaves(sub, here)
    if "items" in schema:
        yield f"{path}[]", schema["items"]
        yield from _leaves(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _leaves(schema["additionalProperties"], f"{path}.*")


def test_crd_bounds_every_number_string_and_list_as_the_builder_does() -> None:
    from powerplane.controller.policy import BOUNDS

    numbers = {}
    for path, sub in _leaves(spec_schema()):
        kind = sub.get("type")
        if kind in ("number", "integer"):
            assert "minimum" in sub and "maximum" in sub, path
            numbers[path] = (sub["minimum"], sub["maximum"])
        elif kind == "string" and "enum" not in sub:
            assert "maxLength" in sub, path
        elif kind == "array":
            assert "maxItems" in sub, path
    # One set of bounds: the builder refuses exactly what the CRD refuses.
    assert numbers == BOUNDS


@pytest.mark.parametrize(
    "patch",
    [
        {"minDwellSeconds": 100_000_000_000_000},
        {"signalLostHoldSeconds": 100_000_000_000_000},
        {"policy": {"type": "linear", "linear": {"minWatts": 1, "maxWatts": 1e300, "signalMax": 1}}},
        {"signal": {"promql": {"url": "http://user:pass@prometheus:9090", "query": "up"}}},
        {"signal": {"market": {"url": "https://user@market:9875/api/v1/curve"}}},
        {"signal": {"promql": {"url": "http://p:9090", "query": "x" * 10_000}}},
    ],
)
def test_crd_schema_refuses_unbounded_values_and_credentials_in_urls(patch: dict[str, Any]) -> None:
    errors = list(jsonschema.Draft202012Validator(spec_schema()).iter_errors({**POLICY["spec"], **patch}))
    assert errors
