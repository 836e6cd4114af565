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

from .actuators import Actuators, Result, Status, join_labels
from .policy import (
    Decision,
    DomainCap,
    DomainLimits,
    LookAhead,
    Policy,
    PolicyError,
    Priced,
    State,
    decide,
    next_boundary,
    policy_from_spec,
    selector_matches,
    split,
)
from .signals import Signal, SignalError, signal_from_spec

logger = logging.getLogger("powerplane.controller")

#: ``domain`` names the device (package-0, gpu-1); the others are the exporters' own labels,
#: so that cap and measured power join without label_replace: RAPL ``zone``/``index``/
#: ``constraint`` as in powerplane_rapl_power_limit_watts, the GPU exporter's ``gpu``.
_CAP = ("domain", "zone", "index", "constraint", "gpu")
#: The enumerated ones (the others are names and indexes); GPU series leave zone and constraint empty.
_CAP_VALUES = {"zone": ("package",), "constraint": ("long_term", "short_term")}
#: The reconcile results, as counted and as ``reconcile-once`` prints them.
RESULTS = ("success", "partial", "failure", "dry_run")
#: The webhook actions counted (their endings are not).
ACTIONS = ("gpu-step-down", "node-degraded", "refused")
DESIRED = MetricSpec(
    "powerplane_controller_cap_desired_watts",
    "gauge",
    "Power limit the controller writes to the domain, after its range (never above the original"
    " limit) is applied (absent: no cap, the original limit).",
    _CAP,
    values=_CAP_VALUES,
)
APPLIED = MetricSpec(
    "powerplane_controller_cap_applied_watts",
    "gauge",
    "Power limit read back from the domain after the last write (RAPL constraint, NVML limit).",
    _CAP,
    values=_CAP_VALUES,
)
ENFORCED = MetricSpec(
    "powerplane_controller_cap_enforced_watts",
    "gauge",
    "Power limit NVML reports as enforced for the GPU (can be below the applied one).",
    _CAP,
    values=_CAP_VALUES,
)
CLAMPED = MetricSpec(
    "powerplane_controller_cap_clamped",
    "gauge",
    "Whether the policy's share for the domain was outside its range and clamped into it (1: above"
    " the original limit or below the hardware minimum; 0: within).",
    _CAP,
    values=_CAP_VALUES,
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
    "Reconciles by result (success, partial: some domains failed, failure: none could be"
    " written or the policy is invalid, dry_run).",
    ("result",),
    values={"result": RESULTS},
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
    values={"action": ACTIONS},
)
METRICS = (DESIRED, APPLIED, ENFORCED, CLAMPED, SIGNAL, RECONCILES, LAST_RECONCILE, WEBHOOK_ACTIONS)


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
    """A temporary step-down of one domain's cap by one alert rule, until ``until``.

    Keyed by domain and alert name: every alert of that rule firing for the domain (each its own
    fingerprint) shares the one step, which ends when the last of them resolves or at ``until``.
    """

    domain: str
    alert: str
    step_watts: float
    until: float
    firing: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str]:
        return (self.domain, self.alert)


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
    return hashlib.sha256(json.dumps(doc.get("spec"), sort_keys=True, default=str).encode()).hexdigest()[:16]


def overall(results: Sequence[Result], dry_run: bool) -> str:
    """The reconcile's result from its domains' (unsupported domains are not failures)."""
    if dry_run:
        return "dry_run"
    failed = [r for r in results if not r.ok and r.status != "unsupported"]
    if not failed:
        return "success"
    return "partial" if len(failed) < len(results) else "failure"


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
        self.adjustments: dict[tuple[str, str], Adjustment] = {}
        self.last: Outcome | None = None
        self.reconciles: dict[str, int] = {}
        self.webhook_actions: dict[str, int] = {}
        self.last_reconcile: float | None = None
        self.signal_values: dict[str, float] = {}
        self.policy: Policy | None = None
        self._policy_key: tuple[str, str] | None = None
        self._published: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._last_doc: dict[str, Any] | None = None
        self.wake = asyncio.Event()

    # --- one reconcile ----------------------------------------------------------------------

    def _select(self) -> tuple[dict[str, Any] | None, dict[str, str]]:
        labels = self.backend.node_labels()
        for doc in self.backend.policies():
            spec = doc.get("spec") if isinstance(doc, Mapping) else None
            if isinstance(spec, Mapping) and selector_matches(spec.get("nodeSelector"), labels):
                return doc, labels
        return None, labels

    async def reconcile(self, signal_override: float | None = None, use_override: bool = False) -> Outcome:
        async with self._lock:
            try:
                outcome = await self._reconcile(signal_override, use_override)
            except Exception as exc:
                # A defect must not stop the agent: nothing more is written this period, the
                # caps in force stay (never above the originals) and the next period retries.
                cause = f"{type(exc).__name__}: {exc}"[:400]
                log(logger, logging.ERROR, "reconcile failed", node=self.node, error=cause)
                name = self._policy_key[0] if self._policy_key else None
                outcome = Outcome(self.node, name, None, [], "failure", f"reconcile failed: {cause}")
                if name is not None:
                    await asyncio.to_thread(self._publish_status, name, outcome, "reconcile-error")
        self.last = outcome
        self.last_reconcile = time.time()
        self.reconciles[outcome.result] = self.reconciles.get(outcome.result, 0) + 1
        return outcome

    async def _policy_document(self) -> tuple[dict[str, Any] | None, str]:
        """The policy selecting this node (None: none does), or an error reading them."""
        try:
            doc, _labels = await asyncio.to_thread(self._select)
        except Exception as exc:
            # The API server is away: keep following the last policy read (its signal-loss
            # rules still apply) rather than freezing the caps or dropping them.
            log(logger, logging.ERROR, "cannot read policies", error=exc)
            if self._last_doc is None:
                return None, str(exc)
            doc = self._last_doc
        self._last_doc = doc
        return doc, ""

    async def _reconcile(self, signal_override: float | None, use_override: bool) -> Outcome:
        now = self.clock()
        doc, error = await self._policy_document()
        if error:
            return Outcome(self.node, None, None, [], "failure", error)
        if doc is None:
            return await self._no_policy()
        name = str((doc.get("metadata") or {}).get("name", "policy"))
        self._forget_others(name)
        try:
            policy, signal, changed = self._load(name, doc)
        except PolicyError as exc:
            return await self._policy_error(name, exc)
        if changed:
            await asyncio.to_thread(
                self.backend.event, "PolicyChanged", f"now following {name}", "Normal", name
            )
        dry_run = self.dry_run or policy.dry_run
        if use_override:
            value, source = signal_override, "command line"
        else:
            value, source = await self._read_signal(name, signal)
        outlook = await self._outlook(signal, now) if isinstance(policy.rule, LookAhead) else ()
        decision, state = decide(policy, self.states.get(name, State()), now, value, outlook)
        self.states[name] = state
        if value is not None:
            self.signal_values[name] = value
        else:
            self.signal_values.pop(name, None)  # a lost signal shows as a gap, not a stale value
        results = await self._apply(policy, decision, dry_run)
        absent = "" if results else "nothing to cap on this node: " + "; ".join(self.actuators.absent())
        outcome = Outcome(self.node, name, decision, results, overall(results, dry_run), absent, source)
        if not dry_run:
            await asyncio.to_thread(self._publish_node, decision, results, name)
        await asyncio.to_thread(self._publish_status, name, outcome)
        self._log_clamps(results)
        log(
            logger,
            logging.INFO if results else logging.WARNING,
            "reconciled",
            node=self.node,
            policy=name,
            watts=decision.watts,
            price_level=decision.level,
            reason=decision.reason,
            signal=decision.signal,
            result=outcome.result,
            **({"message": absent} if absent else {}),
        )
        return outcome

    def _forget_others(self, name: str) -> None:
        """Drop what is kept for policies other than ``name``: their memory, signal and series."""
        for kept in (self.states, self.signals, self.signal_values):
            for other in [k for k in kept if k != name]:
                del kept[other]

    def _load(self, name: str, doc: Mapping[str, Any]) -> tuple[Policy, Signal, bool]:
        """The policy, its signal (kept while unchanged) and whether it replaces another one.

        Any invalid field, of the policy or of its signal, is a PolicyError.
        """
        spec = doc.get("spec")
        policy = policy_from_spec(name, spec if isinstance(spec, Mapping) else {})
        assert isinstance(spec, Mapping)
        key = (name, spec_hash(doc))
        changed = self._policy_key is not None and key != self._policy_key
        if changed:
            self.actuators.reset()  # a changed policy retries domains that failed before
        self._policy_key = key
        self.policy = policy
        signal_key = json.dumps(
            [spec.get("signal"), policy.period.total_seconds()], sort_keys=True, default=str
        )
        cached = self.signals.get(name)
        if cached is None or cached[0] != signal_key:
            try:
                cached = (signal_key, self.signal_factory(spec.get("signal") or {}, policy.period))
            except SignalError as exc:
                raise PolicyError(str(exc)) from None
            self.signals[name] = cached
        self._published.pop("invalid", None)
        return policy, cached[1], changed

    async def _policy_error(self, name: str, exc: PolicyError) -> Outcome:
        """An invalid policy: said in its status and an Event; nothing is written, the caps stay."""
        message = str(exc)
        if self._published.get("invalid") != message:
            log(logger, logging.WARNING, "invalid policy", policy=name, error=message)
            await asyncio.to_thread(
                self.backend.event, "InvalidPolicy", f"{name}: {message}"[:1024], "Warning", name
            )
            self._published["invalid"] = message
        outcome = Outcome(self.node, name, None, [], "failure", message)
        await asyncio.to_thread(self._publish_status, name, outcome, "policy-error")
        return outcome

    async def _no_policy(self) -> Outcome:
        """No policy for this node (any more): put the original limits back."""
        results: list[Result] = []
        if self._policy_key is not None or not self.actuators.state.empty:
            results = await asyncio.to_thread(self._release_all)
            self._policy_key, self.policy = None, None
            await asyncio.to_thread(self._publish_node, None, results, None)
        return Outcome(self.node, None, None, results, "success", "no policy selects this node")

    async def _apply(self, policy: Policy, decision: Decision, dry_run: bool) -> list[Result]:
        limits = await asyncio.to_thread(self.actuators.limits)
        caps = self._with_adjustments(split(policy.budget, decision.watts, limits), limits)
        ratio = policy.budget.short_term_ratio if policy.budget.short_term else None
        results = await asyncio.to_thread(self.actuators.apply, caps, dry_run, ratio)
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
        return results

    async def _read_signal(self, name: str, signal: Signal) -> tuple[float | None, str]:
        try:
            return await signal.value(self.clock()), signal.description
        except SignalError as exc:
            log(logger, logging.WARNING, "signal unavailable", policy=name, error=exc)
            return None, signal.description

    async def _outlook(self, signal: Signal, now: datetime) -> Sequence[Priced]:
        """The curve around ``now`` for a look-ahead policy (read with the value: no new fetch)."""
        read = getattr(signal, "outlook", None)
        return tuple(await read(now)) if read is not None else ()

    def active_adjustments(self) -> list[Adjustment]:
        """The step-downs still in force (the expired ones are dropped)."""
        now = time.time()
        for key in [k for k, a in self.adjustments.items() if a.until <= now]:
            del self.adjustments[key]
        return list(self.adjustments.values())

    def _with_adjustments(self, caps: list[DomainCap], limits: Sequence[DomainLimits]) -> list[DomainCap]:
        active = self.active_adjustments()
        ranges = {d.domain: d for d in limits}
        out = []
        for cap in caps:
            steps = sum(a.step_watts for a in active if a.domain == cap.domain)
            rng = ranges.get(cap.domain)
            if steps and rng is not None:
                base = cap.watts if cap.watts is not None else rng.max_watts
                # Stepped down below the share: a clamp of that share no longer applies.
                cap = replace(cap, watts=round(max(rng.min_watts, base - steps), 3), note="")
            out.append(cap)
        return out

    def _release_all(self) -> list[Result]:
        caps = [DomainCap(d, k, None) for d, k in self.actuators.domains().items()]  # type: ignore[arg-type]
        return self.actuators.apply(caps, self.dry_run)

    def _log_clamps(self, results: Sequence[Result]) -> None:
        clamped = "; ".join(sorted(f"{r.domain}: {r.message}" for r in results if r.clamped))
        if clamped and self._published.get("clamped-log") != clamped:
            log(logger, logging.WARNING, "cap clamped", node=self.node, domains=clamped)
        self._published["clamped-log"] = clamped

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
            "domains": {
                r.domain: {
                    "status": r.status,
                    "watts": r.applied_watts,
                    **({"clamped": True} if r.clamped else {}),
                }
                for r in results
            },
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
        for key, reason, rows in (
            ("bad", "PowerCapFailed", [r for r in results if not r.ok]),
            ("clamped", "PowerCapClamped", [r for r in results if r.clamped]),
        ):
            text = "; ".join(sorted(f"{r.domain}: {r.message}" for r in rows))
            if text and self._published.get(key) != text:
                self.backend.event(reason, text[:1024], "Warning", policy)
            self._published[key] = text

    def _publish_status(self, name: str, outcome: Outcome, reason: str = "") -> None:
        d = outcome.decision
        notes = [f"{r.domain}: {r.message}" for r in outcome.results if not r.ok or r.clamped]
        entry = {
            "watts": None if d is None else d.watts,
            "level": "" if d is None else d.level,
            "reason": reason or ("" if d is None else d.reason),
            "signal": None if d is None else d.signal,
            "result": "ok" if outcome.result in ("success", "dry_run") else outcome.result,
            "message": "; ".join(notes or ([outcome.message] if outcome.message else []))[:512],
            "time": self.clock().isoformat().replace("+00:00", "Z"),
        }
        try:
            self.backend.report(name, entry, outcome.signal_source)
        except Exception as exc:
            log(logger, logging.WARNING, "cannot update policy status", policy=name, error=exc)

    # --- lifecycle --------------------------------------------------------------------------

    def period(self) -> timedelta:
        return self.policy.period if self.policy is not None else timedelta(minutes=15)

    async def _policy_fingerprint(self) -> str:
        """A hash of the policies and of this node's labels (a relabelled node may change policy)."""
        try:
            docs = await asyncio.to_thread(self.backend.policies)
            labels = await asyncio.to_thread(self.backend.node_labels)
        except Exception:
            return "unavailable"
        # Our own labels change at every reconcile: leave them out.
        labels = {k: v for k, v in labels.items() if not k.startswith("powerplane.io/")}
        specs = [(d.get("metadata", {}).get("name"), d.get("spec")) for d in docs if isinstance(d, Mapping)]
        return hashlib.sha256(json.dumps([specs, labels], sort_keys=True, default=str).encode()).hexdigest()

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
        """Register a step-down; False when its domain and alert already have one in force."""
        if adj.key in {a.key for a in self.active_adjustments()}:
            return False
        self.adjustments[adj.key] = adj
        self.wake.set()
        return True

    def remove_adjustment(self, key: tuple[str, str]) -> bool:
        return self.adjustments.pop(key, None) is not None


Row = tuple[tuple[str, ...], float]


@dataclass(frozen=True)
class AgentSnapshot:
    desired: tuple[Row, ...]
    applied: tuple[Row, ...]
    enforced: tuple[Row, ...]
    clamped: tuple[Row, ...]
    signals: tuple[tuple[str, float], ...]
    reconciles: tuple[tuple[str, int], ...]
    last: float | None
    actions: tuple[tuple[str, int], ...]


def _label_values(result: Result, constraint: str) -> tuple[str, ...]:
    labels = join_labels(result.domain)
    return (result.domain, labels.get("zone", ""), labels.get("index", ""), constraint, labels.get("gpu", ""))


def _rows(results: Sequence[Result]) -> dict[str, list[Row]]:
    """The cap series of every domain: RAPL long_term (and short_term when written), GPUs."""
    rows: dict[str, list[Row]] = {"desired": [], "applied": [], "enforced": [], "clamped": []}
    for r in results:
        main = _label_values(r, "long_term" if r.kind == "cpu" else "")
        short = _label_values(r, "short_term")
        for kind, labels, value in (
            ("desired", main, r.desired_watts),
            ("applied", main, r.applied_watts),
            ("enforced", main, r.enforced_watts),
            ("desired", short, r.short_term_desired_watts),
            ("applied", short, r.short_term_applied_watts),
            ("clamped", main, None if r.desired_watts is None else float(r.clamped)),
        ):
            if value is not None:
                rows[kind].append((labels, value))
    return rows


class AgentCollector(Collector[AgentSnapshot]):
    """The agent's state as metrics; no I/O here, the reconcile loop did it."""

    name = "controller"

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def fetch(self, deadline: Deadline) -> AgentSnapshot:
        agent = self.agent
        rows = _rows(agent.last.results if agent.last else [])
        return AgentSnapshot(
            tuple(rows["desired"]),
            tuple(rows["applied"]),
            tuple(rows["enforced"]),
            tuple(rows["clamped"]),
            tuple(sorted(agent.signal_values.items())),
            tuple(sorted(agent.reconciles.items())),
            agent.last_reconcile,
            tuple(sorted(agent.webhook_actions.items())),
        )

    def render(self, snapshot: AgentSnapshot) -> Iterable[Metric]:
        desired, applied, enforced, clamped, signal, reconciles, last, actions = (s.family() for s in METRICS)
        for family, rows in (
            (desired, snapshot.desired),
            (applied, snapshot.applied),
            (enforced, snapshot.enforced),
            (clamped, snapshot.clamped),
        ):
            for labels, watts in rows:
                family.add_metric(list(labels), watts)
        for name, value in snapshot.signals:
            signal.add_metric([name], value)
        counts = dict(snapshot.reconciles)
        for result in RESULTS:
            reconciles.add_metric([result], float(counts.get(result, 0)))
        for action, count in snapshot.actions:
            actions.add_metric([action], float(count))
        if snapshot.last is not None:
            last.add_metric([], snapshot.last)
        return [desired, applied, enforced, clamped, signal, reconciles, last, actions]
