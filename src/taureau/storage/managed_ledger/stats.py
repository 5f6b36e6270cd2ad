"""internal_stats(): a managed ledger's state shaped like Pulsar's topic internalStats."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taureau.storage.managed_ledger.cursor import ManagedCursorImpl
    from taureau.storage.managed_ledger.ledger import ManagedLedgerImpl


def cursor_stats(cursor: ManagedCursorImpl) -> dict:
    # Pulsar prints acked ranges as Guava open-closed ranges: [(3:4..3:7], (5:0..5:2]].
    ranges = ", ".join(
        f"({s.ledger_id}:{s.entry_id - 1}..{e.ledger_id}:{e.entry_id}]"
        for s, e in cursor.individually_deleted_ranges()
    )
    return {
        "markDeletePosition": str(cursor.mark_delete_position),
        "readPosition": str(cursor.read_position),
        "individuallyDeletedMessages": f"[{ranges}]",
        "messagesConsumedCounter": cursor.messages_consumed,
        "totalNonContiguousDeletedMessagesRange": len(cursor.individually_deleted_ranges()),
        "backlog": cursor.backlog,
        "durable": cursor.durable,
    }


def ledger_stats(ml: ManagedLedgerImpl, entries_added: int, state: str) -> dict:
    current = ml.ledgers.current
    return {
        "entriesAddedCounter": entries_added,
        "numberOfEntries": ml.entries_count,
        "totalSize": ml.total_size,
        "currentLedgerEntries": current.entries,
        "currentLedgerSize": current.size,
        "lastConfirmedEntry": str(ml.last_confirmed),
        "state": state,
        "ledgers": [
            {"ledgerId": i.ledger_id, "entries": i.entries, "size": i.size, "timestamp": i.timestamp_ms}
            for i in ml.ledgers.infos
        ],
        "cursors": {name: cursor_stats(c) for name, c in ml.cursors.items()},
    }
