"""Factory (open once, list, exists, delete), ML-level reads, find_position, internal_stats."""

from __future__ import annotations

import asyncio

import pytest

from taureau.common.errors import ManagedLedgerNotFoundError
from taureau.storage.managed_ledger import InitialPosition
from taureau.storage.position import EARLIEST, LATEST

pytestmark = pytest.mark.anyio

NAME = "t/ns/persistent/topic"

KEEP = {"retention_time_s": -1, "retention_size_bytes": -1}


async def test_open_once_list_exists_delete(make_factory, store, ledgers):
    factory = make_factory()
    a, b = await asyncio.gather(factory.open(NAME), factory.open(NAME))
    assert a is b
    await factory.open("t/ns/persistent/other")
    await factory.open("u/ns/persistent/x")
    assert await factory.list() == ["t/ns/persistent/other", NAME, "u/ns/persistent/x"]
    assert await factory.list("t/") == ["t/ns/persistent/other", NAME]
    assert await factory.exists(NAME) and not await factory.exists("t/ns/persistent/nope")
    await a.open_cursor("sub")
    await a.add_entry(b"x")
    ledger_ids = [row["ledgerId"] for row in a.internal_stats()["ledgers"]]
    await factory.delete(NAME)
    assert not await factory.exists(NAME)
    assert await store.get(a.path) is None
    for ledger_id in ledger_ids:
        from taureau.common.errors import NoSuchLedgerError

        with pytest.raises(NoSuchLedgerError):
            await ledgers.get_metadata(ledger_id)
    with pytest.raises(ManagedLedgerNotFoundError):
        await factory.delete(NAME)
    fresh = await factory.open(NAME)
    assert fresh is not a and fresh.entries_count == 0 and not fresh.cursors


async def test_names_with_odd_characters(make_factory):
    factory = make_factory()
    for name in ("a/b/persistent/x%y", "./..", "t/ns/persistent/ü"):
        ml = await factory.open(name)
        await ml.open_cursor("..")
        await ml.open_cursor("sub/with/slash")
    assert set(await factory.list()) == {"a/b/persistent/x%y", "./..", "t/ns/persistent/ü"}
    await factory.close()
    again = await make_factory().open("./..")
    assert set(again.cursors) == {"..", "sub/with/slash"}


async def test_read_entry_and_read_entries_cross_ledgers(make_factory):
    ml = await make_factory(max_entries_per_ledger=3, **KEEP).open(NAME)
    pos = [await ml.add_entry(b"%d" % i) for i in range(8)]
    assert (await ml.read_entry(pos[4])).data == b"4"
    entries = await ml.read_entries(pos[2], 4)
    assert [e.position for e in entries] == pos[2:6]
    assert [e.data for e in await ml.read_entries(EARLIEST, 100)] == [b"%d" % i for i in range(8)]
    assert await ml.read_entries(LATEST, 5) == []
    assert await ml.read_entries(ml.last_confirmed.next(), 5) == []


async def test_find_position_binary_search(make_factory):
    ml = await make_factory(max_entries_per_ledger=7, **KEEP).open(NAME)
    pos = [await ml.add_entry(b"%04d" % (i * 10)) for i in range(50)]  # "publish times" 0..490
    assert await ml.find_position(lambda e: int(e.data) >= 0) == pos[0]
    assert await ml.find_position(lambda e: int(e.data) >= 235) == pos[24]
    assert await ml.find_position(lambda e: int(e.data) >= 490) == pos[49]
    assert await ml.find_position(lambda e: int(e.data) >= 491) is None


async def test_internal_stats_shape(make_factory):
    ml = await make_factory(max_entries_per_ledger=2, **KEEP).open(NAME)
    cursor = await ml.open_cursor("sub", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"abc") for _ in range(5)]
    await cursor.read_entries(2)
    await cursor.delete([pos[3]])
    await asyncio.sleep(0.01)
    stats = ml.internal_stats()
    assert stats["entriesAddedCounter"] == 5
    assert stats["numberOfEntries"] == 5 and stats["totalSize"] == 15
    assert stats["lastConfirmedEntry"] == str(pos[-1])
    assert stats["currentLedgerEntries"] == 1
    assert sum(r["entries"] for r in stats["ledgers"]) == 5
    assert set(stats["ledgers"][0]) == {"ledgerId", "entries", "size", "timestamp"}
    sub = stats["cursors"]["sub"]
    assert sub["markDeletePosition"] == str(ml.ledgers.previous(pos[0]))
    assert sub["readPosition"] == str(pos[2])
    assert sub["messagesConsumedCounter"] == 1
    assert sub["individuallyDeletedMessages"] == f"[({pos[3].ledger_id}:{pos[3].entry_id - 1}..{pos[3]}]]"
