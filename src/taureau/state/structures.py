"""Client handles of the structures: hash table, FIFO queue and file over cached block maps."""

from __future__ import annotations

import time
from binascii import crc_hqx
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from taureau.common import errors
from taureau.state.blocks import ENTRY_OVERHEAD, fit_batches
from taureau.state.codec import STALE, Op, Redirect, pack_u64, unpack_u64

if TYPE_CHECKING:
    from taureau.state.client import StateClient

T = TypeVar("T")

# A handle caches its structure's block map. Any reply saying the map is old (STALE), a busy
# block (REDO) or an unreachable memory server makes it refresh the map and retry with
# backoff, up to the client's timeout: a split or merge is never seen as a failure.


def _check_fits(size: int, cap: int) -> None:
    """Refuse here what no block can take (the memory server would refuse it as well, or the
    whole frame if it is far larger), so nothing of a refused call is sent."""
    if size > cap:
        raise errors.ValueTooLargeError(f"{size} bytes do not fit in a {cap}-byte block")


class _Part(NamedTuple):
    lo: int
    hi: int
    addr: str
    alloc: bytes  # packed u64, sent as the first field of every data request
    cap: int  # the block's capacity in bytes (batches are cut to fit)
    lost: bool


class Structure:
    kind = ""

    def __init__(self, client: StateClient, path: str, block_map: dict[str, Any]) -> None:
        self._c = client
        self.path = path
        self._set_map(block_map)

    def _set_map(self, m: dict[str, Any]) -> None:
        parts = []
        for p in m["partitions"]:
            head = p["chain"][0]
            parts.append(
                _Part(p["lo"], p["hi"], head["addr"], pack_u64(head["alloc"]), head["cap"], p["lost"])
            )
        if not parts and m["state"] != "active":
            raise errors.BlockLostError(f"{self.path} is {m['state']}: {m['lost_reason']}")
        self._reason = m.get("lost_reason") or "its memory server died"
        self._parts = parts  # replaced whole on refresh: readers in other threads see old or new
        self._los = [p.lo for p in parts]
        self.epoch = m["epoch"]

    def refresh(self) -> None:
        """Fetch the structure's current block map from the controller."""
        self._set_map(self._c.control(Op.BLOCK_MAP, {"path": self.path}))

    def _check(self, p: _Part) -> _Part:
        if p.lost:
            raise errors.BlockLostError(f"{self.path}: block lost ({self._reason})")
        return p

    def _retry(self, attempt: Callable[[], T]) -> T:
        deadline = time.monotonic() + self._c.timeout
        delay = 0.0002
        while True:
            try:
                return attempt()
            except Redirect as r:
                if r.code == STALE:
                    self.refresh()
                    if delay < 0.002:  # the first refresh usually fixes it: no sleep
                        delay *= 2
                        continue
                time.sleep(delay)
            except errors.StateUnavailableError:
                self.refresh()
                time.sleep(delay)
            if time.monotonic() > deadline:
                raise errors.StateUnavailableError(
                    f"{self.path}: gave up after {self._c.timeout}s of redirects"
                )
            delay = min(delay * 2, 0.05)

    def close(self) -> None:
        """Stop renewing this structure's lease."""
        self._c.close(self.path)


class HashTable(Structure):
    """Keys and values are bytes. put inserts (DuplicateKeyError if present), upsert overwrites,
    update needs the key (KeyNotFoundError), multi_put upserts a batch."""

    kind = "hash_table"

    def _part(self, key: bytes) -> _Part:
        parts = self._parts
        p = parts[0] if len(parts) == 1 else parts[bisect_right(self._los, crc_hqx(key, 0)) - 1]
        return p if not p.lost else self._check(p)

    def _op(self, op: int, key: bytes, *rest: bytes) -> list[bytes]:
        _check_fits(len(key) + sum(map(len, rest)) + ENTRY_OVERHEAD, self._part(key).cap)

        def attempt() -> list[bytes]:
            p = self._part(key)
            return self._c.conn(p.addr).call(op, [p.alloc, key, *rest])

        try:
            return attempt()
        except (Redirect, errors.StateUnavailableError):
            return self._retry(attempt)

    def get(self, key: bytes) -> bytes:
        return self._op(Op.GET, key)[0]

    def put(self, key: bytes, value: bytes) -> None:
        self._op(Op.PUT, key, value)

    def upsert(self, key: bytes, value: bytes) -> None:
        self._op(Op.UPSERT, key, value)

    def update(self, key: bytes, value: bytes) -> None:
        self._op(Op.UPDATE, key, value)

    def remove(self, key: bytes) -> None:
        self._op(Op.REMOVE, key)

    def exists(self, key: bytes) -> bool:
        return self._op(Op.EXISTS, key)[0] == b"\x01"

    def __len__(self) -> int:
        return sum(unpack_u64(self._c.conn(p.addr).call(Op.COUNT, [p.alloc])[0]) for p in self._parts)

    def _check_entries(self, keys: list[bytes], values: list[bytes] | None, size: int) -> None:
        """ValueTooLargeError if an entry cannot fit its block. `size` is the batch's bytes: if
        the whole batch fits the smallest block, so does each entry (the hot path stops here)."""
        if size + ENTRY_OVERHEAD <= min(p.cap for p in self._parts):
            return
        for i, k in enumerate(keys):
            _check_fits(len(k) + (len(values[i]) if values else 0) + ENTRY_OVERHEAD, self._part(k).cap)

    def _one_block(self, count: int, size: int) -> _Part | None:
        """The only block, if the table has one and a batch of `count` entries and `size`
        bytes fits in one request to it."""
        parts = self._parts
        if len(parts) != 1 or parts[0].lost:
            return None
        return parts[0] if size + 64 * count <= parts[0].cap // 4 else None

    def _batches(
        self, keys: list[bytes], todo: list[int], payload: Callable[[int], int]
    ) -> dict[_Part, list[list[int]]]:
        """Group the key positions `todo` by partition, cutting each group to a quarter block."""
        groups: dict[_Part, list[list[int]]] = {}
        sizes: dict[_Part, int] = {}
        for i in todo:
            k = keys[i]
            p = self._part(k)
            size = len(k) + payload(i) + 64
            g = groups.setdefault(p, [[]])
            if g[-1] and sizes.get(p, 0) + size > p.cap // 4:
                g.append([])
                sizes[p] = 0
            g[-1].append(i)
            sizes[p] = sizes.get(p, 0) + size
        return groups

    def _run_batches(self, op: int, keys: list[bytes], fields: Callable[[list[int]], list[bytes]],
                     payload: Callable[[int], int], done: Callable[[list[int], list[bytes]], None]) -> None:  # fmt: skip
        todo = list(range(len(keys)))
        deadline = time.monotonic() + self._c.timeout
        while todo:
            retry: list[int] = []
            by_addr: dict[str, list[tuple[_Part, list[int]]]] = {}
            for p, idx_groups in self._batches(keys, todo, payload).items():
                for g in idx_groups:
                    by_addr.setdefault(p.addr, []).append((p, g))
            for addr, reqs in by_addr.items():
                try:
                    replies = self._c.conn(addr).pipeline([(op, [p.alloc, *fields(ix)]) for p, ix in reqs])
                except errors.StateUnavailableError:
                    replies = [errors.StateUnavailableError(addr)] * len(reqs)
                for (_, ix), r in zip(reqs, replies, strict=True):
                    if isinstance(r, (Redirect, errors.StateUnavailableError)):
                        retry.extend(ix)
                    elif isinstance(r, Exception):
                        raise r
                    else:
                        done(ix, r)
            if retry:
                if time.monotonic() > deadline:
                    raise errors.StateUnavailableError(f"{self.path}: batch kept being redirected")
                self.refresh()
                time.sleep(0.001)
            todo = sorted(retry)

    def multi_get(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """Values in the order of `keys`; None where a key is missing."""
        keys = list(keys)
        if len(set(keys)) < len(keys):  # fetch each key once: a block answers at most a block's worth
            uniq = list(dict.fromkeys(keys))
            found = dict(zip(uniq, self.multi_get(uniq), strict=True))
            return [found[k] for k in keys]
        size = sum(map(len, keys))
        self._check_entries(keys, None, size)
        fast = self._one_block(len(keys), size)
        if fast is not None:  # common case: a small batch on a one-block table, one round trip
            try:
                r = self._c.conn(fast.addr).call(Op.MULTI_GET, [fast.alloc, *keys])
                return [v if f else None for f, v in zip(r[0], r[1:], strict=True)]
            except (Redirect, errors.StateUnavailableError):
                pass  # fall through to the general path, which refreshes and retries
        out: list[bytes | None] = [None] * len(keys)

        def done(ix: list[int], r: list[bytes]) -> None:
            flags = r[0]
            for n, i in enumerate(ix):
                if flags[n]:
                    out[i] = r[n + 1]

        self._run_batches(Op.MULTI_GET, keys, lambda ix: [keys[i] for i in ix], lambda i: 0, done)
        return out

    def multi_put(self, items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> None:
        """Upsert every pair (batched per block, pipelined per memory server)."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        keys = [k for k, _ in pairs]
        values = [v for _, v in pairs]
        size = sum(map(len, keys)) + sum(map(len, values))
        self._check_entries(keys, values, size)
        fast = self._one_block(len(keys), size)
        if fast is not None:
            try:
                self._c.conn(fast.addr).call(Op.MULTI_PUT, [fast.alloc, *(x for kv in pairs for x in kv)])
                return
            except (Redirect, errors.StateUnavailableError):
                pass

        def fields(ix: list[int]) -> list[bytes]:
            return [x for i in ix for x in pairs[i]]

        self._run_batches(Op.MULTI_PUT, keys, fields, lambda i: len(pairs[i][1]), lambda ix, r: None)


class Queue(Structure):
    """FIFO queue of bytes items; many producers and consumers may share it."""

    kind = "queue"

    def _at(self, end: int, op: int, fields: list[bytes]) -> list[bytes]:
        def attempt() -> list[bytes]:
            p = self._check(self._parts[end])
            return self._c.conn(p.addr).call(op, [p.alloc, *fields])

        return self._retry(attempt)

    def enqueue(self, item: bytes) -> None:
        _check_fits(len(item) + ENTRY_OVERHEAD, self._parts[-1].cap)
        self._at(-1, Op.ENQUEUE, [item])

    put = enqueue

    def multi_enqueue(self, items: Iterable[bytes]) -> None:
        """Enqueue in order. A batch is sent in requests that each fit one block (so a batch
        larger than a block still goes in when every item fits); each request is all or
        nothing, but another producer's items may come between two of them, and if one fails
        the earlier ones stay enqueued (the error says how many items went in)."""
        items = list(items)
        cap = self._parts[-1].cap
        for it in items:
            _check_fits(len(it) + ENTRY_OVERHEAD, cap)
        done = 0
        for batch in fit_batches(items, cap):
            try:
                self._at(-1, Op.MULTI_ENQUEUE, batch)
            except errors.StateError as e:
                if not done:
                    raise
                raise type(e)(f"{e} (after {done} of {len(items)} items were enqueued)") from e
            done += len(batch)

    def dequeue(self) -> bytes:
        """The oldest item; QueueEmptyError if there is none."""
        return self._at(0, Op.DEQUEUE, [])[0]

    get = dequeue

    def __len__(self) -> int:
        return sum(unpack_u64(self._c.conn(p.addr).call(Op.QUEUE_LENGTH, [p.alloc])[0]) for p in self._parts)


class File(Structure):
    """A byte file that grows block by block; read/write/seek like a Python file."""

    kind = "file"

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

    def _spans(self, lo: int, hi: int) -> list[tuple[_Part, int, int]]:
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
                self._c.conn(p.addr).call(Op.WRITE, [p.alloc, pack_u64(a), data[a - start : b - start]])

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
                chunk = self._c.conn(p.addr).call(Op.READ, [p.alloc, pack_u64(a), pack_u64(b - a)])[0]
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
                extent = unpack_u64(self._c.conn(self._check(p).addr).call(Op.FILE_SIZE, [p.alloc])[0])
                if extent:
                    size = p.lo + extent
            return size

        return self._retry(attempt)
