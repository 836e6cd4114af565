"""Kubernetes I/O for the node agent, through the official ``kubernetes`` client.

The agent acts on one node only (``NODE_NAME``): it reads the ``PowerCapPolicy`` objects,
patches its own node's labels and annotation, records Events on its node and writes its own
entry in a policy's status.  Writes are conflict-safe: a patch carries the ``resourceVersion``
it was computed from, and a 409 Conflict re-reads the object and tries again (a bounded
number of times).  RBAC needs: nodes get/patch, events create, powercappolicies
get/list/watch, powercappolicies/status get/patch.

The client is synchronous; the agent calls it from a worker thread.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import yaml

from powerplane.exporters.runtime import log

logger = logging.getLogger("powerplane.controller")

GROUP = "powerplane.io"
VERSION = "v1alpha1"
PLURAL = "powercappolicies"
LABEL_CAP = "powerplane.io/power-cap-watts"
LABEL_LEVEL = "powerplane.io/price-level"
LABEL_DEGRADED = "powerplane.io/degraded"
ANNOTATION = "powerplane.io/power-cap"
COMPONENT = "powerplane-controller"
CONFLICT_RETRIES = 5


class KubeError(Exception):
    """A Kubernetes API call failed; the message names the object and the HTTP status."""


def crd_manifest() -> dict[str, Any]:
    """The ``PowerCapPolicy`` CustomResourceDefinition shipped with the package."""
    text = resources.files("powerplane.controller").joinpath("crd/powercappolicy.yaml").read_text("utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def spec_schema() -> dict[str, Any]:
    """The CRD's OpenAPI schema of ``spec``, usable by jsonschema for policy files."""
    version = crd_manifest()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def label_value(value: str) -> str:
    """A valid label value (63 characters of [-A-Za-z0-9_.], alphanumeric at both ends)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in value)[:63]
    return cleaned.strip("-_.")


class Kube:
    """The agent's view of the API server, restricted to its own node."""

    def __init__(self, node: str, api_client: Any, namespace: str = "default") -> None:
        from kubernetes import client

        if not node:
            raise KubeError("NODE_NAME is not set: the controller acts only on its own node")
        self.node = node
        self.namespace = namespace
        self.client = client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.host = socket.gethostname()
        #: The node's UID, learnt from its reads, for the Events' involvedObject.
        self._uid: str | None = None

    @classmethod
    def connect(cls, node: str, kubeconfig: str | None = None, namespace: str | None = None) -> Kube:
        """In-cluster config when running in a pod, else ``kubeconfig`` (or ~/.kube/config)."""
        from kubernetes import client, config

        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return cls(node, client.ApiClient(), namespace or os.environ.get("POD_NAMESPACE", "default"))

    @classmethod
    def for_host(cls, node: str, host: str, namespace: str = "default") -> Kube:
        """A client for an API server at ``host`` without credentials (tests, kubectl proxy)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = host.rstrip("/")
        return cls(node, client.ApiClient(cfg), namespace)

    def _error(self, what: str, exc: Exception) -> KubeError:
        status = getattr(exc, "status", None)
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return KubeError(f"{what}: {f'HTTP {status} ' if status else ''}{reason}")

    # --- nodes ------------------------------------------------------------------------------

    def node_labels(self) -> dict[str, str]:
        try:
            node: Any = self.core.read_node(self.node)
        except Exception as exc:
            raise self._error(f"node {self.node}", exc) from None
        self._uid = node.metadata.uid or self._uid
        return dict(node.metadata.labels or {})

    def patch_node(
        self, labels: Mapping[str, str | None], annotations: Mapping[str, str | None] | None = None
    ) -> int:
        """Set (or with ``None`` remove) labels/annotations on this node; returns the attempts used.

        Only the keys given are touched; the patch is computed from a fresh read and carries its
        ``resourceVersion``, so a concurrent writer makes it fail with 409 and it is retried.
        """
        from kubernetes.client.exceptions import ApiException

        annotations = dict(annotations or {})
        for attempt in range(1, CONFLICT_RETRIES + 1):
            try:
                node: Any = self.core.read_node(self.node)
            except Exception as exc:
                raise self._error(f"node {self.node}", exc) from None
            self._uid = node.metadata.uid or self._uid
            current_labels = node.metadata.labels or {}
            current_ann = node.metadata.annotations or {}
            want_labels = {k: v for k, v in labels.items() if current_labels.get(k) != v}
            want_ann = {k: v for k, v in annotations.items() if current_ann.get(k) != v}
            # Removing a key that is not there is no change either.
            want_labels = {k: v for k, v in want_labels.items() if v is not None or k in current_labels}
            want_ann = {k: v for k, v in want_ann.items() if v is not None or k in current_ann}
            if not want_labels and not want_ann:
                return attempt
            meta: dict[str, Any] = {"resourceVersion": node.metadata.resource_version}
            if want_labels:
                meta["labels"] = want_labels
            if want_ann:
                meta["annotations"] = want_ann
            try:
                self.core.patch_node(self.node, {"metadata": meta})
                return attempt
            except ApiException as exc:
                if exc.status == 409 and attempt < CONFLICT_RETRIES:
                    log(
                        logger,
                        logging.DEBUG,
                        "node patch conflict, retrying",
                        node=self.node,
                        attempt=attempt,
                    )
                    continue
                raise self._error(f"patch node {self.node}", exc) from None
        raise KubeError(f"patch node {self.node}: still conflicting after {CONFLICT_RETRIES} attempts")

    # --- events ----------------------------------------------------------------------------

    def event(self, reason: str, message: str, type_: str = "Normal", related: str | None = None) -> None:
        """Record an Event on this node (never raises: events are best effort)."""
        c = self.client
        now = datetime.now(UTC)
        body = c.CoreV1Event(
            metadata=c.V1ObjectMeta(generate_name=f"{self.node}.powerplane-", namespace=self.namespace),
            involved_object=c.V1ObjectReference(kind="Node", name=self.node, uid=self._uid, api_version="v1"),
            reason=reason,
            message=message[:1024],
            type=type_,
            source=c.V1EventSource(component=COMPONENT, host=self.node),
            reporting_component=COMPONENT,
            reporting_instance=self.host,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            related=c.V1ObjectReference(kind="PowerCapPolicy", name=related, api_version=f"{GROUP}/{VERSION}")
            if related
            else None,
        )
        try:
            self.core.create_namespaced_event(self.namespace, body)
        except Exception as exc:
            log(
                logger,
                logging.WARNING,
                "could not record event",
                reason=reason,
                error=self._error("event", exc),
            )

    # --- policies --------------------------------------------------------------------------

    def policies(self) -> list[dict[str, Any]]:
        try:
            doc = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        except Exception as exc:
            raise self._error("list powercappolicies", exc) from None
        items = doc.get("items", []) if isinstance(doc, Mapping) else []
        return sorted(
            (i for i in items if isinstance(i, dict)), key=lambda i: str(i.get("metadata", {}).get("name"))
        )

    def policy(self, name: str) -> dict[str, Any]:
        try:
            doc: Any = self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except Exception as exc:
            raise self._error(f"powercappolicy {name}", exc) from None
        return dict(doc)

    def report(self, policy: str, entry: Mapping[str, Any], signal_source: str = "") -> int:
        """Write this node's entry in the policy's status and recount the totals (409-safe)."""
        from kubernetes.client.exceptions import ApiException

        for attempt in range(1, CONFLICT_RETRIES + 1):
            current = self.policy(policy)
            status = dict(current.get("status") or {})
            nodes = dict(status.get("nodes") or {})
            nodes[self.node] = dict(entry)
            applied = sum(1 for e in nodes.values() if isinstance(e, Mapping) and e.get("result") == "ok")
            body: dict[str, Any] = {
                "metadata": {"resourceVersion": current.get("metadata", {}).get("resourceVersion")},
                "status": {
                    "nodes": {self.node: dict(entry)},
                    "nodesApplied": applied,
                    "nodesFailing": len(nodes) - applied,
                    **({"signalSource": signal_source} if signal_source else {}),
                },
            }
            try:
                self.custom.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL, policy, body)
                return attempt
            except ApiException as exc:
                if exc.status == 409 and attempt < CONFLICT_RETRIES:
                    continue
                raise self._error(f"status of powercappolicy {policy}", exc) from None
        raise KubeError(
            f"status of powercappolicy {policy}: still conflicting after {CONFLICT_RETRIES} attempts"
        )
