"""The Helm chart, rendered and linted by the real Helm engine (helm-python-sdk), and deploy/.

Every ci/*-values.yaml is rendered and linted; core objects are validated with
kubernetes-validate, Prometheus Operator objects against the schemas in tests/schemas/, the CRD
and the policies against the CRD's own schema. The assertions cover what a reviewer would check
by hand: privileges, labels and selectors, resources, secrets, and that the chart carries
rules/, dashboards/json/ and the CRD unchanged.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from powerplane import chart as chart_tool
from powerplane import helm

ROOT = Path(__file__).resolve().parent.parent.parent
CHART = ROOT / "charts" / "powerplane"
RULE_FILES = sorted((CHART / "files" / "rules").glob("*.yaml"))
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema known.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
NODE_AGENT_ROOT = {"rapl", "gpu", "controller"}
WORKLOAD_KINDS = {"DaemonSet", "Deployment"}


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


@functools.cache
def _render(values_json: str, chart_dir: Path = CHART) -> tuple[dict[str, Any], ...]:
    manifests = helm.render(chart_dir, json.loads(values_json), include_crds=True)
    return tuple(helm.objects(manifests))


def render(values: dict[str, Any], chart_dir: Path = CHART) -> list[dict[str, Any]]:
    """Rendered objects (deep copies: tests may not change each other's)."""
    return copy.deepcopy(list(_render(json.dumps(values, sort_keys=True), chart_dir)))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            yield obj, obj["spec"]["template"]["spec"]


def containers(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield obj, container


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# -- schemas -------------------------------------------------------------------------------------


def _closed(node: Any) -> Any:
    """Reject unknown fields wherever an object schema lists its properties."""
    if isinstance(node, dict):
        node = {k: _closed(v) for k, v in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


@functools.cache
def operator_schemas() -> dict[tuple[str, str], Any]:
    schemas = {}
    for path in SCHEMAS.glob("*.json"):
        data = json.loads(path.read_text())
        schemas[(f"{data['group']}/{data['version']}", data["kind"])] = _closed(data["schema"])
    return schemas


def validate_object(obj: dict[str, Any]) -> None:
    """Validate one rendered object; raises with the object's kind/name on failure."""
    key = (obj["apiVersion"], obj["kind"])
    where = f"{obj['kind']}/{obj['metadata'].get('name')}"
    if obj["apiVersion"].startswith("monitoring.coreos.com/"):
        assert key in operator_schemas(), f"{where}: no vendored schema for {key}"
        errors = sorted(
            jsonschema.Draft7Validator(operator_schemas()[key]).iter_errors(obj), key=lambda e: list(e.path)
        )
        assert not errors, f"{where}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)
    elif obj["kind"] == "PowerCapPolicy":
        crd = policy_crd(render({}))
        if crd is None and not (ROOT / "controller" / "crd").is_dir():
            pytest.skip(f"{where}: controller/crd/ (the PowerCapPolicy CRD) is not in this checkout yet")
        assert crd is not None, f"{where}: rendered without a PowerCapPolicy CRD in the chart"
        version = obj["apiVersion"].split("/")[1]
        schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
        jsonschema.validate(obj, schema)
    else:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(
                    f"{where} (Kubernetes {version}): {exc.message} at {list(exc.path)}"
                ) from None


def policy_crd(objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    for obj in by_kind(objects, "CustomResourceDefinition"):
        if obj["spec"]["names"]["kind"] == "PowerCapPolicy":
            return obj
    return None


# -- render, lint, validate every ci values file ------------------------------------------------


def test_ci_matrix_covers_the_toggles() -> None:
    names = {p.name for p in CI_VALUES}
    assert "default-values.yaml" in names and len(names) >= 4
    assert load_values(CHART / "ci" / "default-values.yaml") == {}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_lint_is_clean(values_file: Path) -> None:
    findings = helm.lint(CHART, load_values(values_file), strict=True)
    problems = [f for f in findings if f.severity not in ("info",) or "error" in f.error.lower()]
    assert problems == []


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_object_validates(values_file: Path) -> None:
    objects = render(load_values(values_file))
    assert objects
    for obj in objects:
        validate_object(obj)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_names_are_unique_and_namespaced(values_file: Path) -> None:
    objects = render(load_values(values_file))
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PowerCapPolicy"}
    for obj in objects:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"], obj["metadata"]["name"]
        assert len(obj["metadata"]["name"]) <= 63


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_security_contexts(values_file: Path) -> None:
    values = load_values(values_file)
    objects = render(values)
    for _obj, spec in pod_specs(objects):
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
    for obj, container in containers(objects):
        where = f"{obj['metadata']['name']}/{container['name']}"
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["privileged"] is False, where
        assert sc["capabilities"] == {"drop": ["ALL"]}, where
        assert not sc["capabilities"].get("add"), where
        if sc["runAsUser"] == 0:
            assert obj["kind"] == "DaemonSet" and container["name"] in NODE_AGENT_ROOT, where
        else:
            assert sc["runAsNonRoot"] is True, where


def test_root_only_where_the_files_demand_it() -> None:
    default = {c["name"]: c for _, c in containers(render({}))}
    assert default["rapl"]["securityContext"]["runAsUser"] == 0
    assert default["controller"]["securityContext"]["runAsUser"] == 0
    assert default["gpu"]["securityContext"]["runAsUser"] == 0  # pod-resources socket
    lean = render({"rapl": {"runAsRoot": False}, "gpu": {"podResources": {"enabled": False}}})
    lean_containers = {c["name"]: c for _, c in containers(lean)}
    assert lean_containers["rapl"]["securityContext"]["runAsUser"] == 65534
    assert lean_containers["gpu"]["securityContext"]["runAsUser"] == 65534
    for _, container in containers(render(load_values(CHART / "ci" / "kube-prometheus-stack-values.yaml"))):
        if container["name"] in ("redfish", "snmp", "market", "inventory"):
            assert container["securityContext"]["runAsUser"] == 65534


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_host_paths_read_only_except_the_controllers(values_file: Path) -> None:
    values = load_values(values_file)
    for obj, spec in pod_specs(render(values)):
        host_volumes = {v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v}
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in host_volumes:
                    continue
                path = host_volumes[mount["name"]]
                if mount.get("readOnly"):
                    continue
                where = f"{obj['metadata']['name']}/{container['name']}: {path}"
                assert container["name"] == "controller", where
                assert path in ("/sys/devices/virtual/powercap", "/var/lib/powerplane"), where
    # The sysfs the exporters read is mounted read-only in every container.
    for _, container in containers(render(values)):
        for mount in container.get("volumeMounts", []):
            if mount["name"] == "sys":
                assert mount["readOnly"] is True


def test_only_the_controller_gets_an_api_token() -> None:
    for obj, spec in pod_specs(render(load_values(CHART / "ci" / "kube-prometheus-stack-values.yaml"))):
        for container in spec["containers"]:
            token_mounts = [
                m for m in container.get("volumeMounts", []) if "serviceaccount" in m["mountPath"]
            ]
            assert bool(token_mounts) == (container["name"] == "controller"), container["name"]
        if obj["kind"] == "Deployment":
            assert "serviceAccountName" not in spec


def test_gpu_nodes_split_from_cpu_nodes() -> None:
    daemonsets = {d["metadata"]["name"]: d for d in by_kind(render({}), "DaemonSet")}
    cpu, gpu = daemonsets["powerplane-node"], daemonsets["powerplane-gpu-node"]

    def expression(ds: dict[str, Any]) -> dict[str, Any]:
        terms = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        (term,) = terms["nodeSelectorTerms"]
        (expr,) = term["matchExpressions"]
        return dict(expr)

    assert expression(cpu) == {"key": "nvidia.com/gpu.present", "operator": "NotIn", "values": ["true"]}
    assert expression(gpu) == {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}
    assert "runtimeClassName" not in cpu["spec"]["template"]["spec"]
    assert gpu["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"
    assert [c["name"] for c in cpu["spec"]["template"]["spec"]["containers"]] == ["rapl", "controller"]
    gpu_containers = {c["name"]: c for c in gpu["spec"]["template"]["spec"]["containers"]}
    assert set(gpu_containers) == {"rapl", "gpu", "controller"}
    env = {e["name"]: e.get("value") for e in gpu_containers["gpu"]["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    # A monitoring agent never takes GPUs away from workloads.
    for container in gpu_containers.values():
        assert not any("nvidia.com" in r for r in container["resources"].get("limits", {}))
    # Without the split, one DaemonSet runs everywhere and has no GPU affinity.
    (single,) = by_kind(render({"node": {"gpuNodes": {"enabled": False}}}), "DaemonSet")
    assert "affinity" not in single["spec"]["template"]["spec"]


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_container_has_resources(values_file: Path) -> None:
    for _obj, container in containers(render(load_values(values_file))):
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"], container["name"]
        assert resources["limits"]["memory"], container["name"]
        assert container["livenessProbe"] and container["readinessProbe"], container["name"]


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_labels_and_selectors_match(values_file: Path) -> None:
    objects = render(load_values(values_file))
    pods = []
    for obj, _ in pod_specs(objects):
        selector = obj["spec"]["selector"]["matchLabels"]
        pod_labels = obj["spec"]["template"]["metadata"]["labels"]
        assert matches(selector, pod_labels), obj["metadata"]["name"]
        assert matches(selector, obj["metadata"]["labels"]), obj["metadata"]["name"]
        assert "app.kubernetes.io/version" not in selector and "helm.sh/chart" not in selector
        pods.append((obj, pod_labels))
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "powerplane", obj["metadata"]["name"]
        selected: list[dict[str, Any]] = []
        kind = obj["kind"]
        if kind == "Service":
            selected = [w for w, pl in pods if matches(obj["spec"]["selector"], pl)]
            (workload,) = selected
            container_ports = {
                p["name"] for c in workload["spec"]["template"]["spec"]["containers"] for p in c["ports"]
            }
            assert {p["targetPort"] for p in obj["spec"]["ports"]} <= container_ports
        elif kind in ("PodDisruptionBudget", "PodMonitor"):
            selected = [w for w, pl in pods if matches(obj["spec"]["selector"]["matchLabels"], pl)]
        elif kind == "NetworkPolicy":
            selected = [w for w, pl in pods if matches(obj["spec"]["podSelector"]["matchLabels"], pl)]
        elif kind == "ServiceMonitor":
            services = by_kind(objects, "Service")
            selected = [
                s
                for s in services
                if matches(obj["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
            ]
        else:
            continue
        assert selected, f"{kind}/{obj['metadata']['name']} selects nothing"


def test_pod_monitor_labels_series_with_the_node() -> None:
    (monitor,) = by_kind(render({"podMonitor": {"enabled": True}}), "PodMonitor")
    endpoints = {e["port"]: e for e in monitor["spec"]["podMetricsEndpoints"]}
    assert set(endpoints) == {"rapl", "gpu", "controller"}
    for endpoint in endpoints.values():
        relabel = endpoint["relabelings"][0]
        assert relabel["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]
        assert relabel["targetLabel"] == "node"
    ports = {p["containerPort"] for _, c in containers(render({})) for p in c["ports"]}
    assert ports == {9871, 9872, 9877}


def test_scrape_config_probes_through_the_service() -> None:
    objects = render(load_values(CHART / "ci" / "kube-prometheus-stack-values.yaml"))
    configs = {s["metadata"]["name"]: s["spec"] for s in by_kind(objects, "ScrapeConfig")}
    redfish = configs["powerplane-redfish"]
    assert redfish["metricsPath"] == "/probe"
    assert (
        redfish["jobName"] == "powerplane-redfish-probe"
    )  # the exporter's own /metrics is job powerplane-redfish
    assert redfish["scrapeTimeout"] == "50s"
    static = redfish["staticConfigs"][0]
    assert static["labels"] == {"__param_module": "default", "__param_auth": "idrac", "node": "node-001"}
    relabel = {r["targetLabel"]: r for r in redfish["relabelings"]}
    assert relabel["__param_target"]["sourceLabels"] == ["__address__"]
    assert relabel["__address__"]["replacement"] == "powerplane-redfish.powerplane.svc:9873"
    assert redfish["fileSDConfigs"] == [
        {"files": ["/etc/prometheus/configmaps/powerplane-file-sd/redfish*.json"]}
    ]
    assert (
        configs["powerplane-snmp"]["relabelings"][2]["replacement"] == "powerplane-snmp.powerplane.svc:9874"
    )
    (file_sd,) = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "powerplane-file-sd"]
    groups = json.loads(file_sd["data"]["redfish.json"])
    assert groups[0]["labels"]["node"] == "node-001"


def test_additional_labels_reach_every_monitoring_object() -> None:
    objects = render(load_values(CHART / "ci" / "kube-prometheus-stack-values.yaml"))
    monitoring = [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {o["kind"] for o in monitoring} >= {"PodMonitor", "ServiceMonitor", "ScrapeConfig"}
    for obj in monitoring:
        assert obj["metadata"]["labels"]["release"] == "kps", obj["metadata"]["name"]


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {o["kind"] for o in render({})}
    assert not kinds & {"PodMonitor", "ServiceMonitor", "ScrapeConfig", "PrometheusRule"}


# -- secrets --------------------------------------------------------------------------------------


def test_secrets_are_referenced_not_inlined() -> None:
    values = load_values(CHART / "ci" / "kube-prometheus-stack-values.yaml")
    secrets = {
        value
        for component in ("redfish", "snmp", "market", "controller")
        for value in values[component]["credentials"].values()
    }
    objects = render(values)
    for obj in objects:
        text = yaml.safe_dump(obj)
        if obj["kind"] == "Secret":
            decoded = {base64.b64decode(v).decode() for v in obj["data"].values()}
            assert decoded <= secrets
            assert not any(s in text for s in secrets)  # stored encoded, never in stringData
            continue
        leaked = [s for s in secrets if s in text]
        assert leaked == [], f"{obj['kind']}/{obj['metadata']['name']} inlines a credential"
    secret_names = {s["metadata"]["name"] for s in by_kind(objects, "Secret")}
    for _, container in containers(objects):
        refs = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
        if container["name"] in ("redfish", "snmp", "market", "controller"):
            assert refs and set(refs) <= secret_names, container["name"]


def test_existing_secrets_replace_the_charts() -> None:
    values = load_values(CHART / "ci" / "existing-secrets-values.yaml")
    objects = render(values)
    assert by_kind(objects, "Secret") == []
    refs = {
        c["name"]: c["envFrom"][0]["secretRef"]["name"] for _, c in containers(objects) if c.get("envFrom")
    }
    assert refs == {
        "redfish": "bmc-credentials",
        "snmp": "snmp-credentials",
        "market": "entsoe-token",
        "controller": "alertmanager-webhook-token",
    }


def test_config_change_rolls_the_pods() -> None:
    def checksum(config: dict[str, Any]) -> str:
        objects = render({"market": {"enabled": True, "config": config}})
        (deployment,) = by_kind(objects, "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({"areas": ["DE-LU"]}) != checksum({"areas": ["FR"]})


# -- RBAC -----------------------------------------------------------------------------------------


def test_rbac_is_least_privilege() -> None:
    objects = render({})

    def rules(role: dict[str, Any]) -> dict[tuple[tuple[str, ...], tuple[str, ...]], set[str]]:
        return {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}

    (cluster_role,) = by_kind(objects, "ClusterRole")
    assert rules(cluster_role) == {
        (("",), ("nodes",)): {"get", "patch"},
        (("powerplane.io",), ("powercappolicies",)): {"get", "list", "watch"},
        (("powerplane.io",), ("powercappolicies/status",)): {"get", "update", "patch"},
    }
    # Events go to the controller's own namespace only.
    (role,) = by_kind(objects, "Role")
    assert role["metadata"]["namespace"] == "powerplane"
    assert rules(role) == {(("",), ("events",)): {"create"}}
    (account,) = by_kind(objects, "ServiceAccount")
    subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "powerplane"}
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        (binding,) = by_kind(objects, kind)
        assert binding["subjects"] == [subject]
        assert binding["roleRef"]["kind"] == role_kind
    (daemonset, *_) = by_kind(objects, "DaemonSet")
    (controller,) = [
        c for c in daemonset["spec"]["template"]["spec"]["containers"] if c["name"] == "controller"
    ]
    env = {e["name"]: e for e in controller["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    without = render({"controller": {"enabled": False}})
    assert not {o["kind"] for o in without} & {
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    }


# -- values schema --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"rapl": {"prot": 9871}}, "prot"),
        ({"redfish": {"port": "9873"}}, "port"),
        ({"redfish": {"port": 70000}}, "port"),
        ({"snmp": {"scrape": {"interval": "soon", "timeout": "25s"}}}, "interval"),
        ({"market": {"credentials": {"ENTSOE TOKEN": "x"}}}, "ENTSOE TOKEN"),
        ({"market": {"credentials": {"TOKEN": {"nested": "x"}}}}, "credentials"),
        ({"policies": [{"name": "Bad_Name", "spec": {}}]}, "policies"),
        ({"policies": [{"name": "no-spec"}]}, "spec"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"node": {"hostSysfs": "sys"}}, "hostSysfs"),
        ({"inventory": {"fileSD": {"../../etc/passwd": []}}}, "../../etc/passwd"),
        ({"dashboards": {"enabled": "yes"}}, "enabled"),
        ({"rapl": {"resources": {"requests": {"cpu": "lots"}, "limits": {}}}}, "cpu"),
        ({"unknownTopLevel": True}, "unknownTopLevel"),
    ],
)
def test_bad_values_are_rejected(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.ValuesRejected) as excinfo:
        helm.render(CHART, values)
    assert complaint in str(excinfo.value)


def test_bad_values_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("redfish:\n  enabled: true\n  replicas: -1\n  secret: inline-password\n")
    with pytest.raises(helm.ValuesRejected) as excinfo:
        helm.render(CHART, load_values(bad))
    message = str(excinfo.value)
    assert "replicas" in message and "secret" in message
    assert "inline-password" not in message


def test_schema_describes_every_default() -> None:
    """values.yaml itself validates, and every key in it is declared (no silent leftovers)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = load_values(CHART / "values.yaml")
    jsonschema.validate(defaults, schema)

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in node:
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(defaults, schema, "")


# -- rules, dashboards, CRD carried unchanged ----------------------------------------------------


def test_chart_is_in_sync_with_its_sources() -> None:
    assert chart_tool.sync(ROOT, check=True) == []


def test_deploy_is_rendered_from_the_chart() -> None:
    assert chart_tool.deploy(ROOT, check=True) == []


def test_deploy_manifests_validate() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "powerplane.yaml").read_text()) if d]
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "powerplane"}}
    assert {d["kind"] for d in docs} >= {"DaemonSet", "ClusterRole", "ServiceAccount"}
    operator = [
        d for d in yaml.safe_load_all((ROOT / "deploy/prometheus-operator/monitoring.yaml").read_text()) if d
    ]
    assert {d["kind"] for d in operator} == {"PodMonitor"} | ({"PrometheusRule"} if RULE_FILES else set())
    for doc in docs:
        validate_object(doc)
    for path in sorted((ROOT / "deploy").glob("*/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                validate_object(doc)


def test_prometheus_rules_equal_rules_dir() -> None:
    objects = render({"prometheusRule": {"enabled": True}})
    rendered = {
        o["metadata"]["annotations"]["powerplane.io/source"]: o for o in by_kind(objects, "PrometheusRule")
    }
    sources = sorted((CHART / "files" / "rules").glob("*.yaml"))
    assert set(rendered) == {f"rules/{p.name}" for p in sources}
    for path in sources:
        assert rendered[f"rules/{path.name}"]["spec"] == {
            "groups": yaml.safe_load(path.read_text())["groups"]
        }


def test_dashboard_configmaps_equal_dashboards_json() -> None:
    objects = render({})
    maps = [
        c for c in by_kind(objects, "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    sources = sorted((CHART / "files" / "dashboards").glob("*.json"))
    carried = {name: text for c in maps for name, text in c["data"].items()}
    assert carried == {p.name: p.read_text() for p in sources}
    assert len(maps) == len(sources)


def test_crd_is_carried_and_valid() -> None:
    objects = render({})
    crds = by_kind(objects, "CustomResourceDefinition")
    sources = (
        sorted((ROOT / "controller" / "crd").glob("*.yaml")) if (ROOT / "controller" / "crd").is_dir() else []
    )
    source_crds = [
        d
        for p in sources
        for d in yaml.safe_load_all(p.read_text())
        if d and d.get("kind") == "CustomResourceDefinition"
    ]
    assert crds == source_crds
    for crd in crds:
        validate_object(crd)
        for version in crd["spec"]["versions"]:
            jsonschema.Draft7Validator.check_schema(version["schema"]["openAPIV3Schema"])


# -- the chart's handling of rule files, dashboards and the CRD, on a scratch copy ---------------

HOSTILE_RULES = """\
# A comment and a document marker must not break the PrometheusRule.
---
groups:
  - name: powerplane-sample
    rules:
      - alert: PowerplaneSampleHot
        expr: powerplane_gpu_temperature_celsius{sensor="gpu"} > 90
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "GPU {{ $labels.gpu }} on {{ $labels.node }} is at {{ $value | humanize }} C"
          description: |-
            {{ range query "up" }}{{ .Labels.instance }} {{ end }}
            {{ "{{" }} literal braces {{ "}}" }}
      - record: node:powerplane_rapl_power_watts:sum
        expr: sum by (node) (rate(powerplane_rapl_energy_joules_total{zone=~"package|dram"}[5m]))
"""

SAMPLE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "powercappolicies.example.powerplane.io"},
    "spec": {
        "group": "example.powerplane.io",
        "scope": "Cluster",
        "names": {
            "kind": "PowerCapPolicy",
            "plural": "powercappolicies",
            "singular": "powercappolicy",
            "listKind": "PowerCapPolicyList",
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": False,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            },
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "required": ["maxWatts"],
                                "properties": {"maxWatts": {"type": "number"}},
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            },
        ],
    },
}


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A repository skeleton with the real chart and sample sources, synced."""
    root = tmp_path / "repo"
    shutil.copytree(CHART, root / "charts" / "powerplane")
    for sub in ("files/rules", "files/dashboards", "crds"):
        for path in (root / "charts" / "powerplane" / sub).glob("*.*"):
            if path.name != ".gitkeep":
                path.unlink()
    (root / "rules").mkdir()
    (root / "rules" / "sample.yaml").write_text(HOSTILE_RULES)
    (root / "rules" / "sample_test.yaml").write_text("rule_files: [sample.yaml]\ntests: []\n")
    (root / "dashboards" / "json").mkdir(parents=True)
    (root / "dashboards" / "json" / "fleet.json").write_text(
        json.dumps(
            {"title": "Fleet <&>", "uid": "pp-fleet", "panels": [{"title": "{{node}} \u00e9 'q' \"dq\""}]},
            indent=2,
        )
        + "\n"
    )
    (root / "controller" / "crd").mkdir(parents=True)
    (root / "controller" / "crd" / "powercappolicy.yaml").write_text(yaml.safe_dump(SAMPLE_CRD))
    changes = chart_tool.sync(root)
    assert sorted(changes) == [
        "missing: charts/powerplane/crds/powercappolicy.yaml",
        "missing: charts/powerplane/files/dashboards/fleet.json",
        "missing: charts/powerplane/files/rules/sample.yaml",
    ]
    return root


def test_prometheus_templates_survive_helm(scratch: Path) -> None:
    objects = render({"prometheusRule": {"enabled": True}}, scratch / "charts" / "powerplane")
    (rule,) = by_kind(objects, "PrometheusRule")
    validate_object(rule)
    assert rule["spec"] == {"groups": yaml.safe_load(HOSTILE_RULES)["groups"]}
    annotations = rule["spec"]["groups"][0]["rules"][0]["annotations"]
    assert (
        annotations["summary"]
        == "GPU {{ $labels.gpu }} on {{ $labels.node }} is at {{ $value | humanize }} C"
    )


def test_dashboards_survive_helm_byte_for_byte(scratch: Path) -> None:
    objects = render(
        {"dashboards": {"label": "my_dashboards", "labelValue": "yes"}}, scratch / "charts" / "powerplane"
    )
    (dashboard,) = [c for c in by_kind(objects, "ConfigMap") if "my_dashboards" in c["metadata"]["labels"]]
    assert dashboard["metadata"]["labels"]["my_dashboards"] == "yes"
    assert dashboard["data"]["fleet.json"] == (scratch / "dashboards" / "json" / "fleet.json").read_text()
    validate_object(dashboard)


def test_policies_and_rbac_follow_the_crd(scratch: Path) -> None:
    chart_dir = scratch / "charts" / "powerplane"
    objects = render({"policies": [{"name": "cheap-hours", "spec": {"maxWatts": 300}}]}, chart_dir)
    (policy,) = by_kind(objects, "PowerCapPolicy")
    assert policy["apiVersion"] == "example.powerplane.io/v1beta1"
    (crd,) = by_kind(objects, "CustomResourceDefinition")
    assert crd == SAMPLE_CRD
    jsonschema.validate(policy, crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"])
    (role,) = by_kind(objects, "ClusterRole")
    assert {
        "apiGroups": ["example.powerplane.io"],
        "resources": ["powercappolicies/status"],
        "verbs": ["get", "update", "patch"],
    } in role["rules"]
    bad = render({"policies": [{"name": "bad", "spec": {"maxWatts": "lots"}}]}, chart_dir)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            by_kind(bad, "PowerCapPolicy")[0], crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"]
        )


def test_deploy_carries_the_crd(scratch: Path) -> None:
    files = chart_tool.deploy_manifests(scratch)
    assert yaml.safe_load(files[Path("deploy/crds/powercappolicy.yaml")]) == SAMPLE_CRD
    kinds = {d["kind"] for d in yaml.safe_load_all(files[Path("deploy/powerplane.yaml")]) if d}
    assert "CustomResourceDefinition" not in kinds
    operator = [d for d in yaml.safe_load_all(files[Path("deploy/prometheus-operator/monitoring.yaml")]) if d]
    assert {d["kind"] for d in operator} == {"PodMonitor", "PrometheusRule"}
    chart_tool.deploy(scratch)
    assert chart_tool.deploy(scratch, check=True) == []


def test_sync_tracks_sources(scratch: Path) -> None:
    chart_dir = scratch / "charts" / "powerplane"
    assert chart_tool.sync(scratch, check=True) == []
    # An edited source is drift; a removed one leaves a stale copy; sync repairs both.
    (scratch / "rules" / "sample.yaml").write_text(HOSTILE_RULES.replace("> 90", "> 91"))
    (scratch / "dashboards" / "json" / "fleet.json").unlink()
    assert chart_tool.sync(scratch, check=True) == [
        "stale: charts/powerplane/files/dashboards/fleet.json",
        "differs: charts/powerplane/files/rules/sample.yaml",
    ]
    assert (chart_dir / "files" / "dashboards" / "fleet.json").exists()  # check changes nothing
    chart_tool.sync(scratch)
    assert chart_tool.sync(scratch, check=True) == []
    assert not (chart_dir / "files" / "dashboards" / "fleet.json").exists()
    # promtool test files are not rule files and never reach the chart.
    assert not (chart_dir / "files" / "rules" / "sample_test.yaml").exists()


def test_sync_works_without_sources(tmp_path: Path) -> None:
    (tmp_path / "charts" / "powerplane").mkdir(parents=True)
    assert chart_tool.sync(tmp_path) == []
    assert chart_tool.planned(tmp_path) == {}


def test_broken_rule_file_fails_the_render(scratch: Path) -> None:
    (scratch / "rules" / "sample.yaml").write_text("groups: [unclosed\n")
    chart_tool.sync(scratch)
    with pytest.raises(helm.RenderFailed):
        helm.render(scratch / "charts" / "powerplane", {"prometheusRule": {"enabled": True}})


def test_chart_command_check_exits_nonzero_on_drift(scratch: Path) -> None:
    from click.testing import CliRunner

    from powerplane.cli import main

    (scratch / "rules" / "sample.yaml").write_text(HOSTILE_RULES + "\n")
    result = CliRunner().invoke(main, ["chart", "sync", "--check", "--root", str(scratch)])
    assert result.exit_code == 1
    assert "differs: charts/powerplane/files/rules/sample.yaml" in result.output
    result = CliRunner().invoke(main, ["chart", "sync", "--root", str(scratch)])
    assert result.exit_code == 0
    assert CliRunner().invoke(main, ["chart", "sync", "--check", "--root", str(scratch)]).exit_code == 0


def test_notes_give_plain_prometheus_scrape_configs() -> None:
    manifests = helm.render(CHART, {"market": {"enabled": True}, "redfish": {"enabled": True}})
    (notes,) = [text for path, text in manifests.items() if path.endswith("NOTES.txt")]
    start = notes.index("scrape_configs:")
    end = notes.index("\nRules:")
    config = yaml.safe_load(notes[start:end])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {
        "powerplane-node",
        "powerplane-market",
        "powerplane-redfish",
        "powerplane-redfish-probe",
    }
    node_relabel = {r.get("target_label"): r for r in jobs["powerplane-node"]["relabel_configs"]}
    assert node_relabel["node"]["source_labels"] == ["__meta_kubernetes_pod_node_name"]
    assert (
        jobs["powerplane-redfish-probe"]["relabel_configs"][-1]["replacement"]
        == "powerplane-redfish.powerplane.svc:9873"
    )
    with_operator = helm.render(CHART, {"podMonitor": {"enabled": True}})
    (notes,) = [text for path, text in with_operator.items() if path.endswith("NOTES.txt")]
    assert "scrape_configs:" not in notes
