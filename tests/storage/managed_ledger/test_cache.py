"""EntryCache: runs across ledgers, eviction by size and by position, gaps."""

from __future__ import annotations

from taureau.storage.managed_ledger.cache import EntryCache
from taureau.storage.position import Entry
from taureau.storage.position import Position as P


def _fill(cache: EntryCache, positions) -> None:
    for pos in positions:
        cache.insert(Entry(P(*pos), b"x" * 10))


def test_run_crosses_ledgers_and_stops_at_the_tail():
    cache = EntryCache(10_000)
    _fill(cache, [(1, 0), (1, 1), (1, 2), (4, 0), (4, 1)])
    run = cache.get_run(P(1, 1), 10)
    assert [e.position for e in run] == [P(1, 1), P(1, 2), P(4, 0), P(4, 1)]
    assert [e.position for e in cache.get_run(P(1, 2), 2)] == [P(1, 2), P(4, 0)]
    assert cache.get_run(P(4, 2), 5) == []  # not added yet
    assert cache.get_run(P(2, 0), 5) == []  # unknown ledger


def test_size_bound_evicts_oldest():
    cache = EntryCache(35)
    _fill(cache, [(1, i) for i in range(10)])
    assert len(cache) == 3 and cache.size == 30
    assert cache.first_position == P(1, 7)
    assert cache.get_run(P(1, 6), 5) == []


def test_evict_before_position():
    cache = EntryCache(10_000)
    _fill(cache, [(1, i) for i in range(200)] + [(2, i) for i in range(5)])
    cache.evict_before(P(1, 150))
    assert cache.first_position == P(1, 150) and len(cache) == 55
    cache.evict_before(P(1, 100))  # behind the head: nothing happens
    assert len(cache) == 55
    cache.evict_before(P(2, 3))
    assert cache.first_position == P(2, 3)
    assert [e.position for e in cache.get_run(P(2, 3), 9)] == [P(2, 3), P(2, 4)]
    cache.evict_before(P(3, 0))  # past everything
    assert len(cache) == 0 and cache.size == 0 and cache.first_position is None
    _fill(cache, [(3, 0)])
    assert [e.position for e in cache.get_run(P(3, 0), 9)] == [P(3, 0)]


def test_gap_restarts_the_cache():
    cache = EntryCache(10_000)
    _fill(cache, [(1, 0), (1, 1), (1, 5)])  # entries 2-4 never came through this cache
    assert cache.get_run(P(1, 0), 5) == []
    assert [e.position for e in cache.get_run(P(1, 5), 5)] == [P(1, 5)]


def test_zero_size_cache_holds_nothing():
    cache = EntryCache(0)
    _fill(cache, [(1, 0), (1, 1)])
    assert len(cache) == 0 and cache.get_run(P(1, 1), 1) == []
