"""EntryCache: the most recently added entries of one managed ledger, for reads that tail the log.

Entries arrive in add order, so the cache is one list with a moving head: a position maps
to its slot in O(1) through the sequence number at which its ledger started in this
cache, a tail read of n entries is one list slice, and eviction pops from the head (by
size, or when every cursor has read past). Only entries added through this process are
cached; older ones are read from the ledgers. With a CacheBudget (budget.py) the caches of
every managed ledger of the process are bounded together too: the coldest one shrinks first.
"""

from __future__ import annotations

from taureau.storage.managed_ledger.budget import CacheBudget
from taureau.storage.position import Entry, Position


class EntryCache:
    __slots__ = (
        "_max_bytes",
        "_budget",
        "_entries",
        "_head",
        "_head_seq",
        "_next_seq",
        "_ledger_seq",
        "_bytes",
    )

    def __init__(self, max_bytes: int, budget: CacheBudget | None = None) -> None:
        self._max_bytes = max_bytes
        self._budget = budget  # shared with every other cache of the factory, if any
        self._entries: list[Entry] = []  # slots [_head:] are live, in add order
        self._head = 0
        self._head_seq = 0  # sequence number of _entries[_head]
        self._next_seq = 0  # sequence number the next insert gets
        self._ledger_seq: dict[int, int] = {}  # ledger id -> sequence number of its entry 0
        self._bytes = 0  # payload bytes of live entries

    def __len__(self) -> int:
        return self._next_seq - self._head_seq

    @property
    def size(self) -> int:
        return self._bytes

    @property
    def first_position(self) -> Position | None:
        return self._entries[self._head].position if len(self) else None

    def insert(self, entry: Entry) -> None:
        """Add the entry that follows the last one inserted (a gap empties the cache first)."""
        ledger_id, entry_id = entry.position
        base = self._ledger_seq.get(ledger_id)
        if base is None:
            self._ledger_seq[ledger_id] = self._next_seq - entry_id
        elif base + entry_id != self._next_seq:
            self.clear()
            self._ledger_seq[ledger_id] = self._next_seq - entry_id
        self._entries.append(entry)
        self._next_seq += 1
        size = len(entry.data)
        self._bytes += size
        if self._bytes > self._max_bytes:
            self._evict_to(self._bytes - self._max_bytes)
        if self._budget is not None:
            self._budget.charged(self, size)

    def get_run(self, pos: Position, max_entries: int) -> list[Entry]:
        """Cached entries from pos on, in log order (may cross ledgers); [] if pos is not cached."""
        base = self._ledger_seq.get(pos.ledger_id)
        if base is None:
            return []
        seq = base + pos.entry_id
        if not self._head_seq <= seq < self._next_seq:
            return []
        start = self._head + seq - self._head_seq
        if self._budget is not None:
            self._budget.touched(self)
        return self._entries[start : start + max_entries]

    def evict_before(self, pos: Position) -> None:
        """Drop every cached entry before pos."""
        base = self._ledger_seq.get(pos.ledger_id)
        if base is not None:
            target = min(max(base + pos.entry_id, self._head_seq), self._next_seq)
        else:
            first = self.first_position
            target = self._next_seq if first is not None and pos > first else self._head_seq
        while self._head_seq < target:
            self._pop_head()
        self._compact()

    def shrink(self, drop_bytes: int) -> None:
        """Drop the oldest entries until `drop_bytes` are freed (the budget asks)."""
        self._evict_to(drop_bytes)

    def _evict_to(self, drop_bytes: int) -> None:
        while drop_bytes > 0 and self._head_seq < self._next_seq:
            drop_bytes -= self._pop_head()
        self._compact()

    def _pop_head(self) -> int:
        size = len(self._entries[self._head].data)
        self._entries[self._head] = None  # type: ignore[call-overload]  # free the bytes now
        self._head += 1
        self._head_seq += 1
        self._bytes -= size
        if self._budget is not None:
            self._budget.released(size)
        return size

    def _compact(self) -> None:
        # Amortised O(1): the list is cut only once the dead head is as long as the live tail.
        if self._head > 64 and self._head * 2 > len(self._entries):
            del self._entries[: self._head]
            self._head = 0
            first = self.first_position
            if first is None:
                self._ledger_seq.clear()
            else:
                self._ledger_seq = {k: v for k, v in self._ledger_seq.items() if k >= first.ledger_id}

    def clear(self) -> None:
        if self._budget is not None:
            self._budget.released(self._bytes)
        self._entries.clear()
        self._head = 0
        self._head_seq = self._next_seq
        self._ledger_seq.clear()
        self._bytes = 0

    def close(self) -> None:
        """Empty the cache and leave the budget (its ledger is closed)."""
        self.clear()
        if self._budget is not None:
            self._budget.forget(self)
