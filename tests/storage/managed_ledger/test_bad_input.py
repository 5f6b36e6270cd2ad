"""Bad input gets a typed error, changes nothing, and the managed ledger keeps serving."""

from __future__ import annotations

import pytest

from taureau.common.errors import (
    CorruptedDataError,
    CursorNotFoundError,
    ManagedLedgerClosedError,
    NoSuchEntryError,
    StorageArgumentError,
)
from taureau.storage.managed_ledger import InitialPosition, ManagedLedgerFactory, meta
from taureau.storage.position import Position

pytestmark = pytest.mark.anyio

NAME = "t/ns/persistent/topic"


@pytest.fixture
async def setup(make_factory):
    factory = make_factory(retention_time_s=-1, retention_size_bytes=-1)
    ml = await factory.open(NAME)
    cursor = await ml.open_cursor("sub", InitialPosition.EARLIEST)
    pos = [await ml.add_entry(b"%d" % i) for i in range(5)]
    return factory, ml, cursor, pos


async def _still_serves(ml, cursor, before_md):
    assert cursor.mark_delete_position == before_md
    new = await ml.add_entry(b"still")
    assert (await ml.read_entry(new)).data == b"still"


async def test_unknown_cursor(setup):
    factory, ml, cursor, pos = setup
    with pytest.raises(CursorNotFoundError):
        await ml.delete_cursor("nobody")
    await _still_serves(ml, cursor, cursor.mark_delete_position)


async def test_reads_past_the_end(setup):
    factory, ml, cursor, pos = setup
    end = ml.last_confirmed
    with pytest.raises(NoSuchEntryError):
        await ml.read_entry(end.next())
    with pytest.raises(NoSuchEntryError):
        await ml.read_entry(Position(end.ledger_id + 50, 0))
    with pytest.raises(NoSuchEntryError):
        await ml.read_entries(Position(end.ledger_id + 50, 0), 1)
    with pytest.raises(NoSuchEntryError):
        ml.new_non_durable_cursor("r", Position(end.ledger_id + 50, 0))
    with pytest.raises(NoSuchEntryError):
        cursor.seek(Position(end.ledger_id + 50, 0))
    with pytest.raises(NoSuchEntryError):
        await cursor.reset(Position(end.ledger_id + 50, 0))
    await _still_serves(ml, cursor, cursor.mark_delete_position)


async def test_acks_of_entries_that_do_not_exist(setup):
    factory, ml, cursor, pos = setup
    md = cursor.mark_delete_position
    with pytest.raises(NoSuchEntryError):
        await cursor.mark_delete(ml.last_confirmed.next())
    with pytest.raises(NoSuchEntryError):  # one bad position: none of the batch is applied
        await cursor.delete([pos[1], Position(pos[0].ledger_id, 999)])
    assert cursor.individually_deleted_ranges() == [] and cursor.backlog == 5
    with pytest.raises(StorageArgumentError):
        await cursor.delete(["1:2"])
    with pytest.raises(StorageArgumentError):
        await cursor.mark_delete(None)
    await _still_serves(ml, cursor, md)


async def test_bad_counts_and_names(setup):
    factory, ml, cursor, pos = setup
    md = cursor.mark_delete_position
    for call in (
        lambda: cursor.read_entries(0),
        lambda: cursor.read_entries_or_wait(-1),
        lambda: cursor.peek(0),
        lambda: cursor.skip_entries(-1),
        lambda: cursor.read_entries("3"),
        lambda: ml.read_entries(pos[0], 0),
        lambda: ml.open_cursor(""),
        lambda: ml.add_entry("text"),
        lambda: factory.open(""),
    ):
        with pytest.raises(StorageArgumentError):
            await call()
    with pytest.raises(StorageArgumentError):
        ml.new_non_durable_cursor("sub", Position(-1, -1))  # name taken
    ml.new_non_durable_cursor("reader", Position(-1, -1))
    with pytest.raises(StorageArgumentError):
        await ml.open_cursor("reader")  # a non-durable cursor has that name
    assert ml.entries_count == 5
    await _still_serves(ml, cursor, md)


async def test_bad_config(store, ledgers):
    from taureau.storage.managed_ledger import ManagedLedgerConfig

    with pytest.raises(StorageArgumentError):
        ManagedLedgerFactory(store, ledgers, ManagedLedgerConfig(max_entries_per_ledger=0))
    factory = ManagedLedgerFactory(store, ledgers)
    with pytest.raises(StorageArgumentError):
        await factory.open(NAME, ManagedLedgerConfig(write_quorum=2))
    assert not await factory.exists(NAME)


async def test_closed_ml_and_cursor(setup):
    factory, ml, cursor, pos = setup
    await cursor.close()
    with pytest.raises(ManagedLedgerClosedError):
        await cursor.read_entries(1)
    with pytest.raises(ManagedLedgerClosedError):
        await cursor.mark_delete(pos[0])
    await ml.close()
    await ml.close()  # idempotent
    for call in (
        lambda: ml.add_entry(b"x"),
        lambda: ml.read_entry(pos[0]),
        lambda: ml.open_cursor("other"),
        lambda: ml.delete_cursor("sub"),
    ):
        with pytest.raises(ManagedLedgerClosedError):
            await call()
    await factory.close()
    with pytest.raises(ManagedLedgerClosedError):
        await factory.open(NAME)


async def test_corrupt_metadata_is_a_typed_error(store, ledgers, make_factory):
    await store.put(meta.ledger_path(NAME), b"{not json", -1)
    with pytest.raises(CorruptedDataError):
        await make_factory().open(NAME)
    await store.put(meta.ledger_path("t/ns/persistent/b"), meta.encode_ledger_info([]), -1)
    await store.put(meta.cursor_path("t/ns/persistent/b", "c"), b'{"v":1,"md":[1],"ranges":[]}', -1)
    with pytest.raises(CorruptedDataError):
        await make_factory().open("t/ns/persistent/b")
    ok = await make_factory().open("t/ns/persistent/ok")  # the factory keeps serving others
    assert (await ok.add_entry(b"x")).entry_id == 0
