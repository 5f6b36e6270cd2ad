"""The journal's thread: it takes every batch queued, appends them, fsyncs, hands them back.

Theory of operation (group commit): the loop hands each batch to the thread's inbox. The
thread waits for one, takes every other batch queued meanwhile, appends them all to the
journal file, runs one fsync over them and hands them back to the loop in the order they
were added; batches the loop hands over during that fsync wait in the inbox and go in the
next round, together. A batch is only ever handed back after an fsync that began after its
write ended, so nothing is acknowledged before it is durable. Without fsync the thread
hands each round back once it is written.

Where the files can append and sync in one call (`write_synced`, Linux's RWF_DSYNC), a round
is that one call over every batch it took, in place of a write per batch and an fsync: a
thread that returns from a system call must take the GIL back before it can make the next,
and against a busy event loop that wait can last the interpreter's switch interval (5 ms),
so one call fewer per round is one such wait fewer on every publish's path. A round then
fails or succeeds as a whole.

One thread, not BookKeeper's two (a journal thread that writes during the force-write
thread's fsync): with two, each batch cost two more thread wake-ups and GIL hand-offs
against a busy event loop, and writing during an fsync saved only the copy of a batch into
the page cache. With one thread the broker's publish p99 at 10k msgs/s fell from 2.1-2.3 to
1.7 ms, its CPU per message by 4-10%, and the official client's unbatched send-to-receive
p99 from 14-17 to 10-11 ms (docs/performance.md, sixth pass); 1 MiB throughput stayed
within the noise.
"""

from __future__ import annotations

import asyncio
import errno
import queue
import threading
import time
from collections.abc import Callable

from taureau.common.bytes_like import Bytes
from taureau.common.histogram import Histogram
from taureau.storage.bookie.files import Handle


class WriteFailed(Exception):
    """Raised by a batch's write or fsync; `fatal` when the journal may not be written again."""

    def __init__(self, error: OSError, fatal: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.fatal = fatal


class Batch:
    """Records added in one turn of the loop, with the future their adders wait on."""

    __slots__ = ("records", "future", "handle", "position", "error", "submitted", "taken", "durable")

    def __init__(self, records: list[Bytes], future: asyncio.Future[None]) -> None:
        self.records = records
        self.future = future
        self.submitted = time.perf_counter()  # handed to the thread: its add latency starts
        # Set by the thread, one clock read per round: when its round took it from the inbox,
        # and when that round was durable (written, and fsynced if on) and handed back.
        self.taken = 0.0
        self.durable = 0.0
        self.handle: Handle | None = None  # the file the batch was appended to
        self.position: tuple[int, int] | None = None  # (file, offset) just after it, once written
        self.error: BaseException | None = None


# write(records) -> (handle, position): append a batch, in the journal's thread
Write = Callable[[list[Bytes]], tuple[Handle, tuple[int, int]]]


class Pipeline:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        write: Write,
        sync: Callable[[Handle], None] | None,
        close: Callable[[Handle], None],
        deliver: Callable[[list[Batch]], None],
        drop: Callable[[Handle], None] | None = None,
        sync_seconds: Histogram | None = None,
        write_synced: Write | None = None,
    ) -> None:
        self._loop = loop
        # Appends a whole round durably in one call; in place of `write` and `sync` if given.
        self._write_synced = write_synced
        # Each round's fsyncs, timed here: this thread is the histogram's one writer.
        self._sync_seconds = sync_seconds if sync_seconds is not None else Histogram()
        self._write = write
        self._sync = sync  # None: no fsync, a round is handed back once written
        self._close = close
        self._deliver = deliver
        self._drop = drop  # after a file's fsync, once its batches are handed back: its pages go
        # The thread's inbox; bounded by what the loop has added and not yet seen acknowledged.
        self._inbox: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._fatal: WriteFailed | None = None  # an fsync failed: write and acknowledge nothing more
        self._last_handle: Handle | None = None  # the file fsynced last
        self._thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        self._inbox.put(batch)

    async def stop(self) -> Handle | None:
        """End the thread once what was submitted is handed back; return a file handle it
        still holds open besides the current one (after a roll), for the caller to close."""
        self._inbox.put(None)
        await asyncio.to_thread(self._thread.join)
        return self._last_handle

    def _run(self) -> None:
        while True:
            batches, stopping = self._take()
            if batches:
                if self._write_synced is not None:
                    delivered = self._write_round_synced(batches)
                else:
                    for batch in batches:
                        self._append(batch)
                    delivered = self._sync_and_hand_back(batches)
                if not delivered:
                    return
            if stopping:
                return

    def _take(self) -> tuple[list[Batch], bool]:
        """Wait for a batch, then take every one queued meanwhile; True once stop() was called
        (its None comes after every batch submitted before it)."""
        taken = [self._inbox.get()]
        while True:
            try:
                taken.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        now = time.perf_counter()
        batches = [b for b in taken if b is not None]
        for batch in batches:
            batch.taken = now
        return batches, taken[-1] is None

    def _append(self, batch: Batch) -> None:
        if self._fatal is not None:
            batch.error = self._fatal
        else:
            try:
                batch.handle, batch.position = self._write(batch.records)
            except BaseException as exc:  # handed to the adders; the thread goes on
                batch.error = exc
        batch.records = []  # the bytes are in the file now; don't hold them until the fsync

    def _write_round_synced(self, batches: list[Batch]) -> bool:
        """Append every batch of the round durably in one call and give them back; False
        once the loop is closed."""
        assert self._write_synced is not None
        handle: Handle | None = None
        if self._fatal is None:
            records = [record for batch in batches for record in batch.records]
            try:
                started = time.perf_counter()
                handle, position = self._write_synced(records)
                self._sync_seconds.observe(time.perf_counter() - started)
            except WriteFailed as exc:
                if exc.fatal:
                    self._fatal = exc
                for batch in batches:
                    batch.error = exc
            except BaseException as exc:  # handed to the adders; the thread goes on
                for batch in batches:
                    batch.error = exc
            else:
                for batch in batches:  # all durable: each is covered by the round's end
                    batch.handle, batch.position = handle, position
        for batch in batches:
            batch.records = []
            if self._fatal is not None and batch.error is None:
                batch.error = self._fatal
        delivered = self._hand_back(batches)
        if handle is not None:
            if self._drop is not None:
                self._drop(handle)
            self._close_retired([handle])
        return delivered

    def _sync_and_hand_back(self, batches: list[Batch]) -> bool:
        """fsync the files `batches` went to and give them back to the loop; False once the
        loop is closed."""
        if self._sync is None:
            return self._hand_back(batches)
        handles: list[Handle] = []
        for batch in batches:
            if batch.handle is not None and batch.handle not in handles:
                handles.append(batch.handle)
        if self._fatal is None:
            try:
                started = time.perf_counter()
                for handle in handles:
                    self._sync(handle)
                self._sync_seconds.observe(time.perf_counter() - started)
            except Exception as exc:
                # After a failed fsync the kernel may have dropped the dirty pages: trust nothing.
                # (Anything else raised here is fatal too: this thread must not die silently.)
                error = exc if isinstance(exc, OSError) else OSError(errno.EIO, f"fsync: {exc!r}")
                self._fatal = WriteFailed(error, fatal=True)
        if self._fatal is not None:
            for batch in batches:
                if batch.error is None:
                    batch.error = self._fatal
        delivered = self._hand_back(batches)
        if self._drop is not None and self._fatal is None:
            for handle in handles:  # after the hand-back: no add waits for this
                self._drop(handle)
        self._close_retired(handles)
        return delivered

    def _hand_back(self, batches: list[Batch]) -> bool:
        """Give `batches` back to the loop; False once the loop is closed (its owner ended
        without stopping the journal): nobody is left to acknowledge, so the thread ends."""
        now = time.perf_counter()
        for batch in batches:
            batch.durable = now
        try:
            self._loop.call_soon_threadsafe(self._deliver, batches)
        except RuntimeError:  # "Event loop is closed"
            return False
        return True

    def _close_retired(self, handles: list[Handle]) -> None:
        """Close the files the journal has rolled away from, now that their fsync is done."""
        if not handles:
            return
        retired: list[Handle] = []
        for handle in [self._last_handle, *handles[:-1]]:
            if handle is not None and handle is not handles[-1] and handle not in retired:
                retired.append(handle)
                self._close(handle)
        self._last_handle = handles[-1]
