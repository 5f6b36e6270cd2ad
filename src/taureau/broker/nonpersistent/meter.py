"""A counter and its rate over the last interval the broker's rate loop measured."""

from __future__ import annotations

import time


class Meter:
    __slots__ = ("count", "rate", "_at", "_seen")

    def __init__(self) -> None:
        self.count = 0
        self.rate = 0.0  # per second, over the interval between the last two ticks
        self._at = time.monotonic()  # the first interval runs from the meter's creation
        self._seen = 0

    def add(self, amount: int) -> None:
        self.count += amount

    def tick(self, now: float) -> None:
        self.rate = (self.count - self._seen) / max(now - self._at, 1e-6)
        self._at, self._seen = now, self.count
