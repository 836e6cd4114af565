"""The test harness's own process helpers."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from powerplane.lab import procs


def test_a_run_that_times_out_is_cancelled_not_left_running() -> None:
    """A start that outlives its timeout must not go on opening servers no one will close."""
    state: dict[str, bool] = {}

    async def slow_start() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def noop() -> None:
        await asyncio.sleep(0)

    with procs.BackgroundLoop() as loop:
        with pytest.raises(TimeoutError, match=r"slow_start did not finish within 0\.2s"):
            loop.run(slow_start(), timeout=0.2)
        loop.run(noop())  # the cancellation is delivered on the loop: let it run once
        assert state == {"cancelled": True}
        assert loop.run(asyncio.sleep(0, result=7)) == 7  # the loop still serves


def test_a_coroutines_own_timeout_error_keeps_its_message() -> None:
    async def gives_up() -> None:
        raise TimeoutError("the BMC never answered")

    with procs.BackgroundLoop() as loop, pytest.raises(TimeoutError, match="the BMC never answered"):
        loop.run(gives_up())


def test_free_ports_are_below_the_ephemeral_range_bindable_and_never_repeated() -> None:
    # An outgoing connection takes its local port from the ephemeral range: a port from there may
    # be gone by the time the server binds it.
    top = procs._ephemeral_start()
    ports = [procs.free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(procs._LOWEST_PORT <= p < top for p in ports)
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports[0]))
        held.listen()
        assert not procs._bindable("127.0.0.1", ports[0])
    assert procs._bindable("127.0.0.1", ports[1])


def test_cpu_seconds_counts_what_a_process_runs_and_only_grows() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        first = procs.cpu_seconds(busy.pid)
        time.sleep(0.3)
        second = procs.cpu_seconds(busy.pid)
        # Exact to the nanosecond, so a spinning process shows its run time between two reads.
        assert 0 < first < second
    finally:
        busy.kill()
        busy.wait()


def test_the_clock_tick_cpu_reader_agrees_with_the_exact_one() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        exact, ticks = procs.cpu_seconds(busy.pid), procs.stat_cpu_seconds(busy.pid)
        # Ticks are 10 ms and read a moment later; the spinning process ran for most of 0.5 s.
        assert ticks > 0.1 and ticks == pytest.approx(exact, abs=0.05)
    finally:
        busy.kill()
        busy.wait()


def test_rss_reads_what_a_process_holds_and_its_peak() -> None:
    code = "import sys, time; b = bytearray(64 << 20); del b; print('ok', flush=True); time.sleep(30)"
    held = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "ok"
        now, peak = procs.rss_mb(held.pid), procs.rss_mb(held.pid, "VmHWM")
        # 64 MiB touched (zeroed) and freed: the peak remembers them, the resident size does not.
        assert 0 < now < 40 and peak > 64
        assert procs.rss_mb(held.pid, "NoSuchField") == 0.0
    finally:
        held.kill()
        held.communicate()
