"""Alertmanager webhook receiver: declared actions on alerts about this node, each recorded as an Event.

Actions (only for alerts whose ``node`` label is this node):

* ``PowerplaneGpuTemperatureCritical`` with a ``gpu`` label: lower that GPU's cap by a step for
  a while (``gpu-step-down``); a resolved notification ends it early.
* any other ``severity="critical"`` alert: label the node ``powerplane.io/degraded=true``
  (``node-degraded``); the label goes when the last such alert resolves.

Alertmanager repeats notifications (group_interval, repeat_interval) and may send the same
alert from several replicas: an action is keyed by the alert's fingerprint and start time, so a
repeat does nothing.  Requests need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from powerplane.exporters.runtime import Secret, log

from .agent import Adjustment, Agent
from .kube import LABEL_DEGRADED

logger = logging.getLogger("powerplane.controller")

GPU_TEMPERATURE_ALERT = "PowerplaneGpuTemperatureCritical"
WEBHOOK_PATH = "/webhook/alertmanager"


class WebhookReceiver:
    def __init__(
        self, agent: Agent, token: Secret, gpu_step_watts: float = 100.0, gpu_step_seconds: float = 1800.0
    ):
        self.agent = agent
        self.token = token
        self.gpu_step_watts = gpu_step_watts
        self.gpu_step_seconds = gpu_step_seconds
        self.critical: set[str] = set()

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
        actions: list[dict[str, Any]] = []
        reconcile = False
        for i, alert in enumerate(alerts):
            if not isinstance(alert, Mapping) or not isinstance(alert.get("labels"), Mapping):
                return web.json_response({"error": f"alerts[{i}]: 'labels' must be an object"}, status=400)
            done, changed = await self._act(alert)
            actions += done
            reconcile = reconcile or changed
        if reconcile:
            await self.agent.reconcile()
        return web.json_response({"actions": actions})

    async def _act(self, alert: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        labels = {str(k): str(v) for k, v in alert["labels"].items()}
        if labels.get("node") != self.agent.node:
            return [], False
        name = labels.get("alertname", "")
        firing = alert.get("status", "firing") != "resolved"
        key = f"{alert.get('fingerprint') or sorted(labels.items())}@{alert.get('startsAt', '')}"
        backend = self.agent.backend
        if name == GPU_TEMPERATURE_ALERT and labels.get("gpu", "").isdigit():
            domain = f"gpu-{int(labels['gpu'])}"
            if firing:
                adj = Adjustment(key, domain, self.gpu_step_watts, time.time() + self.gpu_step_seconds)
                if not self.agent.add_adjustment(adj):
                    return [], False
                self._count("gpu-step-down")
                await asyncio.to_thread(
                    backend.event,
                    "AlertActionGpuStepDown",
                    f"{name}: {domain} cap lowered by {self.gpu_step_watts:g} W"
                    f" for {self.gpu_step_seconds:g} s",
                    "Warning",
                )
                return [{"action": "gpu-step-down", "domain": domain}], True
            if self.agent.remove_adjustment(key):
                await asyncio.to_thread(
                    backend.event, "AlertActionEnded", f"{name} resolved: {domain} step-down ended"
                )
                return [{"action": "gpu-step-down-ended", "domain": domain}], True
            return [], False
        if labels.get("severity") == "critical":
            if firing:
                if key in self.critical:
                    return [], False
                first = not self.critical
                self.critical.add(key)
                if first:
                    await asyncio.to_thread(backend.patch_node, {LABEL_DEGRADED: "true"})
                    self._count("node-degraded")
                    await asyncio.to_thread(
                        backend.event,
                        "NodeDegraded",
                        f"critical alert {name}: node labelled degraded",
                        "Warning",
                    )
                    return [{"action": "node-degraded"}], False
                return [], False
            if key in self.critical:
                self.critical.discard(key)
                if not self.critical:
                    await asyncio.to_thread(backend.patch_node, {LABEL_DEGRADED: None})
                    await asyncio.to_thread(
                        backend.event, "NodeRecovered", f"{name} resolved: degraded label removed"
                    )
                    return [{"action": "node-recovered"}], False
        return [], False

    def _count(self, action: str) -> None:
        self.agent.webhook_actions[action] = self.agent.webhook_actions.get(action, 0) + 1
        log(logger, logging.INFO, "alert action", node=self.agent.node, action=action)
