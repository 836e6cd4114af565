"""``/probe`` for SNMP: the runtime's target policy resolves the request, this adds the device side.

``module`` names a profile; when neither the probe nor the target names one, the profile is
chosen from the device's sysObjectID and remembered for ``DETECT_TTL``.  What the prober
remembers per device and auth (that choice, the counters of resettable meters) is evicted
``state_ttl`` seconds after the device's last probe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import Metric

from ..runtime import Collector, CollectorError, Deadline, ProbeJob, Prober, ResettableCounter
from ..runtime.state import Clock, ExpiringMap
from .collectors import Connection, Heads, SessionFactory, TableCollector, as_text, inner_deadline
from .config import SnmpConfig
from .engine import GufoSession, SnmpEngineError
from .profiles import Profile

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
#: How long an auto-detected module is trusted before sysObjectID is read again.
DETECT_TTL = 600.0

Device = tuple[str, int, str]  # host, port, auth


@dataclass
class DeviceState:
    """What the prober remembers about one device read with one auth."""

    counters: ResettableCounter = field(default_factory=ResettableCounter)
    #: (profile name, when it was detected).
    detected: tuple[str, float] | None = None
    #: (profile, table) → the line starts of its latest render (``TableCollector.heads``).
    heads: dict[tuple[str, str], Heads] = field(default_factory=dict)
    #: (profile, table) → the rows of its latest walk, which sizes the next walk's first GETBULK.
    rows: dict[tuple[str, str], int] = field(default_factory=dict)


class SnmpProber(Prober):
    exporter = "snmp"

    def __init__(
        self,
        config: SnmpConfig,
        session_factory: SessionFactory = GufoSession,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(config.policy.state_ttl, clock)
        self.config = config
        self.session_factory = session_factory
        self.devices: ExpiringMap[Device, DeviceState] = ExpiringMap(self.state_ttl, clock=self.clock)

    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        found = self.config.policy.resolve(params)
        key: Device = (found.host, found.port, found.auth_name)
        state = self.devices.get(key, DeviceState)
        connection = Connection(
            found.host, found.port, found.auth.credentials(), self.config.timeout, self.session_factory
        )
        profile = found.module or self._detected(state)
        collectors: list[Collector[Any]] = (
            self._collectors(profile, connection, state) if profile else [_Pending()]
        )

        async def connect(deadline: Deadline) -> None:
            async with connection.lock:
                await connection.session(deadline)
            if profile is None:
                detected = await self._detect(connection, deadline, state)
                collectors[:] = self._collectors(detected, connection, state)

        return ProbeJob(
            target=found.name,
            module=found.module_name or "auto",
            timeout=self.config.timeout,
            collectors=collectors,
            device=found.device,
            key=(*key, found.module_name),
            connect=connect,
        )

    def state_size(self) -> int:
        return len(self.devices)

    def sweep(self) -> int:
        return self.devices.sweep()

    def _detected(self, state: DeviceState) -> Profile | None:
        if state.detected and self.clock() - state.detected[1] < DETECT_TTL:
            return self.config.profiles.get(state.detected[0])
        return None

    async def _detect(self, connection: Connection, deadline: Deadline, state: DeviceState) -> Profile:
        try:
            async with connection.lock:
                session = await connection.session(deadline)
                values = await session.get([SYS_OBJECT_ID], inner_deadline(deadline))
        except SnmpEngineError as exc:
            raise CollectorError(f"reading sysObjectID: {exc}") from None
        oid = as_text(values.get(SYS_OBJECT_ID)).lstrip(".")
        best = max(self.config.profiles.values(), key=lambda p: p.matches(oid), default=None)
        if best is None or best.matches(oid) == 0:
            raise CollectorError(
                f"no module recognises sysObjectID {oid[:64] or '(none)'}; name one with module="
            )
        state.detected = (best.name, self.clock())
        return best

    def _collectors(
        self, profile: Profile, connection: Connection, state: DeviceState
    ) -> list[Collector[Any]]:
        return [
            TableCollector(
                profile,
                table,
                connection,
                state.counters,
                self.config.max_rows,
                self.text,
                state.heads,
                state.rows,
            )
            for table in profile.tables
        ]


class _Pending(Collector[None]):
    """Placeholder until auto-detection has chosen the tables (replaced in ``connect``)."""

    name = "detect"

    async def fetch(self, deadline: Deadline) -> None:
        raise CollectorError("module detection did not run")

    def render(self, snapshot: None) -> Iterable[Metric]:
        return []
