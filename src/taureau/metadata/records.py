"""Byte encoding of the metadata store's log and snapshot records."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c

from taureau.common.errors import CorruptedDataError

# Framing shared by the log and the snapshot files:
#   file    := header record*
#   header  := magic(4) format_version(u8) generation(u64 BE)      -- 13 bytes
#              magic "TMDL" for a log file, "TMDS" for a snapshot file
#   record  := length(u32 BE) crc32c(payload)(u32 BE) payload[length]
# Payload, format version 1 (the only one so far):
#   payload := op(u8) path_len(u16 BE) path(utf-8) body
#   op 1 PUT    body := version(u64) created_ms(i64) modified_ms(i64) value(rest of payload)
#                       -- the node's full state after the change, so replay is idempotent
#   op 2 DELETE body := empty  -- remove the node and everything under it
#   op 3 END    body := count(u64) -- last record of a snapshot: number of PUTs before it;
#                       a snapshot without it is incomplete and ignored
FORMAT_VERSION = 1
LOG_MAGIC = b"TMDL"
SNAPSHOT_MAGIC = b"TMDS"
HEADER = struct.Struct(">4sBQ")
FRAME = struct.Struct(">II")
_OP_PATH = struct.Struct(">BH")
_PUT_BODY = struct.Struct(">Qqq")
_COUNT = struct.Struct(">Q")

OP_PUT = 1
OP_DELETE = 2
OP_END = 3
MAX_RECORD = 64 * 1024 * 1024  # a length above this is junk, not a record


@dataclass(frozen=True, slots=True)
class Record:
    op: int
    path: str
    value: bytes = b""
    version: int = 0
    created_ms: int = 0
    modified_ms: int = 0
    count: int = 0  # END only


def frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload), crc32c.crc32c(payload)) + payload


def encode_put(path: str, value: bytes, version: int, created_ms: int, modified_ms: int) -> bytes:
    raw = path.encode()
    return _OP_PATH.pack(OP_PUT, len(raw)) + raw + _PUT_BODY.pack(version, created_ms, modified_ms) + value


def encode_delete(path: str) -> bytes:
    raw = path.encode()
    return _OP_PATH.pack(OP_DELETE, len(raw)) + raw


def encode_end(count: int) -> bytes:
    return _OP_PATH.pack(OP_END, 0) + _COUNT.pack(count)


def decode(payload: bytes) -> Record:
    """Decode one payload whose CRC already matched; CorruptedDataError if it is malformed."""
    try:
        op, path_len = _OP_PATH.unpack_from(payload, 0)
        start = _OP_PATH.size + path_len
        path = payload[_OP_PATH.size : start].decode()
        if len(payload) < start:
            raise ValueError("path runs past the record")
        if op == OP_PUT:
            version, created, modified = _PUT_BODY.unpack_from(payload, start)
            return Record(op, path, bytes(payload[start + _PUT_BODY.size :]), version, created, modified)
        if op == OP_DELETE:
            return Record(op, path)
        if op == OP_END:
            return Record(op, path, count=_COUNT.unpack_from(payload, start)[0])
        raise ValueError(f"unknown op {op}")
    except (struct.error, ValueError) as exc:
        raise CorruptedDataError(f"malformed metadata record: {exc}") from exc


def make_header(magic: bytes, generation: int) -> bytes:
    return HEADER.pack(magic, FORMAT_VERSION, generation)


def scan(data: bytes, magic: bytes) -> tuple[list[bytes], int]:
    """Split a whole file into payloads; return (payloads, length of the valid prefix).

    Stops at the first torn or junk record (short frame, absurd length, CRC mismatch):
    everything from there on is an unfinished write. A file shorter than the header has no
    valid prefix (0). A wrong magic or version raises CorruptedDataError.
    """
    if len(data) < HEADER.size:
        return [], 0
    got_magic, version, _generation = HEADER.unpack_from(data, 0)
    if got_magic != magic or version != FORMAT_VERSION:
        raise CorruptedDataError(f"not a taureau metadata file (magic {got_magic!r}, version {version})")
    payloads: list[bytes] = []
    pos = HEADER.size
    while pos + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, pos)
        end = pos + FRAME.size + length
        if length > MAX_RECORD or end > len(data):
            break
        payload = data[pos + FRAME.size : end]
        if crc32c.crc32c(payload) != crc:
            break
        payloads.append(payload)
        pos = end
    return payloads, pos
