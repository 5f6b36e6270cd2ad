"""Ledger metadata as JSON under /ledgers/<id>, and the header the client puts on each stored entry."""

from __future__ import annotations

import json
import struct

from taureau.common.bytes_like import Bytes
from taureau.common.errors import CorruptedDataError
from taureau.storage.ledger.api import LedgerMetadata, LedgerState

LEDGERS_PATH = "/ledgers"
LEDGER_ID_COUNTER_PATH = "/ledger-id-counter"  # decimal text: the next ledger id to hand out

# What the client stores on a bookie for entry e (BookKeeper piggybacks the same two fields):
#   stored := lac(i64 BE) length(u64 BE) data
#     lac    -- the writer's last-add-confirmed when it sent entry e (< e), so a recovery
#               that reads a bookie's last entry learns a point up to which all is acked
#     length -- total bytes of entries 0..e, so a recovered ledger knows its length
ENTRY_HEADER = struct.Struct(">qQ")


def ledger_path(ledger_id: int) -> str:
    return f"{LEDGERS_PATH}/{ledger_id}"


def encode_entry(lac: int, length: int, data: Bytes) -> bytes:
    return ENTRY_HEADER.pack(lac, length) + data


def encode_entry_parts(lac: int, length: int, data: Bytes) -> tuple[bytes, Bytes]:
    """The stored entry as (header, data): a bookie writes the two as they are, so a 1 MiB
    entry is not copied to put 16 bytes in front of it."""
    return ENTRY_HEADER.pack(lac, length), data


def decode_entry(stored: bytes) -> tuple[int, int, bytes]:
    """(lac, length, data) of a stored entry."""
    if len(stored) < ENTRY_HEADER.size:
        raise CorruptedDataError(f"stored entry of {len(stored)} bytes is shorter than its header")
    lac, length = ENTRY_HEADER.unpack_from(stored, 0)
    return lac, length, stored[ENTRY_HEADER.size :]


def encode_metadata(md: LedgerMetadata) -> bytes:
    return json.dumps(
        {
            "ledger_id": md.ledger_id,
            "ensemble": md.ensemble,
            "write_quorum": md.write_quorum,
            "ack_quorum": md.ack_quorum,
            "state": md.state.value,
            "last_entry_id": md.last_entry_id,
            "length": md.length,
            "created_ms": md.created_ms,
            "custom": md.custom,
            "ensembles": [[first, bookies] for first, bookies in md.ensembles],
        },
        separators=(",", ":"),
    ).encode()


def decode_metadata(raw: bytes) -> LedgerMetadata:
    try:
        doc = json.loads(raw)
        return LedgerMetadata(
            ledger_id=int(doc["ledger_id"]),
            ensemble=[str(b) for b in doc["ensemble"]],
            write_quorum=int(doc["write_quorum"]),
            ack_quorum=int(doc["ack_quorum"]),
            state=LedgerState(doc["state"]),
            last_entry_id=int(doc["last_entry_id"]),
            length=int(doc["length"]),
            created_ms=int(doc["created_ms"]),
            custom={str(k): str(v) for k, v in doc.get("custom", {}).items()},
            ensembles=[(int(first), [str(b) for b in bookies]) for first, bookies in doc.get("ensembles", [])],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptedDataError(f"unreadable ledger metadata: {exc}") from exc


def write_set(md: LedgerMetadata, entry_id: int) -> list[str]:
    """The bookies that store entry_id: ensemble[(e + i) % E] for i < write_quorum, of the
    last segment that starts at or before entry_id."""
    ensemble = md.ensembles[0][1]
    for first, bookies in md.ensembles:
        if first > entry_id:
            break
        ensemble = bookies
    size = len(ensemble)
    return [ensemble[(entry_id + i) % size] for i in range(md.write_quorum)]
