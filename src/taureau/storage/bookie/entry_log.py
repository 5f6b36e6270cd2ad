"""The entry log: entries of many ledgers appended to a few files, read back by location."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import Sequence

from taureau.common.bytes_like import BYTES_LIKE, Bytes
from taureau.common.errors import CorruptedDataError, NoSuchEntryError
from taureau.storage.bookie import records
from taureau.storage.bookie.entry_log_writer import EntryLogWriter
from taureau.storage.bookie.files import FileIO, Handle, remove_files

log = logging.getLogger(__name__)

# entry log file "entrylog-<log_id:08x>.log":
#   file   := header record*
#   header := magic "TELG"(4) format_version(u16 BE) reserved(u16 BE, 0) log_id(u64 BE)   -- 16 bytes
# format versions:
#   1: records as in records.py (entries only, never markers)
# location := log_id << 32 | offset of the record's first byte in that file (so a file stays < 4 GiB)
MAGIC = b"TELG"
FORMAT_VERSION = 1
FILE_HEADER = struct.Struct(">4sHHQ")
MAX_FILE_SIZE = (1 << 32) - 1
_READ_AHEAD = 4096  # one pread usually fetches the whole record
# Bytes handed to the writer thread and not written yet, at most (then adds wait, as when the
# loop wrote them itself): 16 x 1 MiB, ~40 ms of writes at the 400 MB/s seen with 1 MiB messages.
MAX_UNWRITTEN = 16 << 20


def _file_name(log_id: int) -> str:
    return f"entrylog-{log_id:08x}.log"


def _id_of(name: str) -> int | None:
    if name.startswith("entrylog-") and name.endswith(".log"):
        try:
            return int(name[9:-4], 16)
        except ValueError:
            return None
    return None


class EntryLog:
    def __init__(
        self,
        files: FileIO,
        directory: str,
        *,
        max_file_size: int = 256 << 20,
        buffer_size: int = 1 << 20,
        max_unwritten: int = MAX_UNWRITTEN,
    ) -> None:
        if not FILE_HEADER.size < max_file_size <= MAX_FILE_SIZE:
            raise ValueError(f"entry log max_file_size must be in ({FILE_HEADER.size}, {MAX_FILE_SIZE}]")
        self._files = files
        self._dir = directory
        self._max_file_size = max_file_size
        self._buffer_size = buffer_size
        self._handles: dict[int, Handle] = {}  # every log file, by id
        self.ledgers: dict[int, set[int]] = {}  # log id -> ledgers with entries in it (for space reclaim)
        self._current = -1  # id of the log being appended to
        self._buf = bytearray()  # appended records not yet written to the current file
        self._buf_start = 0  # file offset of _buf[0]
        self._dirty: set[int] = set()  # logs written since their last fsync
        self._ends: dict[int, int] = {}  # final size of each log rolled away from in this process
        # Writes go to the disk in a thread (entry_log_writer.py); until one is done, reads of
        # what it holds are served from it.
        self._writer = EntryLogWriter(files, max(max_unwritten, buffer_size))

    def open(self, sizes: dict[int, int], ledgers: dict[int, set[int]]) -> None:
        """Start from the last checkpoint: logs it knows are cut back to the size it made
        durable; logs it does not know hold nothing the journal cannot replay: removed."""
        self._files.makedirs(self._dir)
        seen = [i for n in self._files.listdir(self._dir) if (i := _id_of(n)) is not None]
        for log_id in seen:
            path = os.path.join(self._dir, _file_name(log_id))
            if log_id not in sizes:
                self._files.remove(path)
                continue
            handle = self._files.open(path)
            actual = self._files.size(handle)
            if actual > sizes[log_id]:
                self._files.truncate(handle, sizes[log_id])
            elif actual < sizes[log_id]:
                log.error("entry log %s is shorter (%d) than checkpointed (%d)", path, actual, sizes[log_id])
            self._handles[log_id] = handle
            self.ledgers[log_id] = set(ledgers.get(log_id, ()))
        missing = set(sizes) - set(self._handles)
        if missing:
            raise CorruptedDataError(
                f"entry logs {sorted(missing)} listed in the index are missing from {self._dir}"
            )
        self._start_log(max([0, *seen, *sizes]) + 1)

    def _start_log(self, log_id: int) -> None:
        handle = self._files.open(os.path.join(self._dir, _file_name(log_id)))
        self._files.truncate(handle, 0)
        self._files.append(handle, FILE_HEADER.pack(MAGIC, FORMAT_VERSION, 0, log_id))
        self._handles[log_id] = handle
        self.ledgers[log_id] = set()
        self._current, self._buf_start = log_id, FILE_HEADER.size
        self._dirty.add(log_id)

    @property
    def backlogged(self) -> bool:
        """The writer thread is behind by half its bound: adds should wait for `room`."""
        return self._writer.backlogged

    async def room(self) -> None:
        """Return once the writer thread is no longer backlogged."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def made() -> None:  # in the writer thread, or here if there is room already
            loop.call_soon_threadsafe(_resolve, done)

        self._writer.call_when_room(made)
        await done

    @property
    def idle(self) -> bool:
        """Every write handed to the writer thread is done (or failed)."""
        return self._writer.idle

    @property
    def current(self) -> int:
        return self._current

    def add(self, ledger_id: int, record: Bytes | Sequence[Bytes]) -> int:
        """Buffer an encoded record (bytes, or records.encode_parts: its parts, in order);
        return its location. Raises OSError (nothing added), also when an earlier write
        failed in the writer thread and no checkpoint has written it since."""
        if self._writer.error is not None:
            raise self._writer.error
        if isinstance(record, BYTES_LIKE):
            record = (record,)
        size = sum(map(len, record))
        if len(self._buf) + size > self._buffer_size and self._buf:
            self.flush()
        if self._buf_start + len(self._buf) + size > self._max_file_size:
            self.flush()
            self._ends[self._current] = self._buf_start
            self._start_log(self._current + 1)
        offset = self._buf_start + len(self._buf)
        if size >= self._buffer_size:
            # A record as large as the buffer goes to the file as it is, its parts with one
            # pwritev: buffering it would copy it in and out again for nothing (1 MiB messages).
            self.flush()
            self._submit(offset, tuple(record), size)
        else:
            for part in record:
                self._buf += part
        self.ledgers[self._current].add(ledger_id)
        return (self._current << 32) | offset

    def flush(self) -> int:
        """Hand the buffer to the writer thread (no fsync); the number of the last write
        handed over, for `sync` to wait for."""
        if self._buf:
            # The bytearray itself, not a copy: a new one takes its place.
            buf, self._buf = self._buf, bytearray()
            self._submit(self._buf_start, (buf,), len(buf))
        return self._writer.submitted

    def _submit(self, offset: int, parts: tuple[Bytes, ...], size: int) -> None:
        """Write `parts` at `offset` of the current log, in the writer thread, which then
        starts their writeback. Left to the checkpoint's fsync, 30 s of them (tens of MB)
        went to the disk at once, and the journal's fsyncs on the same disk waited behind
        them: receipts 25-35 ms late at each checkpoint, 10 ms with the writeback started as
        the bytes come (bench/publish_latency.py --seconds 55 at 10k msgs/s, alternated:
        p99.9 6.5-6.8 against 10-17 ms)."""
        self._writer.submit(self._handles[self._current], offset, parts, size)
        self._buf_start = offset + size
        self._dirty.add(self._current)

    def _unwritten_record(self, log_id: int, handle: Handle, offset: int) -> bytes | None:
        """The record at `offset` if a write the thread has not done yet holds it."""
        write = self._writer.holding(handle, offset)
        if write is None:
            return None
        parts = write.parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)  # a large record's parts
        with memoryview(data) as view:
            rest = view[offset - write.offset :]
            if len(rest) < records.HEADER.size:
                raise CorruptedDataError(f"entry log {log_id} offset {offset}: record cut short")
            return bytes(rest[: records.record_length(bytes(rest[: records.HEADER.size]))])

    def read(self, location: int) -> tuple[int, int, bytes]:
        """(ledger_id, entry_id, data) at location; CorruptedDataError on a bad checksum."""
        log_id, offset = location >> 32, location & 0xFFFFFFFF
        if log_id == self._current and offset >= self._buf_start:
            start = offset - self._buf_start
            head = bytes(self._buf[start : start + records.HEADER.size])
            return records.decode_checked(
                bytes(self._buf[start : start + records.record_length(head)]), "buffer"
            )
        handle = self._handles.get(log_id)
        if handle is None:
            raise NoSuchEntryError(f"entry log {log_id} is gone (location {location:#x})")
        held = self._unwritten_record(log_id, handle, offset) if self._writer.pending else None
        if held is not None:
            return records.decode_checked(held, f"entry log {log_id} offset {offset} (not written yet)")
        raw = self._files.pread(handle, offset, _READ_AHEAD)
        if len(raw) < records.HEADER.size:
            raise CorruptedDataError(f"entry log {log_id} offset {offset}: record cut short")
        want = records.record_length(raw)
        if want > len(raw):
            # The whole record in one read (its first page again, from the page cache): joining
            # the rest onto what was read would copy a 1 MiB record once more.
            raw = self._files.pread(handle, offset, want)
        return records.decode_checked(raw[:want], f"entry log {log_id} offset {offset}")

    def sizes(self) -> dict[int, int]:
        """Bytes added per log (after a flush: what `sync` makes durable)."""
        out = {log_id: self._ends.get(log_id) or self._files.size(h) for log_id, h in self._handles.items()}
        out[self._current] = self._buf_start + len(self._buf)
        return out

    def take_dirty(self) -> list[Handle]:
        """Handles to fsync for a checkpoint; call after flush()."""
        dirty, self._dirty = self._dirty, set()
        return [self._handles[i] for i in dirty if i in self._handles]

    def mark_dirty(self, handles: list[Handle]) -> None:
        """Undo take_dirty after a failed fsync."""
        by_handle = {id(h): i for i, h in self._handles.items()}
        self._dirty.update(by_handle[id(h)] for h in handles if id(h) in by_handle)

    def sync(self, handles: list[Handle], through: int) -> None:
        """Wait for the writer thread to have written write `through` (what flush()
        returned) and those before, then fsync the given logs and the directory (worker
        thread). Raises OSError if a write fails again."""
        self._writer.wait_written(through)
        for handle in handles:
            self._files.fsync(handle)
        self._files.sync_dir(self._dir)

    async def remove(self, log_id: int) -> None:
        """Delete a log whose ledgers are all deleted (never the current one); the unlink of
        what may be a 1 GiB file runs in a thread, not on the loop."""
        assert log_id != self._current
        handle = self._handles.pop(log_id)
        self.ledgers.pop(log_id, None)
        self._ends.pop(log_id, None)
        self._files.close(handle)
        await asyncio.to_thread(remove_files, self._files, [os.path.join(self._dir, _file_name(log_id))])

    def drain(self) -> None:
        """Hand the buffer over and wait until everything is written (blocks: tests, close)."""
        self._writer.wait_written(self.flush())

    def close(self) -> None:
        self._writer.stop()
        for handle in self._handles.values():
            self._files.close(handle)
        self._handles.clear()


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
