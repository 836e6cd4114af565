"""The node agent: at each period boundary (and on a policy change) decide, write, read back, publish.

One agent runs per node and acts on that node only.  A reconcile picks the first policy (by
name) whose node selector matches the node, reads its signal, lets the pure policy core
decide the node budget, splits it between CPU packages and GPUs, hands the caps to the
actuators, and publishes the outcome: metrics, node labels and an annotation, Events and the
policy's status (through a ``Backend``: Kubernetes, or local for the demo and scripts).

    powerplane_controller_cap_desired_watts{domain="package-0"} 180.0
    powerplane_controller_cap_applied_watts{domain="package-0"} 180.0
    powerplane_controller_cap_enforced_watts{domain="gpu-0"} 450.0
    powerplane_controller_signal_value{policy="price"} 212.5
    powerplane_controller_reconcile_total{result="success"} 12.0
    powerplane_controller_last_reconcile_timestamp_seconds 1.7790624e+09
    powerplane_controller_webhook_actions_total{action="gpu-step-down"} 1.0

Like every node-level series, these get their ``node`` label from the scrape (a target label:
the chart's PodMonitor, file_sd, the demo's static labels), not from the agent.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.core import Metric

from powerplane.exporters.runtime import Collector, Deadline, log
from powerplane.exporters.runtime.metrics import MetricSpec

from .actuators import Actuators, Result, Status
from .policy import (
    Decision,
    DomainCap,
    Policy,
    PolicyError,
    State,
    decide,
    next_boundary,
    policy_from_spec,
    selector_matches,
    split,
)
from .signals import Signal, SignalError, signal_from_spec

logger = logging.getLogger("powerplane.controller")

_CAP = ("domain",)
DESIRED = MetricSpec(
    "powerplane_controller_cap_desired_watts",
    "gauge",
    "Power cap the policy wants for the domain (absent: no cap, the hardware default).",
    _CAP,
)
APPLIED = MetricSpec(
    "powerplane_controller_cap_applied_watts",
    "gauge",
    "Power limit read back from the domain after the last write (RAPL long_term, NVML limit).",
    _CAP,
)
ENFORCED = MetricSpec(
    "powerplane_controller_cap_enforced_watts",
    "gauge",
    "Power limit NVML reports as enforced for the GPU (can be below the applied one).",
    _CAP,
)
SIGNAL = MetricSpec(
    "powerplane_controller_signal_value",
    "gauge",
    "Signal value the policy acts on this period (absent while the signal is lost).",
    ("policy",),
)
RECONCILES = MetricSpec(
    "powerplane_controller_reconcile_total",
    "counter",
    "Reconciles by result (success, partial: some domains failed, failure, dry_run).",
    ("result",),
)
LAST_RECONCILE = MetricSpec(
    "powerplane_controller_last_reconcile_timestamp_seconds",
    "gauge",
    "Unix time of the last reconcile.",
)
WEBHOOK_ACTIONS = MetricSpec(
    "powerplane_controller_webhook_actions_total",
    "counter",
    "Actions taken on Alertmanager notifications (a repeated notification is not counted again).",
    ("action",),
)
METRICS = (DESIRED, APPLIED, ENFORCED, SIGNAL, RECONCILES, LAST_RECONCILE, WEBHOOK_ACTIONS)


class Backend(Protocol):
    """Where policies come from and where the outcome is published."""

    def policies(self) -> list[dict[str, Any]]: ...
    def node_labels(self) -> dict[str, str]: ...
    def patch_node(
        self, labels: Mapping[str, str | None], annotations: Mapping[str, str | None] | None = ...
    ) -> int: ...
    def event(self, reason: str, message: str, type_: str = ..., related: str | None = ...) -> None: ...
    def report(self, policy: str, entry: Mapping[str, Any], signal_source: str = ...) -> int: ...


@dataclass
class LocalBackend:
    """No Kubernetes: policies from files, labels and events kept in memory and logged."""

    node: str
    policy_files: Sequence[Path] = ()
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    documents: list[dict[str, Any]] = field(default_factory=list)

    def policies(self) -> list[dict[str, Any]]:
        return list(self.documents) + [load_policy_document(p) for p in self.policy_files]

    def node_labels(self) -> dict[str, str]:
        return dict(self.labels)

    def patch_node(
        self, labels: Mapping[str, str | None], annotations: Mapping[str, str | None] | None = None
    ) -> int:
        for target, changes in ((self.labels, labels), (self.annotations, dict(annotations or {}))):
            for k, v in changes.items():
                if v is None:
                    target.pop(k, None)
                else:
                    target[k] = v
        return 1

    def event(self, reason: str, message: str, type_: str = "Normal", related: str | None = None) -> None:
        self.events.append((type_, reason, message))
        log(logger, logging.INFO, "event", node=self.node, type=type_, reason=reason, message=message)

    def report(self, policy: str, entry: Mapping[str, Any], signal_source: str = "") -> int:
        self.status.setdefault(policy, {})[self.node] = dict(entry)
        return 1


def load_policy_document(path: Path) -> dict[str, Any]:
    """A policy file: a full ``PowerCapPolicy`` object, or just its spec (named after the file)."""
    from powerplane.exporters.runtime import ConfigError

    from .config import KIND

    try:
        loaded = KIND.load(path)
    except ConfigError as exc:
        raise PolicyError("invalid policy:\n  " + "\n  ".join(str(exc).splitlines())) from None
    doc = copy.deepcopy(loaded.document)
    if loaded.spec_only:
        doc["metadata"]["name"] = Path(path).stem
    return doc


@dataclass
class Adjustment:
    """A temporary step-down of one domain's cap (from an alert), until ``until``."""

    key: str
    domain: str
    step_watts: float
    until: float


@dataclass
class Outcome:
    """What one reconcile did, as printed by ``reconcile-once`` and kept for the metrics."""

    node: str
    policy: str | None
    decision: Decision | None
    results: list[Result]
    result: str
    message: str = ""
    signal_source: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "policy": self.policy,
            "result": self.result,
            "message": self.message or None,
            "decision": self.decision.as_dict() if self.decision else None,
            "domains": [r.as_dict() for r in self.results],
        }


def spec_hash(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc.get("spec"), sort_keys=True).encode()).hexdigest()[:16]


class Agent:
    """One node's controller."""

    def __init__(
        self,
        node: str,
        backend: Backend,
        actuators: Actuators,
        *,
        dry_run: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        signal_factory: Callable[[Mapping[str, Any], timedelta], Signal] = signal_from_spec,
        poll_seconds: float = 30.0,
    ) -> None:
        self.node = node
        self.backend = backend
        self.actuators = actuators
        self.dry_run = dry_run
        self.clock = clock
        self.signal_factory = signal_factory
        self.poll_seconds = poll_seconds
        self.states: dict[str, State] = {}
        self.signals: dict[str, tuple[str, Signal]] = {}
        self.adjustments: dict[str, Adjustment] = {}
        self.last: Outcome | None = None
        self.reconciles: dict[str, int] = {}
        self.webhook_actions: dict[str, int] = {}
        self.last_reconcile: float | None = None
        self.signal_values: dict[str, float] = {}
        self._policy_key: tuple[str, str] | None = None
        self._published: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._cached_docs: list[dict[str, Any]] = []
        self._last_doc: dict[str, Any] | None = None
        self.wake = asyncio.Event()

    # --- one reconcile ----------------------------------------------------------------------

    def _select(self) -> tuple[dict[str, Any] | None, dict[str, str]]:
        labels = self.backend.node_labels()
        for doc in self.backend.policies():
            spec = doc.get("spec") or {}
            if selector_matches(spec.get("nodeSelector"), labels):
                return doc, labels
        return None, labels

    async def reconcile(self, signal_override: float | None = None, use_override: bool = False) -> Outcome:
        async with self._lock:
            outcome = await self._reconcile(signal_override, use_override)
        self.last = outcome
        self.last_reconcile = time.time()
        self.reconciles[outcome.result] = self.reconciles.get(outcome.result, 0) + 1
        return outcome

    async def _reconcile(self, signal_override: float | None, use_override: bool) -> Outcome:
        now = self.clock()
        try:
            doc, _labels = await asyncio.to_thread(self._select)
        except Exception as exc:
            # The API server is away: keep following the last policy read (its signal-loss
            # rules still apply) rather than freezing the caps or dropping them.
            log(logger, logging.ERROR, "cannot read policies", error=exc)
            if self._last_doc is None:
                return Outcome(self.node, None, None, [], "failure", str(exc))
            doc = self._last_doc
        self._last_doc = doc
        if doc is None:
            # No policy for this node (any more): put the hardware defaults back.
            if self._policy_key is not None or not self.actuators.state.empty:
                results = await asyncio.to_thread(self._release_all)
                self._policy_key = None
                await asyncio.to_thread(self._publish_node, None, results, None)
                return Outcome(self.node, None, None, results, "success", "no policy selects this node")
            return Outcome(self.node, None, None, [], "success", "no policy selects this node")

        name = str(doc.get("metadata", {}).get("name", "policy"))
        key = (name, spec_hash(doc))
        try:
            policy = policy_from_spec(name, doc.get("spec") or {})
        except PolicyError as exc:
            await asyncio.to_thread(self.backend.event, "InvalidPolicy", f"{name}: {exc}", "Warning", name)
            return Outcome(self.node, name, None, [], "failure", str(exc))
        if key != self._policy_key:
            if self._policy_key is not None:
                self.actuators.reset()  # a changed policy retries domains that failed before
                await asyncio.to_thread(
                    self.backend.event, "PolicyChanged", f"now following {name}", "Normal", name
                )
            self._policy_key = key
        dry_run = self.dry_run or policy.dry_run

        signal_source = ""
        if use_override:
            value = signal_override
            signal_source = "command line"
        else:
            value, signal_source = await self._read_signal(
                name, doc.get("spec", {}).get("signal", {}), policy
            )
        decision, state = decide(policy, self.states.get(name, State()), now, value)
        self.states[name] = state
        if value is not None:
            self.signal_values[name] = value
        else:
            self.signal_values.pop(name, None)  # a lost signal shows as a gap, not a stale value

        limits = await asyncio.to_thread(self.actuators.limits)
        caps = self._with_adjustments(split(policy.budget, decision.watts, limits), limits)
        results = await asyncio.to_thread(self.actuators.apply, caps, dry_run, policy.budget.short_term)
        # Domains without a usable range are reported, never written: unsupported ones (AMD,
        # BIOS-locked) as such, the others (a limit that could not be read) as failed.
        known = {c.domain for c in caps}
        domains = await asyncio.to_thread(self.actuators.domains)
        unsupported = self.actuators.unsupported()
        for domain, kind in domains.items():
            if domain not in known:
                reason = unsupported.get(domain)
                status: Status = "unsupported" if reason else "failed"
                message = reason or "its power limit could not be read"
                results.append(Result(domain, kind, status, None, None, message))  # type: ignore[arg-type]
        failed = [r for r in results if not r.ok and r.status != "unsupported"]
        result = (
            "dry_run"
            if dry_run
            else ("partial" if failed and len(failed) < len(results) else "failure" if failed else "success")
        )
        outcome = Outcome(self.node, name, decision, results, result, "", signal_source)
        if not dry_run:
            await asyncio.to_thread(self._publish_node, decision, results, name)
        await asyncio.to_thread(self._publish_status, name, outcome)
        log(
            logger,
            logging.INFO,
            "reconciled",
            node=self.node,
            policy=name,
            watts=decision.watts,
            price_level=decision.level,
            reason=decision.reason,
            signal=decision.signal,
            result=result,
        )
        return outcome

    async def _read_signal(
        self, name: str, spec: Mapping[str, Any], policy: Policy
    ) -> tuple[float | None, str]:
        key = json.dumps(spec, sort_keys=True)
        cached = self.signals.get(name)
        if cached is None or cached[0] != key:
            try:
                cached = (key, self.signal_factory(spec, policy.period))
            except (SignalError, KeyError, TypeError, ValueError) as exc:
                log(logger, logging.WARNING, "invalid signal", policy=name, error=exc)
                return None, "invalid"
            self.signals[name] = cached
        signal = cached[1]
        try:
            return await signal.value(self.clock()), signal.description
        except SignalError as exc:
            log(logger, logging.WARNING, "signal unavailable", policy=name, error=exc)
            return None, signal.description

    def _with_adjustments(self, caps: list[DomainCap], limits: Sequence[Any]) -> list[DomainCap]:
        now = time.time()
        for key in [k for k, a in self.adjustments.items() if a.until <= now]:
            del self.adjustments[key]
        ranges = {d.domain: d for d in limits}
        out = []
        for cap in caps:
            steps = sum(a.step_watts for a in self.adjustments.values() if a.domain == cap.domain)
            rng = ranges.get(cap.domain)
            if steps and rng is not None:
                base = cap.watts if cap.watts is not None else (rng.default_watts or rng.max_watts)
                cap = replace(cap, watts=round(max(rng.min_watts, base - steps), 3))
            out.append(cap)
        return out

    def _release_all(self) -> list[Result]:
        caps = [DomainCap(d, k, None) for d, k in self.actuators.domains().items()]  # type: ignore[arg-type]
        return self.actuators.apply(caps, self.dry_run)

    def _publish_node(self, decision: Decision | None, results: Sequence[Result], policy: str | None) -> None:
        from .kube import ANNOTATION, LABEL_CAP, LABEL_LEVEL, label_value

        cap = "none" if decision is None or decision.watts is None else str(round(decision.watts))
        level = "none" if decision is None else label_value(decision.level) or "none"
        detail = {
            "policy": policy,
            "watts": None if decision is None else decision.watts,
            "reason": None if decision is None else decision.reason,
            "signal": None if decision is None else decision.signal,
            "period": None if decision is None else decision.as_dict()["period_start"],
            "domains": {r.domain: {"status": r.status, "watts": r.applied_watts} for r in results},
        }
        try:
            self.backend.patch_node(
                {LABEL_CAP: cap, LABEL_LEVEL: level}, {ANNOTATION: json.dumps(detail, sort_keys=True)}
            )
        except Exception as exc:
            log(logger, logging.WARNING, "cannot label node", node=self.node, error=exc)
        summary = f"no cap ({level})" if cap == "none" else f"cap {cap} W ({level})"
        if self._published.get("cap") != summary:
            reason = "PowerCapReleased" if cap == "none" else "PowerCapApplied"
            message = f"{summary} by policy {policy}" + (f", reason {decision.reason}" if decision else "")
            self.backend.event(reason, message, "Normal", policy)
            self._published["cap"] = summary
        bad = sorted(f"{r.domain}: {r.message}" for r in results if not r.ok)
        bad_text = "; ".join(bad)
        if bad and self._published.get("bad") != bad_text:
            self.backend.event("PowerCapFailed", bad_text, "Warning", policy)
        self._published["bad"] = bad_text

    def _publish_status(self, name: str, outcome: Outcome) -> None:
        d = outcome.decision
        entry = {
            "watts": None if d is None else d.watts,
            "level": "" if d is None else d.level,
            "reason": "" if d is None else d.reason,
            "signal": None if d is None else d.signal,
            "result": "ok" if outcome.result in ("success", "dry_run") else outcome.result,
            "message": "; ".join(f"{r.domain}: {r.message}" for r in outcome.results if not r.ok)[:512],
            "time": self.clock().isoformat().replace("+00:00", "Z"),
        }
        try:
            self.backend.report(name, entry, outcome.signal_source)
        except Exception as exc:
            log(logger, logging.WARNING, "cannot update policy status", policy=name, error=exc)

    # --- lifecycle --------------------------------------------------------------------------

    def period(self) -> timedelta:
        if self._policy_key is not None:
            for doc in self._cached_docs:
                if doc.get("metadata", {}).get("name") == self._policy_key[0]:
                    return timedelta(seconds=int(doc.get("spec", {}).get("periodSeconds", 900)))
        return timedelta(minutes=15)

    async def _policy_fingerprint(self) -> str:
        """A hash of the policies and of this node's labels (a relabelled node may change policy)."""
        try:
            docs = await asyncio.to_thread(self.backend.policies)
            labels = await asyncio.to_thread(self.backend.node_labels)
        except Exception:
            return "unavailable"
        self._cached_docs = docs
        # Our own labels change at every reconcile: leave them out.
        labels = {k: v for k, v in labels.items() if not k.startswith("powerplane.io/")}
        specs = [(d.get("metadata", {}).get("name"), d.get("spec")) for d in docs]
        return hashlib.sha256(json.dumps([specs, labels], sort_keys=True).encode()).hexdigest()

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile at every period boundary and whenever the policies change, until ``stop``."""
        fingerprint = await self._policy_fingerprint()
        while not stop.is_set():
            await self.reconcile()
            boundary = next_boundary(self.clock(), self.period())
            while not stop.is_set():
                left = (boundary - self.clock()).total_seconds()
                if self.adjustments:
                    # An alert's step-down ends on time, not at the next period.
                    left = min(left, min(a.until for a in self.adjustments.values()) - time.time())
                if left <= 0:
                    break
                self.wake.clear()
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
                await asyncio.wait(
                    waiters, timeout=min(left, self.poll_seconds), return_when=asyncio.FIRST_COMPLETED
                )
                for w in waiters:
                    w.cancel()
                if self.wake.is_set():
                    continue  # an alert action changed the timetable: recompute the wait
                new = await self._policy_fingerprint()
                if new != fingerprint:
                    fingerprint = new
                    break

    async def shutdown(self) -> list[str]:
        """Restore every original limit (SIGTERM, exit) and say so on the node."""
        async with self._lock:
            errors = await asyncio.to_thread(self.actuators.restore)
        try:
            from .kube import ANNOTATION, LABEL_CAP, LABEL_LEVEL

            await asyncio.to_thread(
                self.backend.patch_node, {LABEL_CAP: None, LABEL_LEVEL: None}, {ANNOTATION: None}
            )
            await asyncio.to_thread(
                self.backend.event,
                "PowerCapRestored" if not errors else "PowerCapRestoreFailed",
                "original power limits restored" if not errors else "; ".join(errors),
                "Normal" if not errors else "Warning",
            )
        except Exception as exc:
            log(logger, logging.WARNING, "cannot publish shutdown", error=exc)
        return errors

    # --- webhook actions ---------------------------------------------------------------------

    def add_adjustment(self, adj: Adjustment) -> bool:
        """Register a step-down; False when the same alert already has one (idempotent)."""
        if adj.key in self.adjustments:
            return False
        self.adjustments[adj.key] = adj
        self.wake.set()
        return True

    def remove_adjustment(self, key: str) -> bool:
        return self.adjustments.pop(key, None) is not None


@dataclass(frozen=True)
class AgentSnapshot:
    desired: tuple[tuple[str, float], ...]
    applied: tuple[tuple[str, float], ...]
    enforced: tuple[tuple[str, float], ...]
    signals: tuple[tuple[str, float], ...]
    reconciles: tuple[tuple[str, int], ...]
    last: float | None
    actions: tuple[tuple[str, int], ...]


class AgentCollector(Collector[AgentSnapshot]):
    """The agent's state as metrics; no I/O here, the reconcile loop did it."""

    name = "controller"

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def fetch(self, deadline: Deadline) -> AgentSnapshot:
        agent = self.agent
        results = agent.last.results if agent.last else []
        return AgentSnapshot(
            tuple((r.domain, r.desired_watts) for r in results if r.desired_watts is not None),
            tuple((r.domain, r.applied_watts) for r in results if r.applied_watts is not None),
            tuple((r.domain, r.enforced_watts) for r in results if r.enforced_watts is not None),
            tuple(sorted(agent.signal_values.items())),
            tuple(sorted(agent.reconciles.items())),
            agent.last_reconcile,
            tuple(sorted(agent.webhook_actions.items())),
        )

    def render(self, snapshot: AgentSnapshot) -> Iterable[Metric]:
        desired, applied, enforced, signal, reconciles, last, actions = (s.family() for s in METRICS)
        for family, rows in (
            (desired, snapshot.desired),
            (applied, snapshot.applied),
            (enforced, snapshot.enforced),
        ):
            for domain, watts in rows:
                family.add_metric([domain], watts)
        for name, value in snapshot.signals:
            signal.add_metric([name], value)
        counts = dict(snapshot.reconciles)
        for result in ("success", "partial", "failure", "dry_run"):
            reconciles.add_metric([result], float(counts.get(result, 0)))
        for action, count in snapshot.actions:
            actions.add_metric([action], float(count))
        if snapshot.last is not None:
            last.add_metric([], snapshot.last)
        return [desired, applied, enforced, signal, reconciles, last, actions]
