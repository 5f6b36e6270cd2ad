"""The bookie journal: entry records appended with group commit, replayed after a crash.

Theory of operation: `add(record)` queues an encoded record and returns the future of the
batch of this turn of the loop; at the end of the turn the batch goes to the journal's
thread, whose next round appends it with every other batch queued meanwhile and covers them
with one fsync (journal_pipeline.py: one fsync in flight, the next round starting as the
last ends, batches acknowledged in order and only after an fsync that began after their
write), so the event loop never waits on the disk. `written` is the position up
to which everything is durable; a checkpoint passes it to `trim` once the entry log and
index hold everything before it. `replay` (at start) yields the records after a checkpoint
position and truncates a torn or junk tail of the last file.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import struct
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from taureau.common.bytes_like import BYTES_LIKE, Bytes
from taureau.common.errors import CorruptedDataError, StorageError
from taureau.common.histogram import BUCKETS_S, Histogram
from taureau.storage.bookie import records
from taureau.storage.bookie.files import FileIO, Handle, remove_files, storage_error
from taureau.storage.bookie.journal_pipeline import Batch, Pipeline, WriteFailed

log = logging.getLogger(__name__)

# journal file "journal-<seq:020d>.txn":
#   file   := header record*
#   header := magic "TJNL"(4) format_version(u16 BE) reserved(u16 BE, 0) seq(u64 BE)   -- 16 bytes
# format versions:
#   1: records as in records.py: entries, FENCE and DELETE markers
MAGIC = b"TJNL"
FORMAT_VERSION = 1
FILE_HEADER = struct.Struct(">4sHHQ")

# What a write refuses before it copies anything (no room for it): the journal cuts off any
# part of the round that got in and goes on. Any other error of a synced append is fatal.
_REFUSED_BEFORE_WRITING = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

# The journal's legs are fractions of a millisecond on a good disk: finer buckets there than
# the 0.5 ms-first ones of loop stalls.
JOURNAL_BUCKETS_S = (0.0001, 0.00025, *BUCKETS_S)


class JournalPosition(NamedTuple):
    seq: int  # journal file number
    offset: int  # bytes of that file that are durable

    def encode(self) -> bytes:
        return struct.pack(">QQ", self.seq, self.offset)

    @classmethod
    def decode(cls, raw: bytes) -> JournalPosition:
        return cls(*struct.unpack(">QQ", raw))


def _file_name(seq: int) -> str:
    return f"journal-{seq:020d}.txn"


def _seq_of(name: str) -> int | None:
    if name.startswith("journal-") and name.endswith(".txn") and name[8:-4].isdigit():
        return int(name[8:-4])
    return None


class Journal:
    def __init__(self, files: FileIO, directory: str, *, fsync: bool = True, max_file_size: int = 64 << 20):
        self._files = files
        self._dir = directory
        self._fsync = fsync
        self._max_file_size = max_file_size
        # Owned by the journal thread once it runs, by the loop before (replay):
        self._handle: Handle | None = None  # the file being appended to
        self._seq = 0  # its number
        self._size = 0  # its size
        self._seqs: list[int] = []  # journal files on disk, oldest first
        # Owned by the loop:
        self._written = JournalPosition(0, 0)  # everything before it is durable
        self._queue: list[Bytes] = []  # records (their parts) waiting for the end of this turn of the loop
        self._next: asyncio.Future[None] | None = None  # completes when the queued records are durable
        self._outstanding = 0  # batches handed to the journal's thread and not handed back yet
        self._last: asyncio.Future[None] | None = None  # the future of the last batch handed over
        self._failed: StorageError | None = None  # fatal error: no more writes
        self._pipeline: Pipeline | None = None  # started by the first batch
        # Observed by the journal's thread (each round's fsync) and by the loop (each batch,
        # from its hand-over to the thread until it is delivered back, and two legs of that:
        # its wait in the thread's inbox, and from durable until the loop ran its delivery):
        # one writer each.
        self.sync_seconds = Histogram(JOURNAL_BUCKETS_S)
        self.add_seconds = Histogram(JOURNAL_BUCKETS_S)
        self.inbox_seconds = Histogram(JOURNAL_BUCKETS_S)
        self.hand_back_seconds = Histogram(JOURNAL_BUCKETS_S)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def written(self) -> JournalPosition:
        return self._written

    # -- replay -----------------------------------------------------------------------------

    def replay(self, start: JournalPosition) -> Iterator[tuple[int, int, bytes]]:
        """Yield (ledger_id, entry_id, data) recorded at or after `start`, then open a new
        journal file for appends. Run once, before the first add."""
        self._files.makedirs(self._dir)
        seqs = sorted(s for n in self._files.listdir(self._dir) if (s := _seq_of(n)) is not None)
        for seq in [s for s in seqs if s < start.seq]:
            self._files.remove(os.path.join(self._dir, _file_name(seq)))
        seqs = [s for s in seqs if s >= start.seq]
        for i, seq in enumerate(seqs):
            last = i == len(seqs) - 1
            yield from self._replay_file(seq, start.offset if seq == start.seq else 0, last)
        self._seqs = [s for s in seqs if self._files_has(s)]
        self._open_new(max([start.seq, *seqs]) + 1)

    def _files_has(self, seq: int) -> bool:
        return _file_name(seq) in self._files.listdir(self._dir)

    def _replay_file(self, seq: int, offset: int, last: bool) -> Iterator[tuple[int, int, bytes]]:
        path = os.path.join(self._dir, _file_name(seq))
        handle = self._files.open(path)
        try:
            data = self._files.pread(handle, 0, self._files.size(handle))
            if len(data) < FILE_HEADER.size:
                log.warning("journal %s: header incomplete, dropping the file", path)
                self._files.close(handle)
                handle = None
                self._files.remove(path)
                return
            magic, version, _, _ = FILE_HEADER.unpack_from(data, 0)
            if magic != MAGIC or version != FORMAT_VERSION:
                raise CorruptedDataError(
                    f"{path} is not a taureau journal (magic {magic!r}, version {version})"
                )
            pos = max(offset, FILE_HEADER.size)
            while (found := records.decode_at(data, pos)) is not None:
                ledger_id, entry_id, payload, pos = found
                yield ledger_id, entry_id, payload
            if pos < len(data):
                if last:
                    log.warning("journal %s: truncating %d bytes of torn tail", path, len(data) - pos)
                    self._files.truncate(handle, pos)
                    self._files.fsync(handle)
                else:
                    log.error("journal %s: %d unreadable bytes before the next file", path, len(data) - pos)
        finally:
            if handle is not None:
                self._files.close(handle)

    def _open_new(self, seq: int) -> None:
        """Create journal file `seq` (thread or loop, never both at once)."""
        path = os.path.join(self._dir, _file_name(seq))
        handle = self._files.open(path)
        self._files.truncate(handle, 0)
        self._files.append(handle, FILE_HEADER.pack(MAGIC, FORMAT_VERSION, 0, seq))
        self._files.fsync(handle)
        self._files.sync_dir(self._dir)
        self._handle, self._seq, self._size = handle, seq, FILE_HEADER.size
        self._seqs.append(seq)
        self._written = JournalPosition(seq, FILE_HEADER.size)

    # -- appends ----------------------------------------------------------------------------
    #
    # One thread (journal_pipeline.py): each round it appends every batch the loop handed over
    # since the last round and runs one fsync over them, starting the next round as soon as
    # the fsync returns. A batch arriving during an fsync waits for the rest of it and one
    # more, never for a round trip through the loop.

    def add(self, record: Bytes | Sequence[Bytes]) -> asyncio.Future[None]:
        """Queue an encoded record (bytes, or its parts in order: they are written as they
        are); the returned future completes when it is durable."""
        if self._failed is not None:
            raise self._failed
        if isinstance(record, BYTES_LIKE):
            self._queue.append(record)
        else:
            self._queue.extend(record)
        future = self._next
        if future is None:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            future = self._next = self._loop.create_future()
            # call_soon: every add made in this turn of the loop joins the batch.
            self._loop.call_soon(self._start_batch)
        return future

    @property
    def idle(self) -> bool:
        """No batch is queued, being written or waiting for its fsync."""
        return self._outstanding == 0 and not self._queue

    def _start_batch(self) -> None:
        if not self._queue or self._next is None:
            return
        if self._pipeline is None:
            assert self._loop is not None
            synced = self._fsync and self._files.synced_appends  # a round in one call
            self._pipeline = Pipeline(
                self._loop,
                self._write_batch,
                self._files.fsync if self._fsync else None,
                self._files.close,
                self._deliver,
                # Journal pages are read again only by a replay after a crash: once fsynced,
                # they go back to the kernel for the next writes (files.OSFiles.drop_cache).
                self._files.drop_cache if self._fsync else None,
                self.sync_seconds,
                self._write_round_synced if synced else None,
            )
        records, self._queue = self._queue, []
        future, self._next = self._next, None
        self._outstanding += 1
        self._last = future
        self._pipeline.submit(Batch(records, future))

    def _write_batch(self, records: list[Bytes]) -> tuple[Handle, JournalPosition]:
        """In the journal thread: append (the records as they are, no joined copy), rolling
        when the file is full. Returns the position just after the batch."""
        return self._append(records, synced=False)

    def _write_round_synced(self, records: list[Bytes]) -> tuple[Handle, JournalPosition]:
        """`_write_batch` of a whole round, durable on return (FileIO.append_all_synced)."""
        return self._append(records, synced=True)

    def _append(self, records: list[Bytes], synced: bool) -> tuple[Handle, JournalPosition]:
        size = sum(map(len, records))
        try:
            if self._size > FILE_HEADER.size and self._size + size > self._max_file_size:
                old = self._handle
                self._open_new(self._seq + 1)
                if not self._fsync and old is not None:
                    self._files.close(old)  # with fsync on, the thread closes it after its last fsync
        except OSError as exc:
            raise WriteFailed(exc, fatal=False) from exc
        before = self._size
        try:
            if synced:
                self._files.append_all_synced(self._handle, records)
            else:
                self._files.append_all(self._handle, records)
        except OSError as exc:
            if synced and exc.errno not in _REFUSED_BEFORE_WRITING:
                # The bytes may have reached the page cache and failed on their way to the
                # disk, which may then have dropped them: trusted no more, as a failed fsync.
                raise WriteFailed(exc, fatal=True) from exc
            try:
                # Cut off whatever part of the batch got written: later batches go after `before`.
                self._files.truncate(self._handle, before)
            except OSError:
                raise WriteFailed(exc, fatal=True) from exc
            raise WriteFailed(exc, fatal=False) from exc
        self._size = before + size
        assert self._handle is not None
        return self._handle, JournalPosition(self._seq, self._size)

    def _deliver(self, outcomes: list[Batch]) -> None:
        """On the loop, in the order the batches were added: complete their futures."""
        now = time.perf_counter()
        for batch in outcomes:
            self._outstanding -= 1
            exc = batch.error
            if exc is None:
                assert batch.position is not None
                self.add_seconds.observe(now - batch.submitted)
                self.inbox_seconds.observe(batch.taken - batch.submitted)
                self.hand_back_seconds.observe(now - batch.durable)
                self._written = JournalPosition(*batch.position)
                # Done already: every adder of the batch was cancelled, and cancelling one
                # waiter of a shared future cancels it. Raising here would strand the batches
                # after it in this delivery, their adders waiting for ever.
                if not batch.future.done():
                    batch.future.set_result(None)
                continue
            error = self._error(exc)
            if not batch.future.done():
                batch.future.set_exception(error)
            if isinstance(exc, WriteFailed) and exc.fatal and self._failed is None:
                self._failed = error
                if self._next is not None:
                    if not self._next.done():
                        self._next.set_exception(error)
                    self._next, self._queue = None, []

    def _error(self, exc: BaseException) -> StorageError:
        if isinstance(exc, WriteFailed):
            return storage_error(exc.error, f"journal write to {self._dir}")
        return StorageError(f"journal write to {self._dir} failed: {exc!r}")

    @property
    def failed(self) -> StorageError | None:
        return self._failed

    # -- trimming and closing ---------------------------------------------------------------

    async def trim(self, before: JournalPosition) -> None:
        """Remove the journal files wholly before `before` (a completed checkpoint). They are
        forgotten on the loop and unlinked in a thread: unlinking a journal file of tens of MB
        took 32 ms on ext4, a stall of every connection when it ran on the loop."""
        retired: list[str] = []
        while len(self._seqs) > 1 and self._seqs[0] < before.seq:
            retired.append(os.path.join(self._dir, _file_name(self._seqs.pop(0))))
        if retired:
            await asyncio.to_thread(remove_files, self._files, retired)

    async def close(self) -> None:
        while not self.idle:
            waiting = self._next if self._next is not None else self._last
            if waiting is None:
                break
            try:
                await asyncio.shield(waiting)
            except StorageError:
                pass
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            retired = await pipeline.stop()
            if retired is not None and retired is not self._handle:
                self._files.close(retired)
        if self._handle is not None:
            self._files.close(self._handle)
            self._handle = None
