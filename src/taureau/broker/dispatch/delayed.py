"""Delayed delivery: entries whose deliver_at_time is in the future wait here, not at a consumer.

Pulsar delays messages on Shared and Key_Shared subscriptions only; Exclusive and Failover
deliver them at once (so a reader or a single consumer sees everything in order). A
dispatcher that delays (Shared, Key_Shared) reads an entry as usual; if its deliver_at_time
is still ahead it records the position here instead of sending it, and when the time comes
the position goes to the dispatcher's replay set and is read again. Nothing is acknowledged
meanwhile, so the cursor's mark-delete position stays before a delayed entry: after a
restart it is read, and delayed, again.

Bounded: at most `limit` positions per subscription; while full, the dispatcher reads no
fresh entries (what is due still goes out), as a consumer at its unacked limit.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable

from taureau.storage.position import Position

MAX_DELAYED = 100_000


def now_ms() -> int:
    return int(time.time() * 1000)


class DelayedDeliveries:
    """Positions waiting for their delivery time, earliest first; owned by one dispatcher."""

    def __init__(self, wake: Callable[[], None], limit: int = MAX_DELAYED) -> None:
        self._wake = wake  # the dispatcher's: called when the earliest position is due
        self.limit = limit
        self._heap: list[tuple[int, Position]] = []  # (deliver_at ms, position)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0  # deliver_at the timer is set for

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def full(self) -> bool:
        return len(self._heap) >= self.limit

    def add(self, position: Position, deliver_at: int) -> None:
        heapq.heappush(self._heap, (deliver_at, position))
        if self._timer is None or deliver_at < self._timer_at:
            self._arm(deliver_at)

    def pop_due(self, now: int) -> list[Position]:
        """Positions whose time has come, earliest first; re-arms the timer for the rest."""
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[1])
        if heap and (due or self._timer is None):
            self._arm(heap[0][0])  # the next one (or the same: the timer fired a little early)
        return due

    def clear(self) -> None:
        """Forget everything (the cursor was rewound: the entries will be read again)."""
        self._heap.clear()
        self._cancel()

    def _arm(self, deliver_at: int) -> None:
        self._cancel()
        delay = max(deliver_at - now_ms(), 0) / 1000
        self._timer_at = deliver_at
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._wake()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
