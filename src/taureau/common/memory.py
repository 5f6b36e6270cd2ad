"""Give freed heap memory back to the OS after a burst (glibc's malloc keeps it otherwise).

glibc raises its mmap threshold once a large block is freed, so later large blocks (message
payloads of a producer that pipelined 1 MiB SENDs) come from the heap, and the heap keeps
their pages after they are freed: RSS stays at the burst's peak. `malloc_trim(0)` returns
every free page. A fixed mmap threshold would too, but costs a third of the throughput for
1 MiB messages here (an mmap and page faults per payload), so the trim runs after the fact,
at most once per MIN_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 5.0


def _load_malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_malloc_trim = _load_malloc_trim()


def trim_heap() -> bool:
    """Return free heap pages to the OS now; False where malloc_trim does not exist."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


class HeapTrimmer:
    """Coalesces trim requests: one trim MIN_INTERVAL_S after the first request of a burst."""

    def __init__(self, interval_s: float = MIN_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.trims = 0
        self._scheduled: asyncio.TimerHandle | None = None

    def request(self) -> None:
        if self._scheduled is None and _malloc_trim is not None:
            self._scheduled = asyncio.get_running_loop().call_later(self.interval_s, self._trim)

    def _trim(self) -> None:
        self._scheduled = None
        self.trims += 1
        trim_heap()

    def close(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
