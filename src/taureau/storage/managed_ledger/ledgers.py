"""LedgerList: the ordered ledger chain of a managed ledger and the position arithmetic over it.

Pure (no I/O): normalising a position to the next entry that exists, counting entries
between two positions in O(ledgers), mapping an entry index to a position for binary
search, and `plan_trim`, which decides which consumed ledgers retention lets go.
The last ledger of the list is the current one (the one being written).
"""

from __future__ import annotations

from bisect import bisect_left

from taureau.storage.managed_ledger.meta import LedgerInfo
from taureau.storage.position import Position


class LedgerList:
    """The chain of ledgers, oldest first; the last one is current."""

    __slots__ = ("infos", "_ids")

    def __init__(self, infos: list[LedgerInfo]) -> None:
        self.infos = infos  # owned by the managed ledger; the current ledger's counts change live
        self._ids = [i.ledger_id for i in infos]  # parallel to infos, for bisect

    def __len__(self) -> int:
        return len(self.infos)

    @property
    def current(self) -> LedgerInfo:
        return self.infos[-1]

    def append(self, info: LedgerInfo) -> None:
        if self._ids and info.ledger_id <= self._ids[-1]:
            raise ValueError(f"ledger {info.ledger_id} does not come after {self._ids[-1]}")
        self.infos.append(info)
        self._ids.append(info.ledger_id)

    def remove(self, ledger_id: int) -> None:
        i = self._ids.index(ledger_id)
        del self.infos[i], self._ids[i]

    def get(self, ledger_id: int) -> LedgerInfo | None:
        i = bisect_left(self._ids, ledger_id)
        return self.infos[i] if i < len(self._ids) and self._ids[i] == ledger_id else None

    def contains(self, pos: Position) -> bool:
        """True if an entry is stored at `pos`."""
        info = self.get(pos.ledger_id)
        return info is not None and 0 <= pos.entry_id < info.entries

    @property
    def end(self) -> Position:
        """Where the next entry will be added."""
        cur = self.infos[-1]
        return Position(cur.ledger_id, cur.entries)

    @property
    def last_entry(self) -> Position:
        """The last stored entry, or (current, -1) if no ledger holds any."""
        cur = self.infos[-1]
        if cur.entries:  # asked several times per dispatch round: the common case first
            return Position(cur.ledger_id, cur.entries - 1)
        for info in reversed(self.infos):
            if info.entries:
                return Position(info.ledger_id, info.entries - 1)
        return Position(self.infos[-1].ledger_id, -1)

    def normalize(self, pos: Position) -> Position:
        """The first stored entry at or after `pos`, or `end` if there is none."""
        ledger_id, entry_id = pos
        ids, infos = self._ids, self.infos
        if ledger_id == ids[-1] and entry_id >= 0:
            # A position in the ledger being written (a tailing cursor, asked ~6 times per
            # dispatch round): itself, or the end. No bisect, no new Position.
            entries = infos[-1].entries
            return pos if entry_id < entries else Position(ledger_id, entries)
        entry_id = max(entry_id, 0)
        i = bisect_left(ids, ledger_id)
        last = len(ids) - 1
        while i < last:
            if ids[i] != ledger_id:
                ledger_id, entry_id = ids[i], 0
            if entry_id < infos[i].entries:
                return Position(ledger_id, entry_id)
            i += 1
        end = self.end
        if i == last:
            if ids[i] != ledger_id:
                ledger_id, entry_id = ids[i], 0
            if entry_id < end.entry_id:
                return Position(ledger_id, entry_id)
        return end

    def next_after(self, pos: Position) -> Position:
        return self.normalize(Position(pos.ledger_id, pos.entry_id + 1))

    def previous(self, pos: Position) -> Position:
        """The position just before `pos` (which must be normalised): its mark-delete form."""
        return Position(pos.ledger_id, pos.entry_id - 1)

    def count(self, after: Position, up_to: Position) -> int:
        """Stored entries in (after, up_to]."""
        start = self.next_after(after)
        if up_to < start:
            return 0
        total = 0
        i = bisect_left(self._ids, start.ledger_id)
        while i < len(self._ids) and self._ids[i] <= up_to.ledger_id:
            info = self.infos[i]
            lo = start.entry_id if info.ledger_id == start.ledger_id else 0
            hi = (
                min(info.entries - 1, up_to.entry_id)
                if info.ledger_id == up_to.ledger_id
                else info.entries - 1
            )
            total += max(0, hi - lo + 1)
            i += 1
        return total

    def ledger_end(self, ledger_id: int) -> int:
        """Last stored entry id of a ledger (-1 if none or unknown)."""
        info = self.get(ledger_id)
        return info.entries - 1 if info is not None else -1

    def position_at(self, index: int) -> Position:
        """The index-th stored entry (0 = first); IndexError beyond the last."""
        if index >= 0:
            for info in self.infos:
                if index < info.entries:
                    return Position(info.ledger_id, index)
                index -= info.entries
        raise IndexError("entry index out of range")

    def size_after(self, after: Position) -> int:
        """Bytes of the entries after `after`; within its own ledger, estimated from that
        ledger's average entry size (entries are not sized one by one)."""
        total = 0
        for info in self.infos:
            if info.ledger_id > after.ledger_id:
                total += info.size
            elif info.ledger_id == after.ledger_id and info.entries > 0:
                remaining = info.entries - (after.entry_id + 1)
                if remaining > 0:
                    total += info.size * remaining // info.entries
        return total

    @property
    def total_entries(self) -> int:
        return sum(i.entries for i in self.infos)

    @property
    def total_size(self) -> int:
        return sum(i.size for i in self.infos)


def plan_trim(
    ledgers: list[LedgerInfo],
    slowest_mark_delete: Position,
    retention_time_s: float,
    retention_size_bytes: int,
    now_ms: int,
) -> list[int]:
    """Ids of the oldest ledgers to delete: fully consumed and beyond retention (Pulsar's rule).

    A consumed ledger goes when the retained size is over retention_size_bytes or the ledger
    was closed more than retention_time_s ago; -1 disables that limit (both -1: keep forever).
    The current (last) ledger is never chosen.
    """
    out: list[int] = []
    size_left = sum(i.size for i in ledgers)
    for info in ledgers[:-1]:
        consumed = info.ledger_id < slowest_mark_delete.ledger_id or (
            info.ledger_id == slowest_mark_delete.ledger_id
            and slowest_mark_delete.entry_id >= info.entries - 1
        )
        if not consumed:
            break
        over_size = retention_size_bytes >= 0 and size_left > retention_size_bytes
        expired = retention_time_s >= 0 and now_ms - info.timestamp_ms >= retention_time_s * 1000
        if not (over_size or expired):
            break
        out.append(info.ledger_id)
        size_left -= info.size
    return out
