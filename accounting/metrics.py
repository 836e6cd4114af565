"""Series the accounting rules read from outside powerplane (docs/METRICS.md lists them).

Pods' share of the rest of a node is their measured CPU usage, which Kubernetes already exports:
cAdvisor (in the kubelet) and kube-state-metrics.  powerplane emits none of these; they are
declared so that the rules' inputs are documented and checked like powerplane's own.
"""

from __future__ import annotations

from powerplane.exporters.runtime.metrics import MetricSpec

CONTAINER_CPU = MetricSpec(
    "container_cpu_usage_seconds_total",
    "counter",
    "Read, not emitted: CPU time a container used; rate() by pod is the pod's CPU usage.",
    ("namespace", "pod", "container"),
    source="cAdvisor (kubelet)",
)
POD_INFO = MetricSpec(
    "kube_pod_info",
    "info",
    "Read, not emitted: the node a pod runs on (join on namespace and pod).",
    ("namespace", "pod", "node"),
    source="kube-state-metrics",
)
NODE_CAPACITY = MetricSpec(
    "kube_node_status_capacity",
    "gauge",
    "Read, not emitted: a node's capacity by resource (cpu in cores; extended resources have more values).",
    ("node", "resource"),
    values={"resource": ("cpu", "memory", "pods", "ephemeral_storage")},
    source="kube-state-metrics",
)
INPUTS = (CONTAINER_CPU, POD_INFO, NODE_CAPACITY)
