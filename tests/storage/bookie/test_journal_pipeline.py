"""Journal group commit: a burst during an fsync goes in the next single fsync, no receipt before its fsync."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time

import pytest

from taureau.common.errors import DiskFullError, StorageError
from taureau.storage.bookie import records
from taureau.storage.bookie.files import OSFiles
from taureau.storage.bookie.journal import FILE_HEADER, Journal, JournalPosition
from taureau.testing.crash_files import CrashFiles

pytestmark = pytest.mark.anyio


class HeldFsyncFiles(OSFiles):
    """Real files whose fsyncs (or synced appends, with `synced`) can be held open, recording
    the file size each one covers."""

    def __init__(self, synced: bool = False) -> None:
        self.synced_appends = synced
        self.synced_calls = 0
        self.hold = False
        self.entered = threading.Event()  # an fsync is waiting for `release`
        self.release = threading.Event()
        self.covered: list[int] = []  # file size at the start of each fsync, once it ended
        self.in_flight = 0
        self.most_in_flight = 0

    def fsync(self, handle) -> None:
        size = os.fstat(handle.fd).st_size  # what this fsync makes durable
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hold:
                self.entered.set()
                assert self.release.wait(10), "the test never released the fsync"
            super().fsync(handle)
        finally:
            self.in_flight -= 1
        self.covered.append(size)

    def append_all_synced(self, handle, parts) -> int:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hold:  # before the write: a synced append is one system call
                self.entered.set()
                assert self.release.wait(10), "the test never released the synced append"
            offset = super().append_all_synced(handle, parts)
        finally:
            self.in_flight -= 1
        self.synced_calls += 1
        self.covered.append(os.fstat(handle.fd).st_size)
        return offset


async def _until(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


@pytest.mark.parametrize("synced", [False, True], ids=["write-then-fsync", "synced-append"])
async def test_a_burst_during_an_fsync_goes_in_the_next_single_fsync(tmp_path, synced):
    files = HeldFsyncFiles(synced)
    journal = Journal(files, str(tmp_path))
    list(journal.replay(JournalPosition(0, 0)))
    path = os.path.join(tmp_path, sorted(os.listdir(tmp_path))[0])
    files.covered.clear()  # the new file's header fsync
    files.hold = True
    first = records.encode(1, 0, b"first")
    first_done = journal.add(first)
    await _until(files.entered.is_set, "the first fsync")
    # Two bursts in two turns of the loop while that fsync is held.
    burst = [records.encode(2, i, b"b" * 50) for i in range(100)]
    futures = [journal.add(r) for r in burst[:60]]
    await asyncio.sleep(0)
    futures += [journal.add(r) for r in burst[60:]]
    end = FILE_HEADER.size + len(first) + sum(map(len, burst))
    await asyncio.sleep(0.05)
    # One thread: the bursts wait in its inbox, unwritten, until the held fsync returns (a
    # held synced append has not written its own record yet either).
    assert os.path.getsize(path) == FILE_HEADER.size + (0 if synced else len(first))
    assert not first_done.done()  # its fsync has not returned: no receipt
    assert not any(f.done() for f in futures)
    completed: list[int] = []
    first_done.add_done_callback(lambda f: completed.append(-1))
    for i, f in enumerate(futures):
        f.add_done_callback(lambda f, i=i: completed.append(i))
    files.hold = False
    files.release.set()
    await asyncio.wait_for(asyncio.gather(first_done, *futures), 10)
    # The held fsync covered the first record only; one more fsync covered both bursts.
    assert files.covered == [FILE_HEADER.size + len(first), end]
    # Synced: two rounds, each one call (the two bursts are one call too), and no fsync at all.
    assert files.synced_calls == (2 if synced else 0)
    assert files.most_in_flight == 1
    assert completed == [-1, *range(100)]  # receipts in the order of the adds
    assert journal.written == JournalPosition(journal.written.seq, end)
    await journal.close()


class SlowFsyncCrashFiles(CrashFiles):
    """Crashable files whose fsyncs take a while, so writes overlap them."""

    def fsync(self, handle) -> None:
        time.sleep(0.003)
        super().fsync(handle)


@pytest.mark.parametrize("synced", [False, True], ids=["write-then-fsync", "synced-append"])
async def test_no_record_is_acknowledged_before_a_crash_would_keep_it(synced):
    files = SlowFsyncCrashFiles(synced_appends=synced)
    journal = Journal(files, "/j", max_file_size=4096)  # small files: rolls happen mid-pipeline
    list(journal.replay(JournalPosition(0, 0)))
    lost: list[bytes] = []

    def check(record: bytes, future: asyncio.Future[None]) -> None:
        # At the receipt, a crash would leave the durable images: the record must be in one.
        if not any(record in files.durable_image(f"/j/{n}") for n in files.listdir("/j")):
            lost.append(record)

    added: list[bytes] = []
    futures = []
    for turn in range(40):
        for i in range(15):
            record = records.encode(turn, i, b"%d.%d" % (turn, i) + b"x" * 40)
            future = journal.add(record)
            future.add_done_callback(lambda f, r=record: check(r, f))
            added.append(record)
            futures.append(future)
        await asyncio.sleep(0.001 if turn % 3 else 0)
    await asyncio.gather(*futures)
    assert lost == []
    assert files.fsyncs < 40 + 40  # batches shared fsyncs (roll headers fsync too)
    files.crash("drop")
    again = Journal(files, "/j")
    replayed = [records.encode(lid, eid, data) for lid, eid, data in again.replay(JournalPosition(0, 0))]
    assert replayed == added
    await again.close()


class BrokenFsyncFiles(CrashFiles):
    """An fsync that raises something other than OSError (a bug below the journal)."""

    broken = False

    def fsync(self, handle) -> None:
        if self.broken:
            raise ValueError("not an OSError")
        super().fsync(handle)


@pytest.mark.parametrize("failure", ["EIO", "not-an-OSError"])
async def test_an_fsync_failure_fails_every_written_batch_and_later_adds(failure):
    files = BrokenFsyncFiles()
    journal = Journal(files, "/j")
    list(journal.replay(JournalPosition(0, 0)))
    await journal.add(records.encode(1, 0, b"ok"))
    if failure == "EIO":
        files.inject("fsync", errno.EIO, times=None)
    else:
        files.broken = True
    failing = [journal.add(records.encode(1, i, b"late")) for i in range(1, 20)]
    results = await asyncio.wait_for(asyncio.gather(*failing, return_exceptions=True), 10)
    assert all(type(r) is StorageError for r in results)
    with pytest.raises(StorageError):
        journal.add(records.encode(1, 99, b"after"))
    files.clear()
    files.broken = False
    await journal.close()


class FailingSyncedFiles(OSFiles):
    """Real files with synced appends; the next one gets part of its bytes in, then fails."""

    synced_appends = True

    def __init__(self) -> None:
        self.fail_with: int | None = None

    def append_all_synced(self, handle, parts) -> int:
        if self.fail_with is not None:
            err, self.fail_with = self.fail_with, None
            self.pwrite_all(handle, [bytes(parts[0])[: len(parts[0]) // 2]], handle.size)
            raise OSError(err, os.strerror(err))
        return super().append_all_synced(handle, parts)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
async def test_a_failed_synced_append_fails_its_round_and_only_a_full_disk_lets_the_journal_go_on(tmp_path, err):
    files = FailingSyncedFiles()
    journal = Journal(files, str(tmp_path))
    list(journal.replay(JournalPosition(0, 0)))
    await journal.add(records.encode(1, 0, b"before"))
    files.fail_with = err
    with pytest.raises(StorageError) as refused:
        await journal.add(records.encode(1, 1, b"refused" * 10))
    if err == errno.ENOSPC:
        # Refused before it was written: what got in is cut off, and the journal goes on.
        assert type(refused.value) is DiskFullError
        await journal.add(records.encode(1, 2, b"after"))
        kept = [(1, 0, b"before"), (1, 2, b"after")]
    else:
        # It may have reached the page cache and not the disk: as a failed fsync, no more adds.
        assert type(refused.value) is StorageError
        with pytest.raises(StorageError):
            journal.add(records.encode(1, 2, b"after"))
        kept = [(1, 0, b"before")]
    await journal.close()
    again = Journal(OSFiles(), str(tmp_path))
    assert list(again.replay(JournalPosition(0, 0))) == kept  # the torn half never reads as a record
    again._files.close(again._handle)


async def test_a_batch_whose_adders_were_cancelled_does_not_strand_the_next_ones(tmp_path):
    """Cancelling an adder cancels its batch's shared future; the delivery of that batch's
    round must still complete the batches after it (it raised, and they waited for ever)."""
    files = HeldFsyncFiles()
    journal = Journal(files, str(tmp_path))
    list(journal.replay(JournalPosition(0, 0)))
    files.hold = True
    first = journal.add(records.encode(1, 0, b"held"))
    await _until(files.entered.is_set, "the first fsync")
    cancelled = journal.add(records.encode(1, 1, b"its adder goes away"))
    await asyncio.sleep(0)  # the next add is a batch of its own, in the same round
    kept = journal.add(records.encode(1, 2, b"still awaited"))
    await asyncio.sleep(0.01)
    assert cancelled is not kept
    cancelled.cancel()
    files.hold = False
    files.release.set()
    await asyncio.wait_for(asyncio.gather(first, kept), 5)
    assert journal.written.offset == os.path.getsize(os.path.join(tmp_path, sorted(os.listdir(tmp_path))[-1]))
    await journal.close()
