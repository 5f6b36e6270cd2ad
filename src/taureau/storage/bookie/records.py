"""The entry record shared by the journal and the entry log: encode once, write twice."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import crc32c

from taureau.common.bytes_like import Bytes
from taureau.common.errors import CorruptedDataError

# record := length(u32 BE) crc32c(u32 BE) ledger_id(u64 BE) entry_id(i64 BE) data
#   length counts ledger_id + entry_id + data (16 + len(data));
#   crc32c covers those same bytes.
# Marker records (journal only) carry a negative entry_id and no data:
#   FENCE_ENTRY_ID  -- the ledger was fenced (no more adds except recovery adds)
#   DELETE_ENTRY_ID -- the ledger was deleted
HEADER = struct.Struct(">IIQq")
_IDS = struct.Struct(">Qq")
IDS_SIZE = _IDS.size
FENCE_ENTRY_ID = -0x2000
DELETE_ENTRY_ID = -0x2001
MAX_ENTRY_SIZE = 64 * 1024 * 1024  # a length above this is junk, not a record

_crc = crc32c.crc32c
_ids_pack = _IDS.pack
_frame_pack = struct.Struct(">II").pack


def encode(ledger_id: int, entry_id: int, data: Bytes) -> bytes:
    """The record as one bytes object (markers, tests); the data path uses encode_parts."""
    return b"".join(encode_parts(ledger_id, entry_id, (data,)))


def encode_parts(ledger_id: int, entry_id: int, data: Sequence[Bytes]) -> list[Bytes]:
    """The record as [header, *data]: the data parts are not copied (the journal and the
    entry log write them with pwritev). The CRC runs over the parts in turn, which is the
    CRC of their concatenation."""
    ids = _ids_pack(ledger_id, entry_id)
    crc = _crc(ids)
    length = IDS_SIZE
    for part in data:
        crc = _crc(part, crc)
        length += len(part)
    return [_frame_pack(length, crc) + ids, *data]


def decode_at(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, bytes, int] | None:
    """(ledger_id, entry_id, data, next_pos) of the record at pos, or None if the bytes
    from pos on are not a whole valid record (torn write, junk, end of buffer)."""
    if pos + HEADER.size > len(buf):
        return None
    length, crc, ledger_id, entry_id = HEADER.unpack_from(buf, pos)
    end = pos + 8 + length
    if length < IDS_SIZE or length > MAX_ENTRY_SIZE + IDS_SIZE or end > len(buf):
        return None
    with memoryview(buf) as view:  # the CRC reads the buffer in place: no copy of the record
        if _crc(view[pos + 8 : end]) != crc:
            return None
    return ledger_id, entry_id, bytes(buf[pos + HEADER.size : end]), end


def decode_checked(buf: bytes, where: str) -> tuple[int, int, bytes]:
    """Decode a record that must be whole and valid (a read at a known location)."""
    found = decode_at(buf, 0)
    if found is None:
        raise CorruptedDataError(f"entry record at {where} is corrupted (checksum or length mismatch)")
    return found[0], found[1], found[2]


def record_length(header: bytes) -> int:
    """Total record size given at least its first 4 bytes."""
    return 8 + struct.unpack_from(">I", header, 0)[0]
