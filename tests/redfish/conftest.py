"""Shared by the Redfish tests: the simulated fleet, an exporter serving the test config, helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from powerplane.exporters.redfish.config import KIND
from powerplane.exporters.redfish.exporter import make_server
from powerplane.lab import procs
from powerplane.lab.redfish import IDRAC9_R760, RedfishLab, SimulatedBMC
from tests.conftest import IN_CI, Serve, Served
from tests.helpers import parse, undocumented, value

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PASSWORD = "calvin-not-in-logs"

#: The simulated BMCs listen on random ports of 127.0.0.1: the allow rule names every port.
CONFIG = """
auths:
  idrac: {username: root, password: {env: RF_PW}, max_sessions: 2}
  basic: {method: basic, username: root, password: {env: RF_PW}}
defaults: {auth: idrac, scheme: http}
modules:
  default: {timeout: 5, collectors: {telemetry: true}}
  quick: {timeout: 1}
  small: {timeout: 5, max_response_bytes: 65536}
  legacy: {schema: legacy}
allow: ["127.0.0.0/8:*"]
"""


Probe = Callable[..., Awaitable[tuple[int, str]]]


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def device(name: str) -> dict[str, dict[str, Any]]:
    """A device fixture: every resource of one BMC by its URI (``fixtures/devices``)."""
    docs: dict[str, dict[str, Any]] = json.loads((FIXTURES / "devices" / f"{name}.json").read_text())
    return docs


def missing(what: str) -> None:
    message = f"REAL COMPONENT MISSING: {what} (pip install -e '.[test]')"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def write_mockup(docs: dict[str, dict[str, Any]], root: Path) -> None:
    """Lay resources out as a sushy-static mockup: ``<path under /redfish/v1>/index.json``."""
    for uri, doc in docs.items():
        path = root / uri.removeprefix("/redfish/v1").strip("/") / "index.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))


@contextlib.contextmanager
def sushy_static(docs: dict[str, dict[str, Any]], workdir: Path) -> Iterator[str]:
    """A real third-party Redfish server (sushy-tools) serving ``docs``; yields host:port."""
    binary = shutil.which("sushy-static") or str(Path(sys.executable).parent / "sushy-static")
    if not Path(binary).exists():
        missing("sushy-static (the sushy-tools wheel)")
    write_mockup(docs, workdir / "mockup")
    port = procs.free_port()
    process = procs.Process(
        [binary, "-i", "127.0.0.1", "-p", str(port), "-m", str(workdir / "mockup")], workdir / "sushy.log"
    )
    try:
        process.wait_ready(f"http://127.0.0.1:{port}/redfish/v1", timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


class SushyDevice:
    """One device fixture served by sushy-static (its mockup in ``root``), and an exporter for it."""

    def __init__(self, served: Served, address: str, root: Path) -> None:
        self.served, self.address, self.root = served, address, root

    async def probe(self, module: str = "default") -> dict[str, Any]:
        status, text = await self.served.probe(self.address, module=module)
        assert status == 200
        assert undocumented(text) == set()
        return parse(text)

    async def own(self) -> dict[str, Any]:
        return parse((await self.served.get("/metrics"))[1])

    async def requests(self) -> float:
        return value(await self.own(), "powerplane_redfish_requests_total")

    def remove(self, uri: str) -> None:
        """Make ``uri`` answer 404 from now on (a pulled blade, a changed tree)."""
        (self.root / uri.removeprefix("/redfish/v1").strip("/") / "index.json").unlink()


StartDevice = Callable[[dict[str, Any]], Awaitable[SushyDevice]]


@contextlib.asynccontextmanager
async def sushy_devices(tmp_path: Path, serve: Serve, config: str) -> AsyncIterator[StartDevice]:
    """Start device fixtures on sushy-static, each probed by an exporter whose config is
    ``config`` formatted with the device's ``address``; all are stopped at the end."""
    servers: list[Any] = []

    async def run(docs: dict[str, Any]) -> SushyDevice:
        workdir = tmp_path / f"bmc{len(servers)}"
        server = sushy_static(docs, workdir)
        address = server.__enter__()
        servers.append(server)
        served = await serve(make_server(KIND.load_text(config.format(address=address))))
        return SushyDevice(served, address, workdir / "mockup")

    try:
        yield run
    finally:
        for server in servers:
            server.__exit__(None, None, None)


def constant(load: float) -> Callable[[float], float]:
    return lambda _t: load


def success(samples: Any, collector: str) -> float:
    return value(samples, "powerplane_scrape_collector_success", collector=collector)


async def bmc(lab: RedfishLab, model: Any = IDRAC9_R760, **kwargs: Any) -> SimulatedBMC:
    kwargs.setdefault("password", PASSWORD)
    kwargs.setdefault("load", constant(0.5))
    return await lab.start_bmc(SimulatedBMC(kwargs.pop("name", model.name), model, **kwargs))


@pytest.fixture
async def lab() -> AsyncIterator[RedfishLab]:
    async with RedfishLab() as running:
        yield running


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RF_PW", PASSWORD)
    return KIND.load_text(CONFIG)


@pytest.fixture
async def exporter(config: Any, serve: Serve) -> Served:
    """The exporter with ``CONFIG``, serving."""
    return await serve(make_server(config))


async def probe_with_healthy_neighbour(
    lab: RedfishLab, probe: Probe, faulty: SimulatedBMC, **params: str
) -> dict[str, Any]:
    """Probe the faulty BMC and a healthy one at once; the healthy one must be unaffected."""
    healthy = await bmc(lab, IDRAC9_R760, name=f"healthy-{faulty.name}")
    (status, text), (h_status, h_text) = await asyncio.gather(
        probe(faulty.address, **params), probe(healthy.address, **params)
    )
    assert status == 200 and h_status == 200
    h_samples = parse(h_text)
    assert value(h_samples, "powerplane_target_up") == 1.0
    assert all(v == 1.0 for v in h_samples["powerplane_scrape_collector_success"].values())
    assert value(h_samples, "powerplane_redfish_power_watts") == healthy.power_watts()
    assert undocumented(text) == set()
    return parse(text)
