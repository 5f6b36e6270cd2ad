import struct

import pytest

from taureau.protocol import (
    EntryMeta,
    ProtocolError,
    encode_entry,
    has_checksum,
    parse_entry,
    parse_metadata,
    pb,
    verify_entry_checksum,
)
from tests.protocol.protocol_helpers import make_entry


def test_plain_message():
    entry = make_entry(b"hello", checksum=True)
    meta = parse_entry(entry)
    assert isinstance(meta, EntryMeta)
    assert meta.num_messages == 1 and not meta.is_batch
    assert (meta.producer_name, meta.sequence_id, meta.highest_sequence_id) == ("standalone-0-1", 7, 7)
    assert meta.publish_time == 1_700_000_000_000
    assert meta.partition_key is None and meta.ordering_key is None and meta.event_time is None
    assert meta.compression == pb.NONE
    assert entry[meta.metadata_end_offset :] == b"hello"


def test_same_fields_without_checksum():
    entry = make_entry(b"hello", checksum=False)
    meta = parse_entry(entry)
    assert entry[meta.metadata_end_offset :] == b"hello"
    assert parse_entry(make_entry(b"hello"))[:-1] == meta[:-1]


def test_batch_keys_event_time_and_compression():
    entry = make_entry(
        b"compressed",
        num_messages_in_batch=10,
        partition_key="user-1",
        ordering_key=b"\x00ord",
        event_time=123,
        compression=pb.LZ4,
        uncompressed_size=99,
    )
    meta = parse_entry(entry)
    assert meta.is_batch and meta.num_messages == 10
    assert meta.highest_sequence_id == 7 + 9  # falls back to first + count - 1
    assert (meta.partition_key, meta.ordering_key, meta.event_time) == ("user-1", b"\x00ord", 123)
    assert meta.compression == pb.LZ4


def test_batch_starting_at_sequence_zero_covers_its_messages():
    meta = parse_entry(make_entry(sequence_id=0, num_messages_in_batch=5))
    assert (meta.sequence_id, meta.highest_sequence_id) == (0, 4)


def test_batch_of_one_is_still_a_batch():
    meta = parse_entry(make_entry(num_messages_in_batch=1))
    assert meta.is_batch and meta.num_messages == 1


def test_explicit_highest_sequence_id_wins_and_empty_key_is_kept():
    meta = parse_entry(make_entry(num_messages_in_batch=3, highest_sequence_id=50, partition_key=""))
    assert meta.highest_sequence_id == 50
    assert meta.partition_key == ""  # present but empty is not "no key"


def test_parse_metadata_exposes_everything():
    entry = make_entry(b"p", replicated_from="dc2")
    meta, offset = parse_metadata(entry)
    assert meta.replicated_from == "dc2" and entry[offset:] == b"p"


def test_checksum_helpers():
    entry = make_entry(b"data")
    assert has_checksum(entry) and verify_entry_checksum(entry)
    assert verify_entry_checksum(make_entry(b"data", checksum=False))
    assert not has_checksum(make_entry(b"data", checksum=False))
    damaged = bytearray(entry)
    damaged[-1] ^= 1
    assert not verify_entry_checksum(bytes(damaged))


def _missing_producer_name() -> bytes:
    meta = pb.MessageMetadata(sequence_id=1, publish_time=2)
    raw = meta.SerializePartialToString()
    return struct.pack(">I", len(raw)) + raw + b"payload"


def _bad_property() -> bytes:
    meta = pb.MessageMetadata(producer_name="p", sequence_id=1, publish_time=2)
    meta.properties.add(key="k")  # KeyValue.value is required
    raw = meta.SerializePartialToString()
    return struct.pack(">I", len(raw)) + raw


@pytest.mark.parametrize(
    "entry,message",
    [
        (b"", "too short"),
        (b"\x00\x00\x00", "too short"),
        (b"\x0e\x01\x00\x00\x00\x00", "too short"),
        (b"\x00\x00\x00\x10abc", "overruns"),
        (b"\x00\x00\x00\x03\xff\xff\xff", "unparseable"),
        (_missing_producer_name(), "producer_name"),
        (_bad_property(), "value"),
        (make_entry(num_messages_in_batch=-2), "negative"),
    ],
)
def test_bad_entries_raise_protocol_error(entry, message):
    with pytest.raises(ProtocolError, match=message):
        parse_entry(entry)


def test_encode_entry_layout():
    meta = pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1)
    raw = meta.SerializeToString()
    assert encode_entry(meta, b"xy", checksum=False) == struct.pack(">I", len(raw)) + raw + b"xy"
    with_crc = encode_entry(meta, b"xy")
    assert with_crc[:2] == b"\x0e\x01" and with_crc[6:] == encode_entry(meta, b"xy", checksum=False)
