"""After a controller restart: reconcile a structure's catalog record with what its memory
servers report they hold (pure: decides, the caller sends the commands)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taureau.common import errors
from taureau.state.namespace import BlockRef, Node, Partition

# The catalog says which blocks a structure owns and in what order; the memory servers say
# what each block is now (its range, state, whether data is still moving in). A crash of the
# controller between two steps of an elastic operation (elastic.py lists them) leaves one of
# a few shapes, and each has one safe reading:
#
#   hash (slot ranges)
#     a FORWARDED block       a merge moved everything out: drop and free it
#     an IMPORTING block whose range an ACTIVE block still covers
#                             the split never moved the keys: drop and free the target
#     an IMPORTING block no ACTIVE block covers
#                             its keys left a source that died: lost
#     an ACTIVE block importing a range another ACTIVE block still serves
#                             the merge never started moving: narrow it back (RESET_RANGE)
#     an ACTIVE block importing a range no other block serves
#                             the merge source died with those keys: lost
#     otherwise               the block's reported range is its partition
#   queue (segments in order) every segment but the last must be sealed (LINK_NEXT); a sealed,
#                             empty one before the last lost its DRAINED event: drop and free;
#                             a sealed last one needs a new tail
#   file (extents)            nothing moves between extents
# In every kind, a block that is not reported (its server is dead) is a lost partition.
# The reports must be fresh and final: they are asked for (DESCRIBE) once every server
# holding the structure has finished whatever split or merge it was running (memory servers
# finish those before they report), and no new one starts until the repair is applied.


@dataclass(frozen=True)
class BlockReport:
    """What a memory server says about one of its blocks."""

    alloc: int
    struct: int
    kind: str
    lo: int
    hi: int
    state: str  # blocks.BlockState value
    importing: tuple[int, int] | None
    empty: bool

    @staticmethod
    def parse(d: Any) -> BlockReport:
        """From a REPORT's JSON; StateProtocolError if it is not shaped like one."""
        try:
            imp = d["importing"]
            rep = BlockReport(
                int(d["alloc"]),
                int(d["struct"]),
                str(d["kind"]),
                int(d["lo"]),
                int(d["hi"]),
                str(d["state"]),
                (int(imp[0]), int(imp[1])) if imp is not None else None,
                bool(d["empty"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise errors.StateProtocolError(f"malformed block report: {e!r}") from None
        return rep


@dataclass
class Repair:
    partitions: list[Partition]
    free: list[BlockRef] = field(default_factory=list)
    seal: list[BlockRef] = field(default_factory=list)  # LINK_NEXT
    narrow: list[tuple[BlockRef, int, int]] = field(default_factory=list)  # RESET_RANGE to (lo, hi)
    needs_tail: bool = False  # a queue whose last segment is sealed
    lost: int = 0  # partitions whose block is gone


def reconcile(node: Node, reports: dict[int, BlockReport]) -> Repair:
    """What to do so that `node`'s map matches its blocks; `reports` holds every reported
    block of a server still alive (a block of a dead server is absent)."""
    found: list[tuple[Partition, BlockReport]] = []
    lost: list[Partition] = []
    for p in node.partitions:
        r = reports.get(p.chain[0].alloc)
        if p.lost or r is None or r.struct != node.struct_id or r.kind != node.kind:
            lost.append(Partition(p.lo, p.hi, p.chain, lost=True))
        else:
            found.append((p, r))
    if node.kind == "queue":
        rep = _queue(node, found, lost)
    elif node.kind == "file":
        rep = Repair(sorted([p for p, _ in found] + lost, key=lambda p: p.lo))
    else:
        rep = _ranges(found, lost)
    rep.lost = len(lost)
    return rep


def _ranges(found: list[tuple[Partition, BlockReport]], lost: list[Partition]) -> Repair:
    rep = Repair([])
    live = []
    for p, r in found:
        if r.state == "forwarded":
            rep.free.append(p.chain[0])
        else:
            live.append((p, r))
    active = [(p, r) for p, r in live if r.state == "active"]
    keep = list(lost)
    for p, r in live:
        others = [(o.lo, o.hi) for q, o in active if q is not p]
        if r.state == "importing":
            if any(lo <= r.lo and r.hi <= hi for lo, hi in others):
                rep.free.append(p.chain[0])
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


def _queue(node: Node, found: list[tuple[Partition, BlockReport]], lost: list[Partition]) -> Repair:
    by_alloc = {p.chain[0].alloc: r for p, r in found}
    lost_allocs = {p.chain[0].alloc for p in lost}
    rep = Repair([])
    last = len(node.partitions) - 1
    for i, p in enumerate(node.partitions):
        a = p.chain[0].alloc
        if a in lost_allocs:
            rep.partitions.append(Partition(p.lo, p.hi, p.chain, lost=True))
            continue
        r = by_alloc[a]
        if i < last and r.state == "sealed" and r.empty:
            rep.free.append(p.chain[0])
            continue
        if i < last and r.state == "active":
            rep.seal.append(p.chain[0])
        if i == last and r.state == "sealed":
            rep.needs_tail = True
        rep.partitions.append(p)
    return rep
