"""What the broker reads from a stored entry: message count, key, producer and sequence id."""

from __future__ import annotations

import struct

from google.protobuf.message import DecodeError

from taureau.protocol import ProtocolError, parse_entry, pb

_U32 = struct.Struct(">I")


def entry_info(data: bytes) -> tuple[int, bytes | None]:
    """(messages in the entry, routing key) for dispatch.

    Runs once per dispatched entry, so it skips parse_entry's required-field check (the
    entry was validated when it was published). A corrupt entry counts as one message
    with no key, so it is still delivered (the client reports it) rather than stuck.
    """
    start = 6 if data[:2] == b"\x0e\x01" else 0
    try:
        size = _U32.unpack_from(data, start)[0]
        meta = pb.MessageMetadata.FromString(data[start + 4 : start + 4 + size])
    except (struct.error, DecodeError):
        return 1, None
    has = meta.HasField
    messages = meta.num_messages_in_batch if has("num_messages_in_batch") else 1
    if has("ordering_key"):
        key = meta.ordering_key
    elif has("partition_key"):
        key = meta.partition_key.encode()
    else:
        key = None
    return max(messages, 1), key


def producer_info(data: bytes) -> tuple[str, int]:
    """(producer name, highest sequence id) for de-duplication."""
    try:
        meta = parse_entry(data)
    except ProtocolError:
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
