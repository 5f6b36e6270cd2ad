"""File: bytes in extents of one block each, grown by the client as it writes past the end."""

from __future__ import annotations

import sys
from bisect import bisect_right
from typing import Any

from taureau.common import errors
from taureau.state.blocks import Block
from taureau.state.codec import STALE, Op, Redirect, pack_u64, unpack_u64
from taureau.state.handles import Part, Structure
from taureau.state.kinds import Kind, register
from taureau.state.layouts import Extents


class FileBlock(Block):
    """The bytes [lo, hi) of a file; hi - lo equals the capacity."""

    kind = "file"
    writes = frozenset({Op.WRITE})

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.data = bytearray()
        self.ops = {Op.WRITE: self.write, Op.READ: self.read, Op.FILE_SIZE: self.size}

    def write(self, f: list[bytes]) -> list[bytes]:
        """fields: offset (u64, absolute in the file), data. Reply: this block's extent."""
        self.check_live()
        if len(f) != 3:
            raise errors.StateProtocolError("write takes an offset and data")
        rel = unpack_u64(f[1]) - self.lo
        data = f[2]
        if rel < 0 or rel + len(data) > self.hi - self.lo:
            raise Redirect(STALE, f"write outside [{self.lo}, {self.hi})")
        grow = rel + len(data) - len(self.data)
        if grow > 0:  # a bytearray may keep an eighth more than it holds
            self._check_pool(grow + (grow >> 3) + 64)
        if rel > len(self.data):  # a write after a seek past the end leaves a zero-filled hole
            self.data.extend(bytes(rel - len(self.data)))
        self.data[rel : rel + len(data)] = data
        self._charge(sys.getsizeof(self.data) - self.used)
        if "write" in self.watch:
            self.host.notify(self, "write", f[1])
        return [pack_u64(len(self.data))]

    def read(self, f: list[bytes]) -> list[bytes]:
        """fields: offset (u64, absolute), length (u64). Reply: up to `length` bytes."""
        self.check_live()
        if len(f) != 3:
            raise errors.StateProtocolError("read takes an offset and a length")
        rel = unpack_u64(f[1]) - self.lo
        if rel < 0 or rel >= self.hi - self.lo:
            raise Redirect(STALE, f"read outside [{self.lo}, {self.hi})")
        return [bytes(self.data[rel : rel + unpack_u64(f[2])])]

    def size(self, f: list[bytes]) -> list[bytes]:
        return [pack_u64(len(self.data))]

    def export(self) -> list[bytes]:
        return [bytes(self.data)]

    def clear(self) -> None:
        super().clear()
        self.data = bytearray()

    def import_(self, fields: list[bytes]) -> None:
        data = bytearray(b"".join(fields))
        self._check_pool(sys.getsizeof(data) - self.used)
        self.data = data
        self._charge(sys.getsizeof(data) - self.used)


class File(Structure):
    """A byte file that grows block by block; read/write/seek like a Python file."""

    kind = "file"
    writes = frozenset({Op.WRITE})

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.pos = 0  # this handle's offset, as a Python file's

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size()}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def _spans(self, lo: int, hi: int) -> list[tuple[Part, int, int]]:
        parts = self._parts
        i = max(bisect_right(self._los, lo) - 1, 0)
        out = []
        while i < len(parts) and parts[i].lo < hi:
            p = self._check(parts[i])
            out.append((p, max(lo, p.lo), min(hi, p.hi)))
            i += 1
        return out

    def write(self, data: bytes) -> int:
        end = self.pos + len(data)
        if not self._parts or self._parts[-1].hi < end:
            self._set_map(self._c.control(Op.GROW, {"path": self.path, "until": end}))
        start = self.pos

        def attempt() -> None:
            for p, a, b in self._spans(start, end):
                self._conn(p.addr).call(Op.WRITE, [p.alloc, pack_u64(a), data[a - start : b - start]])

        self._retry(attempt)
        self.pos = end
        return len(data)

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes from the current offset (all to the end if size < 0)."""
        end = self.size() if size < 0 else self.pos + size
        start = self.pos

        def attempt() -> bytes:
            chunks = []
            for p, a, b in self._spans(start, end):
                chunk = self._conn(p.raddr).call(Op.READ, [p.ralloc, pack_u64(a), pack_u64(b - a)])[0]
                chunks.append(chunk)
                if len(chunk) < b - a:
                    break  # end of the written data
            return b"".join(chunks)

        out = self._retry(attempt)
        self.pos += len(out)
        return out

    def size(self) -> int:
        def attempt() -> int:
            size = 0
            for p in self._parts:
                extent = unpack_u64(self._conn(self._check(p).raddr).call(Op.FILE_SIZE, [p.ralloc])[0])
                if extent:
                    size = p.lo + extent
            return size

        return self._retry(attempt)

    def cli_get(self, key: str | None) -> bytes:
        return self.read()

    def cli_put(self, key: str, value: str | None) -> None:
        self.seek(0, 2)
        self.write(key.encode())


KIND = register(
    Kind(
        name="file",
        dump_code=3,  # records are extents in offset order; the file is their concatenation
        layout=Extents(),
        block=FileBlock,
        handle=File,
        notify_ops=frozenset({"write"}),
    )
)
