"""Adds, ledger rollover (entries, size, age), order under concurrency, add failures."""

from __future__ import annotations

import asyncio

import pytest

from taureau.common.errors import DiskFullError, StorageArgumentError
from taureau.storage.managed_ledger import InitialPosition
from taureau.storage.position import Position
from taureau.testing.memory_ledger import MemoryLedgerClient

pytestmark = pytest.mark.anyio

NAME = "t/ns/persistent/topic"

KEEP = {"retention_time_s": -1, "retention_size_bytes": -1}  # no cursors here: keep every ledger


async def _read_all(ml) -> list[bytes]:
    cursor = ml.new_non_durable_cursor("check", Position(-1, -1))
    out = []
    while batch := await cursor.read_entries(1000):
        out += [e.data for e in batch]
    await cursor.close()
    return out


async def test_rollover_under_concurrent_adds_keeps_order(make_factory):
    ml = await make_factory(max_entries_per_ledger=7, **KEEP).open(NAME)
    payloads = [b"m%03d" % i for i in range(200)]
    positions = await asyncio.gather(*(ml.add_entry(p) for p in payloads))
    assert positions == sorted(positions) and len(set(positions)) == 200
    assert await _read_all(ml) == payloads
    stats = ml.internal_stats()
    assert all(row["entries"] <= 7 for row in stats["ledgers"])
    assert sum(row["entries"] for row in stats["ledgers"]) == 200
    assert len(stats["ledgers"]) >= 200 // 7
    assert stats["entriesAddedCounter"] == 200 and stats["numberOfEntries"] == 200


async def test_concurrent_producers_interleaved_with_rollover(make_factory):
    ml = await make_factory(max_entries_per_ledger=5, **KEEP).open(NAME)

    async def producer(k: int) -> list[Position]:
        out = []
        for i in range(40):
            out.append(await ml.add_entry(b"%d-%d" % (k, i)))
        return out

    results = await asyncio.gather(*(producer(k) for k in range(4)))
    for positions in results:  # each producer's own adds are in order
        assert positions == sorted(positions)
    data = await _read_all(ml)
    assert len(data) == 160
    for k in range(4):
        mine = [d for d in data if d.startswith(b"%d-" % k)]
        assert mine == [b"%d-%d" % (k, i) for i in range(40)]


async def test_rollover_on_size(make_factory):
    ml = await make_factory(max_size_per_ledger=100, **KEEP).open(NAME)
    for _ in range(10):
        await ml.add_entry(b"x" * 30)
    await asyncio.sleep(0.01)
    sizes = [row["size"] for row in ml.internal_stats()["ledgers"]]
    assert sum(sizes) == 300 and all(s <= 120 for s in sizes) and len(sizes) >= 3


async def test_rollover_on_age(make_factory):
    ml = await make_factory(max_ledger_age_s=0.02, **KEEP).open(NAME)
    first = await ml.add_entry(b"a")
    await asyncio.sleep(0.03)
    second = await ml.add_entry(b"b")
    assert second.ledger_id > first.ledger_id
    assert await _read_all(ml) == [b"a", b"b"]


async def test_a_full_ledger_rolls_over_only_once_it_is_old_enough(make_factory):
    ml = await make_factory(max_entries_per_ledger=5, min_ledger_rollover_s=0.3, **KEEP).open(NAME)
    early = [await ml.add_entry(b"e%d" % i) for i in range(12)]
    early += await ml.add_entries([b"b%d" % i for i in range(8)])  # a batch past the limit too
    assert len({p.ledger_id for p in early}) == 1  # 20 entries, limit 5: still one ledger
    await asyncio.sleep(0.35)
    late = await ml.add_entry(b"late")
    after = await ml.add_entry(b"after")
    assert after.ledger_id > early[0].ledger_id and late.ledger_id in (early[0].ledger_id, after.ledger_id)
    assert len(await _read_all(ml)) == 22


async def test_a_minimum_rollover_time_above_the_maximum_age_is_refused(make_factory):
    with pytest.raises(StorageArgumentError, match="min_ledger_rollover_s"):
        make_factory(min_ledger_rollover_s=10, max_ledger_age_s=5)


async def test_last_confirmed_and_first_position(make_factory):
    ml = await make_factory(max_entries_per_ledger=2, **KEEP).open(NAME)
    assert ml.last_confirmed.entry_id == -1
    assert ml.first_position == ml.last_confirmed.next()
    positions = [await ml.add_entry(b"%d" % i) for i in range(5)]
    assert ml.last_confirmed == positions[-1]
    assert ml.first_position == positions[0]
    assert ml.entries_count == 5 and ml.total_size == 5
    assert ml.count_entries(positions[0], positions[-1]) == 4


async def test_failed_add_does_not_stop_the_ledger(store):
    from taureau.storage.managed_ledger import ManagedLedgerFactory

    client = MemoryLedgerClient()
    factory = ManagedLedgerFactory(store, client)
    ml = await factory.open(NAME)
    cursor = await ml.open_cursor("s", InitialPosition.EARLIEST)
    await ml.add_entry(b"before")
    client.inject_add_failures(DiskFullError("disk full"))
    with pytest.raises(DiskFullError):
        await ml.add_entry(b"lost")
    after = await ml.add_entry(b"after")  # rolled over to a fresh ledger
    assert after.ledger_id > ml.first_position.ledger_id
    assert [e.data for e in await cursor.read_entries(10)] == [b"before", b"after"]
    await factory.close()
