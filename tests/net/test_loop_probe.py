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


def _busy_cpu(seconds: float) -> None:
    """Spin for `seconds` of this thread's CPU time (however long a busy machine makes that)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_long_callback_is_a_stall_that_used_the_cpu():
    probe = asyncio.run(_probe_run(lambda: _busy_cpu(0.03)))
    stall = max(probe.stalls, key=lambda s: s.cpu_ms)
    # The CPU is what the callback took, whatever else ran on the machine meanwhile; which
    # cause that makes depends on the wall time too (see the next test).
    assert stall.cpu_ms >= 25 and stall.lag_ms >= 25
    # Sampled before and after the stall (how many times depends on how busy the machine is).
    assert probe.lag.n >= 2


def test_a_stall_is_blamed_on_what_took_at_least_half_of_it():
    from taureau.net.loop_probe import Stall

    assert Stall(0, lag_ms=40, gc_ms=30, cpu_ms=40, generations=[2]).cause == "collector"
    assert Stall(0, lag_ms=40, gc_ms=0, cpu_ms=30, generations=[]).cause == "callback"
    assert Stall(0, lag_ms=40, gc_ms=0, cpu_ms=5, generations=[]).cause == "starved"


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


def test_reset_forgets_start_up():
    async def run() -> LoopProbe:
        probe = LoopProbe()
        probe.start()
        try:
            await asyncio.sleep(0.01)
            _busy(0.03)
            gc.collect()
            await asyncio.sleep(0.01)
            assert probe.stalls and probe.gc_pauses[2].n >= 1
            probe.reset()
            await asyncio.sleep(0.02)  # the probe keeps sampling after a reset
        finally:
            probe.stop()
        return probe

    probe = asyncio.run(run())
    assert probe.gc_pauses[2].n == 0 and not [s for s in probe.stalls if s.lag_ms >= 25]
    assert probe.lag.n >= 1


def test_an_idle_loop_is_probed_slowly_and_a_busy_one_every_millisecond_again():
    from taureau.net import loop_probe

    async def run() -> tuple[LoopProbe, int, int, int]:
        probe = LoopProbe()
        probe.start()
        try:
            # Idle: after a quiet window of QUIET_AFTER_S the probe wakes every IDLE_TICK_S.
            await asyncio.sleep(2 * loop_probe.QUIET_AFTER_S + 0.1)
            assert probe.idle
            before = probe.lag.n
            await asyncio.sleep(0.5)
            idle_ticks = probe.lag.n - before
            # Busy: callbacks that keep the loop's thread on the CPU bring the 1 ms tick back
            # after one busy window (waited for: a loaded machine stretches the window).
            loop = asyncio.get_running_loop()
            working = True

            def work() -> None:
                _busy_cpu(0.0005)
                if working:
                    loop.call_soon(work)

            work()
            try:
                deadline = time.perf_counter() + 5
                while probe.idle and time.perf_counter() < deadline:
                    await asyncio.sleep(0.01)
                busy = not probe.idle
                before = probe.lag.n
                await asyncio.sleep(0.2)
                busy_ticks = probe.lag.n - before
            finally:
                working = False
            return probe, idle_ticks, busy_ticks, busy
        finally:
            probe.stop()

    probe, idle_ticks, busy_ticks, busy = asyncio.run(run())
    # 0.5 s at 25 ms is 20 ticks (a 1 ms tick would have been up to 500).
    assert 5 <= idle_ticks <= 0.5 / loop_probe.IDLE_TICK_S + 5
    assert busy, "a busy loop is probed every millisecond again"
    assert busy_ticks >= 20  # 0.2 s at 1 ms: up to 200 (the work's 0.5 ms slices delay some); 8 at 25 ms


def test_a_short_burst_each_second_leaves_an_idle_loop_probed_slowly():
    """The broker's once-a-second passes (rates, the dashboard's totals: a few ms with 1,000
    topics) are not a busy loop: one busy 25 ms tick did bring back 1 ms for a whole window."""
    from taureau.net import loop_probe

    async def run() -> int:
        probe = LoopProbe()
        probe.start()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(2 * loop_probe.QUIET_AFTER_S + 0.1)
            assert probe.idle
            before = probe.lag.n
            for _ in range(4):
                loop.call_soon(_busy_cpu, 0.008)
                await asyncio.sleep(0.25)
            return probe.lag.n - before
        finally:
            probe.stop()

    ticks = asyncio.run(run())
    assert ticks <= 1.0 / loop_probe.IDLE_TICK_S + 10  # 40 at 25 ms; a 1 ms window each burst: 400+


def test_a_long_stall_of_an_idle_loop_is_still_recorded():
    from taureau.net import loop_probe

    async def run() -> LoopProbe:
        probe = LoopProbe()
        probe.start()
        try:
            await asyncio.sleep(2 * loop_probe.QUIET_AFTER_S + 0.1)
            assert probe.idle
            _busy_cpu(0.06)  # longer than two idle ticks: it spans one whatever its phase
            await asyncio.sleep(0.05)
        finally:
            probe.stop()
        return probe

    probe = asyncio.run(run())
    stall = max(probe.stalls, key=lambda s: s.lag_ms)
    assert stall.lag_ms >= 60 - 2 * loop_probe.IDLE_TICK_S * 1000 + 5
    assert stall.cpu_ms >= 30
