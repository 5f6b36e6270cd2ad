"""Publish throttling, as Pulsar's namespace `publishRate` policy asks: each topic of the
namespace may take so many messages and bytes per second. As in Pulsar, nothing is refused:
the broker stops reading from a connection that publishes past the rate, so further sends
wait in the client (and TCP) instead of in the broker.

A token bucket per topic, holding at most one second's budget: what a read brings past it is
a debt, and the connection stops reading until the debt is paid at the configured rate. So
the rate holds on average even when a client writes a burst the broker reads at once."""

from __future__ import annotations

import time
from collections.abc import Callable


class _Bucket:
    def __init__(self, rate: int, now: float) -> None:
        self.rate = rate  # per second; <= 0: no limit
        self.tokens = float(rate)
        self.at = now

    def take(self, amount: int, now: float) -> float:
        """Take `amount`; the seconds until the bucket is out of debt (0: none)."""
        if self.rate <= 0:
            return 0.0
        self.tokens = min(float(self.rate), self.tokens + (now - self.at) * self.rate) - amount
        self.at = now
        return -self.tokens / self.rate if self.tokens < 0 else 0.0


class PublishRateLimiter:
    def __init__(self, max_messages: int, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.set_rates(max_messages, max_bytes)

    def set_rates(self, max_messages: int, max_bytes: int) -> None:
        now = self._clock()
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._messages = _Bucket(max_messages, now)
        self._bytes = _Bucket(max_bytes, now)

    def record(self, messages: int, size: int) -> float:
        """Count a publish; the seconds its connection should stop reading (0: none)."""
        now = self._clock()
        return max(self._messages.take(messages, now), self._bytes.take(size, now))
