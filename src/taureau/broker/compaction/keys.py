"""What compaction keeps of each stored entry: pure functions over entry bytes.

Pulsar's rules: a message without a key is not kept; a message whose payload is empty (or that
says `null_value`) is a tombstone that removes its key; otherwise the last message of a key
wins. A batch keeps its position with the messages that won, rebuilt uncompressed: the batch indexes
a compacted reader sees count the kept messages only. (Pulsar keeps every message and marks
the losers `compacted_out`, but the C++ client, under the Python one, delivers those as empty
messages.) The last message id a compacted reader is told is computed the same way.
"""

from __future__ import annotations

import struct

from taureau.protocol import ProtocolError, encode_entry, parse_metadata, pb
from taureau.protocol.batch import decompress, iter_batch
from taureau.storage.position import Position

_U32 = struct.Struct(">I")
# A message's place: its entry and its index in the batch (-1: not batched).
MessageRef = tuple[Position, int]


def messages(data: bytes) -> tuple[bool, list[tuple[str | None, bool]]]:
    """Whether the entry is a batch, and (key, is a tombstone) of each of its messages."""
    meta, offset = parse_metadata(data)
    if not meta.HasField("num_messages_in_batch"):
        key = meta.partition_key if meta.HasField("partition_key") else None
        empty = len(data) == offset or (meta.compression != pb.NONE and meta.uncompressed_size == 0)
        return False, [(key, meta.null_value or empty)]
    payload = decompress(meta.compression, data[offset:], meta.uncompressed_size)
    return True, [
        (smm.partition_key if smm.HasField("partition_key") else None, smm.null_value or not body)
        for smm, body in iter_batch(payload, meta.num_messages_in_batch)
    ]


def fold(latest: dict[str, MessageRef], position: Position, data: bytes) -> None:
    """Phase one: record the entry's messages as the latest of their keys (tombstones remove)."""
    try:
        batched, found = messages(data)
    except ProtocolError:
        return  # an entry no reader can parse is not kept
    for index, (key, tombstone) in enumerate(found):
        if key is None:
            continue
        if tombstone:
            latest.pop(key, None)
        else:
            latest[key] = (position, index if batched else -1)


def kept(latest: dict[str, MessageRef], position: Position, data: bytes) -> bytes | None:
    """Phase two: the entry as compaction keeps it, or None if none of its messages won."""
    try:
        meta, offset = parse_metadata(data)
    except ProtocolError:
        return None
    if not meta.HasField("num_messages_in_batch"):
        key = meta.partition_key if meta.HasField("partition_key") else None
        return data if key is not None and latest.get(key) == (position, -1) else None
    try:
        payload = decompress(meta.compression, data[offset:], meta.uncompressed_size)
        records = list(iter_batch(payload, meta.num_messages_in_batch))
    except ProtocolError:
        return None
    winners = [
        (smm, body)
        for index, (smm, body) in enumerate(records)
        if smm.HasField("partition_key") and latest.get(smm.partition_key) == (position, index)
    ]
    if not winners:
        return None
    if len(winners) == len(records):
        return data
    rebuilt = b"".join(_U32.pack(smm.ByteSize()) + smm.SerializeToString() + body for smm, body in winners)
    meta.num_messages_in_batch = len(winners)
    meta.compression = pb.NONE
    meta.ClearField("uncompressed_size")
    return encode_entry(meta, rebuilt)
