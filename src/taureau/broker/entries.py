"""What the broker reads from a stored entry: message count, key, producer and sequence id."""

from __future__ import annotations

import struct
from typing import NamedTuple

from google.protobuf.message import DecodeError

from taureau.protocol import ProtocolError, parse_entry, pb
from taureau.protocol.batch import MAX_UNCOMPRESSED_SIZE
from taureau.protocol.validate import check_entry

_U32 = struct.Struct(">I")


# Smallest batch record: a 4-byte metadata size and a SingleMessageMetadata holding only
# its required payload_size (tag and a one-byte varint).
_MIN_RECORD = 6


class EntryInfo(NamedTuple):
    """What dispatch needs of a stored entry."""

    messages: int  # 0: no consumer could read it, do not dispatch it
    key: bytes | None  # ordering or partition key (Key_Shared routing)
    deliver_at: int  # deliver_at_time in ms since the epoch; 0: at once


_SKIP = EntryInfo(0, None, 0)


def entry_info(data: bytes) -> EntryInfo:
    """(messages in the entry, routing key) for dispatch; 0 messages: do not dispatch it.

    Runs once per dispatched entry, so it skips parse_entry's required-field check: entries
    are validated when published (protocol.validate). What fails here was stored before that
    validation existed, or below the broker: unparseable metadata (clients drop their
    connection on it) or a batch count its payload cannot hold (clients crash walking it).
    Pulsar skips such entries too. A key that is not UTF-8 routes by its raw bytes.
    """
    start = 6 if data[:2] == b"\x0e\x01" else 0
    try:
        size = _U32.unpack_from(data, start)[0]
        meta = pb.MessageMetadata.FromString(data[start + 4 : start + 4 + size])
    except (struct.error, DecodeError):
        return _SKIP
    has = meta.HasField
    if has("num_messages_in_batch"):
        messages = meta.num_messages_in_batch
        room = meta.uncompressed_size if meta.compression else len(data) - start - 4 - size
        if messages < 1 or messages * _MIN_RECORD > room:
            return _SKIP
    else:
        messages = 1
    if has("ordering_key"):
        key = meta.ordering_key
    elif has("partition_key"):
        raw = meta.partition_key  # upb hands back bytes for a string that is not UTF-8
        key = raw.encode() if isinstance(raw, str) else raw
    else:
        key = None
    return EntryInfo(messages, key, meta.deliver_at_time if has("deliver_at_time") else 0)


def checked_entry_info(data: bytes) -> EntryInfo:
    """entry_info after the full publish-time check, for entries stored without it."""
    try:
        check_entry(data, MAX_UNCOMPRESSED_SIZE)
    except ProtocolError:
        return _SKIP
    return entry_info(data)


def producer_info(data: bytes) -> tuple[str, int]:
    """(producer name, highest sequence id) for de-duplication; ("", -1) for an unreadable entry."""
    try:
        meta = parse_entry(data)
    except ProtocolError:
        return "", -1
    if type(meta.producer_name) is not str:
        return "", -1
    return meta.producer_name, meta.highest_sequence_id


def batch_index_of_last(data: bytes) -> int:
    """Batch index of the last message in an entry, -1 for a non-batched entry."""
    try:
        meta = parse_entry(data)
    except ProtocolError:
        return -1
    return meta.num_messages - 1 if meta.is_batch else -1


def publish_time(data: bytes) -> int:
    try:
        return parse_entry(data).publish_time
    except ProtocolError:
        return 0
