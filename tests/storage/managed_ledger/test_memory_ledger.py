"""MemoryLedgerClient keeps BookKeeper's rules: single writer, LAC, close, fencing, delete."""

from __future__ import annotations

import asyncio

import pytest

from taureau.common.errors import (
    DiskFullError,
    LedgerClosedError,
    LedgerFencedError,
    NoSuchEntryError,
    NoSuchLedgerError,
    NotEnoughBookiesError,
    StorageError,
)
from taureau.storage.ledger.api import LedgerState
from taureau.testing.memory_ledger import MemoryLedgerClient

pytestmark = pytest.mark.anyio


async def test_add_read_close():
    client = MemoryLedgerClient()
    handle = await client.create_ledger(custom={"k": "v"})
    assert [await handle.add_entry(b"a%d" % i) for i in range(3)] == [0, 1, 2]
    assert handle.last_add_confirmed == 2 and handle.length == 6
    assert await handle.read_entries(1, 2) == [b"a1", b"a2"]
    with pytest.raises(NoSuchEntryError):
        await handle.read_entries(2, 3)
    with pytest.raises(NoSuchEntryError):
        await handle.read_entries(2, 1)
    await handle.close()
    await handle.close()  # idempotent
    with pytest.raises(LedgerClosedError):
        await handle.add_entry(b"late")
    meta = await client.get_metadata(handle.ledger_id)
    assert meta.state is LedgerState.CLOSED and meta.last_entry_id == 2 and meta.length == 6
    assert meta.custom == {"k": "v"}


async def test_concurrent_adds_complete_in_order():
    client = MemoryLedgerClient(yield_on_add=True)
    handle = await client.create_ledger()
    ids = await asyncio.gather(*(handle.add_entry(b"%d" % i) for i in range(50)))
    assert ids == list(range(50))
    assert await handle.read_entries(0, 49) == [b"%d" % i for i in range(50)]


async def test_recovery_open_fences_the_writer():
    client = MemoryLedgerClient()
    writer = await client.create_ledger()
    await writer.add_entry(b"a")
    await writer.add_entry(b"b")
    reader = await client.open_ledger(writer.ledger_id, recovery=True)
    assert reader.is_closed and reader.last_add_confirmed == 1
    with pytest.raises(LedgerFencedError):
        await writer.add_entry(b"c")
    with pytest.raises(LedgerClosedError):
        await reader.add_entry(b"c")  # readers never write
    assert await reader.read_entries(0, 1) == [b"a", b"b"]


async def test_non_recovery_open_does_not_fence():
    client = MemoryLedgerClient()
    writer = await client.create_ledger()
    await writer.add_entry(b"a")
    reader = await client.open_ledger(writer.ledger_id, recovery=False)
    assert not reader.is_closed
    await writer.add_entry(b"b")
    assert await reader.read_entries(0, 1) == [b"a", b"b"]


async def test_delete_and_unknown_ledgers():
    client = MemoryLedgerClient()
    handle = await client.create_ledger()
    await handle.add_entry(b"a")
    await client.delete_ledger(handle.ledger_id)
    assert client.ledger_ids() == []
    for call in (
        lambda: handle.read_entries(0, 0),
        lambda: handle.add_entry(b"x"),
        lambda: client.open_ledger(handle.ledger_id),
        lambda: client.delete_ledger(handle.ledger_id),
        lambda: client.get_metadata(999),
    ):
        with pytest.raises(NoSuchLedgerError):
            await call()


async def test_bad_arguments_and_closed_client():
    client = MemoryLedgerClient(num_bookies=1)
    with pytest.raises(NotEnoughBookiesError):
        await client.create_ledger(ensemble_size=2, write_quorum=2, ack_quorum=2)
    with pytest.raises(ValueError):
        await client.create_ledger(ensemble_size=1, write_quorum=2, ack_quorum=1)
    handle = await client.create_ledger()
    with pytest.raises(TypeError):
        await handle.add_entry("text")
    assert handle.last_add_confirmed == -1
    await client.close()
    with pytest.raises(StorageError):
        await client.create_ledger()


async def test_injected_failure_errors_the_ledger():
    client = MemoryLedgerClient()
    handle = await client.create_ledger()
    await handle.add_entry(b"ok")
    client.inject_add_failures(DiskFullError("full"))
    with pytest.raises(DiskFullError):
        await handle.add_entry(b"lost")
    with pytest.raises(DiskFullError):
        await handle.add_entry(b"after")  # the handle stays errored, as BookKeeper's does
    other = await client.create_ledger()
    assert await other.add_entry(b"fresh") == 0
    assert handle.last_add_confirmed == 0
