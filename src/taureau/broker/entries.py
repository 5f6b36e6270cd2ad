"""What the broker reads from a stored entry: message count, key, producer and sequence id."""

from __future__ import annotations

from taureau.protocol import ProtocolError, parse_entry


def entry_info(data: bytes) -> tuple[int, bytes | None]:
    """(messages in the entry, routing key) for dispatch; a corrupt entry counts as one
    message with no key, so it is still delivered (the client reports it) rather than stuck."""
    try:
        meta = parse_entry(data)
    except ProtocolError:
        return 1, None
    key = meta.ordering_key
    if key is None and meta.partition_key is not None:
        key = meta.partition_key.encode()
    return max(meta.num_messages, 1), key


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
