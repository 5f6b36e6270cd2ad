"""Journal: group commit, torn-write matrix on replay, rolling and trimming."""

from __future__ import annotations

import asyncio
import os

import pytest

from taureau.common.errors import CorruptedDataError
from taureau.storage.bookie import records
from taureau.storage.bookie.files import OSFiles
from taureau.storage.bookie.journal import FILE_HEADER, Journal, JournalPosition
from taureau.testing.crash_files import CrashFiles

pytestmark = pytest.mark.anyio


async def _write(directory, entries, **kw) -> Journal:
    journal = Journal(OSFiles(), str(directory), **kw)
    list(journal.replay(JournalPosition(0, 0)))
    await asyncio.gather(*(journal.add(records.encode(lid, eid, data)) for lid, eid, data in entries))
    await journal.close()
    return journal


def _replay(directory) -> list[tuple[int, int, bytes]]:
    journal = Journal(OSFiles(), str(directory))
    out = list(journal.replay(JournalPosition(0, 0)))
    journal._files.close(journal._handle)  # no batch was added: no threads to stop
    return out


def _only_file(directory) -> str:
    names = sorted(n for n in os.listdir(directory) if n.endswith(".txn"))
    return os.path.join(directory, names[0])


ENTRIES = [(1, 0, b"a" * 10), (1, 1, b"b" * 20), (2, 0, b"c" * 30)]
LAST = 8 + 16 + 30  # size of the last record


@pytest.mark.parametrize(
    ("tear", "survivors"),
    [
        pytest.param("empty", 0, id="empty"),
        pytest.param("header-only", 0, id="header-only"),
        pytest.param("junk-tail", 3, id="junk-tail"),
        pytest.param("truncated-length", 2, id="truncated-length"),
        pytest.param("truncated-entry", 2, id="truncated-entry"),
        pytest.param("bad-crc", 2, id="flipped-byte"),
    ],
)
async def test_torn_write_matrix(tmp_path, tear, survivors):
    await _write(tmp_path, ENTRIES)
    path = _only_file(tmp_path)
    size = os.path.getsize(path)
    if tear == "empty":
        os.truncate(path, 0)
    elif tear == "header-only":
        os.truncate(path, FILE_HEADER.size)
    elif tear == "junk-tail":
        with open(path, "ab") as f:
            f.write(b"\x00\x00\x00\x30" + os.urandom(20))
    elif tear == "truncated-length":
        os.truncate(path, size - LAST + 2)
    elif tear == "truncated-entry":
        os.truncate(path, size - 5)
    else:
        with open(path, "r+b") as f:
            f.seek(size - 1)
            f.write(b"Z")
    assert _replay(tmp_path) == ENTRIES[:survivors]
    # The tail was cut: appending and replaying again keeps old and new records in order.
    journal = await _write(tmp_path, [(9, 0, b"new")])
    assert journal.written.seq >= 1
    assert _replay(tmp_path) == [*ENTRIES[:survivors], (9, 0, b"new")]


async def test_foreign_journal_file_is_refused(tmp_path):
    (tmp_path / f"journal-{1:020d}.txn").write_bytes(b"JUNK" + bytes(40))
    with pytest.raises(CorruptedDataError):
        _replay(tmp_path)


async def test_group_commit_shares_fsyncs():
    files = CrashFiles()
    journal = Journal(files, "/j")
    list(journal.replay(JournalPosition(0, 0)))
    before = files.fsyncs
    await asyncio.gather(*(journal.add(records.encode(1, i, b"x")) for i in range(1000)))
    assert files.fsyncs - before <= 3
    await journal.close()


async def test_roll_and_trim(tmp_path):
    journal = Journal(OSFiles(), str(tmp_path), max_file_size=200)
    list(journal.replay(JournalPosition(0, 0)))
    for i in range(20):
        await journal.add(records.encode(1, i, b"y" * 30))
    files = sorted(os.listdir(tmp_path))
    assert len(files) > 3
    await journal.trim(journal.written)
    assert sorted(os.listdir(tmp_path)) == files[-1:]
    await journal.close()
    # Only the last file is left: replay yields its records, the trimmed ones are gone.
    left = [e for _, e, _ in _replay(tmp_path)]
    assert 0 < len(left) < 20 and left == list(range(20 - len(left), 20))


async def test_replay_from_a_checkpoint_position(tmp_path):
    journal = Journal(OSFiles(), str(tmp_path))
    list(journal.replay(JournalPosition(0, 0)))
    await journal.add(records.encode(1, 0, b"before"))
    mark = journal.written
    await journal.add(records.encode(1, 1, b"after"))
    await journal.close()
    again = Journal(OSFiles(), str(tmp_path))
    assert list(again.replay(mark)) == [(1, 1, b"after")]
    await again.close()


@pytest.mark.parametrize("fsync", [True, False])
async def test_the_journal_times_its_fsync_rounds_and_each_batch_until_it_is_durable(tmp_path, fsync):
    journal = Journal(OSFiles(), str(tmp_path), fsync=fsync)
    list(journal.replay(JournalPosition(0, 0)))
    for entry_id in range(3):  # one batch each: every add is awaited before the next
        await journal.add(records.encode(1, entry_id, b"x" * 100))
    await journal.close()
    assert journal.add_seconds.n == 3
    assert 0 < journal.add_seconds.total < 10
    if fsync:
        assert 1 <= journal.sync_seconds.n <= 3  # one fsync per round; a round may hold several batches
        assert journal.sync_seconds.total <= journal.add_seconds.total
    else:
        assert journal.sync_seconds.n == 0
    # Its two waits, each a part of the batch's add: for the journal's thread, then for the loop.
    assert journal.inbox_seconds.n == journal.hand_back_seconds.n == 3
    assert 0 <= journal.inbox_seconds.total + journal.hand_back_seconds.total <= journal.add_seconds.total
    lines = journal.add_seconds.lines("taureau_journal_add_seconds", 'bookie="b"')
    assert 'taureau_journal_add_seconds_bucket{bookie="b",le="0.0001"}' in lines[0]  # the journal's finer buckets
    assert 'taureau_journal_add_seconds_bucket{bookie="b",le="+Inf"} 3' in lines
    assert 'taureau_journal_add_seconds_count{bookie="b"} 3' in lines
