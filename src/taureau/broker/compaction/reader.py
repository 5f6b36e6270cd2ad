"""CompactedReader: what a read_compacted subscription reads.

While the cursor's read position is at or before the compaction horizon, entries come from the
compacted view (the latest message of each key) and the cursor jumps over what compaction
left out; past the horizon it reads the topic as any subscription does. Exclusive and
Failover subscriptions (readers among them) only, as Pulsar allows.
"""

from __future__ import annotations

from collections.abc import Callable

from taureau.broker.compaction.view import CompactedView, unwrap
from taureau.common.errors import NoSuchEntryError
from taureau.storage.managed_ledger.api import ManagedCursor
from taureau.storage.position import Entry, Position


class CompactedReader:
    def __init__(self, view: Callable[[], CompactedView | None], from_start: bool = False) -> None:
        self._view = view  # the topic's current view: a compaction may replace it at any time
        # Read the view from its first entry on the first read, wherever the cursor stands
        # (its start was normalised past entries that retention already dropped).
        self._from_start = from_start
        # Entries at or before this were dropped by retention before the cursor existed, not
        # acknowledged by it: the cursor's mark-delete position there says nothing of them.
        self._unread_before: Position | None = None
        # Where the last compacted read stopped: (cursor read position after it, next
        # compacted position, the view it was in), to read on without a new search.
        self._resume: tuple[Position, Position, CompactedView] | None = None

    def has_more(self, cursor: ManagedCursor) -> bool:
        view = self._view()
        if view is not None and (self._from_start or cursor.read_position <= view.horizon):
            return True
        return cursor.has_more_entries()

    async def read(self, cursor: ManagedCursor, max_entries: int) -> list[Entry]:
        while True:
            view = self._view()
            start = cursor.read_position
            from_start, self._from_start = self._from_start, False
            if view is None or (start > view.horizon and not from_start):
                return await cursor.read_entries(max_entries)
            resume = self._resume
            at: Position | None
            if from_start:
                at = view.ledger.first_position if view.ledger.entries_count else None
                self._unread_before = cursor.mark_delete_position
            elif resume is not None and resume[0] == start and resume[2] is view:
                at = resume[1]
            else:
                at = await view.find(start)
            try:
                stored = await view.ledger.read_entries(at, max_entries) if at is not None else []
            except NoSuchEntryError:  # the last kept entry was read: `at` is past the end
                stored = []
            if not stored:
                # Nothing kept from here to the horizon: go on with the topic after it.
                self._resume = None
                cursor.seek(view.horizon.next())
                continue
            originals = [unwrap(s) for s in stored]
            cursor.seek(originals[-1].position.next())
            self._resume = (cursor.read_position, stored[-1].position.next(), view)
            floor = self._unread_before
            unacked = [
                e for e in originals
                if not cursor.is_acked(e.position) or (floor is not None and e.position <= floor)
            ]
            if unacked:
                return unacked
