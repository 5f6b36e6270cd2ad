"""How the controller lays out, loads and reconciles the blocks of a family of structure kinds:
key ranges (hash table, counter, sorted map), queue segments, file extents."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING

from taureau.common import errors
from taureau.state.blocks import entry_cost, fit_batches
from taureau.state.namespace import Node, Partition
from taureau.state.recovery import BlockReport, Repair

if TYPE_CHECKING:
    from taureau.state.elastic import BlockManager

# A kind picks one of these; the controller never looks at the kind's name. What each does
# after a crash is explained in recovery.py.


class Layout:
    merges = False  # neighbours may merge when both run nearly empty
    extends = False  # clients grow it (GROW) by offset, as files

    async def populate(self, bm: BlockManager, node: Node, num_blocks: int) -> None:
        raise NotImplementedError

    async def load(self, bm: BlockManager, node: Node, records: list[bytes], budget: int) -> None:
        """Make `node`'s blocks from dumped records, about `budget` bytes per block."""
        raise NotImplementedError

    def reconcile(
        self, node: Node, found: list[tuple[Partition, BlockReport]], lost: list[Partition]
    ) -> Repair:
        raise NotImplementedError


class Ranges(Layout):
    """Partitions of a key-position space [0, key_space); a full block splits at its median
    key, nearly empty neighbours merge."""

    merges = True

    def __init__(self, key_space: int, position: Callable[[bytes], int]) -> None:
        self.key_space = key_space
        self.position = position

    async def populate(self, bm: BlockManager, node: Node, num_blocks: int) -> None:
        bounds = [self.key_space * i // num_blocks for i in range(num_blocks + 1)]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            node.partitions.append(await bm.new_partition(node, lo, hi))

    async def load(self, bm: BlockManager, node: Node, records: list[bytes], budget: int) -> None:
        if len(records) % 2:
            raise errors.BackingStoreError(f"a {node.kind} dump has an odd number of records")
        total = sum(entry_cost(len(k), len(v)) for k, v in zip(records[::2], records[1::2], strict=True))
        await bm.populate(node, max(1, -(-total // budget)))
        buckets: list[list[bytes]] = [[] for _ in node.partitions]
        los = [p.lo for p in node.partitions]
        for k, v in zip(records[::2], records[1::2], strict=True):
            b = buckets[bisect_right(los, self.position(k)) - 1]
            b.append(k)
            b.append(v)
        for p, b in zip(node.partitions, buckets, strict=True):
            await bm.import_into(p, b)

    def reconcile(
        self, node: Node, found: list[tuple[Partition, BlockReport]], lost: list[Partition]
    ) -> Repair:
        rep = Repair([])
        live = []
        for p, r in found:
            if r.state == "forwarded":
                rep.free.extend(p.chain)
            else:
                live.append((p, r))
        active = [(p, r) for p, r in live if r.state == "active"]
        keep = list(lost)
        for p, r in live:
            others = [(o.lo, o.hi) for q, o in active if q is not p]
            if r.state == "importing":
                if any(lo <= r.lo and r.hi <= hi for lo, hi in others):
                    rep.free.extend(p.chain)
                else:
                    lost.append(Partition(r.lo, r.hi, p.chain, lost=True))
                    keep.append(lost[-1])
                continue
            lo, hi = r.lo, r.hi
            if r.importing is not None:
                a, b = r.importing
                if not any(x < b and a < y for x, y in others):
                    lost.append(Partition(lo, hi, p.chain, lost=True))
                    keep.append(lost[-1])
                    continue
                lo, hi = (b, hi) if a <= lo else (lo, a)  # merges join neighbours: it is at one end
                rep.narrow.append((p.chain[0], lo, hi))
            keep.append(Partition(lo, hi, p.chain))
        rep.partitions = sorted(keep, key=lambda p: p.lo)
        return rep


class Segments(Layout):
    """A FIFO of segments: enqueues go to the last, dequeues come from the first; a full tail
    gets a successor (append), a drained head is dropped."""

    async def populate(self, bm: BlockManager, node: Node, num_blocks: int) -> None:
        node.partitions.append(await bm.new_partition(node, 0, 0))

    async def load(self, bm: BlockManager, node: Node, records: list[bytes], budget: int) -> None:
        for g in fit_batches(records, budget) or [[]]:
            p = await bm.new_partition(node, 0, 0)
            node.partitions.append(p)
            await bm.import_into(p, g)
        for p in node.partitions[:-1]:  # every segment but the tail is sealed
            await bm.seal(p)

    def reconcile(
        self, node: Node, found: list[tuple[Partition, BlockReport]], lost: list[Partition]
    ) -> Repair:
        by_alloc = {p.chain[0].alloc: r for p, r in found}
        rep = Repair([])
        last = len(node.partitions) - 1
        for i, p in enumerate(node.partitions):
            r = by_alloc.get(p.chain[0].alloc)
            if r is None:
                rep.partitions.append(Partition(p.lo, p.hi, p.chain, lost=True))
                continue
            if i < last and r.state == "sealed" and r.empty:
                rep.free.extend(p.chain)
                continue
            if i < last and r.state == "active":
                rep.seal.append(p.chain[0])
            if i == last and r.state == "sealed":
                rep.needs_tail = True
            rep.partitions.append(p)
        return rep


class Extents(Layout):
    """Byte ranges of one block each, in offset order; clients grow them by offset."""

    extends = True

    async def populate(self, bm: BlockManager, node: Node, num_blocks: int) -> None:
        for _ in range(num_blocks):
            lo = node.partitions[-1].hi if node.partitions else 0
            node.partitions.append(await bm.new_partition(node, lo, None))

    async def load(self, bm: BlockManager, node: Node, records: list[bytes], budget: int) -> None:
        data = b"".join(records)
        await bm.extend_file(node, max(len(data), 1), persist=False)
        for p in node.partitions:
            await bm.import_into(p, [data[p.lo : p.hi]])

    def reconcile(
        self, node: Node, found: list[tuple[Partition, BlockReport]], lost: list[Partition]
    ) -> Repair:
        return Repair(sorted([p for p, _ in found] + lost, key=lambda p: p.lo))
