"""Retention: consumed ledgers are deleted (or kept by time/size); the current ledger never is."""

from __future__ import annotations

import asyncio

import pytest

from taureau.common.errors import NoSuchLedgerError
from taureau.storage.managed_ledger import InitialPosition

pytestmark = pytest.mark.anyio

NAME = "t/ns/persistent/topic"


async def _ledger_exists(ledgers, ledger_id: int) -> bool:
    try:
        await ledgers.get_metadata(ledger_id)
    except NoSuchLedgerError:
        return False
    return True


async def test_consumed_ledgers_are_deleted_after_acks(make_factory, ledgers):
    ml = await make_factory(max_entries_per_ledger=5).open(NAME)
    slow = await ml.open_cursor("slow", InitialPosition.EARLIEST)
    fast = await ml.open_cursor("fast", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"%d" % i) for i in range(20)]
    first_ledger = pos[0].ledger_id
    await fast.mark_delete(pos[-1])
    await asyncio.sleep(0.01)
    assert await _ledger_exists(ledgers, first_ledger)  # the slow cursor still needs it
    await slow.mark_delete(pos[9])
    await ml.trim()
    assert not await _ledger_exists(ledgers, first_ledger)
    assert ml.first_position == pos[10]
    assert ml.entries_count == 10
    await slow.mark_delete(pos[-1])
    await ml.trim()
    stats = ml.internal_stats()
    assert [row["ledgerId"] for row in stats["ledgers"]] == [ml.ledgers.current.ledger_id]
    assert stats["numberOfEntries"] == 0
    assert slow.backlog == 0 and fast.backlog == 0


async def test_retention_forever_keeps_everything(make_factory):
    ml = await make_factory(max_entries_per_ledger=5, retention_time_s=-1, retention_size_bytes=-1).open(NAME)
    cursor = await ml.open_cursor("s", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"%d" % i) for i in range(20)]
    await cursor.mark_delete(pos[-1])
    await ml.trim()
    assert ml.entries_count == 20
    ml.set_retention(0, 0)
    await ml.trim()
    assert ml.entries_count == 0


async def test_retention_by_size_keeps_the_newest(make_factory):
    ml = await make_factory(max_entries_per_ledger=5, retention_time_s=-1, retention_size_bytes=100).open(
        NAME
    )
    cursor = await ml.open_cursor("s", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"x" * 10) for i in range(25)]  # five full ledgers of 50 bytes
    await cursor.mark_delete(pos[-1])
    await ml.trim()
    assert 50 <= ml.total_size <= 100


async def test_retention_by_time(make_factory):
    ml = await make_factory(max_entries_per_ledger=5, retention_time_s=0.05, retention_size_bytes=-1).open(
        NAME
    )
    cursor = await ml.open_cursor("s", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"x") for _ in range(10)]
    await cursor.mark_delete(pos[-1])
    await ml.trim()
    assert ml.entries_count == 10
    await asyncio.sleep(0.06)
    await ml.trim()
    assert ml.entries_count == 0


async def test_periodic_trim(make_factory):
    ml = await make_factory(max_entries_per_ledger=5, trim_s=0.02, retention_time_s=0.01).open(NAME)
    cursor = await ml.open_cursor("s", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"x") for _ in range(10)]
    await cursor.mark_delete(pos[-1])
    await asyncio.sleep(0.1)
    assert ml.entries_count == 0


async def test_non_durable_cursor_moves_past_trimmed_ledgers(make_factory):
    ml = await make_factory(max_entries_per_ledger=5).open(NAME)
    durable = await ml.open_cursor("d", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"%d" % i) for i in range(12)]
    reader = ml.new_non_durable_cursor("r", pos[0])
    await durable.mark_delete(pos[9])
    await ml.trim()
    entries = await reader.read_entries(100)
    assert [e.position for e in entries] == pos[10:]


async def test_deleting_the_slow_cursor_frees_ledgers(make_factory):
    ml = await make_factory(max_entries_per_ledger=5).open(NAME)
    await ml.open_cursor("slow", InitialPosition.EARLIEST)
    fast = await ml.open_cursor("fast", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"x") for _ in range(10)]
    await fast.mark_delete(pos[-1])
    await ml.trim()
    assert ml.entries_count == 10
    await ml.delete_cursor("slow")
    await ml.trim()
    assert ml.entries_count == 0
