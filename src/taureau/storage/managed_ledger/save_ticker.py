"""SaveTicker: one timer for the rate-limited saves of many SerialWriters (a factory's cursors).

Theory of operation: a SerialWriter that must wait before its next save (it saved less than
its interval ago) joins the ticker instead of setting a timer of its own. The ticker keeps one
timer, firing at most once per interval; at each tick every writer that is due by then starts
its save, all in the same loop turn. So 1,000 acking cursors cost one timer, not 1,000, and
their saves reach the metadata store together: the embedded store's log writes (and fsyncs)
them as one batch instead of up to one write per cursor, spread over the second.

A writer waits at most two intervals between saves (its own interval, then the next tick);
Pulsar's mark-delete rate limit only promises "at most once per interval", and a crash loses
at most that much of the acknowledgements (those messages are delivered again, none skipped).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

# A timer may fire a little before its time; a writer due within this much is taken.
_EARLY_S = 0.002


class Ticked(Protocol):
    def on_tick(self) -> None:
        """Start the save that waited for this tick."""


class SaveTicker:
    """>>> ticker = SaveTicker(1.0); writer = SerialWriter(save, 1.0, ticker=ticker)"""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._due: dict[Ticked, float] = {}  # writer -> loop time it may save again
        self._timer: asyncio.TimerHandle | None = None
        self._last_tick = float("-inf")
        self._loop: asyncio.AbstractEventLoop | None = None  # looked up once (a getpid call each)

    def __len__(self) -> int:
        return len(self._due)

    @property
    def timer_set(self) -> bool:
        return self._timer is not None

    def add(self, writer: Ticked, due_at: float) -> None:
        """`writer` may save from loop time `due_at` on: call its on_tick at a tick after that."""
        self._due[writer] = due_at
        if self._timer is None:
            self._arm()

    def discard(self, writer: Ticked) -> None:
        self._due.pop(writer, None)
        if not self._due and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        at = max(min(self._due.values()), self._last_tick + self._interval)
        self._timer = loop.call_at(at, self._tick)

    def _tick(self) -> None:
        self._timer = None
        assert self._loop is not None  # set by the _arm that set the timer
        now = self._loop.time()
        self._last_tick = now
        due = [writer for writer, at in self._due.items() if at <= now + _EARLY_S]
        for writer in due:
            del self._due[writer]
        for writer in due:
            writer.on_tick()
        if self._due and self._timer is None:
            self._arm()
