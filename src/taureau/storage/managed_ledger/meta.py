"""Managed-ledger and cursor records: where they live in the metadata store and their byte format.

Layout in the metadata store (one flat level, so listing every managed ledger is one
`children` call; names are percent-encoded because they contain '/'):

    /managed-ledgers/<quote(name)>                   ManagedLedgerInfo record
    /managed-ledgers/<quote(name)>/<quote(cursor)>   CursorInfo record

Byte grammar (UTF-8 JSON, compact separators; one line per version):

    v1 ManagedLedgerInfo := {"v":1,"ledgers":[[ledger_id, entries, size, timestamp_ms], ...]}
         ledgers in chain order; the last one is the current ledger of the owner that wrote
         it (its entries/size are only a hint: recovery reads them from the ledger).
    v1 CursorInfo        := {"v":1,"md":[ledger_id, entry_id],"ranges":[ledger, first, last, ...]}
         md = mark-delete position; ranges = individually deleted entries after it, flat triples;
         optional "active": wall-clock ms a consumer last came or went (subscription expiration),
         absent in records written before it existed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote, unquote

from taureau.common.errors import CorruptedDataError, StorageArgumentError
from taureau.storage.managed_ledger.ranges import RangeSet
from taureau.storage.position import Position

ROOT = "/managed-ledgers"
_VERSION = 1


@dataclass(slots=True)
class LedgerInfo:
    """One ledger of the chain, as the managed ledger records it."""

    ledger_id: int
    entries: int = 0
    size: int = 0
    timestamp_ms: int = 0  # when it was closed (0 while current)


def _encode_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name or "\x00" in name:
        raise StorageArgumentError(f"invalid {kind} name: {name!r}")
    # '.' is encoded too so that "." and ".." stay legal names but never path parts.
    return quote(name, safe="").replace(".", "%2E")


def ledger_path(name: str) -> str:
    return f"{ROOT}/{_encode_name('managed ledger', name)}"


def cursor_path(ledger_name: str, cursor_name: str) -> str:
    return f"{ledger_path(ledger_name)}/{_encode_name('cursor', cursor_name)}"


def decode_name(encoded: str) -> str:
    return unquote(encoded)


def _dumps(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _loads(data: bytes, what: str) -> dict:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptedDataError(f"{what} record is not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != _VERSION:
        raise CorruptedDataError(f"{what} record has no known version: {data[:80]!r}")
    return obj


def _ints(value: object, n: int, what: str) -> list[int]:
    if not isinstance(value, list) or len(value) != n or not all(type(x) is int for x in value):
        raise CorruptedDataError(f"{what}: expected {n} integers, got {value!r:.80}")
    return value


def encode_ledger_info(ledgers: list[LedgerInfo]) -> bytes:
    return _dumps(
        {"v": _VERSION, "ledgers": [[i.ledger_id, i.entries, i.size, i.timestamp_ms] for i in ledgers]}
    )


def decode_ledger_info(data: bytes) -> list[LedgerInfo]:
    obj = _loads(data, "managed ledger")
    rows = obj.get("ledgers")
    if not isinstance(rows, list):
        raise CorruptedDataError("managed ledger record has no ledger list")
    out = [LedgerInfo(*_ints(row, 4, "ledger info")) for row in rows]
    ids = [i.ledger_id for i in out]
    if ids != sorted(set(ids)):
        raise CorruptedDataError(f"managed ledger's ledger ids are not increasing: {ids[:20]}")
    return out


# Acked ranges persisted per cursor at most (Pulsar's managedLedgerMaxUnackedRangesToPersist):
# the record must fit in a metadata value (1 MiB). Ranges past these are not saved, so after a
# restart their entries are delivered again (at least once), never lost.
MAX_PERSISTED_RANGES = 10_000


# Bytes of partly acknowledged batch entries persisted per cursor at most (same reason, same
# outcome: one not saved comes back whole after a restart). With the ranges at their bound
# (about 420 KB) the record stays well under 1 MiB.
MAX_PERSISTED_BATCH_BYTES = 256 * 1024

# A partly acknowledged entry -> the bit set (64-bit words) of its messages not acknowledged.
BatchAcks = dict[Position, tuple[int, ...]]


def encode_cursor_info(mark_delete: Position, ranges: RangeSet, batches: BatchAcks | None = None,
                       last_active_ms: int = 0) -> bytes:
    if not ranges and not batches:
        # A consumer that keeps up has nothing acked out of order: the record every cursor
        # saves once a second, formatted as json.dumps would (1,000 topics: 1,000 a second).
        md_ledger, md_entry = mark_delete
        if last_active_ms:
            return b'{"v":%d,"md":[%d,%d],"ranges":[],"active":%d}' % (_VERSION, md_ledger, md_entry, last_active_ms)
        return b'{"v":%d,"md":[%d,%d],"ranges":[]}' % (_VERSION, md_ledger, md_entry)
    flat = ranges.to_flat()[: 3 * MAX_PERSISTED_RANGES]
    record: dict = {"v": _VERSION, "md": list(mark_delete), "ranges": flat}
    if last_active_ms:
        record["active"] = last_active_ms
    if batches:
        rows, size = [], 0
        for p, words in batches.items():
            row = [p.ledger_id, p.entry_id, list(words)]
            size += len(json.dumps(row)) + 1
            if size > MAX_PERSISTED_BATCH_BYTES:
                break
            rows.append(row)
        record["batches"] = rows
    return _dumps(record)


def decode_cursor_info(data: bytes) -> tuple[Position, RangeSet, BatchAcks]:
    obj = _loads(data, "cursor")
    md = Position(*_ints(obj.get("md"), 2, "cursor mark-delete position"))
    ranges = RangeSet.from_flat(obj.get("ranges", []))
    first = ranges.first()
    if first is not None and first[0] <= md:
        raise CorruptedDataError(f"cursor acked range {first[0]} is not after its mark-delete position {md}")
    batches: BatchAcks = {}
    for row in obj.get("batches", []):
        if not isinstance(row, list) or len(row) != 3:
            raise CorruptedDataError(f"cursor batch ack: expected [ledger, entry, words], got {row!r:.80}")
        words = row[2]
        if not isinstance(words, list) or not all(type(w) is int for w in words):
            raise CorruptedDataError(f"cursor batch ack words: {words!r:.80}")
        batches[Position(*_ints(row[:2], 2, "cursor batch ack position"))] = tuple(words)
    return md, ranges, batches


def decode_cursor_last_active(data: bytes) -> int:
    """The cursor record's last-active time in wall-clock ms; 0 if it has none."""
    active = _loads(data, "cursor").get("active", 0)
    if type(active) is not int or active < 0:
        raise CorruptedDataError(f"cursor last-active time: {active!r:.80}")
    return active
