"""Alertmanager webhook receiver: declared actions on alerts about this node, each recorded as an Event.

Actions (only for alerts whose ``node`` label is this node):

* a GPU step alert (``PowerplaneGpuTemperatureCritical`` unless configured otherwise) with a
  ``gpu`` label: lower that GPU's cap by a step for a while (``gpu-step-down``); it ends early
  when the alert resolves.
* any other ``severity="critical"`` alert: label the node ``powerplane.io/degraded=true``
  (``node-degraded``); the label goes when the last such alert resolves.

A step is keyed by the GPU and the alert's name: Alertmanager repeats notifications
(group_interval, repeat_interval), may send the same alert from several replicas, and one rule
may fire several alerts (fingerprints) for one GPU; all of them share the one step, which ends
when the last resolves.  The steps of one GPU together never exceed a configured total.  The
``gpu`` label must be an NVML index in ASCII digits of a GPU this node has; an alert naming
anything else is refused (listed under ``refused`` in the answer, logged and counted as the
action ``refused``) and nothing is done for it, while the other alerts of the same notification
are acted on: Alertmanager does not resend a notification answered with a 4xx, so refusing it
whole would drop a valid critical alert with the bad one.  A body that is not a notification at
all is answered with HTTP 400.  Requests need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from powerplane.exporters.runtime import Secret, log

from .agent import Adjustment, Agent
from .kube import LABEL_DEGRADED

logger = logging.getLogger("powerplane.controller")

GPU_TEMPERATURE_ALERT = "PowerplaneGpuTemperatureCritical"
WEBHOOK_PATH = "/webhook/alertmanager"
#: NVML indexes, in ASCII digits only (str.isdigit() also accepts Arabic-Indic and superscript digits).
_GPU_INDEX = re.compile(r"^[0-9]{1,4}$")
#: Bounds on what a notification can make the agent remember.
MAX_ALERTS_PER_STEP = 64
MAX_CRITICAL = 256


@dataclass(frozen=True)
class GpuSteps:
    """Which alerts step a GPU's cap down, by how much, for how long, and at most how far."""

    alerts: tuple[str, ...] = (GPU_TEMPERATURE_ALERT,)
    watts: float = 100.0
    max_watts: float = 200.0
    seconds: float = 1800.0


def _fingerprint(alert: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    given = alert.get("fingerprint")
    if isinstance(given, str) and given:
        return given[:64]
    return json.dumps(sorted(labels.items()))[:1024]


class WebhookReceiver:
    def __init__(self, agent: Agent, token: Secret, steps: GpuSteps | None = None) -> None:
        self.agent = agent
        self.token = token
        self.steps = steps or GpuSteps()
        #: Firing critical alerts about this node (fingerprint → alert name).
        self.critical: dict[str, str] = {}

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        return hmac.compare_digest(given.strip().encode(), self.token.reveal().encode())

    async def handle(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response(
                {"error": "unauthorised"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            doc = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        alerts = doc.get("alerts") if isinstance(doc, Mapping) else None
        if not isinstance(alerts, list):
            return web.json_response({"error": "field 'alerts' must be a list"}, status=400)
        mine, refused = await self._validate(alerts)
        for reason in refused:
            log(logger, logging.WARNING, "alert refused", node=self.agent.node, error=reason)
            self._count("refused", quiet=True)
        actions: list[dict[str, Any]] = []
        reconcile = False
        for alert, labels, domain in mine:
            done, changed = await self._act(alert, labels, domain)
            actions += done
            reconcile = reconcile or changed
        if reconcile:
            await self.agent.reconcile()
        answer: dict[str, Any] = {"actions": actions}
        if refused:
            answer["refused"] = refused
        return web.json_response(answer)

    async def _validate(
        self, alerts: list[Any]
    ) -> tuple[list[tuple[Mapping[str, Any], dict[str, str], str | None]], list[str]]:
        """This node's acceptable alerts with their labels and GPU domain, and why others are refused."""
        mine = []
        refused = []
        domains: dict[str, str] | None = None
        for i, alert in enumerate(alerts):
            if not isinstance(alert, Mapping) or not isinstance(alert.get("labels"), Mapping):
                refused.append(f"alerts[{i}]: 'labels' must be an object")
                continue
            labels = {str(k): str(v) for k, v in alert["labels"].items()}
            if labels.get("node") != self.agent.node:
                continue
            domain = None
            if labels.get("alertname") in self.steps.alerts and "gpu" in labels:
                gpu = labels["gpu"]
                if not _GPU_INDEX.match(gpu):
                    refused.append(f"alerts[{i}].labels.gpu: {gpu[:16]!r} is not a GPU index (ASCII digits)")
                    continue
                if domains is None:
                    domains = await asyncio.to_thread(self.agent.actuators.domains)
                domain = f"gpu-{int(gpu)}"
                if domains.get(domain) != "gpu":
                    refused.append(f"alerts[{i}].labels.gpu: node {self.agent.node} has no GPU {int(gpu)}")
                    continue
            mine.append((alert, labels, domain))
        return mine, refused

    async def _act(
        self, alert: Mapping[str, Any], labels: Mapping[str, str], domain: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        firing = alert.get("status", "firing") != "resolved"
        fingerprint = _fingerprint(alert, labels)
        if domain is not None:
            if firing:
                return await self._step_down(labels["alertname"], domain, fingerprint)
            return await self._step_end(labels["alertname"], domain, fingerprint)
        if labels.get("severity") == "critical":
            return await self._critical(labels.get("alertname", ""), fingerprint, firing), False
        return [], False

    async def _step_down(self, name: str, domain: str, fingerprint: str) -> tuple[list[dict[str, Any]], bool]:
        active = {a.key: a for a in self.agent.active_adjustments()}
        joined = active.get((domain, name))
        if joined is not None:
            # A repeat, or another alert of the same rule for this GPU: the step is shared.
            if len(joined.firing) < MAX_ALERTS_PER_STEP:
                joined.firing.add(fingerprint)
            return [], False
        taken = sum(a.step_watts for a in active.values() if a.domain == domain)
        step = min(self.steps.watts, self.steps.max_watts - taken)
        if step <= 0:
            log(logger, logging.WARNING, "GPU step-down at its maximum", domain=domain, alert=name)
            return [], False
        adj = Adjustment(domain, name, step, time.time() + self.steps.seconds, {fingerprint})
        if not self.agent.add_adjustment(adj):
            return [], False
        self._count("gpu-step-down")
        await asyncio.to_thread(
            self.agent.backend.event,
            "AlertActionGpuStepDown",
            f"{name}: {domain} cap lowered by {step:g} W for {self.steps.seconds:g} s",
            "Warning",
        )
        return [{"action": "gpu-step-down", "domain": domain}], True

    async def _step_end(self, name: str, domain: str, fingerprint: str) -> tuple[list[dict[str, Any]], bool]:
        adj = {a.key: a for a in self.agent.active_adjustments()}.get((domain, name))
        if adj is None or fingerprint not in adj.firing:
            return [], False
        adj.firing.discard(fingerprint)
        if adj.firing or not self.agent.remove_adjustment(adj.key):
            return [], False
        await asyncio.to_thread(
            self.agent.backend.event, "AlertActionEnded", f"{name} resolved: {domain} step-down ended"
        )
        return [{"action": "gpu-step-down-ended", "domain": domain}], True

    async def _critical(self, name: str, fingerprint: str, firing: bool) -> list[dict[str, Any]]:
        backend = self.agent.backend
        if firing:
            if fingerprint in self.critical:
                return []
            if len(self.critical) >= MAX_CRITICAL:
                log(logger, logging.WARNING, "too many critical alerts to track", alert=name)
                return []
            first = not self.critical
            self.critical[fingerprint] = name
            if not first:
                return []
            await asyncio.to_thread(backend.patch_node, {LABEL_DEGRADED: "true"})
            self._count("node-degraded")
            await asyncio.to_thread(
                backend.event, "NodeDegraded", f"critical alert {name}: node labelled degraded", "Warning"
            )
            return [{"action": "node-degraded"}]
        if self.critical.pop(fingerprint, None) is None or self.critical:
            return []
        await asyncio.to_thread(backend.patch_node, {LABEL_DEGRADED: None})
        await asyncio.to_thread(backend.event, "NodeRecovered", f"{name} resolved: degraded label removed")
        return [{"action": "node-recovered"}]

    def _count(self, action: str, quiet: bool = False) -> None:
        self.agent.webhook_actions[action] = self.agent.webhook_actions.get(action, 0) + 1
        if not quiet:
            log(logger, logging.INFO, "alert action", node=self.agent.node, action=action)
