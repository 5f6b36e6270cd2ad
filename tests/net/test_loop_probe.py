"""LoopProbe: lag histogram, collector pauses, and the cause it gives each stall."""

from __future__ import annotations

import asyncio
import gc
import time

from taureau.net.loop_probe import LoopProbe


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _probe_run(action) -> LoopProbe:
    probe = LoopProbe()
    probe.start()
    try:
        await asyncio.sleep(0.02)
        action()
        await asyncio.sleep(0.02)
    finally:
        probe.stop()
    return probe


def test_a_long_callback_is_a_callback_stall():
    probe = asyncio.run(_probe_run(lambda: _busy(0.03)))
    causes = [s.cause for s in probe.stalls]
    assert "callback" in causes and probe.stalls[-1].lag_ms >= 25
    assert probe.lag.n > 10


def test_a_sleeping_thread_is_a_starved_stall():
    probe = asyncio.run(_probe_run(lambda: time.sleep(0.03)))  # the loop's thread does not run
    assert [s.cause for s in probe.stalls][-1] == "starved"


def test_a_full_collection_is_a_collector_stall_and_is_timed():
    garbage = []
    for _ in range(300_000):  # a big heap of cycles makes the collection take a while
        a: list = []
        a.append(a)
        garbage.append(a)

    def collect() -> None:
        garbage.clear()
        gc.collect()

    probe = asyncio.run(_probe_run(collect))
    assert probe.gc_pauses[2].n >= 1
    stall = max(probe.stalls, key=lambda s: s.lag_ms)
    assert stall.cause == "collector" and 2 in stall.generations
    lines = probe.prometheus_lines()
    collector = next(line for line in lines if line.startswith('taureau_event_loop_stalls{cause="collector"}'))
    assert int(collector.rsplit(" ", 1)[1]) >= 1
    assert any(line.startswith('taureau_gc_pause_seconds_count{generation="2"}') for line in lines)
