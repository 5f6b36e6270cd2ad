"""SaveTicker: the rate-limited saves of many writers (a factory's cursors) share one timer."""

from __future__ import annotations

import asyncio

import pytest

from taureau.storage.managed_ledger import InitialPosition, meta
from taureau.storage.managed_ledger.persist import SerialWriter
from taureau.storage.managed_ledger.save_ticker import START_SLICE, SaveTicker
from tests.storage.managed_ledger.test_persist import Recorder

pytestmark = pytest.mark.anyio


async def until(predicate, what: str, timeout: float = 5.0) -> None:
    """Wait for `predicate` (a busy machine delays ticks; the claims are about what happens,
    the timing bounds are asserted separately where they matter)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def live_timers() -> int:
    loop = asyncio.get_running_loop()
    return len([t for t in loop._scheduled if not t.cancelled()])  # type: ignore[attr-defined]


async def test_fifty_waiting_writers_hold_one_timer_and_all_save_at_the_tick():
    ticker = SaveTicker(0.1)
    recorders = [Recorder() for _ in range(50)]
    writers = [SerialWriter(r.save, 0.1, ticker=ticker) for r in recorders]
    for writer in writers:
        writer.request()  # all at the ticker's first tick, which is at once
    await asyncio.sleep(0.01)
    assert [r.saved for r in recorders] == [[0]] * 50
    before = live_timers()
    for r, writer in zip(recorders, writers, strict=True):
        r.state = 1
        writer.request()  # rate-limited: each waits on the ticker for the next tick
    assert len(ticker) == 50 and ticker.timer_set
    assert live_timers() - before == 1  # one timer for all fifty (it was fifty timers)
    await until(lambda: [r.saved for r in recorders] == [[0, 1]] * 50, "the tick's saves")
    await asyncio.sleep(0.02)  # the save tasks finish
    assert len(ticker) == 0 and not ticker.timer_set and live_timers() == before  # idle: nothing armed


async def test_a_tick_starts_its_writers_a_slice_per_loop_turn_and_not_one_taken_off_meanwhile():
    ticker = SaveTicker(0.05)
    loop = asyncio.get_running_loop()
    started: list[int] = []
    after_first_turn: list[int] = []

    class Writer:
        def __init__(self, number: int) -> None:
            self.number = number

        def on_tick(self) -> None:
            if not started:  # runs before the ticker schedules its next slice
                loop.call_soon(first_turn_over)
            started.append(self.number)

    writers = [Writer(i) for i in range(2 * START_SLICE + 10)]

    def first_turn_over() -> None:
        after_first_turn.extend(started)
        ticker.discard(writers[-1])  # a flush or stop takes it off before its slice

    for writer in writers:
        ticker.add(writer, loop.time())
    await until(lambda: len(started) == len(writers) - 1, "every slice")
    assert after_first_turn == list(range(START_SLICE))  # the tick's own turn: one slice
    assert started == list(range(len(writers) - 1))  # in the order they were due
    await asyncio.sleep(0.12)
    assert len(started) == len(writers) - 1 and len(ticker) == 0 and not ticker.timer_set


async def test_a_writer_on_a_ticker_saves_at_most_once_per_interval_and_ends_with_the_latest_state():
    ticker = SaveTicker(0.05)
    rec = Recorder()
    writer = SerialWriter(rec.save, 0.05, ticker=ticker)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(1, 61):  # ~0.3 s of changes (longer on a busy machine), one every 5 ms
        rec.state = i
        writer.request()
        await asyncio.sleep(0.005)
    elapsed = loop.time() - start
    await asyncio.sleep(0.2)  # four intervals: the last change is saved by then
    assert rec.saved[-1] == 60
    # One save per 0.05 s at most over the changes, plus the first and the last.
    assert 2 <= len(rec.saved) <= elapsed / 0.05 + 2
    assert rec.saved == sorted(rec.saved) and rec.max_running == 1


async def test_flush_and_stop_take_a_writer_off_the_ticker():
    ticker = SaveTicker(0.05)
    rec = Recorder()
    writer = SerialWriter(rec.save, 0.05, ticker=ticker)
    writer.request()
    await asyncio.sleep(0.005)
    rec.state = 1
    writer.request()
    assert len(ticker) == 1
    await writer.flush()  # saves now: it no longer waits for the tick
    assert rec.saved == [0, 1] and len(ticker) == 0 and not ticker.timer_set
    rec.state = 2
    writer.request()
    assert len(ticker) == 1
    writer.stop()  # a crash, or the cursor deleted: the waiting save is dropped
    assert len(ticker) == 0 and not ticker.timer_set
    await asyncio.sleep(0.15)  # three intervals
    assert rec.saved == [0, 1]


async def test_a_factorys_acking_cursors_wait_on_its_one_ticker_and_their_records_catch_up(make_factory, store):
    factory = make_factory(persist_s=0.1)
    cursors = []
    for i in range(20):
        ml = await factory.open(f"t/ns/persistent/tick-{i}")
        cursor = await ml.open_cursor("sub", InitialPosition.EARLIEST)
        first = await ml.add_entry(b"a")
        second = await ml.add_entry(b"b")
        await cursor.mark_delete(first)  # saved at the first tick
        cursors.append((ml, cursor, second))
    await asyncio.sleep(0.01)
    for _, cursor, second in cursors:
        await cursor.mark_delete(second)  # within the interval: waits for the tick
    assert len(factory.cursor_save_ticker) == 20
    await until(lambda: len(factory.cursor_save_ticker) == 0, "the tick")

    async def saved_positions() -> list:
        found = [await store.get(meta.cursor_path(ml.name, "sub")) for ml, _, _ in cursors]
        return [meta.decode_cursor_info(f[0])[0] if f is not None else None for f in found]

    deadline = asyncio.get_running_loop().time() + 5
    while await saved_positions() != [second for _, _, second in cursors]:
        assert asyncio.get_running_loop().time() < deadline, "the records never caught up"
        await asyncio.sleep(0.01)
