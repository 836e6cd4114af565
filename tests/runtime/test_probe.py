"""/probe: partial results, refusals, coalescing, deadlines and concurrency caps."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from powerplane.exporters.runtime import Deadline, ExporterServer, ProbeJob, Prober
from tests.conftest import Serve
from tests.helpers import parse, value

from .conftest import Fixed, ToyProber


async def test_probe_answers_partial_results_and_refuses_unknown_targets(serve: Serve) -> None:
    prober = ToyProber()
    served = await serve(ExporterServer("toy", prober=prober))
    status, text = await served.probe("a")
    assert status == 200
    samples = parse(text)
    for params in ({"target": "http://169.254.169.254/"}, {"target": "a", "module": "x"}, {}):
        status, text = await served.get("/probe", params)
        assert status == 400
        assert "not configured" in text or "unknown module" in text
    own = parse((await served.get("/metrics"))[1])
    await served.server.stop()
    assert value(samples, "powerplane_target_up") == 1.0
    assert value(samples, "test_value", collector="power") == 100.0
    assert value(samples, "powerplane_scrape_collector_success", collector="thermal") == 0.0
    assert value(own, "powerplane_probes_total", result="up") == 1.0
    assert prober.closed  # sessions released at shutdown


async def test_probe_connect_failure_is_target_down(serve: Serve) -> None:
    served = await serve(ExporterServer("toy", prober=ToyProber(fail_connect=True)))
    samples = parse((await served.probe("b"))[1])
    assert value(samples, "powerplane_target_up") == 0.0
    assert value(samples, "powerplane_scrape_collector_success", collector="power") == 0.0


async def test_concurrent_probes_of_one_target_coalesce(serve: Serve) -> None:
    prober = ToyProber(delay=0.3)
    served = await serve(ExporterServer("toy", prober=prober))
    results = await asyncio.gather(*(served.probe("a") for _ in range(10)), served.probe("b"))
    own = parse((await served.get("/metrics"))[1])
    assert all(value(parse(text), "powerplane_target_up") == 1.0 for _status, text in results)
    assert prober.collectors["a"][0].fetches == 1  # ten probes, one fetch
    assert prober.collectors["b"][0].fetches == 1
    assert value(own, "powerplane_probes_coalesced_total") == 9.0


async def test_probe_honours_the_scrape_timeout_header(serve: Serve) -> None:
    served = await serve(ExporterServer("toy", prober=ToyProber(delay=30.0)))
    loop = asyncio.get_running_loop()
    start = loop.time()
    _status, text = await served.probe("a", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
    elapsed = loop.time() - start
    samples = parse(text)
    assert 0.9 < elapsed < 1.4  # 1.5 s minus the 0.5 s offset
    assert value(samples, "powerplane_scrape_collector_success", collector="power") == 0.0
    assert value(samples, "powerplane_target_up") == 0.0


async def test_a_hanging_collector_fails_alone_at_the_deadline(serve: Serve) -> None:
    class OneHangs(ToyProber):
        def resolve(self, params: Mapping[str, str]) -> ProbeJob:
            job = super().resolve(params)
            collectors = [Fixed("power", 100.0), Fixed("thermal", 1.0, delay=30.0)]
            return ProbeJob(job.target, job.module, 1.0, collectors, device=job.target, connect=job.connect)

    served = await serve(ExporterServer("toy", prober=OneHangs()))
    samples = parse((await served.probe("a"))[1])
    # the collector's own timeout fires before the probe's: the probe keeps what did arrive
    assert value(samples, "powerplane_target_up") == 1.0
    assert value(samples, "powerplane_scrape_collector_success", collector="power") == 1.0
    assert value(samples, "powerplane_scrape_collector_success", collector="thermal") == 0.0
    assert value(samples, "test_value", collector="power") == 100.0


class Tracking(Fixed):
    """Counts how many fetches run at once."""

    active = 0
    peak = 0

    async def fetch(self, deadline: Deadline) -> Any:
        Tracking.active += 1
        Tracking.peak = max(Tracking.peak, Tracking.active)
        try:
            await asyncio.sleep(0.1)
        finally:
            Tracking.active -= 1
        return 1.0


class ManyModules(Prober):
    """Every module of device ``dev`` is a distinct probe (never coalesced)."""

    exporter = "toy"

    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        module = params["module"]
        return ProbeJob("dev", module, 10.0, [Tracking(module)], device="dev")


async def test_per_device_concurrency_cap(serve: Serve) -> None:
    Tracking.peak = 0
    served = await serve(ExporterServer("toy", prober=ManyModules(), per_device_concurrency=2))
    results = await asyncio.gather(*(served.probe("dev", module=f"m{i}") for i in range(8)))
    assert [status for status, _text in results] == [200] * 8
    assert Tracking.peak == 2
