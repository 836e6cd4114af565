"""The GPUs of one scrape are read in one worker thread; a read that hangs holds up only its GPU
from the next scrape on."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

from powerplane.exporters.gpu.attribution import Attribution
from powerplane.exporters.gpu.collectors import Gpu, GpuCollector, ReadBatch
from powerplane.exporters.runtime import CollectorError, Deadline, Part


class Stub:
    """What the batch uses of a Gpu: ``read`` and the two bookkeeping attributes."""

    def __init__(
        self,
        index: int,
        gate: threading.Event | None = None,
        fail: bool = False,
        errors: list[str] | None = None,
    ) -> None:
        self.name = f"gpu{index}"
        self.index = index
        self.errors = errors or []
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
        return (f"reading {self.index}.{self.reads}", self.errors)


async def _scrape(batch: ReadBatch, stubs: list[Stub], seconds: float = 5.0) -> list[Any]:
    async def one(stub: Stub) -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await asyncio.shield(batch.submit(cast(Gpu, stub)))
        except TimeoutError:
            return "timeout"

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
    assert results[0][:2] == ("reading 0.1", []) and results[2][:2] == ("reading 2.1", [])
    # handed back as its cause (not raised: the scrape that asked may have given up on it)
    assert results[1][:2] == (None, ["GPU 1: GPU is lost (fallen off the bus)"])
    assert all(seconds >= 0 for _reading, _errors, seconds in results)


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


async def test_the_collector_keeps_the_gpus_that_answer_by_the_deadline() -> None:
    """One collector for every GPU: a GPU that hangs, fails or answers with errors is a failed
    part of its own; the others are in the snapshot."""
    gate = threading.Event()
    stubs = [Stub(0), Stub(1, gate=gate), Stub(2, fail=True), Stub(3, errors=["GPU 3 memory: Unknown Error"])]
    collector = GpuCollector(cast(list[Gpu], stubs), ("powerplane",), Attribution(), "node-01")
    assert collector.parts == ("gpu0", "gpu1", "gpu2", "gpu3")
    try:
        first = await collector.fetch(Deadline.after(0.2))
        assert first.snapshot == []  # the batch is stuck in GPU 1
        assert [(p.name, p.errors) for p in first.parts] == [
            (f"gpu{i}", (f"GPU {i}: deadline exceeded",)) for i in range(4)
        ]
        second = await collector.fetch(Deadline.after(0.5))
    finally:
        gate.set()
    assert second.snapshot == ["reading 0.2", "reading 3.1"]  # 0 read again, 3 was queued behind 1
    assert [(p.name, list(p.errors)) for p in second.parts] == [
        ("gpu0", []),
        ("gpu1", ["GPU 1: deadline exceeded"]),
        ("gpu2", ["GPU 2: GPU is lost (fallen off the bus)"]),
        ("gpu3", ["GPU 3 memory: Unknown Error"]),
    ]
    assert all(isinstance(p, Part) and p.duration >= 0 for p in second.parts)
