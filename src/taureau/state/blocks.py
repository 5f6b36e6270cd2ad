"""Blocks: the base every structure kind's block builds on, and the keyed block (a range of a
key-position space, split and merged) that hash tables, counters and sorted maps share."""

from __future__ import annotations

import sys
import time
from binascii import crc_hqx
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from taureau.common import errors
from taureau.state.codec import REDO, STALE, Op, Redirect, pack_u64

# Theory of operation.
# A block is a fixed-capacity unit of one structure (a partition of a keyed structure, a
# queue segment or a file extent). Capacity is a limit on the memory the block's data takes
# in this process, measured (see "What memory costs" below), so a block costs memory only
# for what it stores and a full block is a block-size worth of RAM, not of payload. Every
# block also charges the memory server's Pool, which refuses what would pass its budget.
#
#   IMPORTING --import--> ACTIVE --link_next--> SEALED     (queue: a successor took the tail)
#                         ACTIVE --merge_out--> FORWARDED  (keyed: every key went to a neighbour)
#   any state --free--> FREED
#
# IMPORTING answers REDO (the data it will serve is in flight); SEALED refuses enqueues and,
# once empty, dequeues with STALE; FORWARDED answers STALE to everything. A keyed block
# serves the positions [lo, hi) of its kind's key space (a hash table: CRC16 XMODEM slots as
# Redis Cluster, 65536 of them); a key outside it is STALE, so a client with an old block map
# refreshes it instead of failing. Each kind's block is in taureau.state.kinds.<kind>.

NUM_SLOTS = 65536
HIGH_WATERMARK = 0.9  # fraction of capacity that asks the controller to split / append
LOW_WATERMARK = 0.1  # fraction under which a hash partition asks to merge with a neighbour
GROW_RETRY_S = 0.25  # after the pool said no (OutOfMemory), wait this long before asking again
BUSY_RETRY_S = 0.01  # after the structure was busy with another split, ask again this soon


class BlockState(Enum):
    IMPORTING = "importing"
    ACTIVE = "active"
    SEALED = "sealed"
    FORWARDED = "forwarded"
    FREED = "freed"


_ALLOWED = {
    BlockState.IMPORTING: {BlockState.ACTIVE, BlockState.FREED},
    BlockState.ACTIVE: {BlockState.SEALED, BlockState.FORWARDED, BlockState.FREED},
    BlockState.SEALED: {BlockState.FREED},
    BlockState.FORWARDED: {BlockState.FREED},
    BlockState.FREED: set(),
}


class BlockHost(Protocol):
    """What a block needs from the memory server that owns it."""

    pool: Pool

    def request_growth(self, block: Block) -> None: ...
    def request_merge(self, block: Block) -> None: ...
    def drained(self, block: Block) -> None: ...
    def notify(self, block: Block, op: str, data: bytes) -> None: ...


def slot_of(key: bytes) -> int:
    return crc_hqx(key, 0)


# What memory costs (64-bit CPython, measured against tracemalloc and RSS in
# tests/state/test_memory.py). A bytes object is a 33-byte header plus its bytes; pymalloc
# serves objects up to 512 bytes from 16-byte size classes, larger ones come from malloc with
# a 16-byte header. A dict entry's share of the dict's tables is at most 60 bytes (a table
# just grown is a third full: 24 bytes of entry and 4-8 of index per slot); a deque or list
# slot is a pointer plus spare room. Every cost is the worst case, so a server stays under
# its budget whatever the dicts' fill.
BYTES_HEADER = sys.getsizeof(b"")
SMALL_OBJECT = 512
DICT_SLOT = 60
SEQ_SLOT = 9


ENTRY_EXTRA = 2 * (BYTES_HEADER + 16) + DICT_SLOT + SEQ_SLOT  # the most an entry costs beyond its bytes


def bytes_cost(n: int) -> int:
    """The memory behind a bytes object of `n` bytes."""
    size = BYTES_HEADER + n
    return (size + 15) & ~15 if size <= SMALL_OBJECT else size + 16


def entry_cost(key_len: int, value_len: int) -> int:
    """A key and its value in a dict."""
    return bytes_cost(key_len) + bytes_cost(value_len) + DICT_SLOT


def item_cost(n: int) -> int:
    """A queue item in a deque."""
    return bytes_cost(n) + SEQ_SLOT


class Pool:
    """The memory one server's blocks hold, against its budget; the server owns it, its blocks
    charge it as they grow and shrink."""

    __slots__ = ("used", "budget")

    def __init__(self, budget: int) -> None:
        self.used = 0
        self.budget = budget

    def check(self, size: int) -> None:
        if self.used + size > self.budget:
            raise errors.OutOfMemoryError(
                f"memory server at its budget: {self.used} of {self.budget} bytes used, {size} more asked"
            )


def fit_batches(items: list[bytes], budget: int) -> list[list[bytes]]:
    """Cut queue items (in order) into batches a block charges at most `budget` bytes for; an
    item over the budget goes alone."""
    out: list[list[bytes]] = []
    cur: list[bytes] = []
    size = 0
    for it in items:
        cost = item_cost(len(it))
        if cur and size + cost > budget:
            out.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += cost
    if cur:
        out.append(cur)
    return out


class Block:
    """State shared by every block kind. Owned by one MemoryServer; only it mutates."""

    kind = ""
    growth = ""  # what a full block asks the controller for: "split", "append" or nothing
    writes: frozenset[int] = frozenset()  # ops that change its data (forwarded along a chain)

    def __init__(self, host: BlockHost, alloc_id: int, struct_id: int, capacity: int, lo: int, hi: int):
        self.host = host
        self.alloc_id = alloc_id
        self.struct_id = struct_id  # the controller's id of the structure this block belongs to
        self.capacity = capacity
        self.lo, self.hi = lo, hi  # slot range (hash) or byte offsets (file) this block serves
        self.used = 0  # bytes of memory its data takes (charged to the server's pool too)
        self.pool = host.pool
        self.chain: Any = None  # replica.ChainRole when its structure is replicated
        self.follower = False  # a replica behind the head: it applies what it is sent, unchecked
        self.state = BlockState.ACTIVE
        self.watch: frozenset[str] = frozenset()  # op names someone subscribed to
        self.grow_pending = False  # a split/append request is with the controller
        self.grow_failed_at = 0.0  # monotonic time of the last refused growth request
        self.grow_oom = False  # that refusal was OutOfMemory (else: busy, try again soon)
        self.grow_refusal = ""  # why, for the OutOfMemoryError full writes get meanwhile
        self.merge_pending = False
        self.ops: dict[int, Callable[[list[bytes]], list[bytes]]] = {}

    def set_state(self, new: BlockState) -> None:
        if new not in _ALLOWED[self.state]:
            raise errors.StateError(f"block {self.alloc_id}: illegal transition {self.state} -> {new}")
        self.state = new

    def _need_room(self, size: int) -> None:
        """Raise unless `size` more bytes fit the block and the server's budget; ask for
        growth when the block is full."""
        if self.follower:  # the head checked: a replica holds what its head holds
            return
        if size > self.capacity:
            raise errors.ValueTooLargeError(f"{size} bytes do not fit in a {self.capacity}-byte block")
        if self.used + size > self.capacity:
            self._ask_growth()
            if self.grow_pending or not self.grow_oom:
                raise Redirect(REDO, "block is full and growing")
            raise errors.OutOfMemoryError(f"block is full and cannot grow: {self.grow_refusal}")
        self.pool.check(size)

    def _check_pool(self, size: int) -> None:
        if not self.follower:
            self.pool.check(size)

    def _charge(self, delta: int) -> None:
        self.used += delta
        self.pool.used += delta

    def release(self) -> None:
        """The block is freed: give its memory back to the pool."""
        self.pool.used -= self.used
        self.used = 0

    def clear(self) -> None:
        """Drop every entry (a replica about to be given its head's state)."""
        self.release()

    def set_installed(self, state: BlockState, importing: Any) -> None:
        """Take the state its chain's head had (a replacement, not a transition)."""
        self.state = state

    def _ask_growth(self) -> None:
        if self.follower:  # only a chain's head asks to grow
            return
        wait = GROW_RETRY_S if self.grow_oom else BUSY_RETRY_S
        if self.grow_pending or time.monotonic() - self.grow_failed_at < wait:
            return
        self.grow_pending = True
        self.host.request_growth(self)

    def _after_write(self) -> None:
        if self.used > self.capacity * HIGH_WATERMARK:
            self._ask_growth()

    def check_live(self) -> None:
        if self.state is BlockState.IMPORTING:
            raise Redirect(REDO, "block is importing")
        if self.state is BlockState.FORWARDED:
            raise Redirect(STALE, "block moved")

    def export(self) -> list[bytes]:
        raise NotImplementedError

    def import_(self, fields: list[bytes]) -> None:
        raise NotImplementedError

    def is_empty(self) -> bool:
        return self.used == 0

    def incoming(self) -> tuple[int, int] | None:
        """A key range whose data is still on its way here (a merge target), if any."""
        return None

    def link_next(self) -> None:
        """A successor takes over (queue segments only)."""
        raise errors.WrongTypeError(f"a {self.kind} block has no successor")

    def report(self) -> dict[str, Any]:
        """What the controller needs to know about this block after it restarted."""
        return {
            "alloc": self.alloc_id,
            "struct": self.struct_id,
            "kind": self.kind,
            "lo": self.lo,
            "hi": self.hi,
            "state": self.state.value,
            "importing": self.incoming(),
            "empty": self.is_empty(),
        }


class KeyedBlock(Block):
    """One partition of a keyed structure: the entries whose key position is in [lo, hi).

    A kind sets `position` (key -> int in [0, KEY_SPACE)), and may add ops to `self.ops`."""

    growth = "split"
    writes = frozenset({Op.PUT, Op.UPSERT, Op.UPDATE, Op.REMOVE, Op.MULTI_PUT})
    KEY_SPACE = NUM_SLOTS
    SLOT = DICT_SLOT  # memory an entry takes beyond its key and value objects
    position: Callable[[bytes], int] = staticmethod(slot_of)

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.data: dict[bytes, bytes] = {}
        self.importing: tuple[int, int] | None = None  # key range whose data is still in flight
        self.ops = {
            Op.GET: self.get,
            Op.PUT: self.put,
            Op.UPSERT: self.upsert,
            Op.UPDATE: self.update,
            Op.REMOVE: self.remove,
            Op.EXISTS: self.exists,
            Op.MULTI_GET: self.multi_get,
            Op.MULTI_PUT: self.multi_put,
            Op.COUNT: self.count,
        }

    def _entry(self, key_len: int, value_len: int) -> int:
        return bytes_cost(key_len) + bytes_cost(value_len) + self.SLOT

    def _route(self, key: bytes) -> None:
        if self.state is not BlockState.ACTIVE:
            self.check_live()
        s = self.position(key)
        if not self.lo <= s < self.hi:
            raise Redirect(STALE, f"position {s} is not in [{self.lo}, {self.hi})")
        if self.importing is not None and self.importing[0] <= s < self.importing[1]:
            raise Redirect(REDO, "key range is importing")

    def get(self, f: list[bytes]) -> list[bytes]:
        key = f[1]
        self._route(key)
        v = self.data.get(key)
        if v is None:
            raise errors.KeyNotFoundError(f"key not found: {key[:64]!r}")
        return [v]

    def exists(self, f: list[bytes]) -> list[bytes]:
        self._route(f[1])
        return [b"\x01" if f[1] in self.data else b"\x00"]

    def count(self, f: list[bytes]) -> list[bytes]:
        self.check_live()
        return [pack_u64(len(self.data))]

    def _store(self, key: bytes, value: bytes, old: bytes | None, op: str) -> list[bytes]:
        cost = bytes_cost(len(value))
        delta = cost - bytes_cost(len(old)) if old is not None else cost + bytes_cost(len(key)) + self.SLOT
        if delta > 0:
            self._need_room(delta)
        self.data[key] = value
        self._charge(delta)
        self._after_write()
        if op in self.watch:
            self.host.notify(self, op, key)
        return []

    def put(self, f: list[bytes]) -> list[bytes]:
        if len(f) != 3:
            raise errors.StateProtocolError("put takes a key and a value")
        key = f[1]
        self._route(key)
        if key in self.data:
            raise errors.DuplicateKeyError(f"key exists: {key[:64]!r}")
        return self._store(key, f[2], None, "put")

    def upsert(self, f: list[bytes]) -> list[bytes]:
        if len(f) != 3:
            raise errors.StateProtocolError("upsert takes a key and a value")
        key = f[1]
        self._route(key)
        return self._store(key, f[2], self.data.get(key), "upsert")

    def update(self, f: list[bytes]) -> list[bytes]:
        if len(f) != 3:
            raise errors.StateProtocolError("update takes a key and a value")
        key = f[1]
        self._route(key)
        old = self.data.get(key)
        if old is None:
            raise errors.KeyNotFoundError(f"key not found: {key[:64]!r}")
        return self._store(key, f[2], old, "update")

    def remove(self, f: list[bytes]) -> list[bytes]:
        key = f[1]
        self._route(key)
        old = self.data.pop(key, None)
        if old is None:
            raise errors.KeyNotFoundError(f"key not found: {key[:64]!r}")
        self._charge(-self._entry(len(key), len(old)))
        if "remove" in self.watch:
            self.host.notify(self, "remove", key)
        if self.used < self.capacity * LOW_WATERMARK and (self.lo, self.hi) != (0, self.KEY_SPACE):
            self.host.request_merge(self)
        return []

    def multi_get(self, f: list[bytes]) -> list[bytes]:
        """Reply: a found-flag byte per key (1/0), then one value per key (b"" if missing)."""
        keys = f[1:]
        for k in keys:
            self._route(k)
        get = self.data.get
        vals = [get(k) for k in keys]
        # Distinct keys return at most what the block holds; a key asked for many times could
        # make a small request build a reply of any size.
        if sum(map(len, filter(None, vals))) > self.capacity:
            raise errors.ValueTooLargeError("the values asked for exceed a block; ask for each key once")
        flags = bytes(v is not None for v in vals)
        return [flags, *(v if v is not None else b"" for v in vals)]

    def multi_put(self, f: list[bytes]) -> list[bytes]:
        """Upsert every key/value pair; all or nothing (checked before the first write)."""
        if len(f) % 2 != 1:
            raise errors.StateProtocolError("multi_put takes key/value pairs")
        batch = dict(zip(f[1::2], f[2::2], strict=True))  # a key given twice is stored (and charged) once
        self._put_batch(batch, "upsert")
        return []

    def _put_batch(self, batch: dict[bytes, bytes], op: str) -> None:
        data = self.data
        grow = 0
        for k, v in batch.items():
            self._route(k)
            old = data.get(k)
            cost = bytes_cost(len(v))
            grow += cost - bytes_cost(len(old)) if old is not None else cost + bytes_cost(len(k)) + self.SLOT
        if grow > 0:
            self._need_room(grow)
        data.update(batch)
        self._charge(grow)
        self._after_write()
        if op in self.watch:
            for k in batch:
                self.host.notify(self, op, k)

    def incoming(self) -> tuple[int, int] | None:
        return self.importing

    def is_empty(self) -> bool:
        return not self.data

    def clear(self) -> None:
        super().clear()
        self.data.clear()
        self.importing = None

    def set_installed(self, state: BlockState, importing: Any) -> None:
        super().set_installed(state, importing)
        self.importing = (int(importing[0]), int(importing[1])) if importing else None

    def split_point(self) -> int | None:
        """The position that halves this block's keys, or None if they all share one."""
        position = self.position
        slots = sorted(position(k) for k in self.data)
        if not slots:
            return (self.lo + self.hi) // 2 if self.hi - self.lo > 1 else None
        mid = slots[len(slots) // 2]
        if mid == self.lo:  # the lower half is all one position: split just above it
            nxt = next((s for s in slots if s > self.lo), None)
            if nxt is None and self.hi - self.lo > 1:
                # Every key is at position lo (often: one large value). Split off the empty rest
                # of the range; the write that found us full goes there unless it shares lo.
                nxt = self.lo + 1
            return nxt
        return mid

    def extract(self, lo: int, hi: int) -> list[bytes]:
        """Remove and return (as key, value, key, value...) every entry positioned in [lo, hi)."""
        out: list[bytes] = []
        position = self.position
        moved = [k for k in self.data if lo <= position(k) < hi]
        pop = self.data.pop
        for k in moved:
            v = pop(k)
            out.append(k)
            out.append(v)
            self._charge(-self._entry(len(k), len(v)))
        return out

    def export(self) -> list[bytes]:
        return [x for kv in self.data.items() for x in kv]

    def import_(self, fields: list[bytes]) -> None:
        if len(fields) % 2:
            raise errors.StateProtocolError("keyed import takes key/value pairs")
        pairs = list(zip(fields[::2], fields[1::2], strict=True))
        data = self.data
        self._check_pool(sum(self._entry(len(k), len(v)) for k, v in pairs if k not in data))
        for k, v in pairs:
            old = data.get(k)
            cost = bytes_cost(len(v))
            self._charge(
                cost - bytes_cost(len(old)) if old is not None else cost + bytes_cost(len(k)) + self.SLOT
            )
            data[k] = v
