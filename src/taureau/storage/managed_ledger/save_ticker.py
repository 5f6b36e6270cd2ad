"""SaveTicker: one timer for the rate-limited saves of many SerialWriters (a factory's cursors).

Theory of operation: a SerialWriter with a ticker does not set a timer of its own; every save
it wants (the first one too) joins the ticker with the time it may run from. The ticker keeps
one timer, on a fixed grid of one interval (its phase set by the first tick); at each tick every
writer due by then starts its save, within a few loop turns. So 1,000 acking cursors cost one
timer, not 1,000, and their saves reach the metadata store together: the embedded store's log
writes (and fsyncs) them in a few batches, instead of one write per cursor spread over the
second (1,000 cursors acked at random moments: ~250 log writes a second before).

A tick starts its saves a slice at a time (`START_SLICE` writers per loop turn): 1,000 cursors
started in one callback held the loop for 20-40 ms every second (each save a task, a record
and a store put), a stall every publish and dispatch behind it waited out; sliced, the loop's
longest lag was 5-9 ms against 19-30 ms (`bench/cursor_saves.py --all-at-once`).

Saves start on grid ticks only, so a writer's saves are a whole number of intervals apart (at
most one per interval, Pulsar's mark-delete rate) and a request waits less than one interval:
a crash loses at most that much of the acknowledgements (delivered again, none skipped). A
flush (close) saves at once, off the grid; the writer's next save then waits up to two.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

# A timer may fire a little before its time; a writer due within this much is taken.
_EARLY_S = 0.002
# Saves a tick starts per loop turn; the rest follow in the next turns (see the docstring).
START_SLICE = 64


class Ticked(Protocol):
    def on_tick(self) -> None:
        """Start the save that waited for this tick."""


class SaveTicker:
    """>>> ticker = SaveTicker(1.0); writer = SerialWriter(save, 1.0, ticker=ticker)"""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._due: dict[Ticked, float] = {}  # writer -> loop time it may save again
        self._starting: dict[Ticked, None] = {}  # due at a tick, started a slice per loop turn
        self._slicing = False  # a slice of _starting is scheduled for the next loop turn
        self._timer: asyncio.TimerHandle | None = None
        self._phase: float | None = None  # loop time of the first tick: ticks are phase + k * interval
        self._loop: asyncio.AbstractEventLoop | None = None  # looked up once (a getpid call each)

    def __len__(self) -> int:
        """Writers waiting for their save to start."""
        return len(self._due) + len(self._starting)

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
        self._starting.pop(writer, None)
        if not self._due and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._due.clear()
        self._starting.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        target = max(min(self._due.values()) - _EARLY_S, loop.time())
        phase = self._phase
        if phase is None:
            self._phase = phase = target
        at = phase + math.ceil((target - phase) / self._interval) * self._interval
        self._timer = loop.call_at(at, self._tick)

    def _tick(self) -> None:
        self._timer = None
        assert self._loop is not None  # set by the _arm that set the timer
        now = self._loop.time()
        due = [writer for writer, at in self._due.items() if at <= now + _EARLY_S]
        for writer in due:
            del self._due[writer]
            self._starting[writer] = None
        if not self._slicing:  # else the slice already scheduled takes these too
            self._start_slice()
        if self._due and self._timer is None:
            self._arm()

    def _start_slice(self) -> None:
        """Start the saves of up to START_SLICE writers; schedule the next slice if any are left."""
        self._slicing = False
        starting = self._starting
        for _ in range(min(START_SLICE, len(starting))):
            writer = next(iter(starting))
            del starting[writer]
            writer.on_tick()
        if starting and not self._slicing:
            self._slicing = True
            assert self._loop is not None  # set by the _arm that set the timer of the tick
            self._loop.call_soon(self._start_slice)
