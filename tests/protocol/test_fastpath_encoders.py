import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from taureau.protocol import (
    FrameDecoder,
    append_message,
    append_send_receipt,
    encode_command,
    encode_message,
    encode_payload_command,
    encode_send_receipt,
    pb,
    uvarint,
)
from tests.protocol.protocol_helpers import make_entry

U64 = st.integers(min_value=0, max_value=2**64 - 1)
ANY_ID = st.one_of(U64, st.just(-1))  # -1 is written as 0xFFFFFFFFFFFFFFFF
PARTITION = st.one_of(st.just(-1), st.integers(min_value=0, max_value=2**31 - 1))
REDELIVERY = st.integers(min_value=0, max_value=2**32 - 1)
MASK = 2**64 - 1


def _reference_message(consumer_id, ledger_id, entry_id, partition, redelivery, entry) -> bytes:
    cmd = pb.BaseCommand(type=pb.BaseCommand.MESSAGE)
    cmd.message.consumer_id = consumer_id & MASK
    cmd.message.message_id.ledgerId = ledger_id & MASK
    cmd.message.message_id.entryId = entry_id & MASK
    if partition >= 0:
        cmd.message.message_id.partition = partition
    if redelivery > 0:
        cmd.message.redelivery_count = redelivery
    return encode_payload_command(cmd, entry)


def _reference_receipt(producer_id, sequence_id, highest, ledger_id, entry_id) -> bytes:
    cmd = pb.BaseCommand(type=pb.BaseCommand.SEND_RECEIPT)
    receipt = cmd.send_receipt
    receipt.producer_id = producer_id & MASK
    receipt.sequence_id = sequence_id & MASK
    receipt.message_id.ledgerId = ledger_id & MASK
    receipt.message_id.entryId = entry_id & MASK
    receipt.highest_sequence_id = highest & MASK
    return encode_command(cmd)


@settings(max_examples=300, deadline=None)
@given(U64)
def test_uvarint_matches_protobuf(value):
    # A one-field message `uint64 ledgerId = 1` serializes as 0x08 + varint(value).
    raw = pb.MessageIdData(ledgerId=value, entryId=0).SerializeToString()
    assert raw == b"\x08" + uvarint(value) + b"\x10\x00"


@settings(max_examples=300, deadline=None)
@given(ANY_ID, ANY_ID, ANY_ID, PARTITION, REDELIVERY, st.binary(max_size=300))
def test_encode_message_is_byte_identical_to_protobuf(
    consumer_id, ledger_id, entry_id, partition, redelivery, entry
):
    expected = _reference_message(consumer_id, ledger_id, entry_id, partition, redelivery, entry)
    assert encode_message(consumer_id, ledger_id, entry_id, partition, redelivery, entry) == expected
    buf = bytearray(b"prefix")
    append_message(buf, consumer_id, ledger_id, entry_id, partition, redelivery, entry)
    assert bytes(buf) == b"prefix" + expected


@settings(max_examples=300, deadline=None)
@given(ANY_ID, ANY_ID, ANY_ID, ANY_ID, ANY_ID)
def test_encode_send_receipt_is_byte_identical_to_protobuf(
    producer_id, sequence_id, highest, ledger_id, entry_id
):
    expected = _reference_receipt(producer_id, sequence_id, highest, ledger_id, entry_id)
    assert encode_send_receipt(producer_id, sequence_id, highest, ledger_id, entry_id) == expected
    buf = bytearray()
    append_send_receipt(buf, producer_id, sequence_id, highest, ledger_id, entry_id)
    assert bytes(buf) == expected


def test_message_frame_round_trips_through_the_decoder():
    entry = make_entry(b"body" * 10)
    frame = encode_message(3, 12, 99, 2, 1, entry)
    (got,) = FrameDecoder().feed(frame)
    msg = got.command.message
    assert (msg.consumer_id, msg.message_id.ledgerId, msg.message_id.entryId) == (3, 12, 99)
    assert msg.message_id.partition == 2 and msg.redelivery_count == 1
    assert got.payload == entry and got.checksum_ok


def test_unpartitioned_message_omits_partition_and_negative_ids_wrap():
    (got,) = FrameDecoder().feed(encode_message(1, -1, -1, -1, 0, make_entry()))
    mid = got.command.message.message_id
    assert not mid.HasField("partition") and mid.partition == -1
    assert mid.ledgerId == mid.entryId == 2**64 - 1
    assert not got.command.message.HasField("redelivery_count")


def test_coalesced_buffer_decodes_into_every_frame_in_order():
    buf = bytearray()
    entry = make_entry(b"x")
    for i in range(50):
        append_message(buf, 1, 5, i, -1, 0, entry)
        append_send_receipt(buf, 2, i, i, 5, i)
    frames = FrameDecoder().feed(bytes(buf))
    assert len(frames) == 100
    assert [f.command.message.message_id.entryId for f in frames[::2]] == list(range(50))
    assert [f.command.send_receipt.sequence_id for f in frames[1::2]] == list(range(50))


def test_frame_sizes_are_consistent():
    frame = encode_send_receipt(1, 2, 2, 3, 4)
    total, cmd_size = struct.unpack_from(">II", frame)
    assert total == len(frame) - 4 == cmd_size + 4


def test_uvarint_at_every_length_boundary():
    for bits in range(7, 64, 7):
        for value in (2**bits - 1, 2**bits):
            raw = pb.MessageIdData(ledgerId=value, entryId=0).SerializeToString()
            assert raw[1:-2] == uvarint(value), value
    assert uvarint(-1) == uvarint(2**64 - 1) == b"\xff" * 9 + b"\x01"
    assert uvarint(-2) == pb.MessageIdData(ledgerId=2**64 - 2, entryId=0).SerializeToString()[1:-2]
