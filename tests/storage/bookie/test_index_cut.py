"""A checkpoint's cut is taken on the loop in one step; the entries' keys are encoded by
commit() in the checkpoint's thread (packing them in cut() stalled the loop ~80 ms at 300,000)."""

from __future__ import annotations

from taureau.storage.bookie.index import Index
from taureau.storage.bookie.kv import SqliteKV


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
