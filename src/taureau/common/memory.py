"""The C heap of a server: keep freed pages while it is busy, give them back after a burst.

glibc raises its mmap threshold once a large block is freed, so later large blocks (message
payloads of a producer that pipelined 1 MiB SENDs) come from the heap. It also sets its trim
threshold to twice that, so with 1 MiB messages the top of the heap went back to the OS each
time a few MiB lay free there, and the next messages faulted the same pages in again: 200-700
minor page faults per 1 MiB message, more system time than all of the broker's Python code.
`tune_allocator` fixes both thresholds high instead (a server's process, at start), so a
burst's buffers are reused; `malloc_trim(0)` still returns every free page once the burst is
over (HeapTrimmer: when connections close, at most once per MIN_INTERVAL_S). A low fixed mmap
threshold would return them at once, but cost a third of the throughput for 1 MiB messages
here (an mmap and page faults per payload).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 5.0
# mallopt parameters (malloc.h) and the values a server sets: blocks up to 32 MiB (glibc's own
# ceiling for its moving threshold; a frame is at most ~5 MiB) come from the heap, and the top
# of the heap is given back only past 256 MiB free: the entry cache's default budget, the most
# a burst frees at once.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024


def _load_libc_function(function: str):
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), function)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune or trim
        return None


_malloc_trim = _load_libc_function("malloc_trim")
_mallopt = _load_libc_function("mallopt")


def tune_allocator(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds for a server (see the module's docstring); False
    where mallopt does not exist or refuses them."""
    if _mallopt is None:
        return False
    return bool(_mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(_mallopt(_M_TRIM_THRESHOLD, trim_threshold))


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
