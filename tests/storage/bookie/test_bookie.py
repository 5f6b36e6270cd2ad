"""Bookie: adds and reads, fencing, deletion and space reclaim, restart, bad input."""

from __future__ import annotations

import asyncio
import os

import pytest

from taureau.common.errors import (
    CorruptedDataError,
    LedgerFencedError,
    NoSuchEntryError,
    NoSuchLedgerError,
    StorageError,
)
from taureau.storage.bookie import Bookie, BookieState

pytestmark = pytest.mark.anyio


async def _bookie(path, **kw) -> Bookie:
    bookie = Bookie(path, checkpoint_interval_s=None, **kw)
    await bookie.start()
    return bookie


async def test_add_read_last_entry(tmp_path):
    bookie = await _bookie(tmp_path)
    await asyncio.gather(*(bookie.add_entry(1, i, b"e%d" % i) for i in range(50)))
    await bookie.add_entry(2, 0, bytearray(b"other"))
    assert await bookie.read_entry(1, 49) == b"e49"
    assert await bookie.read_entry(2, 0) == b"other"
    assert await bookie.read_last_entry_id(1) == 49
    assert await bookie.read_last_entry_id(99) == -1
    with pytest.raises(NoSuchEntryError):
        await bookie.read_entry(1, 50)
    with pytest.raises(NoSuchLedgerError):
        await bookie.read_entry(99, 0)
    await bookie.checkpoint()
    # After the checkpoint the reads come from the entry log file through the KV index.
    assert await bookie.read_entry(1, 7) == b"e7"
    await bookie.close()
    assert bookie.state is BookieState.CLOSED
    with pytest.raises(StorageError):
        await bookie.read_entry(1, 7)


async def test_restart_without_checkpoint_replays_the_journal(tmp_path):
    bookie = await _bookie(tmp_path)
    for i in range(10):
        await bookie.add_entry(3, i, b"x" * i)
    await bookie.checkpoint()
    for i in range(10, 20):
        await bookie.add_entry(3, i, b"y" * i)
    await bookie.fence(3)
    # Abandon it without close (a crash of the process: the OS keeps written data).
    again = await _bookie(tmp_path)
    assert [await again.read_entry(3, i) for i in (0, 9, 10, 19)] == [b"", b"x" * 9, b"y" * 10, b"y" * 19]
    assert await again.read_last_entry_id(3) == 19
    with pytest.raises(LedgerFencedError):
        await again.add_entry(3, 20, b"late")
    await again.close()
    third = await _bookie(tmp_path)
    assert await third.read_entry(3, 19) == b"y" * 19
    await third.close()


async def test_fencing(tmp_path):
    bookie = await _bookie(tmp_path)
    for i in range(5):
        await bookie.add_entry(4, i, b"v")
    assert await bookie.fence(4) == 4
    with pytest.raises(LedgerFencedError):
        await bookie.add_entry(4, 5, b"zombie writer")
    await bookie.add_entry(4, 5, b"recovered", recovery_add=True)
    assert await bookie.read_entry(4, 5) == b"recovered"
    assert await bookie.fence(4) == 5  # idempotent
    assert await bookie.fence(77) == -1  # fencing a ledger never written here
    with pytest.raises(LedgerFencedError):
        await bookie.add_entry(77, 0, b"x")
    await bookie.close()


async def test_delete_frees_space(tmp_path):
    bookie = await _bookie(tmp_path, entry_log_max_file_size=4096)
    for i in range(40):
        await bookie.add_entry(5, i, b"d" * 200)  # fills a few entry log files alone
    for i in range(3):
        await bookie.add_entry(6, i, b"k" * 200)
    await bookie.checkpoint()
    logs_before = os.listdir(tmp_path / "ledgers")
    await bookie.delete_ledger(5)
    with pytest.raises(NoSuchLedgerError):
        await bookie.read_entry(5, 0)
    with pytest.raises(NoSuchLedgerError):
        await bookie.add_entry(5, 40, b"x")
    await bookie.checkpoint()
    logs_after = os.listdir(tmp_path / "ledgers")
    assert len(logs_after) < len(logs_before) - 1
    assert await bookie.read_entry(6, 2) == b"k" * 200
    await bookie.close()
    again = await _bookie(tmp_path)
    with pytest.raises(NoSuchLedgerError):
        await again.read_entry(5, 3)
    assert await again.read_entry(6, 0) == b"k" * 200
    await again.close()


async def test_checkpoint_trims_the_journal(tmp_path):
    bookie = await _bookie(tmp_path, journal_max_file_size=1024)
    for i in range(100):
        await bookie.add_entry(8, i, b"j" * 64)
    assert len(os.listdir(tmp_path / "journal")) > 3
    await bookie.checkpoint()
    assert len(os.listdir(tmp_path / "journal")) == 1
    await bookie.close()
    again = await _bookie(tmp_path)
    assert await again.read_entry(8, 99) == b"j" * 64
    await again.close()


async def test_bad_input_is_refused_and_bookie_keeps_serving(tmp_path):
    bookie = await _bookie(tmp_path)
    await bookie.add_entry(1, 0, b"good")
    for ledger_id, entry_id in [(-1, 0), (1, -1), ("1", 0), (1, 2**63), (1.0, 0)]:
        with pytest.raises(ValueError):
            await bookie.add_entry(ledger_id, entry_id, b"x")
    with pytest.raises(TypeError):
        await bookie.add_entry(1, 1, "text")
    with pytest.raises(ValueError):
        await bookie.read_entry(1, -5)
    assert await bookie.read_last_entry_id(1) == 0
    await bookie.add_entry(1, 1, b"still fine")
    assert await bookie.read_entry(1, 1) == b"still fine"
    await bookie.close()


async def test_corrupted_entry_log_is_detected(tmp_path):
    bookie = await _bookie(tmp_path)
    await bookie.add_entry(1, 0, b"A" * 100)
    await bookie.checkpoint()
    await bookie.close()
    (log_file,) = [p for p in (tmp_path / "ledgers").iterdir() if p.stat().st_size > 100]
    raw = bytearray(log_file.read_bytes())
    raw[-10] ^= 0xFF
    log_file.write_bytes(bytes(raw))
    again = await _bookie(tmp_path)
    with pytest.raises(CorruptedDataError):
        await again.read_entry(1, 0)
    await again.add_entry(1, 1, b"new")  # keeps serving
    await again.close()


async def test_unusable_data_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    bookie = Bookie(blocker / "bookie", checkpoint_interval_s=None)
    with pytest.raises(StorageError, match="starting bookie"):
        await bookie.start()
    with pytest.raises(StorageError, match="new"):
        await bookie.add_entry(1, 0, b"x")


async def test_a_cancelled_checkpoint_finishes_before_the_next_one_starts(tmp_path, monkeypatch):
    # Cancelling the task that awaits a checkpoint (close cancels the timer's) cannot stop the
    # index commit running in a thread: the next checkpoint must wait for it, not commit too.
    import threading
    import time

    bookie = await _bookie(tmp_path)
    await bookie.add_entry(1, 0, b"x")
    index = bookie._index
    commit = index.commit
    inside, most, lock, entered = [0], [0], threading.Lock(), threading.Event()

    def slow_commit(cut):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        entered.set()
        time.sleep(0.2)
        try:
            commit(cut)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(index, "commit", slow_commit)
    first = asyncio.get_running_loop().create_task(bookie.checkpoint())
    while not entered.is_set():
        await asyncio.sleep(0.005)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await bookie.add_entry(1, 1, b"y")
    await bookie.checkpoint()
    assert most[0] == 1
    assert bookie.state is BookieState.RUNNING
    await bookie.close()
    again = await _bookie(tmp_path)
    assert await again.read_entry(1, 1) == b"y"
    await again.close()
