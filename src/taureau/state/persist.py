"""Durable copies of structures: the dump file format and the backing stores it is written to."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import crc32c

from taureau.common import errors
from taureau.state import kinds

# Dump file, version 1 (integers big-endian):
#
#   dump    := magic "TAUS" version:u8 kind:u8 count:u64 record{count} crc:u32
#   record  := len:u32 byte{len}
#   kind    := the structure kind's dump code (its module in taureau.state.kinds says what its
#              records are: 1 hash_table, 2 queue, 3 file, 4 counter, 5 sorted_map)
#   crc     := CRC32C of every byte before it
#
# Written to a temporary name, fsynced, then renamed (and the directory fsynced), so a crash
# never leaves half a dump under the real name. Dumps hold users' data: files are 0600 and
# every directory the state layer makes is 0700, whatever the umask.

MAGIC = b"TAUS"
VERSION = 1
_HEAD = struct.Struct(">4sBBQ")
_LEN = struct.Struct(">I")
_CRC = struct.Struct(">I")


def encode_dump(kind: str, records: list[bytes]) -> bytes:
    parts = [_HEAD.pack(MAGIC, VERSION, kinds.get(kind).dump_code, len(records))]
    for r in records:
        parts.append(_LEN.pack(len(r)))
        parts.append(r)
    body = b"".join(parts)
    return body + _CRC.pack(crc32c.crc32c(body))


def decode_dump(data: bytes) -> tuple[str, list[bytes]]:
    """(kind, records) of a dump; BackingStoreError if it is truncated, corrupt or foreign."""
    if len(data) < _HEAD.size + _CRC.size:
        raise errors.BackingStoreError("dump is truncated (shorter than its header)")
    magic, version, kind, count = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        raise errors.BackingStoreError("not a taureau state dump (bad magic or version)")
    name = kinds.by_code(kind).name
    body, (crc,) = data[: -_CRC.size], _CRC.unpack_from(data, len(data) - _CRC.size)
    if crc32c.crc32c(body) != crc:
        raise errors.BackingStoreError("dump checksum mismatch (corrupt or truncated)")
    records: list[bytes] = []
    off = _HEAD.size
    for _ in range(count):
        if off + 4 > len(body):
            raise errors.BackingStoreError("dump record table is truncated")
        (n,) = _LEN.unpack_from(body, off)
        off += 4
        records.append(body[off : off + n])
        off += n
    if off != len(body):
        raise errors.BackingStoreError("dump has trailing bytes")
    return name, records


FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dirs(path: str | Path) -> Path:
    """Create `path` and any missing parents owner-only (os.makedirs gives the parents the
    umask's default mode instead); return it resolved."""
    p = Path(path).absolute()
    missing = []
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to change
        os.chmod(d, DIR_MODE)  # mkdir's mode is masked by the umask; 0700 is what we mean
    return Path(path).resolve()


class LocalBacking:
    """`local://relative/path` under the data directory (absolute paths are refused: a client
    must not make the controller write anywhere on its host)."""

    def __init__(self, data_dir: str) -> None:
        self.root = Path(data_dir).resolve()

    def _path(self, rel: str) -> Path:
        p = (self.root / rel.lstrip("/")).resolve()
        if self.root not in p.parents:
            raise errors.BackingStoreError(f"backing path escapes the data directory: {rel!r}")
        return p

    def write(self, rel: str, data: bytes) -> None:
        p = self._path(rel)
        tmp = p.with_name(p.name + ".tmp")
        try:
            make_private_dirs(p.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
            with open(fd, "wb") as f:
                os.fchmod(fd, FILE_MODE)  # a leftover .tmp keeps its old mode through O_CREAT
                f.write(data)
                f.flush()
                os.fsync(fd)
            os.replace(tmp, p)
            _fsync_dir(p.parent)
        except OSError as e:
            raise errors.BackingStoreError(f"cannot write {rel!r}: {e.strerror}") from None

    def read(self, rel: str) -> bytes:
        try:
            return self._path(rel).read_bytes()
        except OSError as e:
            raise errors.BackingStoreError(f"cannot read {rel!r}: {e.strerror}") from None

    def delete(self, rel: str) -> None:
        """Remove a dump. Only a file that starts like one: the data directory also holds the
        controller's own files, which no client may delete."""
        p = self._path(rel)
        try:
            with open(p, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    raise errors.BackingStoreError(f"{rel!r} is not a dump; not deleting it")
            p.unlink()
            _fsync_dir(p.parent)
        except OSError as e:
            raise errors.BackingStoreError(f"cannot delete {rel!r}: {e.strerror}") from None


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (the dump was acknowledged once write returns)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Backings:
    """Resolves backing URLs (`scheme://rest`) to a store; a bare path means `local://`.
    More schemes (s3://, a durable ledger) register here."""

    def __init__(self, data_dir: str) -> None:
        self.schemes = {"local": LocalBacking(data_dir)}

    def resolve(self, url: str) -> tuple[LocalBacking, str]:
        if not isinstance(url, str) or not url:
            raise errors.BackingStoreError(f"not a backing path: {url!r}")
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "local", url
        store = self.schemes.get(scheme)
        if store is None or not rest:
            raise errors.BackingStoreError(f"unknown backing scheme or empty path: {url!r}")
        return store, rest

    def write(self, url: str, data: bytes) -> None:
        store, rest = self.resolve(url)
        store.write(rest, data)

    def read(self, url: str) -> bytes:
        store, rest = self.resolve(url)
        return store.read(rest)

    def delete(self, url: str) -> None:
        store, rest = self.resolve(url)
        store.delete(rest)
