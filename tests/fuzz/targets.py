"""Fuzz targets: untrusted bytes into the decoders that read them off the wire.

Each target takes one input and raises only on a real bug: the decoders' documented refusals
(ProtocolError for the Pulsar wire, StateProtocolError for the state wire) are the expected
answer to garbage; anything else escaping is a crash. Beyond "no crash", each target checks
that the decoder does not depend on how the stream is cut into reads: the same bytes fed at
once and in pieces give the same frames, or the same refusal.
"""

from __future__ import annotations

from collections.abc import Callable

from taureau.common import errors
from taureau.protocol import pulsar_api_pb2 as pb
from taureau.protocol.commands import encode_command, encode_payload_command
from taureau.protocol.errors import ProtocolError
from taureau.protocol.framing import FrameDecoder as PulsarDecoder
from taureau.protocol.metadata import encode_entry, parse_entry
from taureau.protocol.validate import check_entry, non_utf8_field
from taureau.state import codec
from taureau.state.limits import controller_limits

MAX_MESSAGE = 64 << 10  # small frames and messages: mutations then reach the limit checks


def _cuts(data: bytes) -> list[bytes]:
    """The input split at points its own first byte chooses (deterministic per input)."""
    step = (data[0] % 7 + 1) if data else 1
    return [data[i : i + step] for i in range(0, len(data), step)] or [b""]


def _feed_all(feed: Callable[[bytes], list], pieces: list[bytes]) -> tuple[list, type[Exception] | None]:
    out: list = []
    for piece in pieces:
        try:
            out += feed(piece)
        except (ProtocolError, errors.StateProtocolError) as exc:
            out += getattr(exc, "frames", [])
            return out, type(exc)
    return out, None


def _same_stream(whole: tuple[list, type[Exception] | None], cut: tuple[list, type[Exception] | None],
                 read: Callable[[object], tuple]) -> None:
    """The same bytes are refused whether they come at once or in pieces, and the frames
    read before any refusal agree. (A refused chunk may take down frames decoded with it:
    the state decoder drops them with the connection, so one side may hold a prefix.)"""
    (whole_frames, whole_err), (cut_frames, cut_err) = whole, cut
    assert (whole_err is None) == (cut_err is None), f"refused {'whole' if whole_err else 'cut'} only"
    a, b = [read(f) for f in whole_frames], [read(f) for f in cut_frames]
    n = min(len(a), len(b))
    assert a[:n] == b[:n], "cuts change the frames"
    if whole_err is None:
        assert len(a) == len(b), "cuts change the number of frames"


# -- the Pulsar wire ---------------------------------------------------------------------------


def _pulsar_frame(frame) -> tuple:
    """Read a decoded frame as a session would: its strings, and a SEND's entry."""
    non_utf8_field(frame.command)
    if frame.payload is not None:
        try:
            parse_entry(frame.payload)
            check_entry(frame.payload, MAX_MESSAGE)
        except ProtocolError:
            pass
    return frame.command.SerializeToString(), frame.payload, frame.checksum_ok


def pulsar_frames(data: bytes) -> None:
    _same_stream(_feed_all(PulsarDecoder(MAX_MESSAGE).feed, [data]),
                 _feed_all(PulsarDecoder(MAX_MESSAGE).feed, _cuts(data)), _pulsar_frame)


def pulsar_seeds() -> list[bytes]:
    connect = pb.BaseCommand(type=pb.BaseCommand.CONNECT, connect=pb.CommandConnect(client_version="fuzz",
                                                                                    protocol_version=19))
    producer = pb.BaseCommand(type=pb.BaseCommand.PRODUCER, producer=pb.CommandProducer(
        topic="persistent://public/default/t", producer_id=1, request_id=2))
    send = pb.BaseCommand(type=pb.BaseCommand.SEND, send=pb.CommandSend(producer_id=1, sequence_id=0,
                                                                       num_messages=1))
    meta = pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1)
    batch = pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1, num_messages_in_batch=2)
    single = pb.SingleMessageMetadata(payload_size=1).SerializeToString()
    records = b"".join(len(single).to_bytes(4, "big") + single + b"x" for _ in range(2))
    ping = pb.BaseCommand(type=pb.BaseCommand.PING, ping=pb.CommandPing())
    return [
        encode_command(connect),
        encode_command(connect) + encode_command(producer) + encode_command(ping),
        encode_payload_command(send, encode_entry(meta, b"hello")),
        encode_payload_command(send, encode_entry(batch, records)),
        encode_payload_command(send, encode_entry(meta, b"x", checksum=False)),
    ]


# -- the state wire ----------------------------------------------------------------------------


def _state_frame(fr: codec.Frame) -> tuple:
    """Read a decoded frame as a server or client would: JSON of control ops, error replies."""
    if fr.kind == codec.ERROR:
        exc = codec.reply_exception(fr.fields)
        assert isinstance(exc, (errors.StateError, codec.Redirect)), type(exc)
    elif fr.op >= codec.Op.HELLO:
        try:
            codec.unpack_json(fr.fields)
        except errors.StateProtocolError:
            pass
    return tuple(fr[:3]) + (tuple(bytes(f) for f in fr.fields),)


def state_frames(data: bytes) -> None:
    limits = controller_limits()
    _same_stream(_feed_all(codec.FrameDecoder(limits).feed, [data]),
                 _feed_all(codec.FrameDecoder(limits).feed, _cuts(data)), _state_frame)


def state_seeds() -> list[bytes]:
    return [
        codec.encode(codec.REQUEST, codec.Op.HELLO, 1, codec.pack_json({})),
        codec.encode(codec.REQUEST, codec.Op.CREATE, 2, codec.pack_json({"path": "/a/b", "kind": "hash_table"}))
        + codec.encode(codec.REQUEST, codec.Op.GET, 3, [codec.pack_u64(1), b"key"]),
        codec.encode_error(codec.Op.OPEN, 4, errors.PathNotFoundError.code, "no /a"),
        codec.encode_error(codec.Op.GET, 5, codec.STALE, "moved", [b"hint"]),
        codec.encode(codec.EVENT, codec.Op.NOTIFY, 0, [codec.pack_u64(7), b"put", b"k"]),
    ]


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]]]] = {
    "pulsar-frames": (pulsar_frames, pulsar_seeds),
    "state-frames": (state_frames, state_seeds),
}
