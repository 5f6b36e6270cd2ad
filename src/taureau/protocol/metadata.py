"""Read (and, for tests and tools, write) the stored entry: checksum, MessageMetadata, payload."""

from __future__ import annotations

import struct
from typing import NamedTuple

import crc32c
from google.protobuf.message import DecodeError

from taureau.protocol import pulsar_api_pb2 as pb
from taureau.protocol.errors import ProtocolError

# Stored entry byte grammar (the payload section of a SEND, kept verbatim by the broker):
#
#   entry    := checksum? metadata_size:u32 metadata[metadata_size] payload
#   checksum := 0x0e01 crc:u32   crc = CRC32C of metadata_size + metadata + payload (big-endian)
#   metadata := MessageMetadata protobuf; num_messages_in_batch present <=> payload is a batch
#   payload  := the rest: one message, or a batch (see batch.py), compressed as `compression` says

_U32 = struct.Struct(">I")
_CRC_HEAD = struct.Struct(">HI")
_MAGIC_CHECKSUM = 0x0E01


class EntryMeta(NamedTuple):
    """What the broker needs from one entry's MessageMetadata."""

    num_messages: int  # messages in the entry: num_messages_in_batch, else 1
    is_batch: bool  # num_messages_in_batch was present
    publish_time: int  # ms since epoch, set by the producer
    producer_name: str
    sequence_id: int  # first sequence id of the entry
    highest_sequence_id: int  # last sequence id covered by the entry
    partition_key: str | None
    ordering_key: bytes | None
    event_time: int | None  # None when the producer set none
    compression: int  # CompressionType value
    metadata_end_offset: int  # payload starts here in the entry bytes


def _metadata_bounds(entry: bytes | bytearray | memoryview) -> tuple[int, int]:
    """Return (start, end) of the MessageMetadata bytes inside `entry`."""
    size = len(entry)
    pos = 6 if size >= 2 and entry[0] == 0x0E and entry[1] == 0x01 else 0
    if size < pos + 4:
        raise ProtocolError(f"entry of {size} bytes is too short for its metadata size")
    end = pos + 4 + _U32.unpack_from(entry, pos)[0]
    if end > size:
        raise ProtocolError(f"metadata size overruns the entry ({end} > {size} bytes)")
    return pos + 4, end


def parse_metadata(entry: bytes | bytearray | memoryview) -> tuple[pb.MessageMetadata, int]:
    """Return the entry's full MessageMetadata and the offset where its payload starts."""
    start, end = _metadata_bounds(entry)
    meta = pb.MessageMetadata()
    try:
        meta.ParseFromString(memoryview(entry)[start:end])
    except DecodeError as exc:
        raise ProtocolError(f"unparseable MessageMetadata: {exc}") from None
    # upb does not enforce proto2 `required` on parse.
    if not meta.IsInitialized():
        raise ProtocolError(f"MessageMetadata is missing {', '.join(meta.FindInitializationErrors())}")
    return meta, end


def parse_entry(entry: bytes | bytearray | memoryview) -> EntryMeta:
    """Parse the metadata fields the broker uses; ProtocolError on malformed bytes."""
    meta, end = parse_metadata(entry)
    has = meta.HasField
    is_batch = has("num_messages_in_batch")
    count = meta.num_messages_in_batch if is_batch else 1
    if count < 0:
        raise ProtocolError(f"negative num_messages_in_batch {count}")
    sequence_id = meta.sequence_id
    if has("highest_sequence_id") and meta.highest_sequence_id >= sequence_id:
        highest = meta.highest_sequence_id
    else:
        highest = sequence_id + max(count, 1) - 1
    return EntryMeta(
        count,
        is_batch,
        meta.publish_time,
        meta.producer_name,
        sequence_id,
        highest,
        meta.partition_key if has("partition_key") else None,
        meta.ordering_key if has("ordering_key") else None,
        meta.event_time if has("event_time") else None,
        meta.compression,
        end,
    )


def has_checksum(entry: bytes | bytearray | memoryview) -> bool:
    return len(entry) >= 6 and entry[0] == 0x0E and entry[1] == 0x01


def verify_entry_checksum(entry: bytes | bytearray | memoryview) -> bool:
    """True when the entry carries no checksum or its CRC32C matches."""
    if not has_checksum(entry):
        return True
    return crc32c.crc32c(memoryview(entry)[6:]) == _CRC_HEAD.unpack_from(entry, 0)[1]


def encode_entry(metadata: pb.MessageMetadata, payload: bytes, checksum: bool = True) -> bytes:
    """Build entry bytes as a producer sends them (for tests, tools and internal producers)."""
    raw = metadata.SerializeToString()
    body = _U32.pack(len(raw)) + raw + payload
    if not checksum:
        return body
    return _CRC_HEAD.pack(_MAGIC_CHECKSUM, crc32c.crc32c(body)) + body
