"""``/probe`` for Redfish: the runtime's target policy resolves the request, this adds the BMC side.

The prober owns the process's ``RedfishClient`` (connection pool, sessions, discovered paths,
all per target and evicted ``state_ttl`` after a target's last probe) and reports the client's
counters on ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import Metric

from ..runtime import ProbeJob, Prober
from ..runtime.state import Clock
from .client import RedfishClient
from .collectors import COLLECTORS, ProbeContext
from .config import RedfishConfig
from .metrics import (
    DISCOVERY_DROPPED,
    LINKS_REFUSED,
    LOGIN_BACKOFF,
    LOGIN_FAILURES,
    LOGINS_DEFERRED,
    MEMBERS_DROPPED,
    REQUESTS,
    SESSIONS,
    SESSIONS_CREATED,
)


class RedfishProber(Prober):
    """Resolves ``/probe`` parameters against the config; owns the sessions and the HTTP pool."""

    exporter = "redfish"

    def __init__(self, config: RedfishConfig, clock: Clock | None = None) -> None:
        super().__init__(config.policy.state_ttl, clock)
        self.config = config
        self.client = RedfishClient(state_ttl=self.state_ttl, clock=self.clock)

    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        found = self.config.policy.resolve(params)
        module, auth = found.module, found.auth
        assert module is not None  # the policy falls back to the "default" module
        target = self.client.target(found.base_url, found.device, auth, module)
        ctx = ProbeContext(self.client, target, module, self.text)
        return ProbeJob(
            target=found.name,
            module=module.name,
            timeout=module.timeout,
            collectors=[COLLECTORS[name](ctx) for name in module.collectors],
            device=found.device,
            key=(found.base_url, module.name, auth.name),
            connect=ctx.connect,
        )

    def state_size(self) -> int:
        return len(self.client.targets)

    def sweep(self) -> int:
        return self.client.targets.sweep()

    async def close(self) -> None:
        await self.client.close()

    def collect(self) -> Iterator[Metric]:
        """The exporter's own session and request counters, for ``/metrics``."""
        stats = self.client.stats
        sessions = SESSIONS.family()
        sessions.add_metric([], float(sum(self.client.held.values())))
        created = SESSIONS_CREATED.family()
        created.add_metric([], stats["sessions_created"])
        failures = LOGIN_FAILURES.family()
        failures.add_metric(["session_limit"], stats["login_session_limit"])
        failures.add_metric(["session_rejected"], stats["login_session_rejected"])
        failures.add_metric(["other"], stats["login_failed"])
        backoff = LOGIN_BACKOFF.family()
        backoff.add_metric([], float(self.client.backing_off()))
        dropped = DISCOVERY_DROPPED.family()
        for kind in ("systems", "chassis"):
            dropped.add_metric([kind], stats[f"{kind}_dropped"])
        yield from (sessions, created, failures, backoff, dropped)
        for spec, stat in (
            (LOGINS_DEFERRED, "logins_deferred"),
            (LINKS_REFUSED, "links_refused"),
            (MEMBERS_DROPPED, "members_dropped"),
            (REQUESTS, "requests"),
        ):
            family = spec.family()
            family.add_metric([], stats[stat])
            yield family
