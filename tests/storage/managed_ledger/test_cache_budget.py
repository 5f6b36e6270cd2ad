"""CacheBudget: one byte budget over the entry caches of many managed ledgers."""

from taureau.storage.managed_ledger.budget import CacheBudget
from taureau.storage.managed_ledger.cache import EntryCache
from taureau.storage.position import Entry, Position


def _add(cache: EntryCache, ledger_id: int, count: int, size: int = 10) -> None:
    start = len(cache)
    for i in range(count):
        cache.insert(Entry(Position(ledger_id, start + i), b"x" * size))


def test_the_coldest_cache_pays_when_the_budget_is_exceeded():
    budget = CacheBudget(100)
    cold, warm, hot = EntryCache(1_000, budget), EntryCache(1_000, budget), EntryCache(1_000, budget)
    _add(cold, 1, 4)
    _add(warm, 2, 4)
    _add(hot, 3, 2)
    assert budget.total == 100 and budget.evictions == 0
    assert warm.get_run(Position(2, 0), 1)  # a read hit makes `warm` warmer than `cold`
    _add(hot, 3, 3)  # 30 bytes over: taken from the coldest, oldest entries first
    assert budget.total == 100 and budget.evictions == 3  # one per insert over budget
    assert (cold.size, warm.size, hot.size) == (10, 40, 50)
    assert cold.first_position == Position(1, 3)


def test_a_cache_alone_over_the_budget_shrinks_itself():
    budget = CacheBudget(50)
    only = EntryCache(1_000, budget)
    _add(only, 1, 8)
    assert only.size == 50 and budget.total == 50 and only.first_position == Position(1, 3)


def test_closing_a_cache_gives_its_bytes_back():
    budget = CacheBudget(100)
    a, b = EntryCache(1_000, budget), EntryCache(1_000, budget)
    _add(a, 1, 6)
    _add(b, 2, 4)
    a.close()
    assert budget.total == 40
    _add(b, 2, 6)
    assert budget.total == 100 and b.size == 100 and budget.evictions == 0
