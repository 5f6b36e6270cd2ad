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
        self, files: FileIO, directory: str, *, max_file_size: int = 256 << 20, buffer_size: int = 1 << 20
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
    def current(self) -> int:
        return self._current

    def add(self, ledger_id: int, record: Bytes | Sequence[Bytes]) -> int:
        """Buffer an encoded record (bytes, or records.encode_parts: its parts, in order);
        return its location. Raises OSError (nothing added)."""
        if isinstance(record, BYTES_LIKE):
            record = (record,)
        size = sum(map(len, record))
        if len(self._buf) + size > self._buffer_size and self._buf:
            self.flush()
        if self._buf_start + len(self._buf) + size > self._max_file_size:
            self.flush()
            self._start_log(self._current + 1)
        offset = self._buf_start + len(self._buf)
        if size >= self._buffer_size:
            # A record as large as the buffer goes to the file as it is, its parts with one
            # pwritev: buffering it would copy it in and out again for nothing (1 MiB messages).
            self.flush()
            self._files.pwrite_all(self._handles[self._current], record, offset)
            self._written(offset, size)
        else:
            for part in record:
                self._buf += part
        self.ledgers[self._current].add(ledger_id)
        return (self._current << 32) | offset

    def flush(self) -> None:
        """Write the buffer to the current file (no fsync). On OSError the buffer is kept."""
        if self._buf:
            # The bytearray itself, not a bytes copy of it: the write is done before clear().
            self._files.pwrite(self._handles[self._current], self._buf, self._buf_start)
            self._written(self._buf_start, len(self._buf))
            self._buf.clear()

    def _written(self, offset: int, size: int) -> None:
        """`size` bytes went to the current log at `offset`: start their writeback now. Left
        to the checkpoint's fsync, 30 s of them (tens of MB) went to the disk at once, and the
        journal's fsyncs on the same disk waited behind them: receipts 25-35 ms late at each
        checkpoint, 10 ms with the writeback started as the bytes come (bench/publish_latency.py
        --seconds 55 at 10k msgs/s, alternated: p99.9 6.5-6.8 against 10-17 ms)."""
        self._files.start_writeback(self._handles[self._current], offset, size)
        self._buf_start = offset + size
        self._dirty.add(self._current)

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
        """Bytes written per log (after a flush: what an fsync will make durable)."""
        out = {log_id: self._files.size(h) for log_id, h in self._handles.items()}
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

    def sync(self, handles: list[Handle]) -> None:
        """fsync the given logs and the directory (worker thread)."""
        for handle in handles:
            self._files.fsync(handle)
        self._files.sync_dir(self._dir)

    async def remove(self, log_id: int) -> None:
        """Delete a log whose ledgers are all deleted (never the current one); the unlink of
        what may be a 1 GiB file runs in a thread, not on the loop."""
        assert log_id != self._current
        handle = self._handles.pop(log_id)
        self.ledgers.pop(log_id, None)
        self._files.close(handle)
        await asyncio.to_thread(remove_files, self._files, [os.path.join(self._dir, _file_name(log_id))])

    def close(self) -> None:
        for handle in self._handles.values():
            self._files.close(handle)
        self._handles.clear()
