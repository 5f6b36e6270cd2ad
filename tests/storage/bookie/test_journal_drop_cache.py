"""The journal drops a file's pages from the page cache after each fsync of it (its bytes are
read again only by a replay after a crash): never before that fsync, never without fsync, and
what it wrote replays whole."""

from __future__ import annotations

import os

import pytest

from taureau.storage.bookie import records
from taureau.storage.bookie.files import OSFiles
from taureau.storage.bookie.journal import Journal, JournalPosition

pytestmark = pytest.mark.anyio


class RecordingFiles(OSFiles):
    """Real files that log each fsync and drop, with the file and the batches acknowledged then."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []  # (what, fd, batches acknowledged)
        self.acked = 0

    def fsync(self, handle) -> None:
        super().fsync(handle)
        self.events.append(("fsync", handle.fd, self.acked))

    def append_all_synced(self, handle, parts) -> int:  # a journal round: written and synced
        offset = super().append_all_synced(handle, parts)
        self.events.append(("fsync", handle.fd, self.acked))
        return offset

    def drop_cache(self, handle) -> None:
        self.events.append(("drop", handle.fd, self.acked))
        super().drop_cache(handle)


async def _add_batches(journal: Journal, files: RecordingFiles, count: int, size: int) -> None:
    for i in range(count):  # one batch a loop turn, each awaited
        await journal.add(records.encode(1, i, os.urandom(size)))
        files.acked += 1


@pytest.mark.parametrize("max_file_size", [64 << 20, 300_000])  # one file, or a roll every few batches
async def test_pages_are_dropped_after_their_fsync(tmp_path, max_file_size) -> None:
    files = RecordingFiles()
    journal = Journal(files, str(tmp_path), max_file_size=max_file_size)
    list(journal.replay(JournalPosition(0, 0)))
    await _add_batches(journal, files, 12, 100_000)
    await journal.close()
    drops = [e for e in files.events if e[0] == "drop"]
    assert drops, "no page was dropped"
    for i, (what, fd, _) in enumerate(files.events):
        if what == "drop":  # the same file was fsynced just before (the journal thread's own order)
            assert ("fsync", fd) in [(w, f) for w, f, _ in files.events[:i]]
    again = Journal(OSFiles(), str(tmp_path))
    replayed = list(again.replay(JournalPosition(0, 0)))
    again._files.close(again._handle)  # no batch was added: no threads to stop
    assert [(lid, eid) for lid, eid, _ in replayed] == [(1, i) for i in range(12)]


async def test_without_fsync_nothing_is_dropped(tmp_path) -> None:
    files = RecordingFiles()
    journal = Journal(files, str(tmp_path), fsync=False)
    list(journal.replay(JournalPosition(0, 0)))
    await _add_batches(journal, files, 5, 1000)
    await journal.close()
    assert [e for e in files.events if e[0] == "drop"] == []


def test_drop_cache_leaves_the_bytes_readable(tmp_path) -> None:
    files = OSFiles()
    handle = files.open(str(tmp_path / "f"))
    data = os.urandom(3 << 20)
    files.append(handle, data)
    files.fsync(handle)
    files.drop_cache(handle)
    assert files.pread(handle, 0, len(data)) == data
    files.close(handle)


def test_a_drop_keeps_the_pages_near_the_end_and_drops_each_range_once(tmp_path, monkeypatch) -> None:
    """The last, partly written page must stay: a small append into a dropped page makes the
    kernel read it back from the disk first. Only whole pages DROP_LAG_BYTES behind the end go."""
    from taureau.storage.bookie import files as files_module

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(files_module, "_FADVISE", lambda fd, offset, length, advice: calls.append((offset, length)))
    page, lag = files_module._PAGE, files_module.DROP_LAG_BYTES
    files = OSFiles()
    handle = files.open(str(tmp_path / "j"))
    files.append_all(handle, [b"x" * 1000])
    files.drop_cache(handle)
    assert calls == []  # nothing is that far behind the end yet
    files.append_all(handle, [os.urandom(lag + 3 * page + 100)])
    files.drop_cache(handle)
    end = (1000 + lag + 3 * page + 100 - lag) // page * page
    assert calls == [(0, end)] and end == 3 * page
    files.drop_cache(handle)
    assert len(calls) == 1  # nothing new behind the end: no second call over the same range
    files.append_all(handle, [b"y" * (2 * page)])
    files.drop_cache(handle)
    assert calls[1] == (end, 2 * page)
    files.truncate(handle, page + 10)
    assert handle.dropped == page  # a rewrite after a truncate may be dropped again
    files.close(handle)
