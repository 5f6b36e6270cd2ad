"""A checkpoint's cut is taken on the loop in one step; the entries' pages are built by
commit() in the checkpoint's thread (packing them in cut() stalled the loop ~80 ms at 300,000),
one KV row per page of PAGE_ENTRIES entries, merged into the pages earlier checkpoints wrote."""

from __future__ import annotations

import struct

from taureau.storage.bookie.index import PAGE_ENTRIES, Index
from taureau.storage.bookie.kv import MemoryKV, SqliteKV


def checkpoint(index: Index) -> None:
    cut = index.cut({}, {}, [], b"mark")
    index.commit(cut)
    index.committed()


def test_entries_frozen_by_cut_are_written_by_commit_and_found_after(tmp_path) -> None:
    kv = SqliteKV(str(tmp_path / "index.db"))
    index = Index(kv)
    for entry_id in range(100):
        index.put(7, entry_id, 1000 + entry_id)
    index.info(7).last_entry_id = 99
    cut = index.cut({1: 4096}, {1: {7}}, [], b"mark")
    assert all(not key.startswith(b"E") for key, _ in cut.puts)  # nothing per entry yet
    index.put(7, 100, 5000)  # an add after the cut goes to the new memtable, not the cut
    index.commit(cut)
    index.committed()
    assert [index.get(7, e) for e in (0, 99, 100)] == [1000, 1099, 5000]
    reopened = Index(kv)
    assert [reopened.get(7, e) for e in (0, 99, 100)] == [1000, 1099, None]
    kv.close()


def test_striped_adds_and_rewrites_keep_the_newest_location(tmp_path) -> None:
    """Adds with gaps (an ensemble wider than its write quorum) make one run per stripe and
    still bisect; a recovery's rewrite of an earlier entry wins over the first write, in the
    memtable and after the commit (runs are written oldest first)."""
    kv = SqliteKV(str(tmp_path / "index.db"))
    index = Index(kv)
    striped = [e for e in range(30) if e % 3 != 2]  # this bookie holds 2 of every 3
    for e in striped:
        index.put(7, e, 100 + e)
    assert [index.get(7, e) for e in (0, 1, 2, 3, 28, 29, 30)] == [100, 101, None, 103, 128, None, None]
    index.put(7, 4, 9004)  # rewritten by a recovery: behind the last run's end
    index.put(7, 5, 9005)
    assert [index.get(7, e) for e in (3, 4, 5, 6, 7)] == [103, 9004, 9005, 106, 107]
    index.info(7).last_entry_id = 28
    cut = index.cut({}, {}, [], b"mark")
    index.commit(cut)
    index.committed()
    reopened = Index(kv)
    expected = {e: 100 + e for e in striped} | {4: 9004, 5: 9005}
    assert {e: reopened.get(7, e) for e in range(30)} == {e: expected.get(e) for e in range(30)}
    kv.close()


def test_a_failed_cut_goes_back_before_the_adds_made_since(tmp_path) -> None:
    kv = SqliteKV(str(tmp_path / "index.db"))
    index = Index(kv)
    index.info(7)  # the bookie learns of a ledger before its first add
    for e in range(10):
        index.put(7, e, 100 + e)
    index.cut({}, {}, [], b"mark")
    index.put(7, 10, 110)  # after the cut
    index.put(7, 3, 9003)  # a rewrite after the cut must still win once the cut is merged back
    index.failed()
    assert [index.get(7, e) for e in (0, 3, 9, 10)] == [100, 9003, 109, 110]
    cut = index.cut({}, {}, [], b"mark")
    index.commit(cut)
    index.committed()
    assert [Index(kv).get(7, e) for e in (0, 3, 9, 10, 11)] == [100, 9003, 109, 110, None]
    kv.close()


def test_a_checkpoint_writes_a_row_per_page_and_later_ones_extend_the_pages(tmp_path) -> None:
    kv = SqliteKV(str(tmp_path / "index.db"))
    index = Index(kv)
    first = PAGE_ENTRIES * 3 + 100  # ends inside a page the next checkpoint goes on filling
    for e in range(first):
        index.put(7, e, 5000 + e)
    index.info(7).last_entry_id = first - 1
    checkpoint(index)
    assert len(kv.scan(b"P")) == 4 and kv.scan(b"E") == []
    for e in range(first, 2 * first):
        index.put(7, e, 5000 + e)
    index.put(7, 10, 99)  # a recovery's rewrite, in a page written by the first checkpoint
    index.info(7).last_entry_id = 2 * first - 1
    checkpoint(index)
    reopened = Index(kv)
    expected = {e: 5000 + e for e in range(2 * first)} | {10: 99}
    assert {e: reopened.get(7, e) for e in range(2 * first + 5)} == {
        e: expected.get(e) for e in range(2 * first + 5)
    }
    assert len(kv.scan(b"P")) == 7
    kv.close()


def test_entries_an_older_bookie_stored_one_per_row_are_still_found() -> None:
    kv = MemoryKV()
    kv.commit([(struct.pack(">cQQ", b"E", 7, e), struct.pack(">Q", 700 + e)) for e in range(5)])
    index = Index(kv)
    for e in range(5, 8):
        index.put(7, e, 700 + e)
    index.info(7).last_entry_id = 7
    checkpoint(index)
    assert [Index(kv).get(7, e) for e in range(9)] == [700 + e for e in range(8)] + [None]


def test_a_deleted_ledger_loses_its_pages_and_its_old_rows() -> None:
    kv = MemoryKV()
    kv.commit([(struct.pack(">cQQ", b"E", 8, 0), struct.pack(">Q", 800))])
    index = Index(kv)
    for ledger in (7, 8):
        for e in range(1, 2000):
            index.put(ledger, e, 1000 + e)
        index.info(ledger).last_entry_id = 1999
    checkpoint(index)
    index.delete_ledger(8)
    checkpoint(index)
    assert {k[1:9] for k, _ in kv.scan(b"P")} == {struct.pack(">Q", 7)} and kv.scan(b"E") == []
    assert Index(kv).get(7, 1999) == 2999 and Index(kv).get(8, 1) is None
