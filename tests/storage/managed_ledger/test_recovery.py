"""Persistence across close/reopen, crash recovery, two owners, rate-limited cursor saves."""

from __future__ import annotations

import asyncio

import pytest

from taureau.common.errors import ManagedLedgerFencedError
from taureau.storage.managed_ledger import InitialPosition
from taureau.storage.position import Position

pytestmark = pytest.mark.anyio

NAME = "t/ns/persistent/topic"

KEEP = {"retention_time_s": -1, "retention_size_bytes": -1}


async def test_cursor_state_survives_close_and_reopen(make_factory):
    factory = make_factory(max_entries_per_ledger=3)
    ml = await factory.open(NAME)
    cursor = await ml.open_cursor("sub", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"%d" % i) for i in range(10)]
    await cursor.delete([pos[0], pos[1], pos[4], pos[7], pos[8]])
    await factory.close()

    ml2 = await make_factory().open(NAME)
    again = ml2.cursors["sub"]
    assert again.mark_delete_position == pos[1]
    assert again.individually_deleted_ranges() == [(pos[4], pos[4]), (pos[7], pos[8])]
    assert again.backlog == 5
    entries = await again.read_entries(100)
    assert [e.data for e in entries] == [b"2", b"3", b"5", b"6", b"9"]
    assert ml2.last_confirmed == pos[-1]
    assert ml2.entries_count >= 8  # the first ledger may be trimmed (0-1 were consumed)


async def test_crash_keeps_every_acked_entry_and_last_saved_cursor(make_factory):
    factory = make_factory(max_entries_per_ledger=4, persist_s=0.05, **KEEP)
    ml = await factory.open(NAME)
    cursor = await ml.open_cursor("sub", InitialPosition.EARLIEST)
    acked = await asyncio.gather(*(ml.add_entry(b"%d" % i) for i in range(10)))
    await cursor.mark_delete(acked[2])
    await asyncio.sleep(0.1)  # saved by the rate-limited writer
    await cursor.mark_delete(acked[5])  # not saved yet when we crash
    factory.abandon()  # crash: nothing closed, nothing flushed, ledger left OPEN

    ml2 = await make_factory(**KEEP).open(NAME)
    again = ml2.cursors["sub"]
    assert again.mark_delete_position == acked[2]  # as of the last save: 3-5 come back
    entries = await again.read_entries(100)
    assert [e.data for e in entries] == [b"%d" % i for i in range(3, 10)]
    assert ml2.last_confirmed == acked[-1]
    new = await ml2.add_entry(b"after")
    assert new.ledger_id > acked[-1].ledger_id


async def test_crash_with_adds_in_flight_keeps_acked(make_factory):
    factory = make_factory(max_entries_per_ledger=1000, **KEEP)
    ml = await factory.open(NAME)
    acked = [await ml.add_entry(b"a%d" % i) for i in range(5)]
    in_flight = [asyncio.ensure_future(ml.add_entry(b"f%d" % i)) for i in range(5)]
    await asyncio.sleep(0)
    factory.abandon()
    ml2 = await make_factory(**KEEP).open(NAME)
    reader = ml2.new_non_durable_cursor("r", Position(-1, -1))
    data = [e.data for e in await reader.read_entries(100)]
    assert data[:5] == [b"a%d" % i for i in range(5)]  # every acked entry is there
    assert ml2.last_confirmed >= acked[-1]
    for fut in in_flight:  # whatever the old owner's adds did, they finish
        try:
            await fut
        except Exception:
            pass


async def test_second_owner_fences_the_first(make_factory):
    first = await make_factory(**KEEP).open(NAME)
    await first.add_entry(b"one")
    second = await make_factory(**KEEP).open(NAME)  # another broker takes the topic over
    with pytest.raises(ManagedLedgerFencedError):
        await first.add_entry(b"two")
    with pytest.raises(ManagedLedgerFencedError):
        await first.add_entry(b"three")
    pos = await second.add_entry(b"two")
    reader = second.new_non_durable_cursor("r", Position(-1, -1))
    assert [e.data for e in await reader.read_entries(10)] == [b"one", b"two"]
    assert pos == second.last_confirmed


async def test_acks_are_rate_limited(make_factory):
    ml = await make_factory(persist_s=0.05).open(NAME)
    cursor = await ml.open_cursor("sub", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"x") for _ in range(300)]
    before = cursor.saves
    for p in pos:
        await cursor.delete([p])
    assert cursor.saves - before <= 2  # 300 acks, not 300 metadata writes
    await asyncio.sleep(0.08)
    assert cursor.saves - before <= 3
    await cursor.close()


async def test_empty_ledgers_are_not_kept(make_factory, ledgers):
    factory = make_factory()
    ml = await factory.open(NAME)
    await factory.close()
    ml = await make_factory().open(NAME)
    assert len(ml.internal_stats()["ledgers"]) == 1
    if hasattr(ledgers, "ledger_ids"):
        assert len(ledgers.ledger_ids()) == 1
