"""SerialWriter: run a state-saving coroutine one at a time, coalescing requests, rate-limited.

Theory of operation: the owner changes its state in memory and calls `request()` (no await):
the writer saves the latest state in the background, at most once per `min_interval_s`, and
never two saves at once (so a compare-and-set version read by one save is the one the next
save passes). `flush()` saves now and waits, and raises what that save raised. A failed save
is reported to `on_error` and makes the writer stop (sticky): the owner decides what a
failure means (for a BadVersionError: another owner took over). With a `ticker`
(save_ticker.py) a rate-limited save waits for the ticker's shared timer, not a timer of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from taureau.storage.managed_ledger.save_ticker import SaveTicker

# A save that comes this early counts as on time: a ticker's saves start one interval apart,
# each a few microseconds after its tick, and must not be pushed to the tick after.
_SLACK_S = 0.01


class SerialWriter:
    """Coalescing, rate-limited, one-at-a-time runner of `save()`.

    >>> writer = SerialWriter(save_cursor, min_interval_s=0.1)
    >>> writer.request()        # after an ack: saved within 100 ms
    >>> await writer.flush()    # on close: saved now
    """

    def __init__(
        self,
        save: Callable[[], Awaitable[None]],
        min_interval_s: float = 0.0,
        on_error: Callable[[BaseException], None] | None = None,
        *,
        ticker: SaveTicker | None = None,
    ) -> None:
        self._save = save
        self._ticker = ticker
        self._ticking = False  # waiting on the ticker (instead of _timer)
        self._interval = min_interval_s
        self._on_error = on_error
        self._dirty = False  # state changed since the last save started
        self._force = False  # a flush waits: ignore the interval
        self._task: asyncio.Task | None = None  # the running save loop
        self._timer: asyncio.TimerHandle | None = None  # a save scheduled for later
        self._last_start = float("-inf")  # loop time of the last save's start
        self.error: BaseException | None = None  # set once a save failed; no save runs after
        self.saves = 0  # how many saves ran (for tests and stats)
        # Looked up once: asyncio.get_running_loop() and current_task() make a getpid system
        # call each, and a broker with 1,000 acking topics ran them ~10 times per message.
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def pending(self) -> bool:
        return self._dirty or self._task is not None

    def request(self) -> None:
        """Save the current state soon (within min_interval_s)."""
        self._dirty = True
        if self._task is None and self._timer is None and not self._ticking and self.error is None:
            self._schedule()

    async def flush(self) -> None:
        """Save the current state now, wait for it, raise its error if any."""
        if self.error is not None:
            raise self.error
        self._dirty = self._force = True
        self._cancel_wait()
        if self._task is None:
            self._task = self._get_loop().create_task(self._run())
        while self._task is not None:
            await asyncio.shield(self._task)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Drop any scheduled save without running it (a crash, or the owner is deleted)."""
        self._dirty = False
        self._cancel_wait()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _cancel_wait(self) -> None:
        """Forget a save scheduled for later (its own timer, or its place on the ticker)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ticking:
            self._ticking = False
            if self._ticker is not None:
                self._ticker.discard(self)

    def _schedule(self) -> None:
        loop = self._get_loop()
        now = loop.time()
        delay = self._last_start + self._interval - now
        if self._ticker is not None:
            # Even a save allowed now waits for the tick (less than an interval): saves of many
            # writers (cursors acked at random moments) then reach the store together, one log
            # write instead of one each; saving at once when allowed, 1,000 cursors still made
            # ~100 log writes a second.
            self._ticking = True
            self._ticker.add(self, max(now, self._last_start + self._interval))
        elif delay > 0:
            self._timer = loop.call_later(delay, self._on_timer)
        else:
            self._task = loop.create_task(self._run())

    def on_tick(self) -> None:
        """The ticker's: the wait is over."""
        self._ticking = False
        self._on_timer()

    def _on_timer(self) -> None:
        self._timer = None
        if self._task is None and self._dirty:
            self._task = self._get_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = self._get_loop()
        task = self._task  # this run (set by whoever created it, before it started)
        try:
            while self._dirty:
                if not self._force and loop.time() + _SLACK_S < self._last_start + self._interval:
                    break  # rate-limited: the finally clause schedules the rest
                self._dirty = False
                self._last_start = loop.time()
                self.saves += 1
                await self._save()
            self._force = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported, not raised: nobody awaits a background save
            self.error = exc
            if self._on_error is not None:
                self._on_error(exc)
        finally:
            if self._task is task:
                self._task = None
            waiting = self._timer is not None or self._ticking
            if self._dirty and self.error is None and not waiting and self._task is None:
                self._schedule()
