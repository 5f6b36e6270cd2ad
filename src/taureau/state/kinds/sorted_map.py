"""Sorted map: bytes keys in byte order, range-partitioned, with range scans (sort and top-k)."""

from __future__ import annotations

from bisect import bisect_left

from taureau.common import errors
from taureau.state import codec
from taureau.state.blocks import DICT_SLOT, SEQ_SLOT, KeyedBlock
from taureau.state.codec import REDO, STALE, Redirect, pack_u64, unpack_u64
from taureau.state.handles import KeyValueHandle
from taureau.state.kinds import Kind, register
from taureau.state.layouts import Ranges

# Partitioned by key range, not hash: a key's position is its first 16 bytes as a big-endian
# integer (shorter keys padded with zeros), so positions keep the keys' byte order and a
# partition [lo, hi) of positions holds a contiguous run of keys. Splits cut at the median
# key's position; keys that share their first 16 bytes cannot be split apart (as keys that
# share a hash slot). Every keyed op (put, upsert, update, get, remove, multi_*) is the keyed
# block's; a block keeps a sorted index of its keys beside the dict, sorted lazily (appends
# since the last scan are merged in one Timsort pass; removed keys are skipped, then purged).
#
#   RANGE  fields: alloc, lo, hi (the partition the client believes it asks: positions as
#          big-endian bytes), start, end, flags (bit 0: end given, bit 1: reverse), limit (u64,
#          0 = no limit)
#          reply: key, value, key, value... of this block, start <= key < end, in order
# A block whose range is not the one asked about answers STALE (the client refreshes its map
# and scans again); one with keys still moving in answers REDO. A scan over several blocks
# is not a snapshot: writes between two blocks' replies may or may not be seen.

KEY_BYTES = 16
KEY_SPACE = 1 << (8 * KEY_BYTES)
RANGE = codec.data_op(12, "RANGE")
HAS_END, REVERSE = 1, 2


def position(key: bytes) -> int:
    return int.from_bytes(key[:KEY_BYTES].ljust(KEY_BYTES, b"\0"), "big")


def _pos_bytes(n: int) -> bytes:
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


class SortedMapBlock(KeyedBlock):
    """One key-range partition of a sorted map."""

    kind = "sorted_map"
    KEY_SPACE = KEY_SPACE
    SLOT = DICT_SLOT + SEQ_SLOT  # a dict entry and a slot in the sorted index
    position = staticmethod(position)

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._sorted: list[bytes] = []  # sorted keys, possibly with some in _gone
        self._added: list[bytes] = []  # keys added since the last scan, unsorted
        self._gone: set[bytes] = set()  # keys in _sorted that were removed since
        self.ops[RANGE] = self.range

    # -- the index -------------------------------------------------------------------------------

    def _add(self, key: bytes) -> None:
        if key in self._gone:
            self._gone.discard(key)  # still in _sorted
        else:
            self._added.append(key)

    def _keys(self) -> list[bytes]:
        if self._added:
            self._sorted.extend(self._added)
            self._sorted.sort()
            self._added = []
        if len(self._gone) > 64 and len(self._gone) * 2 > len(self._sorted):
            gone = self._gone
            self._sorted = [k for k in self._sorted if k not in gone]
            self._gone = set()
        return self._sorted

    def _store(self, key: bytes, value: bytes, old: bytes | None, op: str) -> list[bytes]:
        out = super()._store(key, value, old, op)
        if old is None:
            self._add(key)
        return out

    def _put_batch(self, batch: dict[bytes, bytes], op: str) -> None:
        new = [k for k in batch if k not in self.data]
        super()._put_batch(batch, op)
        for k in new:
            self._add(k)

    def remove(self, f: list[bytes]) -> list[bytes]:
        out = super().remove(f)
        self._gone.add(f[1])
        return out

    def extract(self, lo: int, hi: int) -> list[bytes]:
        out = super().extract(lo, hi)
        self._gone.update(out[::2])
        return out

    def import_(self, fields: list[bytes]) -> None:
        new = [k for k in fields[::2] if k not in self.data]
        super().import_(fields)
        for k in new:
            self._add(k)

    def clear(self) -> None:
        super().clear()
        self._sorted, self._added, self._gone = [], [], set()

    # -- scans ------------------------------------------------------------------------------------

    def range(self, f: list[bytes]) -> list[bytes]:
        if len(f) != 7:
            raise errors.StateProtocolError("range takes lo, hi, start, end, flags and a limit")
        self.check_live()
        lo, hi = int.from_bytes(f[1], "big"), int.from_bytes(f[2], "big")
        if (lo, hi) != (self.lo, self.hi):
            raise Redirect(STALE, f"this block serves [{self.lo}, {self.hi}), not [{lo}, {hi})")
        if self.importing is not None:
            raise Redirect(REDO, "keys are moving in")
        start, end, flags, limit = f[3], f[4], f[5], unpack_u64(f[6])
        if len(flags) != 1:
            raise errors.StateProtocolError("range flags are one byte")
        keys = self._keys()
        i = bisect_left(keys, start)
        j = bisect_left(keys, end) if flags[0] & HAS_END else len(keys)
        span = keys[i:j] if not flags[0] & REVERSE else keys[i:j][::-1]
        out: list[bytes] = []
        data, gone = self.data, self._gone
        for k in span:
            if k in gone:
                continue
            out.append(k)
            out.append(data[k])
            if limit and len(out) == 2 * limit:
                break
        return out


class SortedMap(KeyValueHandle):
    """A map whose keys are kept in byte order: get/put/upsert/update/remove as a hash table,
    plus range scans across its blocks in order.

    >>> sm = client.open_or_create("/jobs/j1/sorted", SortedMap)
    >>> sm.multi_put({b"b": b"2", b"a": b"1", b"c": b"3"})
    >>> sm.range(b"a", b"c")              # [(b"a", b"1"), (b"b", b"2")]
    >>> sm.range(reverse=True, limit=2)   # top 2: [(b"c", b"3"), (b"b", b"2")]
    """

    kind = "sorted_map"
    position = staticmethod(position)

    def range(
        self, start: bytes = b"", end: bytes | None = None, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, bytes]]:
        """Entries with start <= key < end (end None: to the last key), ascending or, with
        `reverse`, descending; at most `limit` of them."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        if limit == 0:
            return []
        first = position(start)
        last = position(end) if end is not None else KEY_SPACE - 1
        flags = bytes([(HAS_END if end is not None else 0) | (REVERSE if reverse else 0)])

        def attempt() -> list[tuple[bytes, bytes]]:
            out: list[tuple[bytes, bytes]] = []
            parts = [p for p in self._parts if p.hi > first and p.lo <= last]
            for p in reversed(parts) if reverse else parts:
                want = 0 if limit is None else limit - len(out)
                req = [p.ralloc, _pos_bytes(p.lo), _pos_bytes(p.hi), start, end or b"", flags, pack_u64(want)]
                r = self._conn(self._check(p).raddr).call(RANGE, req)
                out.extend(zip(r[::2], r[1::2], strict=True))
                if limit is not None and len(out) >= limit:
                    break
            return out

        return self._retry(attempt)

    def cli_get(self, key: str | None) -> bytes:
        if key is not None:
            return super().cli_get(key)
        return b"".join(k + b"\t" + v + b"\n" for k, v in self.range())


KIND = register(
    Kind(
        name="sorted_map",
        dump_code=5,  # records alternate key, value
        layout=Ranges(KEY_SPACE, position),
        block=SortedMapBlock,
        handle=SortedMap,
        notify_ops=frozenset({"put", "upsert", "update", "remove"}),
    )
)
