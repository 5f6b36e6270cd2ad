"""CompactedView: a finished compaction, and how readers find their place in it.

The compacted entries live in a managed ledger of their own, each prefixed with the position
the entry had in the topic (16 bytes), so a compacted reader delivers messages under their
original ids and a binary search finds where a cursor's read position falls.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from taureau.storage.managed_ledger.api import ManagedLedger
from taureau.storage.position import Entry, Position

_ORIGIN = struct.Struct(">qq")


def wrap(position: Position, data: bytes) -> bytes:
    return _ORIGIN.pack(position.ledger_id, position.entry_id) + data


def unwrap(stored: Entry) -> Entry:
    """The entry as the topic had it: original position, original (or rebuilt) bytes."""
    ledger_id, entry_id = _ORIGIN.unpack_from(stored.data)
    return Entry(Position(ledger_id, entry_id), stored.data[_ORIGIN.size :])


def _origin(stored: Entry) -> Position:
    return Position(*_ORIGIN.unpack_from(stored.data))


@dataclass(frozen=True, slots=True)
class CompactedView:
    ledger: ManagedLedger  # the compacted entries, in original order
    horizon: Position  # the last topic position the compaction read

    async def find(self, start: Position) -> Position | None:
        """The compacted position of the first kept entry at or after topic position `start`."""
        return await self.ledger.find_position(lambda stored: _origin(stored) >= start)
