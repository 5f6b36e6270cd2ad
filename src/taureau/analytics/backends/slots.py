"""Slot bookkeeping for request/response backends (standalone, Ray): a batch per slot, one
thread that completes them, and the same report to the scheduler for both."""

from __future__ import annotations

import threading

from taureau.analytics import wire
from taureau.analytics.backends.base import BackendSink
from taureau.analytics.errors import WorkerLostError


class Slots:
    def __init__(self, prefix: str, count: int) -> None:
        self.prefix = prefix
        self._free = list(range(count - 1, -1, -1))
        self._lock = threading.Lock()

    def take(self, avoid: str | None) -> int | None:
        with self._lock:
            for i in range(len(self._free) - 1, -1, -1):
                if self.name(self._free[i]) != avoid:
                    return self._free.pop(i)
            return None

    def give(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)

    def name(self, slot: int) -> str:
        return f"{self.prefix}-{slot}"


def report(sink: BackendSink, batch_id: int, reply: bytes | None, lost: str | None) -> None:
    """Hand a finished request's outcomes (or the reason it has none) to the scheduler."""
    if reply is not None:
        try:
            for group in wire.decode_groups(reply):
                if group.batch_id == batch_id:  # a reply names only its own batch
                    sink.outcomes(group)
        except Exception as exc:  # noqa: BLE001 - a garbled reply loses the batch, it must not kill the thread
            lost = f"unreadable reply: {type(exc).__name__}: {exc}"
    sink.batch_done(batch_id, WorkerLostError(lost) if lost else None)
