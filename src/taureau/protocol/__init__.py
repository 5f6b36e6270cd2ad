"""Sans-IO Pulsar binary protocol codec: bytes in, frames out; replies and entries to bytes."""

from taureau.protocol import pulsar_api_pb2 as pb
from taureau.protocol.batch import UnsupportedCompressionError, decompress, iter_batch, split_batch
from taureau.protocol.commands import encode_command, encode_payload_command
from taureau.protocol.errors import ProtocolError
from taureau.protocol.fastpath import (
    append_message,
    append_send_receipt,
    encode_message,
    encode_send_receipt,
    message_head,
    uvarint,
)
from taureau.protocol.framing import DEFAULT_MAX_FRAME_SIZE, Frame, FrameDecoder
from taureau.protocol.metadata import (
    EntryMeta,
    encode_entry,
    has_checksum,
    parse_entry,
    parse_metadata,
    verify_entry_checksum,
)
from taureau.protocol.replies import (
    ack_response,
    active_consumer_change,
    close_consumer,
    close_producer,
    connected,
    error,
    get_last_message_id_response,
    get_schema_response,
    get_topics_of_namespace_response,
    lookup_response,
    partitioned_metadata_response,
    ping,
    pong,
    producer_success,
    send_error,
    success,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "EntryMeta",
    "Frame",
    "FrameDecoder",
    "ProtocolError",
    "UnsupportedCompressionError",
    "ack_response",
    "active_consumer_change",
    "append_message",
    "append_send_receipt",
    "close_consumer",
    "close_producer",
    "connected",
    "decompress",
    "encode_command",
    "encode_entry",
    "encode_message",
    "encode_payload_command",
    "encode_send_receipt",
    "error",
    "get_last_message_id_response",
    "get_schema_response",
    "get_topics_of_namespace_response",
    "has_checksum",
    "iter_batch",
    "lookup_response",
    "message_head",
    "parse_entry",
    "parse_metadata",
    "partitioned_metadata_response",
    "pb",
    "ping",
    "pong",
    "producer_success",
    "send_error",
    "split_batch",
    "success",
    "uvarint",
    "verify_entry_checksum",
]
