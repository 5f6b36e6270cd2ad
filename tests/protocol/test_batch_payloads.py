import struct
import zlib

import lz4.block
import pytest
import snappy
import zstandard

from taureau.protocol import (
    ProtocolError,
    UnsupportedCompressionError,
    decompress,
    iter_batch,
    pb,
    split_batch,
)
from tests.protocol.protocol_helpers import make_entry


def build_batch(messages: list[tuple[dict, str | None, bytes]]) -> bytes:
    """Serialize messages as a producer does: [u32 size][SingleMessageMetadata][payload] each."""
    out = bytearray()
    for properties, key, payload in messages:
        smm = pb.SingleMessageMetadata(payload_size=len(payload))
        for k, v in properties.items():
            smm.properties.add(key=k, value=v)
        if key is not None:
            smm.partition_key = key
        raw = smm.SerializeToString()
        out += struct.pack(">I", len(raw)) + raw + payload
    return bytes(out)


COMPRESSORS = {
    pb.NONE: lambda data: data,
    # Pulsar's LZ4 is the raw block format, without lz4.block's default 4-byte size prefix.
    pb.LZ4: lambda data: lz4.block.compress(data, store_size=False),
    pb.ZLIB: zlib.compress,
    pb.ZSTD: lambda data: zstandard.ZstdCompressor().compress(data),
    pb.SNAPPY: snappy.compress,
}

MESSAGES = [
    ({"__pfn_input_topic__": "persistent://public/default/in"}, "k1", b"first"),
    ({}, None, b""),
    ({"a": "1", "b": "2"}, "k3", b"x" * 3000),
]


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_batch_entry_splits_for_every_codec(compression):
    batch = build_batch(MESSAGES)
    entry = make_entry(
        COMPRESSORS[compression](batch),
        num_messages_in_batch=len(MESSAGES),
        compression=compression,
        uncompressed_size=len(batch),
    )
    assert split_batch(entry) == MESSAGES


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_single_message_entry_for_every_codec(compression):
    body = b"single message body " * 20
    meta = {"compression": compression, "uncompressed_size": len(body), "partition_key": "key"}
    entry = make_entry(COMPRESSORS[compression](body), **meta)
    assert split_batch(entry) == [({}, "key", body)]


def test_iter_batch_yields_metadata_and_bodies():
    items = list(iter_batch(build_batch(MESSAGES), count=3))
    assert [body for _, body in items] == [m[2] for m in MESSAGES]
    assert items[0][0].partition_key == "k1" and items[1][0].payload_size == 0


@pytest.mark.parametrize(
    "payload,count,message",
    [
        (b"\x00\x00", 1, "truncated"),
        (b"\x00\x00\x00\x09\x18", 1, "overruns"),
        (struct.pack(">I", 2) + b"\xff\xff", 1, "unparseable"),
        (struct.pack(">I", 2) + b"\x10\x01", 1, "payload_size"),
        (build_batch(MESSAGES[:1])[:-2], 1, "body overruns"),
        (build_batch(MESSAGES[:1]), 2, "truncated"),
    ],
)
def test_bad_batches_raise_protocol_error(payload, count, message):
    with pytest.raises(ProtocolError, match=message):
        list(iter_batch(payload, count))


@pytest.mark.parametrize("compression", [pb.LZ4, pb.ZLIB, pb.ZSTD, pb.SNAPPY])
def test_corrupt_compressed_data_raises_protocol_error(compression):
    data = b"abcdefgh" * 100
    compressed = bytearray(COMPRESSORS[compression](data))
    compressed[len(compressed) // 2] ^= 0xFF
    compressed = bytes(compressed[: len(compressed) - 3])
    with pytest.raises(ProtocolError):
        decompress(compression, compressed, len(data))


@pytest.mark.parametrize("compression", [pb.LZ4, pb.ZLIB, pb.ZSTD, pb.SNAPPY])
def test_wrong_uncompressed_size_raises_protocol_error(compression):
    data = b"abcdefgh" * 100
    with pytest.raises(ProtocolError):
        decompress(compression, COMPRESSORS[compression](data), len(data) - 1)


def java_zlib(data: bytes) -> bytes:
    """As the Java client deflates (CompressionCodecZLib): SYNC_FLUSH, the stream never finished."""
    deflater = zlib.compressobj()
    return deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)


def test_a_sync_flushed_zlib_stream_without_its_end_decompresses():
    data = b"0-1-abc-2-abcabc" * 300
    assert decompress(pb.ZLIB, java_zlib(data), len(data)) == data


@pytest.mark.parametrize("claimed_delta,message", [(-1, "inflates past"), (1, "inflated to")])
def test_a_sync_flushed_zlib_stream_of_another_size_is_refused(claimed_delta, message):
    data = b"abcdefgh" * 100
    with pytest.raises(ProtocolError, match=message):
        decompress(pb.ZLIB, java_zlib(data), len(data) + claimed_delta)


def test_unknown_codec_and_absurd_sizes_are_refused():
    with pytest.raises(UnsupportedCompressionError):
        decompress(9, b"abc", 3)
    with pytest.raises(ProtocolError, match="out of range"):
        decompress(pb.ZLIB, zlib.compress(b"x"), 1 << 40)


def test_split_batch_on_a_bad_entry_raises_protocol_error():
    batch = build_batch(MESSAGES)
    entry = make_entry(batch[:-5], num_messages_in_batch=3)
    with pytest.raises(ProtocolError):
        split_batch(entry)
