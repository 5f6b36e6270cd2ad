"""A recovery that loses a bookie re-replicates the tail onto a spare (an ensemble change)."""

from __future__ import annotations

import asyncio
import errno

import pytest

from taureau.common.errors import NotEnoughBookiesError, StorageError
from taureau.storage.ledger import BookKeeperClient, LedgerMetadata
from taureau.storage.ledger import format as fmt

pytestmark = pytest.mark.anyio


def test_segments_pick_the_write_set_and_survive_encoding():
    md = LedgerMetadata(4, ["a", "b"], 2, 2)
    assert md.ensembles == [(0, ["a", "b"])]
    md.change_ensemble(10, "b", "c")
    md.change_ensemble(10, "a", "d")  # same first entry: the segment is amended, not added
    md.change_ensemble(20, "c", "e")
    assert md.ensembles == [(0, ["a", "b"]), (10, ["d", "c"]), (20, ["d", "e"])]
    assert md.ensemble == ["d", "e"]
    assert fmt.write_set(md, 9) == ["b", "a"] and fmt.write_set(md, 10) == ["d", "c"]
    assert fmt.write_set(md, 25) == ["e", "d"]
    assert md.all_bookies() == ["a", "b", "d", "c", "e"]
    again = fmt.decode_metadata(fmt.encode_metadata(md))
    assert again.ensembles == md.ensembles and again.ensemble == md.ensemble
    old = fmt.decode_metadata(b'{"ledger_id":1,"ensemble":["x"],"write_quorum":1,"ack_quorum":1,'
                              b'"state":"open","last_entry_id":-1,"length":0,"created_ms":0}')
    assert old.ensembles == [(0, ["x"])]  # metadata written before segments existed


async def test_recovery_replaces_a_failed_bookie_with_a_spare_and_records_it(cluster_of):
    cluster = await cluster_of(3)
    # The writer knows two bookies only, so it has no spare and cannot change its ensemble.
    writer = BookKeeperClient(cluster.store, {b: cluster.bookies[b] for b in ("bookie-0", "bookie-1")})
    ledger = await writer.create_ledger(2, 2, 2)
    assert ledger.metadata.ensemble == ["bookie-0", "bookie-1"]
    for i in range(10):
        await ledger.add_entry(b"ok%d" % i)
    cluster.files["bookie-1"].inject("append", errno.ENOSPC, times=None)
    results = await asyncio.gather(*(ledger.add_entry(b"more%d" % i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, StorageError) for r in results)  # W2 A2 cannot ack with one bookie
    recovered = await cluster.client().open_ledger(ledger.ledger_id)
    md = await cluster.client().get_metadata(ledger.ledger_id)
    assert md.ensembles[0] == (0, ["bookie-0", "bookie-1"])
    assert len(md.ensembles) == 2 and md.ensembles[1][1] == ["bookie-0", "bookie-2"]
    first_moved = md.ensembles[1][0]
    assert first_moved <= recovered.last_add_confirmed
    assert await recovered.read_entries(0, 9) == [b"ok%d" % i for i in range(10)]
    # The spare holds what was re-written to it.
    for entry_id in range(first_moved, recovered.last_add_confirmed + 1):
        stored = await cluster.bookies["bookie-2"].read_entry(ledger.ledger_id, entry_id)
        assert fmt.decode_entry(stored)[2] == (await recovered.read_entries(entry_id, entry_id))[0]


async def test_a_writer_replaces_a_failed_bookie_and_goes_on(cluster_of):
    cluster = await cluster_of(3)
    ledger = await cluster.client().create_ledger(2, 2, 2)
    assert ledger.metadata.ensemble == ["bookie-0", "bookie-1"]
    for i in range(10):
        await ledger.add_entry(b"before%d" % i)
    cluster.files["bookie-1"].inject("append", errno.ENOSPC, times=None)
    ids = await asyncio.gather(*(ledger.add_entry(b"after%d" % i) for i in range(40)))
    assert ids == list(range(10, 50))  # every add acknowledged, in order
    md = await cluster.client().get_metadata(ledger.ledger_id)
    assert md.ensembles == [(0, ["bookie-0", "bookie-1"]), (10, ["bookie-0", "bookie-2"])]
    for entry_id in range(10, 50):  # what the failed bookie could not take, the spare has
        assert fmt.decode_entry(await cluster.bookies["bookie-2"].read_entry(ledger.ledger_id, entry_id))[2] == (
            b"after%d" % (entry_id - 10)
        )
    await ledger.close()
    reader = await cluster.client().open_ledger(ledger.ledger_id)
    assert reader.last_add_confirmed == 49
    assert await reader.read_entries(0, 49) == [b"before%d" % i for i in range(10)] + [
        b"after%d" % i for i in range(40)
    ]


async def test_two_failures_in_turn_are_two_ensemble_changes(cluster_of):
    cluster = await cluster_of(4)
    ledger = await cluster.client().create_ledger(2, 2, 2)
    assert ledger.metadata.ensemble == ["bookie-0", "bookie-1"]
    ids = []
    for round_ in range(3):
        if round_ == 1:
            cluster.files["bookie-1"].inject("append", errno.ENOSPC, times=None)
        if round_ == 2:
            cluster.files["bookie-0"].inject("append", errno.ENOSPC, times=None)
        ids += await asyncio.gather(*(ledger.add_entry(b"r%d-%d" % (round_, i)) for i in range(20)))
    assert ids == list(range(60))
    md = await cluster.client().get_metadata(ledger.ledger_id)
    assert [first for first, _ in md.ensembles] == [0, 20, 40]
    assert md.ensembles[-1][1] == ["bookie-3", "bookie-2"]
    await ledger.close()
    reader = await cluster.client().open_ledger(ledger.ledger_id)
    assert await reader.read_entries(0, 59) == [b"r%d-%d" % (r, i) for r in range(3) for i in range(20)]


async def test_failures_at_once_with_too_few_spares_fail_adds_clearly(cluster_of):
    cluster = await cluster_of(3)
    ledger = await cluster.client().create_ledger(2, 2, 2)
    await ledger.add_entry(b"first")
    cluster.files["bookie-0"].inject("append", errno.ENOSPC, times=None)
    cluster.files["bookie-1"].inject("append", errno.ENOSPC, times=None)
    results = await asyncio.gather(*(ledger.add_entry(b"x%d" % i) for i in range(10)), return_exceptions=True)
    # One spare replaces one bookie; the second failure leaves no ack quorum of two.
    assert all(isinstance(r, StorageError) for r in results)
    # Recovery fences the last segment (bookie-2 can be fenced) but has no spare to re-write
    # onto either: it refuses rather than close the ledger on one copy.
    with pytest.raises(NotEnoughBookiesError):
        await cluster.client().open_ledger(ledger.ledger_id)
    for bookie_id in ("bookie-0", "bookie-1"):  # space back: writable again
        cluster.files[bookie_id].clear()
        await cluster.bookies[bookie_id].checkpoint()
    reader = await cluster.client().open_ledger(ledger.ledger_id)
    assert (await reader.read_entries(0, 0)) == [b"first"]


async def test_rereplication_copies_a_lost_bookies_entries_of_closed_ledgers(cluster_of):
    from taureau.storage.ledger.rereplicate import rereplicate_all

    cluster = await cluster_of(4)
    client = BookKeeperClient(cluster.store, {b: cluster.bookies[b] for b in ("bookie-0", "bookie-1", "bookie-2")})
    striped = await client.create_ledger(3, 2, 2)  # bookie-0, 1, 2: each entry on two of them
    for i in range(30):
        await striped.add_entry(b"s%d" % i)
    await striped.close()
    still_open = await client.create_ledger(2, 2, 2)
    await still_open.add_entry(b"open")
    available = ["bookie-0", "bookie-2", "bookie-3"]  # bookie-1 is gone
    copied, problems = await rereplicate_all(cluster.store, cluster.bookies, available)
    assert problems == []
    assert [(c.ledger_id, c.lost, c.replacement, c.entries) for c in copied] == [
        (striped.ledger_id, "bookie-1", "bookie-3", 20)  # entries whose write set had bookie-1
    ]
    md = await cluster.client().get_metadata(striped.ledger_id)
    assert md.ensembles == [(0, ["bookie-0", "bookie-3", "bookie-2"])]
    # Every entry now has both copies on registered bookies: drop bookie-1 and read all.
    survivors = {b: cluster.bookies[b] for b in available}
    reader = await BookKeeperClient(cluster.store, survivors).open_ledger(striped.ledger_id)
    assert await reader.read_entries(0, 29) == [b"s%d" % i for i in range(30)]
    for entry_id in range(30):
        holders = [b for b in fmt.write_set(md, entry_id)]
        for b in holders:
            await cluster.bookies[b].read_entry(striped.ledger_id, entry_id)  # raises if absent
    again, _ = await rereplicate_all(cluster.store, cluster.bookies, available)
    assert again == []  # nothing left to do; the open ledger is its writer's business
