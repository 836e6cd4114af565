"""/probe: partial results, refusals, coalescing, deadlines and concurrency caps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from powerplane.exporters.runtime import Deadline, ExporterServer, ProbeJob, Prober
from tests.conftest import Serve
from tests.helpers import logged, parse, value

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


# --- deadlines of coalesced probes, and probes that cannot start --------------------------------


async def test_a_joiner_never_inherits_a_shorter_deadline(serve: Serve) -> None:
    """A probe with a tiny scrape timeout must not fail the normal probes that coalesce with it."""
    prober = ToyProber(delay=0.6)
    served = await serve(ExporterServer("toy", prober=prober))
    tiny = asyncio.ensure_future(served.probe("a", headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.2"}))
    await asyncio.sleep(0.02)  # the tiny probe's fetch is in flight
    normal = await asyncio.gather(
        *(served.probe("a", headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"}) for _ in range(6))
    )
    assert value(parse((await tiny)[1]), "powerplane_target_up") == 0.0
    assert [value(parse(text), "powerplane_target_up") for _status, text in normal] == [1.0] * 6
    assert prober.collectors["a"][0].fetches == 2  # the tiny one's, and one for the six


async def test_a_joiner_answers_by_its_own_deadline(serve: Serve) -> None:
    """A short probe joining a long fetch stops waiting at its own deadline."""
    served = await serve(ExporterServer("toy", prober=ToyProber(delay=3.0)))
    loop = asyncio.get_running_loop()
    long = asyncio.ensure_future(served.probe("a", headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"}))
    await asyncio.sleep(0.05)
    start = loop.time()
    _status, text = await served.probe("a", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
    assert loop.time() - start < 1.5  # it joined (its budget is shorter) and answered in time
    assert value(parse(text), "powerplane_target_up") == 0.0
    assert value(parse((await long)[1]), "powerplane_target_up") == 1.0


class Hangs(Prober):
    """Devices named hang-* never answer before the deadline; the others answer at once."""

    exporter = "toy"

    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        device = params["target"]
        delay = 30.0 if device.startswith("hang") else 0.0
        module = params.get("module", "default")
        return ProbeJob(
            device, module, 10.0, [Fixed("power", 1.0, delay)], device=device, key=(device, module)
        )


async def test_a_hanging_device_cannot_starve_the_others(serve: Serve) -> None:
    """Probes waiting for a busy device hold no process slot: the per-device cap protects the rest."""
    served = await serve(ExporterServer("toy", prober=Hangs(), max_concurrency=4, per_device_concurrency=2))
    header = {"X-Prometheus-Scrape-Timeout-Seconds": "3"}
    hanging = [asyncio.ensure_future(served.probe("hang-1", header, module=f"m{i}")) for i in range(10)]
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    _status, text = await served.probe("ok-1", header)
    assert loop.time() - start < 1.0
    assert value(parse(text), "powerplane_target_up") == 1.0
    await asyncio.gather(*hanging)


async def test_a_probe_that_cannot_start_in_time_fails_fast_with_the_reason(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(ExporterServer("toy", prober=Hangs(), max_concurrency=2))
    header = {"X-Prometheus-Scrape-Timeout-Seconds": "2.5"}  # 2 s to answer in
    hanging = [asyncio.ensure_future(served.probe(f"hang-{i}", header)) for i in range(2)]
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with caplog.at_level(logging.WARNING):
        _status, text = await served.probe("ok-1", header)
    elapsed = loop.time() - start
    assert elapsed < 1.5  # it gave up at half its time, not at (or after) its deadline
    assert value(parse(text), "powerplane_target_up") == 0.0
    assert "not started: the process's 2 probes in flight are the most it runs at once" in logged(caplog)
    own = parse((await served.get("/metrics"))[1])
    assert value(own, "powerplane_probes_not_started_total", reason="process_busy") == 1.0
    await asyncio.gather(*hanging)
