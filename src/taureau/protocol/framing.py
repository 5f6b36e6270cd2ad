"""Split a byte stream into Pulsar frames: sizes, BaseCommand, optional payload and its CRC32C."""

from __future__ import annotations

import struct
from typing import NamedTuple

import crc32c
from google.protobuf.message import DecodeError

from taureau.protocol import pulsar_api_pb2 as pb
from taureau.protocol.errors import ProtocolError

# Frame byte grammar (all integers big-endian):
#
#   frame           := total_size:u32 command_size:u32 command[command_size] payload_section?
#   total_size      := byte length of everything after total_size (>= 4)
#   command         := BaseCommand protobuf
#   payload_section := broker_entry? checksum? metadata_size:u32 metadata[metadata_size] payload
#     only SEND (client -> broker) and MESSAGE (broker -> client) carry one
#   broker_entry    := 0x0e02 bem_size:u32 BrokerEntryMetadata[bem_size]   (broker -> client only)
#   checksum        := 0x0e01 crc:u32
#     crc = CRC32C (Castagnoli) of everything after it to the end of the frame, i.e.
#     metadata_size + metadata + payload; present iff the peer negotiated protocol >= 6
#   payload         := the rest of the frame: one message, or a batch, possibly compressed
#
# The broker stores `checksum? metadata_size metadata payload` verbatim as the entry and sends
# it back unchanged after a MESSAGE command, so the producer's CRC stays valid end to end.

DEFAULT_MAX_FRAME_SIZE = 5 * 1024 * 1024
MAGIC_CHECKSUM = 0x0E01
MAGIC_BROKER_ENTRY_METADATA = 0x0E02

_SIZES = struct.Struct(">II")
_U32 = struct.Struct(">I")
_MAGIC_CRC_BYTES = b"\x0e\x01"
_MAGIC_BEM_BYTES = b"\x0e\x02"

_Type = pb.BaseCommand.Type
_PAYLOAD_TYPES = frozenset({pb.BaseCommand.SEND, pb.BaseCommand.MESSAGE})
# PING and PONG carry an empty sub-command some clients leave out entirely.
_EMPTY_OK = frozenset({pb.BaseCommand.PING, pb.BaseCommand.PONG})
# Command type value -> name of the BaseCommand field holding its sub-command (same number).
_SUB_FIELD: dict[int, str] = {
    value: pb.BaseCommand.DESCRIPTOR.fields_by_number[value].name
    for value in _Type.values()
    if value in pb.BaseCommand.DESCRIPTOR.fields_by_number
}


class Frame(NamedTuple):
    """One decoded frame.

    `payload` is None for simple commands; for SEND/MESSAGE it is the payload section without
    any broker-entry-metadata block: `[0x0e01 crc]? metadata_size metadata payload`, the bytes a
    broker stores as the entry. `checksum_ok` is False only when a checksum is present and wrong.
    """

    command: pb.BaseCommand
    payload: bytes | None
    checksum_ok: bool


class FrameDecoder:
    """Incremental frame decoder: feed it chunks as they arrive, get whole frames back.

    >>> dec = FrameDecoder()
    >>> frames = dec.feed(chunk)   # zero or more Frame; partial tails are kept for the next feed

    After a ProtocolError the decoder is broken: every later feed raises the same error.
    """

    __slots__ = ("_buf", "_max", "_error")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._buf = bytearray()  # unconsumed bytes: always starts at a frame boundary
        self._max = max_frame_size
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Decode every complete frame now available; keep the partial tail."""
        if self._error is not None:
            raise self._error
        # Parse straight from the caller's chunk when nothing is pending: no copy of the chunk.
        src = data if not self._buf else self._buf
        if src is self._buf:
            self._buf += data
        frames: list[Frame] = []
        pos = 0
        try:
            with memoryview(src) as view:
                pos = self._decode_all(view, frames)
        except ProtocolError as exc:
            exc.frames = frames
            self._error = exc
            self._buf = bytearray()
            raise
        if src is self._buf:
            del self._buf[:pos]  # front deletion is O(1) amortized for bytearray
        elif pos < len(data):
            self._buf = bytearray(data[pos:])
        return frames

    def _decode_all(self, view: memoryview, frames: list[Frame]) -> int:
        end = len(view)
        pos = 0
        unpack_sizes = _SIZES.unpack_from
        while end - pos >= 4:
            total = _U32.unpack_from(view, pos)[0]
            if total < 4:
                raise ProtocolError(f"frame total size {total} is below the minimum of 4")
            if total > self._max:
                raise ProtocolError(f"frame of {total} bytes exceeds the maximum frame size {self._max}")
            frame_end = pos + 4 + total
            if frame_end > end:
                break
            cmd_size = unpack_sizes(view, pos)[1]
            if cmd_size > total - 4:
                raise ProtocolError(
                    f"command size {cmd_size} exceeds the frame's {total - 4} remaining bytes"
                )
            cmd_end = pos + 8 + cmd_size
            command = _parse_command(view[pos + 8 : cmd_end])
            if cmd_end == frame_end:
                if command.type in _PAYLOAD_TYPES:
                    raise ProtocolError(f"{_Type.Name(command.type)} frame has no payload")
                frames.append(Frame(command, None, True))
            else:
                if command.type not in _PAYLOAD_TYPES:
                    raise ProtocolError(f"{_Type.Name(command.type)} frame carries an unexpected payload")
                payload, ok = _split_payload(view[cmd_end:frame_end])
                frames.append(Frame(command, payload, ok))
            pos = frame_end
        return pos


def _parse_command(raw: memoryview) -> pb.BaseCommand:
    command = pb.BaseCommand()
    try:
        command.ParseFromString(raw)
    except DecodeError as exc:
        raise ProtocolError(f"unparseable BaseCommand ({len(raw)} bytes): {exc}") from None
    if not command.HasField("type"):
        # An out-of-range enum value lands in unknown fields, leaving `type` unset.
        raw_type = _leading_type(raw)
        if raw_type is None:
            raise ProtocolError("BaseCommand has no command type")
        raise ProtocolError(f"unknown command type {raw_type}")
    field = _SUB_FIELD.get(command.type)
    if field is None:
        raise ProtocolError(f"unsupported command type {_Type.Name(command.type)}")
    if not command.HasField(field) and command.type not in _EMPTY_OK:
        raise ProtocolError(f"{_Type.Name(command.type)} command lacks its '{field}' body")
    # upb's parser does not enforce proto2 `required`; do it here so handlers can trust fields.
    if not command.IsInitialized():
        missing = ", ".join(command.FindInitializationErrors())
        raise ProtocolError(f"{_Type.Name(command.type)} command is missing required fields: {missing}")
    return command


def _leading_type(raw: memoryview) -> int | None:
    """Read field 1 (varint) if it opens the message, as every encoder writes it."""
    if len(raw) < 2 or raw[0] != 0x08:
        return None
    value = shift = 0
    for byte in raw[1:11]:
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
        shift += 7
    return None


def _split_payload(section: memoryview) -> tuple[bytes, bool]:
    """Validate the payload section's framing; return (stored entry bytes, checksum_ok)."""
    if section[:2] == _MAGIC_BEM_BYTES:
        if len(section) < 6:
            raise ProtocolError("truncated broker-entry-metadata header")
        bem_size = _U32.unpack_from(section, 2)[0]
        if 6 + bem_size > len(section):
            raise ProtocolError(f"broker-entry-metadata size {bem_size} overruns the frame")
        section = section[6 + bem_size :]
    ok = True
    body = section
    if section[:2] == _MAGIC_CRC_BYTES:
        if len(section) < 6:
            raise ProtocolError("truncated checksum header")
        body = section[6:]
        ok = crc32c.crc32c(body) == _U32.unpack_from(section, 2)[0]
    if len(body) < 4:
        raise ProtocolError("payload section lacks its metadata size")
    meta_size = _U32.unpack_from(body, 0)[0]
    if 4 + meta_size > len(body):
        raise ProtocolError(f"metadata size {meta_size} overruns the {len(body) - 4} bytes left in the frame")
    return bytes(section), ok
