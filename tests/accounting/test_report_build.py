"""The report's chunk pipeline: answers in order, bounded fetches in flight, failures cancel the rest."""

from __future__ import annotations

import asyncio

import pytest

from powerplane.accounting.report.build import prefetched


async def test_answers_come_in_order_with_at_most_ahead_running() -> None:
    running, most, started = 0, 0, []

    async def fetch(item: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        started.append(item)
        # Later items finish first: the order must still be the items' order.
        await asyncio.sleep(0.001 * (10 - item))
        running -= 1
        return item * item

    got = [(item, value) async for item, value in prefetched(list(range(10)), fetch, 3)]
    assert got == [(i, i * i) for i in range(10)]
    assert most == 3 and started == list(range(10))
    assert [v async for _i, v in prefetched([], fetch, 3)] == []
    # ahead below one still fetches, one at a time.
    most = 0
    assert [v async for _i, v in prefetched([1, 2], fetch, 0)] == [1, 4] and most == 1


async def test_a_failed_fetch_propagates_and_cancels_the_rest() -> None:
    cancelled: list[int] = []

    async def fetch(item: int) -> int:
        if item == 1:
            raise RuntimeError("chunk 1 refused")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise
        return item

    async def first(item: int) -> int:
        return item if item == 0 else await fetch(item)

    with pytest.raises(RuntimeError, match="chunk 1 refused"):
        async for _item, _value in prefetched([0, 1, 2, 3], first, 3):
            pass
    # 2 was waiting and is cancelled; 3 (started as 0 was handed out) is cancelled before it ran.
    assert cancelled == [2]
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_leaving_early_cancels_the_fetches_in_flight() -> None:
    cancelled: list[int] = []

    async def fetch(item: int) -> int:
        if item:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(item)
                raise
        return item

    chunks = prefetched([0, 1, 2], fetch, 3)
    async for item, _value in chunks:
        assert item == 0
        break
    await chunks.aclose()
    assert sorted(cancelled) == [1, 2]
