"""CrashFiles: an in-memory FileIO that can crash (lose or tear unsynced writes) and inject errors.

Theory of operation: each file keeps two images, `durable` (what survived the last fsync)
and `current` (what reads see). `crash()` makes every file's current image its durable one
("drop"), or the durable image plus a random prefix of the unsynced bytes that follow it
("tear", what a power cut leaves behind), and invalidates every open handle, so the crashed
bookie's threads can write no more. File creation and removal are durable at once (as if
every directory were fsynced). `inject(op, errno)` makes the next calls of an operation
("append", "pwrite", "fsync", "truncate", "open", "kv_commit") fail, e.g. with ENOSPC.
With `synced_appends`, `append_all_synced` is an append, then an fsync of the file (either may
fail as injected), as the real one's pwritev2(RWF_DSYNC).
"""

from __future__ import annotations

import errno as errno_codes
import os
import random
from collections.abc import Iterable, Sequence

from taureau.common.bytes_like import Bytes
from taureau.storage.bookie.files import FileIO
from taureau.storage.bookie.kv import KV, MemoryKV


class _File:
    __slots__ = ("durable", "current", "dirty_from")

    def __init__(self) -> None:
        self.durable = bytearray()  # as of the last fsync
        self.current = bytearray()  # what reads see
        self.dirty_from = 0  # current == durable before this offset

    def touch(self, offset: int) -> None:
        self.dirty_from = min(self.dirty_from, offset)


class _Handle:
    __slots__ = ("path", "file", "epoch")

    def __init__(self, path: str, file: _File, epoch: int) -> None:
        self.path = path
        self.file = file
        self.epoch = epoch  # the crash epoch it was opened in; stale after a crash


class _CrashKV(MemoryKV):
    def __init__(self, owner: CrashFiles) -> None:
        super().__init__()
        self._owner = owner

    def commit(
        self,
        puts: Iterable[tuple[bytes, bytes]],
        deletes: Iterable[bytes] = (),
        delete_prefixes: Iterable[bytes] = (),
    ) -> None:
        self._owner._maybe_fail("kv_commit", "<kv>")
        super().commit(puts, deletes, delete_prefixes)


class CrashFiles(FileIO):
    def __init__(self, seed: int = 0, synced_appends: bool = False) -> None:
        self.synced_appends = synced_appends
        self._files: dict[str, _File] = {}
        self._dirs: set[str] = set()
        self._kvs: dict[str, _CrashKV] = {}
        self._epoch = 0
        self._faults: dict[str, list[int | None]] = {}  # op -> [errno, remaining (None: forever)]
        self._random = random.Random(seed)
        self.fsyncs = 0  # how many fsync calls succeeded, for tests of group commit

    # -- fault control ----------------------------------------------------------------------

    def inject(self, op: str, err: int = errno_codes.ENOSPC, times: int | None = 1) -> None:
        """Make the next `times` calls of `op` fail with OSError(err); None: until clear()."""
        self._faults[op] = [err, times]

    def clear(self) -> None:
        self._faults.clear()

    def crash(self, mode: str = "drop") -> None:
        """Lose unsynced data ("drop") or keep a random part of it ("tear")."""
        if mode not in ("drop", "tear"):
            raise ValueError(f"crash mode must be 'drop' or 'tear', not {mode!r}")
        self._epoch += 1
        self._faults.clear()
        for file in self._files.values():
            current, durable = file.current, file.durable
            kept = bytearray(durable)
            if mode == "tear" and len(current) > len(durable) and file.dirty_from >= len(durable):
                kept = bytearray(current[: self._random.randint(len(durable), len(current))])
            file.current, file.durable, file.dirty_from = kept, bytearray(kept), len(kept)

    def durable_image(self, path: str) -> bytes:
        """What a crash now would leave of the file (its bytes as of the last fsync)."""
        return bytes(self._files[os.path.normpath(path)].durable)

    def paths(self) -> list[str]:
        return list(self._files)

    def unsynced_bytes(self, paths: Iterable[str] | None = None) -> int:
        """Bytes written and not fsynced, in every file or in `paths`."""
        files = list(self._files.values()) if paths is None else [self._files[p] for p in paths]
        return sum(max(0, len(f.current) - len(f.durable)) for f in files)

    def corrupt(self, path: str, offset: int, data: bytes) -> None:
        """Overwrite bytes of a file durably (a bad sector), for checksum tests."""
        file = self._files[path]
        for image in (file.current, file.durable):
            image[offset : offset + len(data)] = data

    def _maybe_fail(self, op: str, path: str) -> None:
        fault = self._faults.get(op)
        if fault is None:
            return
        err, remaining = fault
        if remaining is not None:
            if remaining <= 1:
                del self._faults[op]
            else:
                fault[1] = remaining - 1
        assert err is not None
        raise OSError(err, os.strerror(err), path)

    def _live(self, handle: _Handle, op: str) -> _File:
        if handle.epoch != self._epoch:
            raise OSError(errno_codes.EBADF, "handle from before the crash", handle.path)
        self._maybe_fail(op, handle.path)
        return handle.file

    # -- FileIO -----------------------------------------------------------------------------

    def makedirs(self, path: str) -> None:
        self._dirs.add(os.path.normpath(path))

    def listdir(self, path: str) -> list[str]:
        path = os.path.normpath(path)
        if path not in self._dirs:
            raise FileNotFoundError(errno_codes.ENOENT, "no such directory", path)
        # A snapshot of the names: a journal's thread may create a file (a roll) meanwhile,
        # and iterating the dict itself then raised "dictionary changed size during iteration".
        return [os.path.basename(p) for p in list(self._files) if os.path.dirname(p) == path]

    def open(self, path: str) -> _Handle:
        path = os.path.normpath(path)
        self._maybe_fail("open", path)
        if os.path.dirname(path) not in self._dirs:
            raise FileNotFoundError(errno_codes.ENOENT, "no such directory", path)
        file = self._files.setdefault(path, _File())
        return _Handle(path, file, self._epoch)

    def append(self, handle: _Handle, data: bytes) -> int:
        file = self._live(handle, "append")
        offset = len(file.current)
        file.touch(offset)
        file.current += data
        return offset

    def pwrite(self, handle: _Handle, data: bytes | bytearray, offset: int) -> None:
        file = self._live(handle, "pwrite")
        file.touch(min(offset, len(file.current)))
        if offset > len(file.current):
            file.current += bytes(offset - len(file.current))
        file.current[offset : offset + len(data)] = data

    def pread(self, handle: _Handle, offset: int, size: int) -> bytes:
        return bytes(self._live(handle, "pread").current[offset : offset + size])

    def fsync(self, handle: _Handle) -> None:
        file = self._live(handle, "fsync")
        # The journal's writer thread may append while this runs: the end is read once, so
        # bytes appended after it stay dirty instead of being marked durable.
        end = len(file.current)
        del file.durable[file.dirty_from :]
        file.durable += file.current[file.dirty_from : end]
        file.dirty_from = end
        self.fsyncs += 1

    def append_all_synced(self, handle: _Handle, parts: Sequence[Bytes]) -> int:
        if not self.synced_appends:
            raise NotImplementedError("CrashFiles(synced_appends=False) has no synced appends")
        offset = self.append_all(handle, parts)
        self.fsync(handle)
        return offset

    def truncate(self, handle: _Handle, size: int) -> None:
        file = self._live(handle, "truncate")
        file.touch(min(size, len(file.current)))
        del file.current[size:]
        if len(file.durable) > size:
            del file.durable[size:]

    def size(self, handle: _Handle) -> int:
        return len(self._live(handle, "size").current)

    def close(self, handle: _Handle) -> None:
        handle.epoch = -1

    def remove(self, path: str) -> None:
        path = os.path.normpath(path)
        self._maybe_fail("remove", path)
        if self._files.pop(path, None) is None:
            raise FileNotFoundError(errno_codes.ENOENT, "no such file", path)

    def sync_dir(self, path: str) -> None:
        self._maybe_fail("sync_dir", path)

    def open_kv(self, path: str) -> KV:
        return self._kvs.setdefault(os.path.normpath(path), _CrashKV(self))

    def exists(self, path: str) -> bool:
        return os.path.normpath(path) in self._files
