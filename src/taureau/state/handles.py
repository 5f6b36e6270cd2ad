"""Client handles: the base every structure kind's handle builds on (a cached block map,
redirects and retries), and the keyed handle hash tables, counters and sorted maps share."""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from taureau.common import errors
from taureau.state.blocks import ENTRY_EXTRA, entry_cost, slot_of
from taureau.state.codec import STALE, Op, Redirect, pack_u64, unpack_u64

if TYPE_CHECKING:
    from taureau.state.client import StateClient
    from taureau.state.conn import Conn

T = TypeVar("T")

# A handle caches its structure's block map. Any reply saying the map is old (STALE), a busy
# block (REDO) or an unreachable memory server makes it refresh the map and retry with
# backoff, up to the client's timeout: a split or merge is never seen as a failure.


def check_fits(size: int, cap: int) -> None:
    """Refuse here what no block can take (the memory server would refuse it as well, or the
    whole frame if it is far larger), so nothing of a refused call is sent."""
    if size > cap:
        raise errors.ValueTooLargeError(f"{size} bytes do not fit in a {cap}-byte block")


class Part(NamedTuple):
    lo: int
    hi: int
    addr: str  # the chain's head: writes go here
    alloc: bytes  # packed u64, sent as the first field of every data request
    cap: int  # the block's capacity in bytes (batches are cut to fit)
    lost: bool
    raddr: str  # the chain's tail: reads go here (the head too, unreplicated)
    ralloc: bytes


class Structure:
    kind = ""

    def __init__(self, client: StateClient, path: str, block_map: dict[str, Any]) -> None:
        self._c = client
        self.path = path
        self._set_map(block_map)

    def _set_map(self, m: dict[str, Any]) -> None:
        parts = []
        for p in m["partitions"]:
            head, tail = p["chain"][0], p["chain"][-1]
            parts.append(
                Part(
                    p["lo"],
                    p["hi"],
                    head["addr"],
                    pack_u64(head["alloc"]),
                    head["cap"],
                    p["lost"],
                    tail["addr"],
                    pack_u64(tail["alloc"]),
                )  # fmt: skip
            )
        if not parts and m["state"] != "active":
            raise errors.BlockLostError(f"{self.path} is {m['state']}: {m['lost_reason']}")
        self._id: int = m["id"]
        # With authentication on: the controller's ticket for this structure (client_auth.py).
        self._ticket: str | None = m.get("ticket")
        self._reason = m.get("lost_reason") or "its memory server died"
        self._parts = parts  # replaced whole on refresh: readers in other threads see old or new
        self._los = [p.lo for p in parts]
        self.epoch = m["epoch"]

    def _conn(self, address: str) -> Conn:
        """This thread's connection to a memory server, holding this structure's ticket."""
        c = self._c.conn(address)
        ticket = self._ticket
        if ticket is not None and c.tickets.get(self._id) != ticket:
            c.call(Op.ACCESS, [ticket.encode()])
            c.tickets[self._id] = ticket
        return c

    def refresh(self) -> None:
        """Fetch the structure's current block map from the controller."""
        self._set_map(self._c.control(Op.BLOCK_MAP, {"path": self.path}))

    def _check(self, p: Part) -> Part:
        if p.lost:
            raise errors.BlockLostError(f"{self.path}: block lost ({self._reason})")
        return p

    def _retry(self, attempt: Callable[[], T], retry_unavailable: bool = True) -> T:
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
                if not retry_unavailable:
                    raise
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

    # `taureau state get|put` on this kind of structure (cli/state_cmd.py).
    def cli_get(self, key: str | None) -> bytes:
        raise NotImplementedError

    def cli_put(self, key: str, value: str | None) -> None:
        raise NotImplementedError


class KeyedHandle(Structure):
    """A structure of keyed blocks: routes a key by its position to the block serving it, and
    batches per block (pipelined per memory server). A kind sets `position` as its blocks do."""

    position: Callable[[bytes], int] = staticmethod(slot_of)

    def _part(self, key: bytes) -> Part:
        parts = self._parts
        p = parts[0] if len(parts) == 1 else parts[bisect_right(self._los, self.position(key)) - 1]
        return p if not p.lost else self._check(p)

    def _op(
        self, op: int, key: bytes, *rest: bytes, read: bool = False, retry_unavailable: bool = True
    ) -> list[bytes]:
        """One keyed request, to the chain's tail if a `read`, else its head. Redirects are
        retried (the block did nothing); a broken connection is retried only if
        `retry_unavailable` (the op is safe to apply twice)."""
        check_fits(entry_cost(len(key), sum(map(len, rest))), self._part(key).cap)

        def attempt() -> list[bytes]:
            p = self._part(key)
            if read:
                return self._conn(p.raddr).call(op, [p.ralloc, key, *rest])
            return self._conn(p.addr).call(op, [p.alloc, key, *rest])

        try:
            return attempt()
        except Redirect:
            return self._retry(attempt, retry_unavailable)
        except errors.StateUnavailableError:
            if not retry_unavailable:
                raise
            return self._retry(attempt)

    def remove(self, key: bytes) -> None:
        self._op(Op.REMOVE, key)

    def exists(self, key: bytes) -> bool:
        return self._op(Op.EXISTS, key, read=True)[0] == b"\x01"

    def __len__(self) -> int:
        return sum(unpack_u64(self._conn(p.raddr).call(Op.COUNT, [p.ralloc])[0]) for p in self._parts)

    def _check_entries(self, keys: list[bytes], values: list[bytes] | None, size: int) -> None:
        """ValueTooLargeError if an entry cannot fit its block. `size` is the batch's bytes: if
        the whole batch fits the smallest block, so does each entry (the hot path stops here)."""
        if size + ENTRY_EXTRA <= min(p.cap for p in self._parts):
            return
        for i, k in enumerate(keys):
            check_fits(entry_cost(len(k), len(values[i]) if values else 0), self._part(k).cap)

    def _one_block(self, count: int, size: int) -> Part | None:
        """The only block, if the table has one and a batch of `count` entries and `size`
        bytes fits in one request to it."""
        parts = self._parts
        if len(parts) != 1 or parts[0].lost:
            return None
        return parts[0] if size + 64 * count <= parts[0].cap // 4 else None

    def _batches(
        self, keys: list[bytes], todo: list[int], payload: Callable[[int], int]
    ) -> dict[Part, list[list[int]]]:
        """Group the key positions `todo` by partition, cutting each group to a quarter block."""
        groups: dict[Part, list[list[int]]] = {}
        sizes: dict[Part, int] = {}
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
                     payload: Callable[[int], int], done: Callable[[list[int], list[bytes]], None],
                     retry_unavailable: bool = True, read: bool = False) -> None:  # fmt: skip
        todo = list(range(len(keys)))
        deadline = time.monotonic() + self._c.timeout
        while todo:
            retry: list[int] = []
            by_addr: dict[str, list[tuple[Part, list[int]]]] = {}
            for p, idx_groups in self._batches(keys, todo, payload).items():
                for g in idx_groups:
                    by_addr.setdefault(p.raddr if read else p.addr, []).append((p, g))
            for addr, reqs in by_addr.items():
                try:
                    reqs_ = [(op, [p.ralloc if read else p.alloc, *fields(ix)]) for p, ix in reqs]
                    replies = self._conn(addr).pipeline(reqs_)
                except errors.StateUnavailableError:
                    replies = [errors.StateUnavailableError(addr)] * len(reqs)
                for (_, ix), r in zip(reqs, replies, strict=True):
                    if isinstance(r, errors.StateUnavailableError) and not retry_unavailable:
                        raise r  # it may have been applied: not ours to send again
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

    def _multi_get(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """Stored values in the order of `keys`; None where a key is missing."""
        keys = list(keys)
        if len(set(keys)) < len(keys):  # fetch each key once: a block answers at most a block's worth
            uniq = list(dict.fromkeys(keys))
            found = dict(zip(uniq, self._multi_get(uniq), strict=True))
            return [found[k] for k in keys]
        size = sum(map(len, keys))
        self._check_entries(keys, None, size)
        fast = self._one_block(len(keys), size)
        if fast is not None:  # common case: a small batch on a one-block table, one round trip
            try:
                r = self._conn(fast.raddr).call(Op.MULTI_GET, [fast.ralloc, *keys])
                return [v if f else None for f, v in zip(r[0], r[1:], strict=True)]
            except (Redirect, errors.StateUnavailableError):
                pass  # fall through to the general path, which refreshes and retries
        out: list[bytes | None] = [None] * len(keys)

        def done(ix: list[int], r: list[bytes]) -> None:
            flags = r[0]
            for n, i in enumerate(ix):
                if flags[n]:
                    out[i] = r[n + 1]

        self._run_batches(Op.MULTI_GET, keys, lambda ix: [keys[i] for i in ix], lambda i: 0, done, read=True)
        return out

    def _multi_pairs(
        self,
        op: int,
        pairs: list[tuple[bytes, bytes]],
        done: Callable[[list[int], list[bytes]], None],
        retry_unavailable: bool = True,
    ) -> None:
        """Send key/value pairs with `op` (batched per block, pipelined per memory server);
        `done(positions, reply)` gets each request's reply."""
        keys = [k for k, _ in pairs]
        values = [v for _, v in pairs]
        size = sum(map(len, keys)) + sum(map(len, values))
        self._check_entries(keys, values, size)
        fast = self._one_block(len(keys), size)
        if fast is not None:
            try:
                r = self._conn(fast.addr).call(op, [fast.alloc, *(x for kv in pairs for x in kv)])
                done(list(range(len(pairs))), r)
                return
            except Redirect:
                pass
            except errors.StateUnavailableError:
                if not retry_unavailable:
                    raise

        def fields(ix: list[int]) -> list[bytes]:
            return [x for i in ix for x in pairs[i]]

        self._run_batches(op, keys, fields, lambda i: len(pairs[i][1]), done, retry_unavailable)


def as_pairs(items: Mapping[bytes, T] | Iterable[tuple[bytes, T]]) -> list[tuple[bytes, T]]:
    return list(items.items() if isinstance(items, Mapping) else items)


class KeyValueHandle(KeyedHandle):
    """Keys and values are bytes. put inserts (DuplicateKeyError if present), upsert overwrites,
    update needs the key (KeyNotFoundError), multi_put upserts a batch."""

    def get(self, key: bytes) -> bytes:
        return self._op(Op.GET, key, read=True)[0]

    def put(self, key: bytes, value: bytes) -> None:
        self._op(Op.PUT, key, value)

    def upsert(self, key: bytes, value: bytes) -> None:
        self._op(Op.UPSERT, key, value)

    def update(self, key: bytes, value: bytes) -> None:
        self._op(Op.UPDATE, key, value)

    def multi_get(self, keys: Iterable[bytes]) -> list[bytes | None]:
        """Values in the order of `keys`; None where a key is missing."""
        return self._multi_get(keys)

    def multi_put(self, items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> None:
        """Upsert every pair (batched per block, pipelined per memory server)."""
        self._multi_pairs(Op.MULTI_PUT, as_pairs(items), lambda ix, r: None)

    def cli_get(self, key: str | None) -> bytes:
        if key is None:
            raise errors.StateProtocolError(f"get on a {self.kind} needs a key")
        return self.get(key.encode()) + b"\n"

    def cli_put(self, key: str, value: str | None) -> None:
        if value is None:
            raise errors.StateProtocolError(f"put on a {self.kind} needs a key and a value")
        self.upsert(key.encode(), value.encode())
