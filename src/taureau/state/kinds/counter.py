"""Counter table: named signed 64-bit counters with atomic increments, partitioned by CRC16 slot."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from taureau.common import errors
from taureau.state import codec
from taureau.state.blocks import NUM_SLOTS, KeyedBlock, slot_of
from taureau.state.codec import Op
from taureau.state.handles import KeyedHandle, as_pairs
from taureau.state.kinds import Kind, register
from taureau.state.layouts import Ranges

# An increment runs on the memory server holding the counter, next to its value: one round
# trip, atomic (the block's event loop applies it whole), no read-modify-write race between
# parallel function instances. Values travel as 8-byte big-endian two's complement.
#
#   INCR        fields: alloc, key, delta     reply: the new value
#   MULTI_INCR  fields: alloc, (key, delta)*  reply: the value after each increment, in order;
#               all or nothing (a batch that would overflow any counter changes none)
# GET, UPSERT (set), REMOVE, EXISTS, MULTI_GET and COUNT are the keyed block's. A counter
# missing from the table is absent (get raises KeyNotFoundError); incr starts it at 0.
# An increment is never retried after its connection broke (it may have been applied).

INCR = codec.data_op(10, "INCR")
MULTI_INCR = codec.data_op(11, "MULTI_INCR")
_I64 = struct.Struct(">q")
MIN, MAX = -(1 << 63), (1 << 63) - 1


def pack_i64(n: int) -> bytes:
    if not MIN <= n <= MAX:
        raise errors.ValueTooLargeError(f"{n} does not fit a signed 64-bit counter")
    return _I64.pack(n)


def unpack_i64(b: bytes) -> int:
    if len(b) != 8:
        raise errors.StateProtocolError(f"a counter value is 8 bytes, not {len(b)}")
    return _I64.unpack(b)[0]


class CounterBlock(KeyedBlock):
    """One slot-range partition of a counter table."""

    kind = "counter"
    writes = frozenset({Op.UPSERT, Op.REMOVE, INCR, MULTI_INCR})

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        for op in (Op.PUT, Op.UPDATE, Op.MULTI_PUT):  # a counter's value is only ever a number
            del self.ops[op]
        self.ops[INCR] = self.incr
        self.ops[MULTI_INCR] = self.multi_incr

    def upsert(self, f: list[bytes]) -> list[bytes]:
        if len(f) == 3:
            unpack_i64(f[2])
        return super().upsert(f)

    def _incremented(self, pairs: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], list[bytes]]:
        """The new values (per key) and the value after each increment, checked, unapplied."""
        new: dict[bytes, bytes] = {}
        after: list[bytes] = []
        for key, delta in pairs:
            self._route(key)
            cur = new[key] if key in new else self.data.get(key)
            value = (unpack_i64(cur) if cur is not None else 0) + unpack_i64(delta)
            new[key] = packed = pack_i64(value)
            after.append(packed)
        return new, after

    def _apply(self, new: dict[bytes, bytes]) -> None:
        data = self.data
        grow = sum(self._entry(len(k), 8) for k in new if k not in data)
        if grow:
            self._need_room(grow)
        data.update(new)
        self._charge(grow)
        self._after_write()
        if "incr" in self.watch:
            for k in new:
                self.host.notify(self, "incr", k)

    def incr(self, f: list[bytes]) -> list[bytes]:
        if len(f) != 3:
            raise errors.StateProtocolError("incr takes a key and a delta")
        new, after = self._incremented([(f[1], f[2])])
        self._apply(new)
        return after

    def multi_incr(self, f: list[bytes]) -> list[bytes]:
        if len(f) % 2 != 1:
            raise errors.StateProtocolError("multi_incr takes key/delta pairs")
        new, after = self._incremented(list(zip(f[1::2], f[2::2], strict=True)))
        self._apply(new)
        return after


class Counter(KeyedHandle):
    """Named signed 64-bit counters shared by every client of the table.

    >>> hits = client.open_or_create("/jobs/j1/hits", Counter)
    >>> hits.incr(b"page-7")          # 1
    >>> hits.multi_incr({b"a": 5, b"b": -2})
    """

    kind = "counter"
    writes = frozenset({Op.UPSERT, Op.REMOVE, INCR, MULTI_INCR})

    def incr(self, key: bytes, delta: int = 1) -> int:
        """Add `delta` (may be negative) and return the new value; a new counter starts at 0."""
        r = self._op(INCR, key, pack_i64(delta), retry_unavailable=False)
        return unpack_i64(r[0])

    def get(self, key: bytes) -> int:
        return unpack_i64(self._op(Op.GET, key, read=True)[0])

    def set(self, key: bytes, value: int) -> None:
        self._op(Op.UPSERT, key, pack_i64(value))

    def multi_get(self, keys: Iterable[bytes]) -> list[int | None]:
        return [None if v is None else unpack_i64(v) for v in self._multi_get(keys)]

    def multi_incr(self, items: Mapping[bytes, int] | Iterable[tuple[bytes, int]]) -> list[int]:
        """Increment many counters; returns the value after each increment, in order. Each
        request to a block is all or nothing; a batch over several blocks is not."""
        pairs = [(k, pack_i64(d)) for k, d in as_pairs(items)]
        out = [0] * len(pairs)

        def done(ix: list[int], r: list[bytes]) -> None:
            for i, v in zip(ix, r, strict=True):
                out[i] = unpack_i64(v)

        self._multi_pairs(MULTI_INCR, pairs, done, retry_unavailable=False)
        return out

    def cli_get(self, key: str | None) -> bytes:
        if key is None:
            raise errors.StateProtocolError("get on a counter needs a key")
        return b"%d\n" % self.get(key.encode())

    def cli_put(self, key: str, value: str | None) -> None:
        try:
            delta = int(value) if value is not None else 1
        except ValueError:
            raise errors.StateProtocolError(f"not an integer: {value!r}") from None
        self.incr(key.encode(), delta)


KIND = register(
    Kind(
        name="counter",
        dump_code=4,  # records alternate key, 8-byte value
        layout=Ranges(NUM_SLOTS, slot_of),
        block=CounterBlock,
        handle=Counter,
        notify_ops=frozenset({"incr", "upsert", "remove"}),
    )
)
