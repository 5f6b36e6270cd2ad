"""CacheBudget: one byte budget for the entry caches of every managed ledger of a process.

Each managed ledger caches its newest entries (cache.py), capped per ledger; without a shared
bound, N topics with idle backlogs hold N times that cap. The budget tracks the caches in
order of last use (an insert or a read hit) and, when the total passes the budget, asks the
coldest cache to drop its oldest entries until the total fits again (Pulsar's
managedLedgerCacheSizeMB). Each cache still evicts its own entries: the budget only asks.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol


class BudgetedCache(Protocol):
    @property
    def size(self) -> int: ...

    def shrink(self, drop_bytes: int) -> None:
        """Drop the oldest entries until `drop_bytes` are freed or the cache is empty."""


class CacheBudget:
    """Shared by every EntryCache of a factory; single-threaded (the event loop)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.total = 0  # bytes held by all caches, as they report them
        self.evictions = 0  # times a cache was asked to shrink for the budget
        self._by_use: OrderedDict[BudgetedCache, None] = OrderedDict()  # coldest first

    def charged(self, cache: BudgetedCache, size: int) -> None:
        """`cache` took `size` more bytes: it becomes the warmest; the coldest pay if over."""
        self.total += size
        self._by_use[cache] = None
        self._by_use.move_to_end(cache)
        while self.total > self.max_bytes and self._by_use:
            coldest = next(iter(self._by_use))
            if coldest.size == 0:
                del self._by_use[coldest]
                continue
            self.evictions += 1
            coldest.shrink(self.total - self.max_bytes)

    def released(self, size: int) -> None:
        """A cache let go of `size` bytes."""
        self.total -= size

    def touched(self, cache: BudgetedCache) -> None:
        """A read hit `cache`: it is warm."""
        if cache in self._by_use:
            self._by_use.move_to_end(cache)

    def forget(self, cache: BudgetedCache) -> None:
        """The cache is gone (its ledger closed); it must have released its bytes first."""
        self._by_use.pop(cache, None)
