"""The entry log's thread: it writes what the loop hands it, in order, off the loop.

Why a thread: an entry log write goes to the page cache, and the kernel makes a writer wait
there once too many pages are dirty. With 1 MiB messages at 400 MB/s (the journal writing as
much, with fsyncs), pwrites of the entry log on the loop waited 15-32 ms each, and every
connection waited with them (bench/messaging.py --size 1048576: loop lag max 250 ms). The
journal covers what is not written yet: a write is only needed by the next checkpoint, which
waits for it (`wait_written`) before its fsync.

Theory of operation: the loop hands over writes (`submit`), each numbered; the thread writes
them one at a time in that order and publishes the number of the last one written. While a
write fails, the thread keeps it and writes nothing more until a checkpoint asks again
(`wait_written` retries it once and raises if it fails again), so nothing after a hole is
written and the index never points past what is on disk.

What the loop has handed over and the thread has not written is bounded. From half of
`max_bytes` the writer is `backlogged`: the bookie holds new adds (not the loop) until the
thread calls back that it is below that again (`call_when_room`), so a disk slower than the
publishers slows the publishers while reads, acknowledgements and dispatch go on. At
`max_bytes` (one add of many entries can pass the half) `submit` itself waits, as the loop did
on every write before the thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

from taureau.common.bytes_like import Bytes
from taureau.storage.bookie.files import FileIO, Handle


class Write(NamedTuple):
    seq: int
    handle: Handle
    offset: int
    parts: Sequence[Bytes]
    size: int


class EntryLogWriter:
    def __init__(self, files: FileIO, max_bytes: int) -> None:
        self._files = files
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        # Guarded by _cond:
        self._queue: deque[Write] = deque()  # handed over, not written yet, oldest first
        self._queued_bytes = 0
        self._retry = False  # a checkpoint asks for the failed write again
        self._stopping = False
        self.submitted = 0  # number of the last write handed over (the loop's)
        self.written = 0  # number of the last write done (the thread's)
        self.error: OSError | None = None  # the write at the head of the queue failed
        self._on_room: list[Callable[[], None]] = []  # each called once, from the thread
        self._thread: threading.Thread | None = None

    @property
    def backlogged(self) -> bool:
        """Half of max_bytes or more is waiting to be written (and no write failed: then
        adds are refused instead, and must not wait)."""
        return self._queued_bytes >= self._max_bytes // 2 and self.error is None

    def call_when_room(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the writer is no longer backlogged (at once if it is not):
        from the writer thread, so it must be thread-safe (call_soon_threadsafe)."""
        with self._cond:
            if self.backlogged and not self._stopping:
                self._on_room.append(callback)
                return
        callback()

    def _room_made(self) -> None:
        """Under _cond: hand the pending room callback over if the backlog is gone."""
        if self._on_room and (not self.backlogged or self._stopping):
            callbacks, self._on_room = self._on_room, []
            for callback in callbacks:
                callback()

    def submit(self, handle: Handle, offset: int, parts: Sequence[Bytes], size: int) -> Write:
        """Queue a write of `parts` at `offset`. Waits (the loop too) while the
        writes queued already hold max_bytes, unless the thread is stuck on a failed one."""
        with self._cond:
            while self._queue and self._queued_bytes + size > self._max_bytes and self.error is None:
                self._cond.wait()
            self.submitted += 1
            write = Write(self.submitted, handle, offset, parts, size)
            self._queue.append(write)
            self._queued_bytes += size
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="entry-log", daemon=True)
                self._thread.start()
            return write

    @property
    def pending(self) -> bool:
        """Some write handed over is not done (a read may find its record in `holding`)."""
        return self.written != self.submitted

    def holding(self, handle: Handle, offset: int) -> Write | None:
        """The write not done yet that covers `offset` of the file `handle`, if any."""
        with self._cond:
            for write in reversed(self._queue):
                if write.handle is handle and write.offset <= offset < write.offset + write.size:
                    return write
        return None

    @property
    def idle(self) -> bool:
        """No write is queued or being written, or the one at the head failed."""
        return self.written == self.submitted or self.error is not None

    def wait_written(self, seq: int) -> None:
        """Block until write `seq` and every one before it are done (not from the loop: a
        checkpoint's worker thread). A failed write is tried once more; OSError if it fails."""
        with self._cond:
            if self.error is not None:
                self._retry = True
                self._cond.notify_all()
            while self.written < seq:
                if self.error is not None and not self._retry:
                    raise self.error
                self._cond.wait()

    def stop(self) -> None:
        """Write what is queued (unless a write failed: the journal still holds it) and end."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            self._room_made()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        files = self._files
        while True:
            with self._cond:
                while not self._queue or (self.error is not None and not self._retry):
                    if self._stopping:
                        return
                    self._cond.wait()
                self._retry = False
                write = self._queue[0]
            try:
                files.pwrite_all(write.handle, write.parts, write.offset)
                files.start_writeback(write.handle, write.offset, write.size)
            except OSError as exc:
                with self._cond:
                    self.error = exc
                    self._cond.notify_all()
                    self._room_made()  # adds waiting for room are refused instead
                continue
            with self._cond:
                self._queue.popleft()
                self._queued_bytes -= write.size
                self.written = write.seq
                self.error = None
                self._cond.notify_all()
                self._room_made()
