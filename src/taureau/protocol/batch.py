"""Open an entry's payload for admin peek: decompress it and split a batch into its messages."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from google.protobuf.message import DecodeError

from taureau.protocol import pulsar_api_pb2 as pb
from taureau.protocol.errors import ProtocolError
from taureau.protocol.metadata import parse_metadata

# Batch payload byte grammar (after decompression of the whole payload):
#
#   batch   := message{num_messages_in_batch}
#   message := smm_size:u32 SingleMessageMetadata[smm_size] body[smm.payload_size]
#
# Compression applies to the whole payload (batch or single message); `uncompressed_size` in
# MessageMetadata gives the exact output size. LZ4 is the raw LZ4 block format with no size
# prefix; ZLIB is a zlib stream (with header); ZSTD a zstd frame; SNAPPY raw snappy.

_U32 = struct.Struct(">I")
# Refuse to inflate past this: peek must not be a decompression bomb.
MAX_UNCOMPRESSED_SIZE = 64 * 1024 * 1024


class UnsupportedCompressionError(ProtocolError):
    """The compression codec is unknown, or its library is not installed."""


def _need(module: str, package: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise UnsupportedCompressionError(f"decompressing this entry needs the '{package}' package") from None


def decompress(compression: int, data: bytes, uncompressed_size: int) -> bytes:
    """Decompress a payload as Pulsar compresses it; ProtocolError on corrupt data or size mismatch."""
    if compression == pb.NONE:
        return bytes(data)
    if not 0 <= uncompressed_size <= MAX_UNCOMPRESSED_SIZE:
        raise ProtocolError(f"uncompressed size {uncompressed_size} is out of range")
    name = pb.CompressionType.Name(compression) if compression in pb.CompressionType.values() else None
    try:
        if compression == pb.LZ4:
            out = _need("lz4.block", "lz4").decompress(data, uncompressed_size=uncompressed_size)
        elif compression == pb.ZLIB:
            inflater = zlib.decompressobj()
            out = inflater.decompress(data, uncompressed_size)
            if not inflater.eof:  # truncated, or longer than the metadata claims
                raise ProtocolError(f"ZLIB payload does not end at {uncompressed_size} bytes")
        elif compression == pb.ZSTD:
            out = (
                _need("zstandard", "zstandard")
                .ZstdDecompressor()
                .decompress(data, max_output_size=uncompressed_size)
            )
        elif compression == pb.SNAPPY:
            out = _need("snappy", "python-snappy").uncompress(data)
        else:
            raise UnsupportedCompressionError(f"unknown compression type {compression}")
    except ProtocolError:
        raise
    except Exception as exc:  # each codec raises its own error type for corrupt input
        raise ProtocolError(f"{name} payload does not decompress: {exc}") from None
    if len(out) != uncompressed_size:
        raise ProtocolError(f"{name} payload inflated to {len(out)} bytes, metadata says {uncompressed_size}")
    return bytes(out)


def iter_batch(payload: bytes, count: int | None = None) -> Iterator[tuple[pb.SingleMessageMetadata, bytes]]:
    """Yield (SingleMessageMetadata, body) for each message of an uncompressed batch payload.

    With `count`, exactly that many messages must be present (num_messages_in_batch).
    """
    view = memoryview(payload)
    pos, seen, size = 0, 0, len(view)
    while pos < size if count is None else seen < count:
        if pos + 4 > size:
            raise ProtocolError(f"batch message {seen} is truncated before its metadata size")
        smm_end = pos + 4 + _U32.unpack_from(view, pos)[0]
        if smm_end > size:
            raise ProtocolError(f"batch message {seen} metadata overruns the payload")
        smm = pb.SingleMessageMetadata()
        try:
            smm.ParseFromString(view[pos + 4 : smm_end])
        except DecodeError as exc:
            raise ProtocolError(f"batch message {seen} has unparseable metadata: {exc}") from None
        if not smm.HasField("payload_size") or smm.payload_size < 0:
            raise ProtocolError(f"batch message {seen} lacks a valid payload_size")
        body_end = smm_end + smm.payload_size
        if body_end > size:
            raise ProtocolError(f"batch message {seen} body overruns the payload")
        yield smm, bytes(view[smm_end:body_end])
        pos, seen = body_end, seen + 1


def split_batch(entry: bytes) -> list[tuple[dict[str, str], str | None, bytes]]:
    """Every message in an entry as (properties, key, payload), decompressing as needed."""
    meta, offset = parse_metadata(entry)
    payload = decompress(meta.compression, entry[offset:], meta.uncompressed_size)
    if not meta.HasField("num_messages_in_batch"):
        key = meta.partition_key if meta.HasField("partition_key") else None
        return [({kv.key: kv.value for kv in meta.properties}, key, payload)]
    return [
        (
            {kv.key: kv.value for kv in smm.properties},
            smm.partition_key if smm.HasField("partition_key") else None,
            body,
        )
        for smm, body in iter_batch(payload, meta.num_messages_in_batch)
    ]
