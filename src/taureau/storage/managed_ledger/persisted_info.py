"""A managed ledger as its metadata records it (not as it is in memory), shaped like Pulsar's
`topics info-internal` (ManagedLedgerInfo): the ledger list and each cursor's saved position.

What a restart would start from: a cursor's in-memory position (internalStats) runs ahead of
this one by up to its save interval.
"""

from __future__ import annotations

from datetime import UTC, datetime

from taureau.common.errors import NotFoundError
from taureau.metadata import MetadataStore, Stat
from taureau.storage.managed_ledger import meta
from taureau.storage.position import Position


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _position(p: Position) -> dict:
    return {"ledgerId": p.ledger_id, "entryId": p.entry_id}


def _dates(stat: Stat) -> dict:
    return {"version": stat.version, "creationDate": _date(stat.created_ms), "modificationDate": _date(stat.modified_ms)}


async def persisted_info(store: MetadataStore, name: str) -> dict:
    """NotFoundError if the managed ledger has no record. A cursor deleted while this reads
    is left out."""
    path = meta.ledger_path(name)
    found = await store.get(path)
    if found is None:
        raise NotFoundError(f"managed ledger {name} has no metadata record")
    value, stat = found
    info: dict = {
        **_dates(stat),
        "ledgers": [
            {"ledgerId": i.ledger_id, "entries": i.entries, "size": i.size, "timestamp": i.timestamp_ms}
            for i in meta.decode_ledger_info(value)
        ],
        "cursors": {},
    }
    for child in sorted(await store.children(path)):
        cursor_name = meta.decode_name(child)
        record = await store.get(meta.cursor_path(name, cursor_name))
        if record is None:
            continue
        mark_delete, ranges, _batches = meta.decode_cursor_info(record[0])
        info["cursors"][cursor_name] = {
            **_dates(record[1]),
            "markDelete": _position(mark_delete),
            # Open-closed ranges, as Pulsar's MessageRangeInfo: (from, to].
            "individualDeletedMessages": [
                {"from": _position(Position(start.ledger_id, start.entry_id - 1)), "to": _position(end)}
                for start, end in ranges.ranges()
            ],
        }
    return info
