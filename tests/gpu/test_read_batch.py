"""The GPUs of one scrape are read in one worker thread; a read that hangs holds up only its GPU
from the next scrape on."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

from powerplane.exporters.gpu.collectors import GpuCollector, ReadBatch
from powerplane.exporters.runtime import CollectorError


class Stub:
    """What the batch uses of a GpuCollector: ``read`` and the two bookkeeping attributes."""

    def __init__(self, index: int, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.index = index
        self.gate = gate
        self.fail = fail
        self.threads: list[int] = []
        self.reads = 0
        self.current_read: Any = None
        self.reading = False

    def read(self) -> tuple[Any, list[str]]:
        self.threads.append(threading.get_ident())
        self.reads += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise CollectorError(f"GPU {self.index}: GPU is lost (fallen off the bus)")
        return (f"reading {self.index}.{self.reads}", [])


async def _scrape(batch: ReadBatch, stubs: list[Stub], seconds: float = 5.0) -> list[Any]:
    async def one(stub: Stub) -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await asyncio.shield(batch.submit(cast(GpuCollector, stub)))
        except TimeoutError:
            return "timeout"
        except CollectorError as exc:
            return str(exc)

    return list(await asyncio.gather(*(one(s) for s in stubs)))


async def test_one_thread_reads_every_gpu_of_a_scrape() -> None:
    batch = ReadBatch()
    stubs = [Stub(i) for i in range(8)]
    first = await _scrape(batch, stubs)
    second = await _scrape(batch, stubs)
    assert [r[0] for r in first] == [f"reading {i}.1" for i in range(8)]
    assert [r[0] for r in second] == [f"reading {i}.2" for i in range(8)]
    assert len({s.threads[0] for s in stubs}) == 1  # one hop for the whole scrape
    assert all(s.reads == 2 for s in stubs)


async def test_a_failing_gpu_fails_alone() -> None:
    batch = ReadBatch()
    results = await _scrape(batch, [Stub(0), Stub(1, fail=True), Stub(2)])
    assert results[0][0] == "reading 0.1" and results[2][0] == "reading 2.1"
    assert results[1] == "GPU 1: GPU is lost (fallen off the bus)"


async def test_a_hung_read_holds_up_only_its_gpu_from_the_next_scrape_on() -> None:
    gate = threading.Event()
    batch = ReadBatch()
    stubs = [Stub(0), Stub(1, gate=gate), Stub(2)]
    try:
        first = await _scrape(batch, stubs, seconds=0.2)
        assert first == ["timeout"] * 3  # the batch is stuck in GPU 1
        second = await _scrape(batch, stubs, seconds=0.5)
        # GPU 0 (read, not handed back) and GPU 2 (queued behind) are read again elsewhere;
        # GPU 1 is not read a second time while its first read hangs.
        assert second[0][0] == "reading 0.2" and second[2][0] == "reading 2.1"
        assert second[1] == "timeout" and stubs[1].reads == 1
    finally:
        gate.set()
    for _ in range(100):  # the hung read ends: its GPU answers the scrape after
        third = await _scrape(batch, stubs)
        if third[1] != "timeout":
            break
    assert third[1][0].startswith("reading 1.")
    assert third[0][0].startswith("reading 0.") and third[2][0].startswith("reading 2.")
