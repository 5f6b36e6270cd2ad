"""RangeSet: a cursor's individually deleted entries as sorted, disjoint, closed ranges.

Each range [start, end] lies inside one ledger (start.ledger_id == end.ledger_id): whether
(L, 9) and (L', 0) are neighbours depends on the ledger list, which the cursor knows and
this pure structure does not. Two ranges of one ledger that touch are always merged, so
the set holds as few ranges as the acks allow, and `entry_count` is kept as a running
total: a backlog costs O(1) here, never a walk over entries.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from taureau.common.errors import CorruptedDataError
from taureau.storage.position import Position


class RangeSet:
    """Sorted disjoint closed ranges of positions, one ledger per range.

    >>> r = RangeSet(); r.add(Position(3, 5)); r.add(Position(3, 6)); r.ranges()
    [(Position(ledger_id=3, entry_id=5), Position(ledger_id=3, entry_id=6))]
    """

    __slots__ = ("_starts", "_ends", "_count")

    def __init__(self) -> None:
        self._starts: list[Position] = []  # sorted; _ends[i] closes the range opened by _starts[i]
        self._ends: list[Position] = []
        self._count = 0  # entries inside all ranges

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    @property
    def entry_count(self) -> int:
        return self._count

    def ranges(self) -> list[tuple[Position, Position]]:
        return list(zip(self._starts, self._ends, strict=True))

    def first(self) -> tuple[Position, Position] | None:
        return (self._starts[0], self._ends[0]) if self._starts else None

    def __contains__(self, pos: Position) -> bool:
        return self.range_containing(pos) is not None

    def range_containing(self, pos: Position) -> tuple[Position, Position] | None:
        i = bisect_right(self._starts, pos) - 1
        if i >= 0 and self._ends[i] >= pos:
            return self._starts[i], self._ends[i]
        return None

    def next_start_after(self, pos: Position) -> Position | None:
        """Start of the first range that begins after `pos`."""
        i = bisect_right(self._starts, pos)
        return self._starts[i] if i < len(self._starts) else None

    def add(self, pos: Position) -> bool:
        """Add one position; False if it was already in the set."""
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, pos)  # ranges [0, i) start at or before pos
        if i > 0 and ends[i - 1] >= pos:
            return False
        ledger, entry = pos
        joins_left = i > 0 and ends[i - 1] == (ledger, entry - 1)
        joins_right = i < len(starts) and starts[i] == (ledger, entry + 1)
        if joins_left and joins_right:
            ends[i - 1] = ends[i]
            del starts[i], ends[i]
        elif joins_left:
            ends[i - 1] = pos
        elif joins_right:
            starts[i] = pos
        else:
            starts.insert(i, pos)
            ends.insert(i, pos)
        self._count += 1
        return True

    def add_range(self, start: Position, end: Position) -> None:
        """Add every entry of [start, end] (one ledger)."""
        if start.ledger_id != end.ledger_id or start.entry_id > end.entry_id or start.entry_id < 0:
            raise ValueError(f"not a range inside one ledger: {start}..{end}")
        # Widen over every range that overlaps or touches, then replace them by one.
        lo = bisect_left(self._ends, Position(start.ledger_id, start.entry_id - 1))
        hi = bisect_right(self._starts, Position(end.ledger_id, end.entry_id + 1))
        for j in range(lo, hi):
            if self._starts[j].ledger_id == start.ledger_id:
                start = min(start, self._starts[j])
                end = max(end, self._ends[j])
        merged = [j for j in range(lo, hi) if self._starts[j].ledger_id == start.ledger_id]
        for j in reversed(merged):
            self._count -= self._ends[j].entry_id - self._starts[j].entry_id + 1
            del self._starts[j], self._ends[j]
        i = bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self._count += end.entry_id - start.entry_id + 1

    def pop_first(self) -> tuple[Position, Position]:
        start, end = self._starts.pop(0), self._ends.pop(0)
        self._count -= end.entry_id - start.entry_id + 1
        return start, end

    def remove_up_to(self, pos: Position) -> int:
        """Drop every position <= pos; return how many entries were dropped."""
        i = bisect_right(self._ends, pos)  # ranges [0, i) end at or before pos
        dropped = sum(
            e.entry_id - s.entry_id + 1 for s, e in zip(self._starts[:i], self._ends[:i], strict=True)
        )
        del self._starts[:i], self._ends[:i]
        if self._starts and self._starts[0] <= pos:  # a range straddles pos: cut its head
            cut = pos.entry_id - self._starts[0].entry_id + 1
            dropped += cut
            self._starts[0] = Position(pos.ledger_id, pos.entry_id + 1)
        self._count -= dropped
        return dropped

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self._count = 0

    # Flat form, used by the cursor record: [ledger, first_entry, last_entry, ...].
    def to_flat(self) -> list[int]:
        out: list[int] = []
        for s, e in zip(self._starts, self._ends, strict=True):
            out += (s.ledger_id, s.entry_id, e.entry_id)
        return out

    @classmethod
    def from_flat(cls, flat: list[int]) -> RangeSet:
        """Inverse of to_flat; CorruptedDataError unless sorted, disjoint, unmerged triples."""
        if not isinstance(flat, list) or len(flat) % 3 or not all(type(x) is int for x in flat):
            raise CorruptedDataError(f"acked ranges must be a flat list of int triples, got {flat!r:.80}")
        out = cls()
        for k in range(0, len(flat), 3):
            ledger, first, last = flat[k : k + 3]
            start, end = Position(ledger, first), Position(ledger, last)
            if first < 0 or last < first or (out._ends and start <= out._ends[-1].next()):
                raise CorruptedDataError(f"acked ranges are not sorted, disjoint ranges: {flat!r:.80}")
            out._starts.append(start)
            out._ends.append(end)
            out._count += last - first + 1
        return out
