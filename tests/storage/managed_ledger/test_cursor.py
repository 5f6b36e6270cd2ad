"""Cursors: reads, individual and cumulative acks, backlog, reset/skip/clear/peek, waiting reads."""

from __future__ import annotations

import asyncio

import pytest

from taureau.common.errors import ManagedLedgerClosedError, NoSuchEntryError
from taureau.storage.managed_ledger import InitialPosition
from taureau.storage.position import EARLIEST, LATEST, Position

pytestmark = pytest.mark.anyio

NAME = "t/ns/persistent/topic"


async def _ml_with(make_factory, n: int, per_ledger: int = 4):
    # Retention "forever": trimming has its own tests; here every entry stays readable.
    ml = await make_factory(
        max_entries_per_ledger=per_ledger, retention_time_s=-1, retention_size_bytes=-1
    ).open(NAME)
    cursor = await ml.open_cursor("sub", InitialPosition.EARLIEST)
    positions = [await ml.add_entry(b"e%d" % i) for i in range(n)]
    return ml, cursor, positions


async def test_read_advances_and_skips_acked(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 10)
    assert cursor.backlog == 10 and cursor.has_more_entries()
    first = await cursor.read_entries(3)
    assert [e.position for e in first] == pos[:3]
    await cursor.delete([pos[3], pos[4], pos[6]])
    rest = await cursor.read_entries(100)
    assert [e.position for e in rest] == [pos[5], pos[7], pos[8], pos[9]]
    assert not cursor.has_more_entries()
    assert await cursor.read_entries(5) == []
    assert cursor.backlog == 7


async def test_individual_acks_with_gaps_then_mark_delete_advances(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 12, per_ledger=4)
    await cursor.delete([pos[1], pos[2], pos[5], pos[9]])
    assert cursor.mark_delete_position == ml.ledgers.previous(pos[0])
    assert cursor.individually_deleted_ranges() == [(pos[1], pos[2]), (pos[5], pos[5]), (pos[9], pos[9])]
    assert cursor.backlog == 8
    assert cursor.is_acked(pos[5]) and not cursor.is_acked(pos[4])
    # Acking entry 0 folds 1-2 in; entry 3 ends ledger one, so 4 bridges into ledger two.
    await cursor.delete([pos[0]])
    assert cursor.mark_delete_position == pos[2]
    await cursor.delete([pos[3], pos[4]])
    assert cursor.mark_delete_position == pos[5]  # crossed the ledger boundary over 3 -> 4 -> 5
    assert cursor.individually_deleted_ranges() == [(pos[9], pos[9])]
    assert cursor.backlog == 5
    await cursor.delete([pos[6], pos[7], pos[8]])
    assert cursor.mark_delete_position == pos[9] and cursor.individually_deleted_ranges() == []
    assert cursor.backlog == 2
    stats = ml.internal_stats()["cursors"]["sub"]
    assert stats["markDeletePosition"] == str(pos[9]) and stats["messagesConsumedCounter"] == 10


async def test_mark_delete_clears_ranges_behind_it(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 10)
    await cursor.delete([pos[2], pos[6], pos[8]])
    await cursor.mark_delete(pos[6])
    assert cursor.mark_delete_position == pos[6]
    assert cursor.individually_deleted_ranges() == [(pos[8], pos[8])]
    assert cursor.backlog == 2
    await cursor.mark_delete(pos[1])  # behind: no effect
    assert cursor.mark_delete_position == pos[6]
    await cursor.mark_delete(pos[7])
    assert cursor.mark_delete_position == pos[8]
    assert ml.internal_stats()["cursors"]["sub"]["messagesConsumedCounter"] == 9


async def test_ranges_show_in_internal_stats(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 6, per_ledger=10)
    await cursor.delete([pos[2], pos[3], pos[5]])
    stats = ml.internal_stats()["cursors"]["sub"]
    lid = pos[0].ledger_id
    assert stats["individuallyDeletedMessages"] == f"[({lid}:1..{lid}:3], ({lid}:4..{lid}:5]]"


async def test_reset_rewind_seek(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 8)
    await cursor.read_entries(8)
    await cursor.delete([pos[0], pos[1], pos[5]])
    cursor.rewind()
    assert cursor.read_position == pos[2]
    cursor.seek(pos[6])
    assert [e.position for e in await cursor.read_entries(1)] == [pos[6]]
    cursor.seek(pos[0])  # before the mark-delete position: clamped
    assert cursor.read_position == pos[2]
    await cursor.reset(pos[4])
    assert cursor.mark_delete_position == ml.ledgers.previous(pos[4])
    assert cursor.individually_deleted_ranges() == []
    assert [e.position for e in await cursor.read_entries(2)] == [pos[4], pos[5]]
    await cursor.reset(EARLIEST)
    assert cursor.backlog == 8
    await cursor.reset(LATEST)
    assert cursor.backlog == 0 and not cursor.has_more_entries()


async def test_skip_entries_hops_over_acked(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 12, per_ledger=4)
    await cursor.delete([pos[1], pos[2], pos[6]])
    await cursor.skip_entries(3)  # 0, 3, 4 (1 and 2 are acked)
    assert cursor.mark_delete_position == pos[4]
    assert cursor.backlog == 6
    await cursor.skip_entries(2)  # 5, 7 (6 is acked)
    assert cursor.mark_delete_position == pos[7]
    await cursor.skip_entries(0)
    assert cursor.mark_delete_position == pos[7]
    await cursor.skip_entries(100)
    assert cursor.mark_delete_position == pos[11] and cursor.backlog == 0


async def test_clear_backlog_and_peek(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 6)
    await cursor.delete([pos[0], pos[2]])
    peeked = await cursor.peek(3)
    assert [e.position for e in peeked] == [pos[1], pos[3], pos[4]]
    assert cursor.read_position == pos[1]  # peek moved nothing
    assert cursor.backlog == 4
    await cursor.clear_backlog()
    assert cursor.backlog == 0 and cursor.mark_delete_position == pos[5]
    assert await cursor.peek(3) == []


async def test_latest_cursor_sees_only_new_entries(make_factory):
    ml = await make_factory().open(NAME)
    await ml.add_entry(b"old")
    cursor = await ml.open_cursor("late")  # LATEST by default
    assert cursor.backlog == 0
    new = await ml.add_entry(b"new")
    assert [e.position for e in await cursor.read_entries(5)] == [new]
    assert await ml.open_cursor("late") is cursor


async def test_non_durable_cursors(make_factory):
    ml, _, pos = await _ml_with(make_factory, 6)
    early = ml.new_non_durable_cursor("r1", EARLIEST)
    assert [e.position for e in await early.read_entries(2)] == pos[:2]
    at = ml.new_non_durable_cursor("r2", pos[3])  # inclusive
    assert [e.position for e in await at.read_entries(10)] == pos[3:]
    latest = ml.new_non_durable_cursor("r3", LATEST)
    assert await latest.read_entries(10) == []
    new = await ml.add_entry(b"new")
    assert [e.position for e in await latest.read_entries(10)] == [new]
    assert not early.durable and "r1" in ml.cursors
    await early.close()
    assert "r1" not in ml.cursors


async def test_read_or_wait_wakes_on_add(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 2)
    assert len(await cursor.read_entries(10)) == 2
    waiting = asyncio.ensure_future(cursor.read_entries_or_wait(10))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    new = await ml.add_entry(b"wake")
    entries = await asyncio.wait_for(waiting, 1)
    assert [e.position for e in entries] == [new]


async def test_read_or_wait_returns_at_once_when_entries_exist(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 3)
    assert [e.position for e in await cursor.read_entries_or_wait(2)] == pos[:2]


async def test_read_or_wait_cancellation_leaves_cursor_usable(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 1)
    await cursor.read_entries(10)
    waiting = asyncio.ensure_future(cursor.read_entries_or_wait(10))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not ml._waiters  # the waiter was removed
    new = await ml.add_entry(b"after")
    assert [e.position for e in await cursor.read_entries_or_wait(10)] == [new]


async def test_read_or_wait_fails_when_cursor_closes(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 0)
    waiting = asyncio.ensure_future(cursor.read_entries_or_wait(10))
    await asyncio.sleep(0.01)
    await cursor.close()
    with pytest.raises(ManagedLedgerClosedError):
        await waiting


async def test_tailing_reads_come_from_the_cache(make_factory):
    ml = await make_factory().open(NAME)
    cursor = await ml.open_cursor("tail")
    for i in range(50):
        await ml.add_entry(b"%d" % i)
        assert len(await cursor.read_entries(10)) == 1
    assert ml._reader.ledger_reads == 0
    assert len(ml.cache) == 0  # every cursor read past: evicted


async def test_backlog_reads_batch_from_ledgers(make_factory):
    ml = await make_factory(cache_size_bytes=0, max_entries_per_ledger=100).open(NAME)
    cursor = await ml.open_cursor("s", InitialPosition.EARLIEST)
    for i in range(250):
        await ml.add_entry(b"%d" % i)
    entries = await cursor.read_entries(250)
    assert [e.data for e in entries] == [b"%d" % i for i in range(250)]
    assert ml._reader.ledger_reads == 3  # one batch per ledger


async def test_delete_cursor(make_factory, store):
    ml, cursor, pos = await _ml_with(make_factory, 2)
    await ml.delete_cursor("sub")
    assert "sub" not in ml.cursors
    assert await store.children(ml.path) == []
    with pytest.raises(ManagedLedgerClosedError):
        await cursor.read_entries(1)
    again = await ml.open_cursor("sub", InitialPosition.EARLIEST)
    assert again is not cursor and again.backlog == 2
    assert again.mark_delete_position < Position(pos[0].ledger_id, 0)


async def test_concurrent_opens_of_a_new_cursor_share_one_create(make_factory):
    ml = await make_factory().open("t/ns/persistent/concurrent-open")
    first, second = await asyncio.gather(ml.open_cursor("sub"), ml.open_cursor("sub"))
    assert first is second
    assert list(ml.cursors) == ["sub"]


# 4 per ledger: ledger one holds 0-3, the one being written 4-5 (acks in a closed ledger take
# the general path); 100: all six in the ledger being written (in-order acks move the
# mark-delete position directly).
@pytest.mark.parametrize("per_ledger", [4, 100])
async def test_acks_in_order_move_the_mark_delete_position_and_others_make_ranges(make_factory, per_ledger):
    ml, cursor, pos = await _ml_with(make_factory, 6, per_ledger=per_ledger)
    cursor.delete_now([pos[0]])
    cursor.delete_now([pos[1], pos[2]])
    assert cursor.mark_delete_position == pos[2]
    assert cursor.individually_deleted_ranges() == [] and cursor.messages_consumed == 3
    # Not in order: a range, folded into the mark-delete position once the gap is acked.
    cursor.delete_now([pos[5]])
    assert cursor.mark_delete_position == pos[2]
    assert cursor.individually_deleted_ranges() == [(pos[5], pos[5])]
    cursor.delete_now([pos[4], pos[3]])
    assert cursor.mark_delete_position == pos[5]
    assert cursor.individually_deleted_ranges() == [] and cursor.messages_consumed == 6
    assert cursor.backlog == 0


async def test_an_in_order_ack_beyond_the_last_entry_is_refused_and_changes_nothing(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 2, per_ledger=10)
    beyond = Position(pos[1].ledger_id, pos[1].entry_id + 1)
    with pytest.raises(NoSuchEntryError):
        cursor.delete_now([pos[0], pos[1], beyond])
    assert cursor.mark_delete_position == ml.ledgers.previous(pos[0])
    assert cursor.messages_consumed == 0 and cursor.backlog == 2


# 4 per ledger: the acks cross from a closed ledger into the one being written (the general
# path); 100: all in the ledger being written (a cumulative ack moves the position directly).
@pytest.mark.parametrize("per_ledger", [4, 100])
async def test_cumulative_acks_count_what_they_pass_and_refuse_what_is_not_stored(make_factory, per_ledger):
    ml, cursor, pos = await _ml_with(make_factory, 6, per_ledger=per_ledger)
    cursor.mark_delete_now(pos[1])
    assert cursor.mark_delete_position == pos[1] and cursor.messages_consumed == 2
    cursor.mark_delete_now(pos[0])  # behind the mark-delete position: nothing changes
    assert cursor.mark_delete_position == pos[1] and cursor.messages_consumed == 2
    beyond = Position(pos[5].ledger_id, pos[5].entry_id + 1)
    with pytest.raises(NoSuchEntryError):
        cursor.mark_delete_now(beyond)
    assert cursor.mark_delete_position == pos[1] and cursor.messages_consumed == 2
    cursor.mark_delete_now(pos[4])
    assert cursor.mark_delete_position == pos[4] and cursor.messages_consumed == 5
    assert cursor.backlog == 1 and [e.position for e in await cursor.read_entries(10)] == [pos[5]]
    # With an entry acknowledged ahead, a cumulative ack up to it folds it in.
    cursor.delete_now([pos[5]])
    assert cursor.mark_delete_position == pos[5] and cursor.messages_consumed == 6


async def test_a_cumulative_ack_with_a_range_ahead_takes_the_range_in(make_factory):
    ml, cursor, pos = await _ml_with(make_factory, 6, per_ledger=100)
    cursor.delete_now([pos[3]])
    assert cursor.individually_deleted_ranges() == [(pos[3], pos[3])]
    cursor.mark_delete_now(pos[2])  # the range starts right after: folded into the position
    assert cursor.mark_delete_position == pos[3] and cursor.individually_deleted_ranges() == []
    assert cursor.messages_consumed == 4 and cursor.backlog == 2


async def test_cached_reads_from_the_tail_stop_at_the_end_and_skip_acked_entries(make_factory):
    ml = await make_factory(max_entries_per_ledger=100).open(NAME)
    cursor = await ml.open_cursor("tail")
    pos = [await ml.add_entry(b"%d" % i) for i in range(3)]
    assert [e.position for e in cursor.read_cached_entries(2)] == pos[:2]
    assert [e.position for e in cursor.read_cached_entries(10)] == pos[2:]
    assert cursor.read_cached_entries(10) == [] and not cursor.has_more_entries()
    pos += [await ml.add_entry(b"%d" % i) for i in range(3, 6)]
    cursor.delete_now([pos[4]])  # acked ahead of the read position: the read skips it
    assert [e.position for e in cursor.read_cached_entries(10)] == [pos[3], pos[5]]
    assert cursor.read_position == ml.ledgers.end
    assert ml._reader.ledger_reads == 0


async def test_a_cached_read_of_an_entry_the_cache_dropped_says_so(make_factory):
    ml = await make_factory(cache_size_bytes=0, max_entries_per_ledger=100).open(NAME)
    cursor = await ml.open_cursor("tail")
    first = await ml.add_entry(b"x")
    assert cursor.read_cached_entries(10) is None  # the caller reads the ledger instead
    assert [e.position for e in await cursor.read_entries(10)] == [first]
