"""Large frames (LARGE_FRAME and up) that arrive over several reads are gathered in a buffer of
their exact size, allocated only once the size field has passed the max-frame check; a
transport that lends buffers (get_buffer / buffer_updated) reads their rest straight into it."""

from __future__ import annotations

import os

import pytest

from taureau.protocol import FrameDecoder, ProtocolError, encode_payload_command, pb
from taureau.protocol.framing import LARGE_FRAME, READ_SIZE
from taureau.protocol.metadata import encode_entry

T = pb.BaseCommand.Type
MAX = 5 * 1024 * 1024 + 10 * 1024


def send_frame(body: bytes, sequence_id: int = 0) -> tuple[bytes, bytes]:
    """(frame, the entry it carries) for a SEND of `body`."""
    meta = pb.MessageMetadata(producer_name="p", sequence_id=sequence_id, publish_time=1)
    entry = encode_entry(meta, body)
    send = pb.BaseCommand(type=T.SEND, send=pb.CommandSend(producer_id=1, sequence_id=sequence_id))
    return encode_payload_command(send, entry), entry


def through_buffers(decoder: FrameDecoder, stream: bytes, read_size: int) -> list:
    """Deliver `stream` as a BufferedProtocol transport would: each read fills at most
    `read_size` bytes of the buffer the decoder lends."""
    frames, pos = [], 0
    while pos < len(stream):
        view = decoder.get_buffer()
        n = min(len(view), read_size, len(stream) - pos)
        view[:n] = stream[pos : pos + n]
        frames += decoder.buffer_updated(n)
        pos += n
    return frames


@pytest.mark.parametrize("chunk", [1, 7, 1000, 65536])
def test_a_large_frame_fed_in_many_small_chunks_comes_out_exact(chunk):
    frame, entry = send_frame(os.urandom(300 * 1024 if chunk > 1 else LARGE_FRAME))
    decoder = FrameDecoder(MAX)
    frames = []
    for pos in range(0, len(frame), chunk):
        frames += decoder.feed(frame[pos : pos + chunk])
        if pos + chunk < len(frame):
            assert decoder.buffered == min(pos + chunk, len(frame))
    (got,) = frames
    assert got.command.send.sequence_id == 0
    assert got.payload == entry
    assert got.checksum_ok
    assert decoder.buffered == 0


@pytest.mark.parametrize("read_size", [3, 4096, READ_SIZE])
def test_a_large_frame_read_into_lent_buffers_comes_out_exact(read_size):
    # Behind a small frame, so that reads of 3 bytes also split the large one's size field.
    small, small_entry = send_frame(b"s" * 100)
    frame, entry = send_frame(os.urandom(1024 * 1024))
    decoder = FrameDecoder(MAX)
    frames = through_buffers(decoder, small + frame, read_size)
    assert [f.payload for f in frames] == [small_entry, entry]
    assert decoder.buffered == 0


def test_once_the_size_is_known_the_rest_is_read_straight_into_the_frame_buffer():
    frame, entry = send_frame(os.urandom(1024 * 1024))
    decoder = FrameDecoder(MAX)
    first = decoder.get_buffer()
    assert len(first) == READ_SIZE  # no frame under way: the read buffer
    first[:READ_SIZE] = frame[:READ_SIZE]
    assert decoder.buffer_updated(READ_SIZE) == []
    rest = decoder.get_buffer()
    assert len(rest) == len(frame) - READ_SIZE  # exactly the missing part of this frame
    rest[:] = frame[READ_SIZE:]
    (got,) = decoder.buffer_updated(len(rest))
    assert got.payload == entry
    assert len(decoder.get_buffer()) == READ_SIZE


def test_decoders_may_share_one_read_buffer():
    shared = bytearray(READ_SIZE)
    one, two = FrameDecoder(MAX, shared), FrameDecoder(MAX, shared)
    a, a_entry = send_frame(b"a" * 200_000)
    b, b_entry = send_frame(b"b" * 10)
    for decoder, stream in ((one, a[:1000]), (two, b[:20]), (one, a[1000:5000]), (two, b[20:])):
        view = decoder.get_buffer()
        view[: len(stream)] = stream
        got = decoder.buffer_updated(len(stream))
    assert [f.payload for f in got] == [b_entry]
    (rest,) = through_buffers(one, a[5000:], READ_SIZE)
    assert rest.payload == a_entry


@pytest.mark.parametrize("fed", [4, 8, 100])
def test_a_size_over_the_maximum_fails_before_any_buffer_is_made(fed):
    decoder = FrameDecoder(MAX)
    header = (MAX + 1).to_bytes(4, "big") + bytes(96)
    with pytest.raises(ProtocolError, match="exceeds the maximum frame size"):
        decoder.feed(header[:fed])
    assert decoder.buffered == 0
    assert len(decoder.get_buffer()) == READ_SIZE  # no frame buffer was made for it
    with pytest.raises(ProtocolError):  # broken for good
        decoder.feed(b"")


def test_a_size_over_the_maximum_behind_good_frames_keeps_them():
    good, entry = send_frame(b"x" * 100)
    decoder = FrameDecoder(MAX)
    with pytest.raises(ProtocolError) as caught:
        decoder.feed(good + (2**31).to_bytes(4, "big"))
    assert [f.payload for f in caught.value.frames] == [entry]
    assert decoder.buffered == 0


def test_half_a_large_frame_is_dropped_by_clear():
    frame, _ = send_frame(os.urandom(1024 * 1024))
    decoder = FrameDecoder(MAX)
    through_buffers(decoder, frame[: len(frame) // 2], 64 * 1024)
    assert decoder.buffered == len(frame) // 2
    decoder.clear()
    assert decoder.buffered == 0
    assert len(decoder.get_buffer()) == READ_SIZE
    again, entry = send_frame(b"after")
    assert [f.payload for f in decoder.feed(again)] == [entry]


def test_a_bad_command_in_a_gathered_large_frame_breaks_the_decoder():
    frame, _ = send_frame(os.urandom(200_000))
    broken = bytearray(frame)
    broken[8:10] = b"\xff\xff"  # the BaseCommand no longer parses
    decoder = FrameDecoder(MAX)
    with pytest.raises(ProtocolError):
        through_buffers(decoder, bytes(broken), 4096)
    assert decoder.buffered == 0


@pytest.mark.parametrize("cut", [0, 10, 150_000])
def test_several_large_frames_back_to_back_in_one_chunk(cut):
    sent = [send_frame(os.urandom(100_000 + i), sequence_id=i) for i in range(4)]
    stream = b"".join(frame for frame, _ in sent)
    decoder = FrameDecoder(MAX)
    # All in one chunk, or one chunk that ends inside a later frame and the rest after it.
    split = len(stream) - cut
    frames = decoder.feed(stream[:split]) + (decoder.feed(stream[split:]) if cut else [])
    assert [f.payload for f in frames] == [entry for _, entry in sent]
    assert [f.command.send.sequence_id for f in frames] == [0, 1, 2, 3]
    assert decoder.buffered == 0


def test_large_and_small_frames_interleaved_through_lent_buffers():
    sent = [send_frame(os.urandom(size), sequence_id=i) for i, size in enumerate([10, 500_000, 20, 70_000, 5])]
    stream = b"".join(frame for frame, _ in sent)
    for read_size in (1500, 65536, READ_SIZE):
        frames = through_buffers(FrameDecoder(MAX), stream, read_size)
        assert [f.payload for f in frames] == [entry for _, entry in sent]
