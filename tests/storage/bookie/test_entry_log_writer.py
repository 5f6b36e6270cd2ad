"""The entry log writes in its own thread: an add never waits for it, what it holds is read from
memory, a checkpoint waits for it, and a failed write stops adds until a checkpoint writes it."""

from __future__ import annotations

import asyncio
import errno
import threading

import pytest

from taureau.common.errors import DiskFullError, StorageError
from taureau.storage.bookie import Bookie, BookieState, records
from taureau.storage.bookie.entry_log import EntryLog
from taureau.storage.bookie.entry_log_writer import EntryLogWriter
from taureau.testing.crash_files import CrashFiles

pytestmark = pytest.mark.anyio


class HeldFiles(CrashFiles):
    """Entry log writes wait for `release` while `hold` is set (a disk the kernel throttles)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.release = threading.Event()
        self.entered = threading.Event()  # a held write is waiting

    def pwrite(self, handle, data, offset: int) -> None:
        if self.hold.is_set() and "entrylog-" in handle.path:
            self.entered.set()
            assert self.release.wait(10), "the test never released the write"
        super().pwrite(handle, data, offset)


async def _bookie(files: CrashFiles) -> Bookie:
    bookie = Bookie("/data/bookie", files=files, checkpoint_interval_s=None)
    await bookie.start()
    return bookie


def _wait(event: threading.Event) -> None:
    assert event.wait(10), "timed out"


async def test_an_add_does_not_wait_for_the_entry_log_write_and_reads_it_from_memory() -> None:
    files = HeldFiles()
    bookie = await _bookie(files)
    bookie._entry_log._buffer_size = 64  # every add hands a write to the thread
    files.hold.set()
    for i in range(3):
        # Would time out if the add waited for its entry log write (held until release).
        await asyncio.wait_for(bookie.add_entry(5, i, b"e%d" % i * 40), 5)
    await asyncio.to_thread(_wait, files.entered)
    assert not bookie._entry_log.idle
    assert [await bookie.read_entry(5, i) for i in range(3)] == [b"e%d" % i * 40 for i in range(3)]
    checkpoint = asyncio.ensure_future(bookie.checkpoint())
    await asyncio.sleep(0.05)
    assert not checkpoint.done()  # its fsync waits for the held writes
    files.release.set()
    await asyncio.wait_for(checkpoint, 10)
    files.crash("drop")  # only what the checkpoint made durable (and the journal) survives
    again = await _bookie(files)
    assert [await again.read_entry(5, i) for i in range(3)] == [b"e%d" % i * 40 for i in range(3)]
    await again.close()


async def test_a_failed_write_refuses_adds_until_a_checkpoint_writes_it() -> None:
    files = CrashFiles()
    bookie = await _bookie(files)
    bookie._entry_log._buffer_size = 64
    files.inject("pwrite", errno.ENOSPC, times=None)
    await bookie.add_entry(6, 0, b"a" * 100)  # acknowledged: it is in the journal
    await asyncio.to_thread(lambda: _wait_until(lambda: bookie._entry_log.idle))
    with pytest.raises(DiskFullError):
        await bookie.add_entry(6, 1, b"b" * 100)
    assert bookie.state is BookieState.READ_ONLY
    assert await bookie.read_entry(6, 0) == b"a" * 100  # from the write the thread holds
    with pytest.raises(StorageError, match="checkpoint"):
        await bookie.checkpoint()  # the write is tried again, and fails again
    files.clear()
    await bookie.checkpoint()  # written at last
    assert bookie.state is BookieState.RUNNING
    await bookie.add_entry(6, 1, b"b" * 100)
    await bookie.checkpoint()
    files.crash("drop")
    again = await _bookie(files)
    assert [await again.read_entry(6, i) for i in range(2)] == [b"a" * 100, b"b" * 100]
    await again.close()


def _wait_until(predicate) -> None:
    done = threading.Event()
    for _ in range(1000):
        if predicate():
            done.set()
            break
        done.wait(0.01)
    assert done.is_set(), "timed out"


def _writer_holding_a_write(tmp_path, max_bytes: int):
    """A writer whose first write (8 bytes at 0) is held in the thread: (files, handle, writer)."""
    files = HeldFiles()
    files.makedirs(str(tmp_path))
    handle = files.open(str(tmp_path / "entrylog-00000001.log"))
    writer = EntryLogWriter(files, max_bytes=max_bytes)
    files.hold.set()
    writer.submit(handle, 0, (b"12345678",), 8)
    _wait(files.entered)
    return files, handle, writer


def test_writes_beyond_the_bound_wait_for_the_thread(tmp_path) -> None:
    files, handle, writer = _writer_holding_a_write(tmp_path, max_bytes=10)
    second_queued = threading.Event()

    def submit_second() -> None:
        writer.submit(handle, 8, (b"abcdefgh",), 8)  # 16 bytes queued would pass the bound
        second_queued.set()

    thread = threading.Thread(target=submit_second)
    thread.start()
    assert not second_queued.wait(0.1)
    files.release.set()
    _wait(second_queued)
    thread.join()
    writer.wait_written(2)
    assert files.pread(handle, 0, 16) == b"12345678abcdefgh"
    writer.stop()


def test_records_are_read_back_before_during_and_after_their_write(tmp_path) -> None:
    files = HeldFiles()
    files.makedirs(str(tmp_path))
    log = EntryLog(files, str(tmp_path), buffer_size=256)
    log.open({}, {})
    files.hold.set()
    datas = [b"x" * 50, b"y" * 300, b"z" * 10]  # buffered, larger than the buffer, buffered
    locations = [log.add(9, records.encode(9, i, data)) for i, data in enumerate(datas)]
    _wait(files.entered)
    assert [log.read(loc) for loc in locations] == [(9, i, d) for i, d in enumerate(datas)]
    files.release.set()
    log.drain()
    assert log.idle
    assert [log.read(loc) for loc in locations] == [(9, i, d) for i, d in enumerate(datas)]
    log.close()


async def test_a_backlogged_writer_holds_adds_in_order_and_the_loop_goes_on() -> None:
    files = HeldFiles()
    bookie = await _bookie(files)
    bookie._entry_log._buffer_size = 64  # a write per add
    bookie._entry_log._writer._max_bytes = 200  # backlogged from 100 bytes queued
    files.hold.set()
    await asyncio.wait_for(bookie.add_entry(7, 0, b"0" * 100), 5)  # its write is held
    await asyncio.to_thread(_wait, files.entered)
    assert bookie._entry_log.backlogged
    held = [asyncio.ensure_future(bookie.add_entry(7, i, b"%d" % i * 100)) for i in range(1, 4)]
    for _ in range(20):
        await asyncio.sleep(0.005)  # the loop runs: reads are served, the adds wait
    assert await bookie.read_entry(7, 0) == b"0" * 100
    assert not any(add.done() for add in held)
    files.release.set()
    await asyncio.wait_for(asyncio.gather(*held), 10)
    assert [await bookie.read_entry(7, i) for i in range(4)] == [b"%d" % i * 100 for i in range(4)]
    await bookie.close()


def test_every_caller_waiting_for_room_is_called_back_once_the_backlog_is_written(tmp_path) -> None:
    files, _, writer = _writer_holding_a_write(tmp_path, max_bytes=16)  # 8 of 16: backlogged
    assert writer.backlogged
    called: list[str] = []
    writer.call_when_room(lambda: called.append("a"))
    writer.call_when_room(lambda: called.append("b"))
    assert called == []
    files.release.set()
    writer.wait_written(1)
    assert called == ["a", "b"]
    writer.call_when_room(lambda: called.append("c"))  # room already: at once
    assert called == ["a", "b", "c"]
    writer.stop()
