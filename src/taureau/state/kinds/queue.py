"""FIFO queue: segments in order; enqueues go to the tail segment, dequeues come from the head."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from taureau.common import errors
from taureau.state.blocks import Block, BlockState, fit_batches, item_cost
from taureau.state.codec import STALE, Op, Redirect, pack_u64, unpack_u64
from taureau.state.handles import Structure, check_fits
from taureau.state.kinds import Kind, register
from taureau.state.layouts import Segments

# A full tail asks the controller for a successor (append): the new tail is allocated, the
# old one sealed (enqueues there answer STALE, so producers move on), then the map is
# published. A sealed segment that empties tells the controller (DRAINED), which drops it.


class QueueBlock(Block):
    """One segment of a FIFO queue; the tail segment takes enqueues, the head serves dequeues."""

    kind = "queue"
    growth = "append"
    writes = frozenset({Op.ENQUEUE, Op.MULTI_ENQUEUE, Op.DEQUEUE})

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.items: deque[bytes] = deque()
        self.ops = {
            Op.ENQUEUE: self.enqueue,
            Op.MULTI_ENQUEUE: self.multi_enqueue,
            Op.DEQUEUE: self.dequeue,
            Op.QUEUE_LENGTH: self.length,
        }

    def _admit(self, size: int) -> None:
        if self.state is BlockState.SEALED:
            raise Redirect(STALE, "queue segment is sealed; the tail moved on")
        self.check_live()
        self._need_room(size)

    def enqueue(self, f: list[bytes]) -> list[bytes]:
        if len(f) != 2:
            raise errors.StateProtocolError("enqueue takes one item")
        item = f[1]
        cost = item_cost(len(item))
        self._admit(cost)
        self.items.append(item)
        self._charge(cost)
        self._after_write()
        if "enqueue" in self.watch:
            self.host.notify(self, "enqueue", item)
        return []

    def multi_enqueue(self, f: list[bytes]) -> list[bytes]:
        items = f[1:]
        size = sum(item_cost(len(i)) for i in items)
        self._admit(size)
        self.items.extend(items)
        self._charge(size)
        self._after_write()
        if "enqueue" in self.watch:
            for i in items:
                self.host.notify(self, "enqueue", i)
        return []

    def dequeue(self, f: list[bytes]) -> list[bytes]:
        self.check_live()
        if not self.items:
            if self.state is BlockState.SEALED:
                self.host.drained(self)  # again: the first word may have been lost with a link
                raise Redirect(STALE, "queue segment drained; the head moved on")
            raise errors.QueueEmptyError("queue is empty")
        item = self.items.popleft()
        self._charge(-item_cost(len(item)))
        if not self.items and self.state is BlockState.SEALED:
            self.host.drained(self)
        if "dequeue" in self.watch:
            self.host.notify(self, "dequeue", item)
        return [item]

    def length(self, f: list[bytes]) -> list[bytes]:
        return [pack_u64(len(self.items))]

    def link_next(self) -> None:
        self.set_state(BlockState.SEALED)
        if not self.items:
            self.host.drained(self)

    def is_empty(self) -> bool:
        return not self.items

    def clear(self) -> None:
        super().clear()
        self.items.clear()

    def export(self) -> list[bytes]:
        return list(self.items)

    def import_(self, fields: list[bytes]) -> None:
        size = sum(item_cost(len(i)) for i in fields)
        self._check_pool(size)
        self.items.extend(fields)
        self._charge(size)


class Queue(Structure):
    """FIFO queue of bytes items; many producers and consumers may share it."""

    kind = "queue"

    def _at(self, end: int, op: int, fields: list[bytes]) -> list[bytes]:
        def attempt() -> list[bytes]:
            p = self._check(self._parts[end])
            return self._conn(p.addr).call(op, [p.alloc, *fields])

        return self._retry(attempt)

    def enqueue(self, item: bytes) -> None:
        check_fits(item_cost(len(item)), self._parts[-1].cap)
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
            check_fits(item_cost(len(it)), cap)
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
        return sum(
            unpack_u64(self._conn(p.raddr).call(Op.QUEUE_LENGTH, [p.ralloc])[0]) for p in self._parts
        )

    def cli_get(self, key: str | None) -> bytes:
        return b"%d\n" % len(self)

    def cli_put(self, key: str, value: str | None) -> None:
        self.enqueue(key.encode())


KIND = register(
    Kind(
        name="queue",
        dump_code=2,  # records are the items, FIFO order
        layout=Segments(),
        block=QueueBlock,
        handle=Queue,
        notify_ops=frozenset({"enqueue", "dequeue"}),
    )
)
