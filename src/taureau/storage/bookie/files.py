"""FileIO: the one seam through which the bookie touches the disk (a test swaps in CrashFiles)."""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import time
from collections.abc import Sequence
from typing import Any

from taureau.common.bytes_like import Bytes
from taureau.common.errors import DiskFullError, StorageError
from taureau.common.private_files import make_private_dirs, open_private, touch_private
from taureau.storage.bookie.kv import KV, SqliteKV

# errnos that mean "this disk takes no more writes": the bookie turns read-only on them.
_FULL_OR_UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

Handle = Any  # opaque: whatever the FileIO returned from open()
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024  # buffers per pwritev
_FADVISE = getattr(os, "posix_fadvise", None)  # not on macOS
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# What a page drop leaves behind the write position (BookKeeper's journal keeps a lag too). A
# small append lands in the file's last, partly written page: dropped, that page would have to
# be read back from the disk before the write could go on, a read in every journal batch.
DROP_LAG_BYTES = 4 << 20


def storage_error(exc: OSError, what: str) -> StorageError:
    """The typed error for an OSError while doing `what`."""
    if exc.errno in _FULL_OR_UNWRITABLE:
        return DiskFullError(f"{what}: disk full or not writable ({exc.strerror or exc})")
    return StorageError(f"{what}: {exc.strerror or exc}")


class FileIO(abc.ABC):
    """Files addressed by path, written at offsets. Every method may raise OSError."""

    # True where append_all_synced exists: one call that appends and makes the bytes durable.
    synced_appends = False

    @abc.abstractmethod
    def makedirs(self, path: str) -> None: ...

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]: ...

    @abc.abstractmethod
    def open(self, path: str) -> Handle:
        """Open for reading and writing, creating an empty file if absent."""

    @abc.abstractmethod
    def append(self, handle: Handle, data: bytes) -> int:
        """Write at the end; return the offset the data starts at."""

    def append_all(self, handle: Handle, parts: Sequence[Bytes]) -> int:
        """Append `parts` one after another, as one append of their concatenation would."""
        return self.append(handle, b"".join(parts))

    def append_all_synced(self, handle: Handle, parts: Sequence[Bytes]) -> int:
        """append_all, durable when it returns (the bytes, and the file size that covers
        them, as fdatasync makes them), in one call. Only where `synced_appends`."""
        raise NotImplementedError(f"{type(self).__name__} has no synced appends")

    @abc.abstractmethod
    def pwrite(self, handle: Handle, data: bytes | bytearray, offset: int) -> None: ...

    def pwrite_all(self, handle: Handle, parts: Sequence[Bytes], offset: int) -> None:
        """Write `parts` one after another from `offset`, as one pwrite of their concatenation."""
        self.pwrite(handle, b"".join(parts), offset)

    @abc.abstractmethod
    def pread(self, handle: Handle, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset` (fewer at the end of the file)."""

    def drop_cache(self, handle: Handle) -> None:
        """Advice after an fsync: the file's pages will not be read again, drop the clean ones
        from the page cache. Never fails (nothing depends on it); a FileIO without a page
        cache has nothing to do."""
        return None

    def start_writeback(self, handle: Handle, offset: int, size: int) -> None:
        """Advice after a write: start writing this range to the disk now, without waiting.
        Never fails; a FileIO without a page cache has nothing to do."""
        return None

    @abc.abstractmethod
    def fsync(self, handle: Handle) -> None: ...

    @abc.abstractmethod
    def truncate(self, handle: Handle, size: int) -> None: ...

    @abc.abstractmethod
    def size(self, handle: Handle) -> int: ...

    @abc.abstractmethod
    def close(self, handle: Handle) -> None: ...

    @abc.abstractmethod
    def remove(self, path: str) -> None: ...

    @abc.abstractmethod
    def sync_dir(self, path: str) -> None:
        """Make creations and removals in the directory durable."""

    @abc.abstractmethod
    def open_kv(self, path: str) -> KV:
        """The durable key-value store kept at `path` (the index lives there)."""


class _OSHandle:
    __slots__ = ("fd", "size", "dropped")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size  # tracked here so append needs no fstat
        self.dropped = 0  # drop_cache has dropped the pages before this offset


class OSFiles(FileIO):
    """The real disk."""

    # Linux's pwritev2(RWF_DSYNC): a journal round is one system call instead of a write and
    # an fsync, so the journal's thread waits for the GIL once fewer per round; against a busy
    # event loop each such wait can last the interpreter's switch interval (5 ms).
    synced_appends = hasattr(os, "RWF_DSYNC")

    def makedirs(self, path: str) -> None:
        make_private_dirs(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def open(self, path: str) -> _OSHandle:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        return _OSHandle(fd, os.fstat(fd).st_size)

    def append(self, handle: _OSHandle, data: bytes) -> int:
        offset = handle.size
        self.pwrite(handle, data, offset)
        return offset

    def append_all(self, handle: _OSHandle, parts: Sequence[Bytes]) -> int:
        offset = handle.size
        self.pwrite_all(handle, parts, offset)
        return offset

    def append_all_synced(self, handle: _OSHandle, parts: Sequence[Bytes]) -> int:
        offset = handle.size
        # Each pwritev syncs what it wrote (a short write is continued by another, synced too).
        self.pwrite_all(handle, parts, offset, os.RWF_DSYNC)
        return offset

    def pwrite_all(self, handle: _OSHandle, parts: Sequence[Bytes], offset: int, flags: int = 0) -> None:
        """pwritev: the parts go to the kernel as they are (a journal batch of 1 MiB entries
        was joined into one more copy of every byte before its write)."""
        at = offset
        pending: list[Bytes] = list(parts)
        i = 0
        while i < len(pending):
            written = os.pwritev(handle.fd, pending[i : i + _IOV_MAX], at, flags)
            at += written
            while i < len(pending) and written >= len(pending[i]):  # the parts that went out whole
                written -= len(pending[i])
                i += 1
            if written:  # a short write stopped inside part i
                pending[i] = memoryview(pending[i])[written:]
        handle.size = max(handle.size, at)

    def pwrite(self, handle: _OSHandle, data: bytes | bytearray, offset: int) -> None:
        view = memoryview(data)
        at = offset
        while view:
            written = os.pwrite(handle.fd, view, at)
            view, at = view[written:], at + written
        handle.size = max(handle.size, at)

    def pread(self, handle: _OSHandle, offset: int, size: int) -> bytes:
        return os.pread(handle.fd, size, offset)

    def fsync(self, handle: _OSHandle) -> None:
        os.fsync(handle.fd)

    def start_writeback(self, handle: _OSHandle, offset: int, size: int) -> None:
        # On Linux, POSIX_FADV_DONTNEED starts the range's writeback (WB_SYNC_NONE: no wait)
        # and drops only clean pages, which freshly written ones are not: they stay cached.
        if size > 0:
            _advise_dontneed(handle, offset, size)

    def drop_cache(self, handle: _OSHandle) -> None:
        # Pages the kernel frees here are the ones the next writes get, warm. Without it every
        # write took fresh pages, which cost 3-4x the copy itself on this (virtual) machine:
        # 1 MiB written twice, 3.4-4.3 ms of CPU against 0.9-1.0 ms with the journal dropped.
        # BookKeeper's journal does the same (journalRemovePagesFromPageCache).
        # Only whole pages at least DROP_LAG_BYTES behind the end, each range once.
        end = (handle.size - DROP_LAG_BYTES) // _PAGE * _PAGE
        start = handle.dropped
        if _FADVISE is not None and end > start:
            _advise_dontneed(handle, start, end - start)
            handle.dropped = end

    def truncate(self, handle: _OSHandle, size: int) -> None:
        os.ftruncate(handle.fd, size)
        handle.size = size
        handle.dropped = min(handle.dropped, size // _PAGE * _PAGE)

    def size(self, handle: _OSHandle) -> int:
        return handle.size

    def close(self, handle: _OSHandle) -> None:
        os.close(handle.fd)

    def remove(self, path: str) -> None:
        os.remove(path)

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def open_kv(self, path: str) -> KV:
        touch_private(path)  # sqlite creates it 0644, and its -wal/-shm files copy that mode
        return SqliteKV(path)


def _advise_dontneed(handle: _OSHandle, offset: int, size: int) -> None:
    """posix_fadvise DONTNEED, where it exists; advice only, so a refusal is ignored."""
    if _FADVISE is not None:
        with contextlib.suppress(OSError):
            _FADVISE(handle.fd, offset, size, os.POSIX_FADV_DONTNEED)


# Unlinking a file frees all its blocks in one filesystem transaction: a 64 MiB journal file
# took 34 ms on ext4, and the journal's fsyncs on the same disk waited for it (18 and 11 ms
# in a row, a receipt 47 ms late). Cut down a few MiB at a time first, with a pause between
# cuts, each is a small transaction the fsyncs pass between (as RocksDB's delete scheduler).
SHRINK_STEP = 4 << 20
SHRINK_PAUSE_S = 0.002


def remove_files(files: FileIO, paths: list[str]) -> None:
    """Cut down and unlink `paths`, any already gone included (worker thread: this takes a
    pause per SHRINK_STEP bytes). A crash midway leaves a shorter file that the next start
    removes as it would have the whole one (it is before the checkpoint that retired it)."""
    for path in paths:
        try:
            handle = files.open(path)
        except FileNotFoundError:
            continue
        try:
            size = files.size(handle)
            while size > SHRINK_STEP:
                size -= SHRINK_STEP
                files.truncate(handle, size)
                time.sleep(SHRINK_PAUSE_S)
        finally:
            files.close(handle)
        try:
            files.remove(path)
        except FileNotFoundError:
            pass
