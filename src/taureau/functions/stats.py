"""An instance's counters, latency histogram and latest exceptions (Pulsar's InstanceStats)."""

from __future__ import annotations

import bisect
import threading
import time
import traceback
from collections import deque
from typing import Any

# Upper bounds (ms) of the processing-latency histogram buckets; +Inf is implicit.
LATENCY_BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
MAX_EXCEPTIONS = 10  # latest exceptions kept per kind


class InstanceStats:
    """Counters are written by the processing thread only, without a lock (the reporter's
    reads may be a message behind, never torn: they are ints under the GIL); exceptions also
    come from the client's callback threads and go under the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed_ok = 0
        self.user_exceptions = 0
        self.system_exceptions = 0
        self.latency_sum_ms = 0.0
        self.latency_count = 0
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.last_invocation_ms = 0
        self.busy_since_ms = 0  # wall clock when the current process() call began, 0 if idle
        self.latest_user: deque[dict[str, Any]] = deque(maxlen=MAX_EXCEPTIONS)
        self.latest_system: deque[dict[str, Any]] = deque(maxlen=MAX_EXCEPTIONS)

    def on_received(self, n: int = 1) -> None:
        self.received += n

    def on_start(self) -> None:
        self.busy_since_ms = int(time.time() * 1000)

    def on_done(self, latency_ms: float, ok: bool) -> None:
        self.busy_since_ms = 0
        self.last_invocation_ms = int(time.time() * 1000)
        if ok:
            self.processed_ok += 1
        self.latency_sum_ms += latency_ms
        self.latency_count += 1
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1

    def on_exception(self, exc: BaseException, *, user: bool) -> None:
        entry = {
            "exceptionString": f"{type(exc).__name__}: {exc}",
            "stackTrace": "".join(traceback.format_exception(exc)),
            "timestampMs": int(time.time() * 1000),
        }
        with self._lock:
            if user:
                self.user_exceptions += 1
                self.latest_user.append(entry)
            else:
                self.system_exceptions += 1
                self.latest_system.append(entry)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "received": self.received,
                "processedOk": self.processed_ok,
                "userExceptions": self.user_exceptions,
                "systemExceptions": self.system_exceptions,
                "latencySumMs": self.latency_sum_ms,
                "latencyCount": self.latency_count,
                "latencyBuckets": list(self.latency_buckets),
                "lastInvocationMs": self.last_invocation_ms,
                "busySinceMs": self.busy_since_ms,
                "latestUserExceptions": list(self.latest_user),
                "latestSystemExceptions": list(self.latest_system),
            }
