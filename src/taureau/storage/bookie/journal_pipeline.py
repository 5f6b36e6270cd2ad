"""The journal's two threads: a writer that appends batches as they come, a syncer that fsyncs.

Theory of operation (BookKeeper's journal and force-write threads): the loop hands each
batch to the writer, which appends it to the journal file at once, also while an fsync is
running. The syncer runs one fsync at a time: it takes every batch written so far, fsyncs
the files they went to and hands them back to the loop in the order they were added, and
starts on whatever was written meanwhile the moment that fsync returns. A batch is only ever
handed back after an fsync that began after its write ended, so nothing is acknowledged
before it is durable. Without fsync the writer hands each batch back itself.
"""

from __future__ import annotations

import asyncio
import errno
import queue
import threading
from collections.abc import Callable

from taureau.common.bytes_like import Bytes
from taureau.storage.bookie.files import Handle


class WriteFailed(Exception):
    """Raised by a batch's write or fsync; `fatal` when the journal may not be written again."""

    def __init__(self, error: OSError, fatal: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.fatal = fatal


class Batch:
    """Records added in one turn of the loop, with the future their adders wait on."""

    __slots__ = ("records", "future", "handle", "position", "error")

    def __init__(self, records: list[Bytes], future: asyncio.Future[None]) -> None:
        self.records = records
        self.future = future
        self.handle: Handle | None = None  # the file the batch was appended to
        self.position: tuple[int, int] | None = None  # (file, offset) just after it, once written
        self.error: BaseException | None = None


# write(records) -> (handle, position): append a batch, in the writer thread
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
    ) -> None:
        self._loop = loop
        self._write = write
        self._sync = sync  # None: no fsync, the writer hands batches back itself
        self._close = close
        self._deliver = deliver
        self._drop = drop  # after a file's fsync, once its batches are handed back: its pages go
        # The writer's inbox; bounded by what the loop has added and not yet seen acknowledged.
        self._inbox: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._written: list[Batch] = []  # appended, waiting for the next fsync
        self._ready = threading.Condition()
        self._stopping = False
        self._fatal: WriteFailed | None = None  # an fsync failed: write and acknowledge nothing more
        self._last_handle: Handle | None = None  # the file the syncer fsynced last
        self._writer = threading.Thread(target=self._write_loop, name="journal-writer", daemon=True)
        self._writer.start()
        self._syncer: threading.Thread | None = None
        if sync is not None:
            self._syncer = threading.Thread(target=self._sync_loop, name="journal-syncer", daemon=True)
            self._syncer.start()

    def submit(self, batch: Batch) -> None:
        self._inbox.put(batch)

    async def stop(self) -> Handle | None:
        """End both threads once what was submitted is handed back; return a file handle the
        syncer still holds open besides the current one (after a roll), for the caller to close."""
        self._inbox.put(None)
        await asyncio.to_thread(self._join)
        return self._last_handle

    def _join(self) -> None:
        self._writer.join()
        if self._syncer is not None:
            self._syncer.join()

    # -- writer thread ----------------------------------------------------------------------

    def _write_loop(self) -> None:
        while (batch := self._inbox.get()) is not None:
            if self._fatal is not None:
                batch.error = self._fatal
            else:
                try:
                    batch.handle, batch.position = self._write(batch.records)
                except BaseException as exc:  # handed to the adders; the thread goes on
                    batch.error = exc
            batch.records = []  # the bytes are in the file now; don't hold them until the fsync
            if self._sync is None:
                if not self._hand_back([batch]):
                    return
                continue
            with self._ready:
                self._written.append(batch)
                self._ready.notify()
        with self._ready:
            self._stopping = True
            self._ready.notify()

    # -- syncer thread ----------------------------------------------------------------------

    def _sync_loop(self) -> None:
        assert self._sync is not None
        while True:
            with self._ready:
                while not self._written and not self._stopping:
                    self._ready.wait()
                if not self._written:
                    return  # stopping, and everything is handed back
                batches, self._written = self._written, []
            # Every batch taken here was fully written before this fsync starts.
            handles: list[Handle] = []
            for batch in batches:
                if batch.handle is not None and batch.handle not in handles:
                    handles.append(batch.handle)
            if self._fatal is None:
                try:
                    for handle in handles:
                        self._sync(handle)
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
            if not delivered:
                return

    def _hand_back(self, batches: list[Batch]) -> bool:
        """Give `batches` back to the loop; False once the loop is closed (its owner ended
        without stopping the journal): nobody is left to acknowledge, so the thread ends."""
        try:
            self._loop.call_soon_threadsafe(self._deliver, batches)
        except RuntimeError:  # "Event loop is closed"
            return False
        return True

    def _close_retired(self, handles: list[Handle]) -> None:
        """Close the files the writer has rolled away from, now that their fsync is done."""
        if not handles:
            return
        retired: list[Handle] = []
        for handle in [self._last_handle, *handles[:-1]]:
            if handle is not None and handle is not handles[-1] and handle not in retired:
                retired.append(handle)
                self._close(handle)
        self._last_handle = handles[-1]
