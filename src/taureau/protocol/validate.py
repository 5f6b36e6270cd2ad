"""What a SEND's entry must be before a broker stores it: every consumer will read it back.

Once stored, an entry is dispatched to every subscription from then on, so anything a
consumer's client (or the broker's own dispatch) cannot read must be refused up front:

- MessageMetadata must parse and carry its required fields (metadata.parse_metadata);
- every string field in it must be valid UTF-8: upb hands back `bytes` for a proto2 string
  that is not, which the broker's key hashing, de-duplication and stats then trip over;
- a batch (num_messages_in_batch present) must hold at least that many messages: clients walk
  the count blindly (the C++ client crashes reading past the payload);
- a compressed payload must name a known codec and an uncompressed size no larger than the
  largest message, and must inflate to exactly that size (clients refuse anything larger).

Encrypted payloads cannot be opened here and chunks carry a slice of a compressed payload, so
for those only the metadata is checked (and a chunk may not claim to be a batch: clients never
batch chunks). The SingleMessageMetadata records of a batch are parsed for their sizes only.
"""

from __future__ import annotations

from google.protobuf.message import Message  # type: ignore[import-untyped]

from taureau.protocol import pulsar_api_pb2 as pb
from taureau.protocol.batch import decompress, walk_batch
from taureau.protocol.errors import ProtocolError
from taureau.protocol.metadata import parse_metadata

_TYPE_STRING = 9
_TYPE_MESSAGE = 11
_CODECS = frozenset(pb.CompressionType.values())  # type: ignore[attr-defined]


class InvalidEntryError(ProtocolError):
    """The entry parses as a frame but no consumer could read it back: refuse to store it."""


def non_utf8_field(message: Message) -> str | None:
    """Dotted name of the first string field (nested messages included) that is not valid
    UTF-8, or None. Only set fields are visited (ListFields), about 1 µs for a typical
    MessageMetadata."""
    for field, value in message.ListFields():
        kind = field.type
        if kind == _TYPE_STRING:
            values = value if field.is_repeated else (value,)
            for item in values:
                if type(item) is not str:
                    return field.name
        elif kind == _TYPE_MESSAGE:
            values = value if field.is_repeated else (value,)
            for item in values:
                inner = non_utf8_field(item)
                if inner is not None:
                    return f"{field.name}.{inner}"
    return None


def check_entry(entry: bytes, max_message_size: int) -> int:
    """Validate a SEND's stored bytes; return how many messages the entry really holds.

    Raises ProtocolError (InvalidEntryError for a well-framed but unreadable entry).
    """
    meta, offset = parse_metadata(entry)
    bad = non_utf8_field(meta)
    if bad is not None:
        raise InvalidEntryError(f"MessageMetadata.{bad} is not valid UTF-8")
    is_batch = meta.HasField("num_messages_in_batch")
    count = meta.num_messages_in_batch if is_batch else 1
    if count < 1:
        raise InvalidEntryError(f"num_messages_in_batch is {count}: a batch holds at least one message")
    compression = meta.compression
    if compression not in _CODECS:
        raise InvalidEntryError(f"unknown compression type {compression}")
    chunked = meta.HasField("chunk_id") or meta.num_chunks_from_msg > 1
    if chunked and is_batch:
        raise InvalidEntryError("a chunk of a message cannot be a batch")
    if len(meta.encryption_keys) or chunked:
        return count  # the payload is opaque to the broker (see module docstring)
    if compression != pb.NONE:  # type: ignore[attr-defined]
        size = meta.uncompressed_size
        if size > max_message_size:
            raise InvalidEntryError(
                f"uncompressed size {size} exceeds the maximum message size {max_message_size}"
            )
        payload = decompress(compression, entry[offset:], size)
        offset = 0
    else:
        payload = entry
    if is_batch:
        check_batch(payload, offset, count)
    return count


def check_batch(payload: bytes, start: int, count: int) -> None:
    """`count` single-message records from `start` must fit in the payload."""
    try:
        walk_batch(payload, start, count)
    except ProtocolError as exc:
        raise InvalidEntryError(f"batch of {count} messages: {exc}") from None
