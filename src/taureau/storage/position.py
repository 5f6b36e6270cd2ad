"""Position (ledger_id, entry_id) and Entry: the two values every storage layer passes around."""

from __future__ import annotations

from typing import NamedTuple


class Position(NamedTuple):
    """A place in a managed ledger. Tuples order naturally: by ledger, then entry.

    entry_id -1 means "before the first entry of that ledger"; a cursor whose
    mark-delete position is (L, -1) has acknowledged nothing in ledger L.
    """

    ledger_id: int
    entry_id: int

    def next(self) -> Position:
        return Position(self.ledger_id, self.entry_id + 1)

    def __str__(self) -> str:
        return f"{self.ledger_id}:{self.entry_id}"


class Entry(NamedTuple):
    """One stored entry: its position and the exact bytes that were added."""

    position: Position
    data: bytes


EARLIEST = Position(-1, -1)
LATEST = Position(2**63 - 1, 2**63 - 1)
