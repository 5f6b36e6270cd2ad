"""SerialWriter: coalescing, rate limit, one save at a time, flush, sticky errors, stop."""

from __future__ import annotations

import asyncio

import pytest

from taureau.common.errors import BadVersionError
from taureau.storage.managed_ledger.persist import SerialWriter

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self, delay: float = 0.0, fail: BaseException | None = None) -> None:
        self.state = 0
        self.saved: list[int] = []
        self.running = 0
        self.max_running = 0
        self.delay = delay
        self.fail = fail

    async def save(self) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        snapshot = self.state
        await asyncio.sleep(self.delay)
        self.running -= 1
        if self.fail is not None:
            raise self.fail
        self.saved.append(snapshot)


async def _until(condition, timeout_s: float = 10.0) -> float:
    """Wait (polling) until `condition()` holds; the monotonic time it was seen to."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)
    return loop.time()


async def test_requests_coalesce_and_respect_the_interval():
    # An interval long against a busy machine's scheduling delays, so "not yet" stays true.
    interval = 1.0
    rec = Recorder()
    writer = SerialWriter(rec.save, min_interval_s=interval)
    for i in range(1, 101):
        rec.state = i
        writer.request()
    first = await _until(lambda: bool(rec.saved))
    assert rec.saved == [100]  # the first request saved at once, with the latest state
    for i in range(101, 201):
        rec.state = i
        writer.request()
    await asyncio.sleep(0.01)
    assert rec.saved == [100]  # rate-limited
    second = await _until(lambda: len(rec.saved) == 2)
    assert rec.saved == [100, 200]
    assert second - first >= interval * 0.95  # not before the interval (timer granularity)
    assert not writer.pending


async def test_flush_saves_now_and_never_two_at_once():
    rec = Recorder(delay=0.01)
    writer = SerialWriter(rec.save, min_interval_s=10.0)
    rec.state = 1
    writer.request()
    await asyncio.sleep(0)
    rec.state = 2
    await asyncio.gather(writer.flush(), writer.flush())
    assert rec.saved[-1] == 2
    assert rec.max_running == 1


async def test_errors_are_sticky_and_reported():
    seen = []
    rec = Recorder(fail=BadVersionError("moved on"))
    writer = SerialWriter(rec.save, on_error=seen.append)
    writer.request()
    await asyncio.sleep(0.01)
    assert isinstance(writer.error, BadVersionError) and len(seen) == 1
    writer.request()
    await asyncio.sleep(0.01)
    assert len(seen) == 1  # nothing ran again
    with pytest.raises(BadVersionError):
        await writer.flush()


async def test_stop_drops_scheduled_saves():
    rec = Recorder()
    writer = SerialWriter(rec.save, min_interval_s=0.02)
    writer.request()
    await asyncio.sleep(0.005)
    writer.request()  # scheduled for later
    writer.stop()
    await asyncio.sleep(0.05)
    assert rec.saved == [0]
