"""BookKeeperClient over real bookies: adds, LAC, close, fencing and recovery, quorums, deletes."""

from __future__ import annotations

import asyncio
import errno

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
from taureau.storage.ledger import LedgerState
from taureau.storage.ledger import format as fmt

pytestmark = pytest.mark.anyio


async def test_add_read_close(cluster_of):
    cluster = await cluster_of(1)
    client = cluster.client()
    ledger = await client.create_ledger(custom={"owner": "t"})
    assert ledger.last_add_confirmed == -1
    ids = await asyncio.gather(*(ledger.add_entry(b"m%d" % i) for i in range(200)))
    assert ids == list(range(200))
    assert ledger.last_add_confirmed == 199
    assert ledger.length == sum(len(b"m%d" % i) for i in range(200))
    assert await ledger.read_entries(10, 12) == [b"m10", b"m11", b"m12"]
    with pytest.raises(NoSuchEntryError):
        await ledger.read_entries(199, 200)
    with pytest.raises(ValueError):
        await ledger.read_entries(5, 4)
    await ledger.close()
    await ledger.close()  # idempotent
    assert ledger.is_closed
    with pytest.raises(LedgerClosedError):
        await ledger.add_entry(b"late")
    md = await client.get_metadata(ledger.ledger_id)
    assert (md.state, md.last_entry_id, md.length, md.custom) == (
        LedgerState.CLOSED,
        199,
        ledger.length,
        {"owner": "t"},
    )
    reader = await client.open_ledger(ledger.ledger_id)
    assert reader.is_closed and reader.last_add_confirmed == 199
    assert await reader.read_entries(0, 1) == [b"m0", b"m1"]
    with pytest.raises(LedgerClosedError):
        await reader.add_entry(b"no")


async def test_completions_are_in_entry_order(cluster_of):
    cluster = await cluster_of(3)
    ledger = await cluster.client().create_ledger(3, 2, 2)
    order: list[int] = []

    async def add(i: int) -> None:
        order.append(await ledger.add_entry(b"%d" % i))

    await asyncio.gather(*(add(i) for i in range(300)))
    assert order == list(range(300))
    assert await ledger.read_entries(0, 299) == [b"%d" % i for i in range(300)]


async def test_second_opener_fences_the_first_writer(cluster_of):
    cluster = await cluster_of(3)
    writer_client, recoverer = cluster.client(), cluster.client()
    ledger = await writer_client.create_ledger(3, 3, 2)
    for i in range(10):
        await ledger.add_entry(b"e%d" % i)
    recovered = await recoverer.open_ledger(ledger.ledger_id, recovery=True)
    assert recovered.is_closed and recovered.last_add_confirmed == 9
    assert recovered.length == ledger.length
    with pytest.raises(LedgerFencedError):
        await ledger.add_entry(b"zombie")
    with pytest.raises(LedgerFencedError):
        await ledger.add_entry(b"zombie again")
    await ledger.close()  # adopts the recovery's CLOSED metadata
    assert ledger.metadata.last_entry_id == 9
    assert await recovered.read_entries(0, 9) == [b"e%d" % i for i in range(10)]


async def test_recovery_finds_entries_whose_acks_were_lost(cluster_of):
    cluster = await cluster_of(3)
    client = cluster.client()
    ledger = await client.create_ledger(3, 2, 2)
    length = 0
    for i in range(5):
        await ledger.add_entry(b"x" * i)
        length += i
    md = ledger.metadata
    # The writer sent entries 5 and 6 to their whole write sets and 7 to one bookie only, then
    # died before any ack came back; 9 was sent too but 8 never reached anyone.
    for entry_id in (5, 6):
        length += 10
        for bookie_id in fmt.write_set(md, entry_id):
            await cluster.bookies[bookie_id].add_entry(
                md.ledger_id, entry_id, fmt.encode_entry(4, length, b"y" * 10)
            )
    length += 1
    await cluster.bookies[fmt.write_set(md, 7)[0]].add_entry(
        md.ledger_id, 7, fmt.encode_entry(6, length, b"z")
    )
    await cluster.bookies[fmt.write_set(md, 9)[0]].add_entry(
        md.ledger_id, 9, fmt.encode_entry(6, length + 2, b"w")
    )
    recovered = await cluster.client().open_ledger(md.ledger_id)
    # Any readable entry is recovered (never acked, so keeping it breaks no promise); the gap at 8 ends it.
    assert recovered.last_add_confirmed == 7
    assert recovered.length == length
    assert await recovered.read_entries(5, 7) == [b"y" * 10, b"y" * 10, b"z"]
    # Recovery re-wrote each recovered entry to its whole write set.
    for entry_id in (5, 6, 7):
        for bookie_id in fmt.write_set(md, entry_id):
            assert await cluster.bookies[bookie_id].read_entry(md.ledger_id, entry_id)


async def test_open_without_recovery_reads_up_to_the_piggybacked_lac(cluster_of):
    cluster = await cluster_of(1)
    ledger = await cluster.client().create_ledger()
    for i in range(10):
        await ledger.add_entry(b"%d" % i)
    reader = await cluster.client().open_ledger(ledger.ledger_id, recovery=False)
    assert not reader.is_closed
    assert reader.last_add_confirmed == 8  # entry 9 carried the LAC 8 (BookKeeper's lag of one)
    assert await reader.read_entries(0, 8) == [b"%d" % i for i in range(9)]
    await ledger.add_entry(b"still writable")  # no fencing happened


async def test_delete(cluster_of):
    cluster = await cluster_of(1)
    client = cluster.client()
    ledger = await client.create_ledger()
    await ledger.add_entry(b"gone soon")
    await ledger.close()
    await client.delete_ledger(ledger.ledger_id)
    with pytest.raises(NoSuchLedgerError):
        await client.get_metadata(ledger.ledger_id)
    with pytest.raises(NoSuchLedgerError):
        await client.open_ledger(ledger.ledger_id)
    with pytest.raises(NoSuchLedgerError):
        await cluster.bookies["bookie-0"].read_entry(ledger.ledger_id, 0)
    with pytest.raises(NoSuchLedgerError):
        await client.delete_ledger(ledger.ledger_id)


async def test_w3_a2_survives_one_failing_bookie(cluster_of):
    cluster = await cluster_of(3)
    ledger = await cluster.client().create_ledger(3, 3, 2)
    for i in range(5):
        await ledger.add_entry(b"before%d" % i)
    cluster.files["bookie-1"].inject("append", errno.ENOSPC, times=None)
    for i in range(5, 20):
        assert await ledger.add_entry(b"after%d" % i) == i
    assert await ledger.read_entries(0, 19) == [b"before%d" % i for i in range(5)] + [
        b"after%d" % i for i in range(5, 20)
    ]
    await ledger.close()
    assert (await cluster.client().open_ledger(ledger.ledger_id)).last_add_confirmed == 19


async def test_w2_a2_fails_clearly_and_loses_nothing_acked(cluster_of):
    cluster = await cluster_of(3)
    ledger = await cluster.client().create_ledger(3, 2, 2)
    for i in range(6):
        await ledger.add_entry(b"ok%d" % i)
    cluster.files["bookie-2"].inject("append", errno.ENOSPC, times=None)
    results = await asyncio.gather(
        *(ledger.add_entry(b"maybe%d" % i) for i in range(6)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors and all(isinstance(e, DiskFullError) for e in errors)
    assert "ack quorum" in str(errors[0])
    acked = [r for r in results if isinstance(r, int)]
    assert acked == list(range(6, 6 + len(acked)))  # a prefix, in order
    with pytest.raises(StorageError):
        await ledger.add_entry(b"after the failure")
    # The full bookie still serves reads. Recovery needs every write set writable (there is no
    # ensemble change yet), so it fails clearly while the disk is full...
    with pytest.raises(StorageError):
        await cluster.client().open_ledger(ledger.ledger_id)
    # ...and once space is back and the bookie checkpointed, it keeps every acknowledged entry.
    cluster.files["bookie-2"].clear()
    await cluster.bookies["bookie-2"].checkpoint()
    recovered = await cluster.client().open_ledger(ledger.ledger_id)
    assert recovered.last_add_confirmed >= 5 + len(acked)
    assert await recovered.read_entries(0, 5 + len(acked)) == [b"ok%d" % i for i in range(6)] + [
        b"maybe%d" % i for i in range(len(acked))
    ]


async def test_bad_arguments(cluster_of):
    cluster = await cluster_of(1)
    client = cluster.client()
    with pytest.raises(NotEnoughBookiesError):
        await client.create_ledger(3, 2, 2)
    for args in [(0, 1, 1), (1, 2, 1), (2, 1, 2), ("1", 1, 1)]:
        with pytest.raises(ValueError):
            await client.create_ledger(*args)
    with pytest.raises(TypeError):
        await client.create_ledger(custom={"k": 1})
    with pytest.raises(ValueError):
        await client.open_ledger(-1)
    ledger = await client.create_ledger()
    with pytest.raises(TypeError):
        await ledger.add_entry("text")
    assert await ledger.add_entry(b"fine") == 0  # the handle still works
    with pytest.raises(NoSuchLedgerError):
        await client.open_ledger(12345)


async def test_ledger_ids_are_unique_across_clients(cluster_of):
    cluster = await cluster_of(1)
    a, b = cluster.client(), cluster.client()
    ledgers = await asyncio.gather(*(c.create_ledger() for c in [a, b] * 10))
    assert sorted(x.ledger_id for x in ledgers) == list(range(20))


async def test_client_close_seals_its_ledgers(cluster_of):
    cluster = await cluster_of(1)
    client = cluster.client()
    ledger = await client.create_ledger()
    await ledger.add_entry(b"a")
    await client.close()
    assert (await cluster.client().get_metadata(ledger.ledger_id)).state is LedgerState.CLOSED
    with pytest.raises(StorageError):
        await client.create_ledger()
