import random
import struct

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taureau.protocol import Frame, FrameDecoder, ProtocolError, encode_command, encode_payload_command, pb
from tests.protocol.protocol_helpers import flow_frame, make_entry, mixed_stream, ping_frame, send_frame


def _decode_in_chunks(stream: bytes, sizes) -> list[Frame]:
    decoder = FrameDecoder()
    frames, pos = [], 0
    for size in sizes:
        frames += decoder.feed(stream[pos : pos + size])
        pos += size
    frames += decoder.feed(stream[pos:])
    assert decoder.buffered == 0
    return frames


def _summary(frames: list[Frame]):
    return [(f.command.SerializeToString(), f.payload, f.checksum_ok) for f in frames]


def test_whole_stream_in_one_chunk():
    stream, entries = mixed_stream()
    frames = FrameDecoder().feed(stream)
    assert [f.payload for f in frames if f.payload is not None] == entries
    assert all(f.checksum_ok for f in frames)
    assert frames[0].command.flow.messagePermits == 1000
    assert frames[1].command.type == pb.BaseCommand.PING
    sends = [f.command.send.sequence_id for f in frames if f.command.type == pb.BaseCommand.SEND]
    assert sends == [0, 1, 2, 3, 4]


def test_byte_by_byte_gives_the_same_frames():
    stream, _ = mixed_stream()
    whole = _summary(FrameDecoder().feed(stream))
    assert _summary(_decode_in_chunks(stream, [1] * (len(stream) - 1))) == whole


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=700), max_size=60))
def test_random_chunk_sizes_give_the_same_frames(sizes):
    stream, _ = mixed_stream()
    assert _summary(_decode_in_chunks(stream, sizes)) == _summary(FrameDecoder().feed(stream))


def test_partial_frame_is_held_back_and_accepts_memoryview_and_bytearray():
    frame = send_frame(make_entry(b"x" * 100))
    decoder = FrameDecoder()
    assert decoder.feed(memoryview(frame)[:50]) == []
    assert decoder.buffered == 50
    (got,) = decoder.feed(bytearray(frame[50:]))
    assert got.payload == frame[-len(got.payload) :]
    assert decoder.buffered == 0


def test_many_frames_per_chunk_keeps_tail_for_next_feed():
    frame = flow_frame()
    decoder = FrameDecoder()
    assert len(decoder.feed(frame * 1000 + frame[:5])) == 1000
    assert decoder.buffered == 5
    assert len(decoder.feed(frame[5:] + frame)) == 2


def test_payload_is_the_entry_verbatim_with_checksum():
    entry = make_entry(b"payload", checksum=True)
    (frame,) = FrameDecoder().feed(send_frame(entry))
    assert frame.payload == entry and frame.payload[:2] == b"\x0e\x01"
    assert frame.checksum_ok


def test_payload_without_checksum_is_ok():
    entry = make_entry(b"payload", checksum=False)
    (frame,) = FrameDecoder().feed(send_frame(entry))
    assert frame.payload == entry and frame.checksum_ok


@pytest.mark.parametrize("flip_at", [6, 10, -1])
def test_bad_crc_is_reported_not_raised(flip_at):
    entry = bytearray(make_entry(b"payload", checksum=True))
    entry[flip_at] ^= 0x40  # corrupt metadata size area, metadata, or payload
    if flip_at == 6:
        entry[6] ^= 0x40  # undo: keep the size valid, corrupt the CRC itself instead
        entry[2] ^= 0x01
    decoder = FrameDecoder()
    (frame,) = decoder.feed(send_frame(bytes(entry)))
    assert frame.checksum_ok is False
    assert frame.payload == bytes(entry)
    assert len(decoder.feed(flow_frame())) == 1  # keeps serving


def test_broker_entry_metadata_block_is_tolerated_and_stripped():
    entry = make_entry(b"data")
    bem = pb.BrokerEntryMetadata(broker_timestamp=5, index=9).SerializeToString()
    section = b"\x0e\x02" + struct.pack(">I", len(bem)) + bem + entry
    cmd = pb.BaseCommand(type=pb.BaseCommand.MESSAGE)
    cmd.message.consumer_id = 1
    cmd.message.message_id.ledgerId = 1
    cmd.message.message_id.entryId = 2
    (frame,) = FrameDecoder().feed(encode_payload_command(cmd, section))
    assert frame.payload == entry and frame.checksum_ok


def test_ping_with_omitted_body_is_accepted():
    body = pb.BaseCommand(type=pb.BaseCommand.PING).SerializeToString()
    (frame,) = FrameDecoder().feed(struct.pack(">II", 4 + len(body), len(body)) + body)
    assert frame.command.type == pb.BaseCommand.PING and frame.payload is None


def _frame_of(body: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">II", 4 + len(body) + len(payload), len(body)) + body + payload


def _flow_without_permits() -> bytes:
    cmd = pb.BaseCommand(type=pb.BaseCommand.FLOW)
    cmd.flow.consumer_id = 1
    return cmd.SerializePartialToString()


BAD_FRAMES = {
    "total size below 4": (b"\x00\x00\x00\x03\x00\x00\x00", "below the minimum"),
    "total size zero": (b"\x00\x00\x00\x00", "below the minimum"),
    "command size beyond frame": (struct.pack(">II", 6, 3) + b"\x08\x12", "command size"),
    "frame over max size": (struct.pack(">II", 5 * 1024 * 1024 + 1, 2), "maximum frame size"),
    "unparseable BaseCommand": (_frame_of(b"\xff\xff\xff"), "unparseable"),
    "missing required field": (_frame_of(_flow_without_permits()), "missing required fields"),
    "unknown command type": (_frame_of(b"\x08\x63"), "unknown command type 99"),
    "no command type": (_frame_of(b"\x5a\x00"), "no command type"),
    "command without a schema": (_frame_of(b"\x08\x40"), "unsupported command type WATCH_TOPIC_LIST"),
    "type without body": (_frame_of(b"\x08\x0b"), "lacks its 'flow' body"),
    "SEND without payload": (
        encode_command(
            pb.BaseCommand(type=pb.BaseCommand.SEND, send=pb.CommandSend(producer_id=1, sequence_id=2))
        ),
        "has no payload",
    ),
    "FLOW with payload": (_frame_of(flow_frame()[8:], b"\x00\x00\x00\x00"), "unexpected payload"),
    "payload shorter than metadata size": (send_frame(b"\x00\x00"), "lacks its metadata size"),
    "metadata size overruns": (send_frame(b"\x00\x00\x00\x09abc"), "overruns"),
    "checksum header truncated": (send_frame(b"\x0e\x01\x00\x00"), "truncated checksum"),
    "checksum then no metadata size": (
        send_frame(b"\x0e\x01" + struct.pack(">I", crc32c.crc32c(b""))),
        "lacks",
    ),
    "broker entry metadata overruns": (send_frame(b"\x0e\x02\x00\x00\x00\x50" + make_entry()), "overruns"),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_bad_frames_raise_protocol_error(name):
    data, message = BAD_FRAMES[name]
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match=message) as info:
        decoder.feed(data)
    assert info.value.frames == []
    # The connection is dead from here on: the decoder never resynchronises on garbage.
    with pytest.raises(ProtocolError):
        decoder.feed(flow_frame())


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_good_frames_before_garbage_are_handed_over_on_the_error(name):
    data, _ = BAD_FRAMES[name]
    good = [send_frame(make_entry(b"ok")), ping_frame()]
    with pytest.raises(ProtocolError) as info:
        FrameDecoder().feed(b"".join(good) + data)
    assert [f.command.type for f in info.value.frames] == [pb.BaseCommand.SEND, pb.BaseCommand.PING]


def test_oversized_frame_is_refused_from_its_size_field_alone():
    decoder = FrameDecoder(max_frame_size=1000)
    with pytest.raises(ProtocolError, match="maximum frame size"):
        decoder.feed(struct.pack(">I", 1001))  # no body buffered, no wait for 1001 bytes


def test_frame_at_exactly_max_size_is_accepted():
    entry = make_entry(b"z" * 500)
    frame = send_frame(entry)
    (got,) = FrameDecoder(max_frame_size=len(frame) - 4).feed(frame)
    assert got.payload == entry
    with pytest.raises(ProtocolError):
        FrameDecoder(max_frame_size=len(frame) - 5).feed(frame)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_garbage_never_escapes_as_another_exception(junk):
    decoder = FrameDecoder(max_frame_size=4096)
    try:
        frames = decoder.feed(junk)
    except ProtocolError:
        return
    for frame in frames:
        assert frame.command.IsInitialized()


def test_random_bit_flips_in_a_valid_stream_are_contained():
    stream, _ = mixed_stream()
    rng = random.Random(7)
    for _ in range(300):
        damaged = bytearray(stream)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        try:
            frames = FrameDecoder().feed(bytes(damaged))
        except ProtocolError:
            continue
        for frame in frames:
            assert frame.command.IsInitialized()


def test_message_frames_decode_too():
    entry = make_entry(b"m")
    cmd = pb.BaseCommand(type=pb.BaseCommand.MESSAGE)
    cmd.message.consumer_id = 4
    cmd.message.message_id.ledgerId = 1
    cmd.message.message_id.entryId = 0
    (frame,) = FrameDecoder().feed(encode_payload_command(cmd, entry))
    assert frame.command.message.consumer_id == 4 and frame.payload == entry
