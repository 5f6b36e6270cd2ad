"""After a controller restart: reconcile a structure's catalog record with what its memory
servers report they hold (pure: decides, the caller sends the commands)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taureau.common import errors
from taureau.state.namespace import BlockRef, Node, Partition

if TYPE_CHECKING:
    from taureau.state.layouts import Layout

# The catalog says which blocks a structure owns and in what order; the memory servers say
# what each block is now (its range, state, whether data is still moving in). A crash of the
# controller between two steps of an elastic operation (elastic.py lists them) leaves one of
# a few shapes, and each has one safe reading (per layout, in layouts.py):
#
#   key ranges
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
#   segments (in order)       every segment but the last must be sealed (LINK_NEXT); a sealed,
#                             empty one before the last lost its DRAINED event: drop and free;
#                             a sealed last one needs a new tail
#   extents                   nothing moves between extents
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


def reconcile(node: Node, reports: dict[int, BlockReport], layout: Layout) -> Repair:
    """What to do so that `node`'s map matches its blocks; `reports` holds every reported
    block of a server still alive (a block of a dead server is absent); `layout` is its
    kind's (layouts.py holds the rules of each)."""
    found: list[tuple[Partition, BlockReport]] = []
    lost: list[Partition] = []
    for p in node.partitions:
        r = reports.get(p.chain[0].alloc)
        if p.lost or r is None or r.struct != node.struct_id or r.kind != node.kind:
            lost.append(Partition(p.lo, p.hi, p.chain, lost=True))
        else:
            found.append((p, r))
    rep = layout.reconcile(node, found, lost)
    rep.lost = sum(p.lost for p in rep.partitions)
    return rep
