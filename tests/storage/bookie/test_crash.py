"""Bookie on CrashFiles: crashes keep every acknowledged entry; ENOSPC / EIO are typed errors."""

from __future__ import annotations

import asyncio
import errno
import random

import pytest

from taureau.common.errors import DiskFullError, StorageError
from taureau.storage.bookie import Bookie, BookieState
from taureau.testing.crash_files import CrashFiles

pytestmark = pytest.mark.anyio


async def _bookie(files: CrashFiles, **kw) -> Bookie:
    bookie = Bookie("/data/bookie", files=files, checkpoint_interval_s=None, **kw)
    await bookie.start()
    return bookie


async def _threads_idle(bookie: Bookie) -> None:
    # Crash only while the journal's and the entry log's threads are idle, so the crash never
    # races a write in progress.
    while not (bookie._journal.idle and bookie._entry_log.idle):
        await asyncio.sleep(0.001)


def _payload(ledger_id: int, entry_id: int) -> bytes:
    return b"%d:%d:" % (ledger_id, entry_id) + bytes(
        random.Random(entry_id).randrange(256) for _ in range(37)
    )


@pytest.mark.parametrize("synced", [False, True], ids=["write-then-fsync", "synced-append"])
@pytest.mark.parametrize("mode", ["drop", "tear"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_crash_keeps_every_acked_entry(mode, seed, synced):
    rng = random.Random(seed)
    files = CrashFiles(seed=seed, synced_appends=synced)
    acked: set[tuple[int, int]] = set()

    async def add(bookie: Bookie, ledger_id: int, entry_id: int) -> None:
        await bookie.add_entry(ledger_id, entry_id, _payload(ledger_id, entry_id))
        acked.add((ledger_id, entry_id))

    next_id = {1: 0, 2: 0, 3: 0}
    for _round in range(3):
        bookie = await _bookie(files, journal_max_file_size=2048, entry_log_max_file_size=4096)
        for _step in range(rng.randint(3, 6)):
            batch = []
            for _ in range(rng.randint(1, 40)):
                ledger_id = rng.choice([1, 2, 3])
                batch.append(add(bookie, ledger_id, next_id[ledger_id]))
                next_id[ledger_id] += 1
            await asyncio.gather(*batch)
            if rng.random() < 0.4:
                await bookie.checkpoint()
        await _threads_idle(bookie)
        # Adds queued but not yet written when the power goes: they were never acknowledged.
        doomed = [asyncio.ensure_future(add(bookie, 1, next_id[1] + i)) for i in range(5)]
        next_id[1] += 5
        before = files.paths()
        files.crash(mode)
        await asyncio.gather(*doomed, return_exceptions=True)
        # Nothing reached a file of before the crash. (A roll after it may create an entry log
        # and write its header: the entry log's writes fail in its thread, after the roll. A
        # real crash ends the process; a restart removes logs the index does not know.)
        assert files.unsynced_bytes(before) == 0

        recovered = await _bookie(files)
        for ledger_id, entry_id in sorted(acked):
            assert await recovered.read_entry(ledger_id, entry_id) == _payload(ledger_id, entry_id)
        for ledger_id in (1, 2, 3):
            assert await recovered.read_last_entry_id(ledger_id) >= max(
                (e for lid, e in acked if lid == ledger_id), default=-1
            )
        await recovered.close()


async def test_fence_survives_a_crash():
    files = CrashFiles()
    bookie = await _bookie(files)
    await bookie.add_entry(9, 0, b"a")
    await bookie.fence(9)
    files.crash("drop")
    again = await _bookie(files)
    with pytest.raises(StorageError, match="fenced"):
        await again.add_entry(9, 1, b"zombie")
    await again.close()


async def test_enospc_in_journal_is_refused_and_reads_continue():
    files = CrashFiles()
    bookie = await _bookie(files)
    for i in range(10):
        await bookie.add_entry(1, i, b"ok%d" % i)
    files.inject("append", errno.ENOSPC, times=None)
    with pytest.raises(DiskFullError, match="disk full"):
        await bookie.add_entry(1, 10, b"lost")
    assert bookie.state is BookieState.READ_ONLY
    with pytest.raises(DiskFullError, match="read-only"):
        await bookie.add_entry(1, 11, b"refused")
    assert [await bookie.read_entry(1, i) for i in range(10)] == [b"ok%d" % i for i in range(10)]
    # Space comes back: the next successful checkpoint makes the bookie writable again.
    files.clear()
    await bookie.checkpoint()
    assert bookie.state is BookieState.RUNNING
    await bookie.add_entry(1, 12, b"after")
    files.crash("tear")
    again = await _bookie(files)
    assert [await again.read_entry(1, i) for i in range(10)] == [b"ok%d" % i for i in range(10)]
    assert await again.read_entry(1, 12) == b"after"
    await again.close()


async def test_journal_fsync_failure_is_fatal_for_writes():
    files = CrashFiles()
    bookie = await _bookie(files)
    await bookie.add_entry(1, 0, b"kept")
    files.inject("fsync", errno.EIO, times=1)
    with pytest.raises(StorageError) as caught:
        await bookie.add_entry(1, 1, b"unsure")
    assert not isinstance(caught.value, DiskFullError)
    await bookie.checkpoint()  # succeeds, but a journal that failed an fsync is never trusted again
    assert bookie.state is BookieState.READ_ONLY
    assert await bookie.read_entry(1, 0) == b"kept"
    files.crash("drop")
    again = await _bookie(files)
    assert await again.read_entry(1, 0) == b"kept"
    await again.add_entry(1, 1, b"fresh journal")
    await again.close()


async def test_enospc_in_entry_log_flush_acks_nothing():
    files = CrashFiles()
    bookie = await _bookie(files)
    bookie._entry_log._buffer_size = 256  # flush on nearly every add
    for i in range(5):
        await bookie.add_entry(2, i, b"z" * 100)
    files.inject("pwrite", errno.ENOSPC, times=None)
    with pytest.raises(DiskFullError):
        for i in range(5, 50):
            await bookie.add_entry(2, i, b"z" * 100)
    assert await bookie.read_entry(2, 4) == b"z" * 100
    files.crash("drop")
    again = await _bookie(files)
    for i in range(5):
        assert await again.read_entry(2, i) == b"z" * 100
    await again.close()


async def test_failed_checkpoint_is_retried():
    files = CrashFiles()
    bookie = await _bookie(files)
    for i in range(20):
        await bookie.add_entry(3, i, b"c")
    files.inject("kv_commit", errno.EIO)
    with pytest.raises(StorageError, match="checkpoint"):
        await bookie.checkpoint()
    assert await bookie.read_entry(3, 19) == b"c"
    await bookie.checkpoint()
    assert bookie.state is BookieState.RUNNING
    files.crash("drop")
    again = await _bookie(files)
    assert [await again.read_entry(3, i) for i in range(20)] == [b"c"] * 20
    await again.close()


async def test_unwritable_data_dir():
    files = CrashFiles()
    files.inject("open", errno.EACCES, times=None)
    bookie = Bookie("/data/bookie", files=files, checkpoint_interval_s=None)
    with pytest.raises(DiskFullError, match="starting bookie"):
        await bookie.start()
