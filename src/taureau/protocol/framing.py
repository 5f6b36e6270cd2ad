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

    @property
    def max_frame_size(self) -> int:
        return self._max

    @max_frame_size.setter
    def max_frame_size(self, size: int) -> None:
        """Change the limit for frames not yet seen (a broker raises it after CONNECT)."""
        self._max = size

    def clear(self) -> None:
        """Drop any partial frame (its memory goes now, not when the decoder does)."""
        self._buf = bytearray()

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
        # Flat on purpose: this loop runs once per frame on every connection, so the common
        # case avoids helper calls; anything unusual drops into the _reject_* helpers.
        end = len(view)
        pos = 0
        limit = self._max
        unpack_sizes = _SIZES.unpack_from
        append = frames.append
        new_command = pb.BaseCommand
        sub_field = _SUB_FIELD
        payload_types = _PAYLOAD_TYPES
        while True:
            avail = end - pos
            if avail < 8:
                if avail >= 4:  # judge the size field as soon as it is here, not once the body is
                    _check_total(_U32.unpack_from(view, pos)[0], limit)
                return pos
            total, cmd_size = unpack_sizes(view, pos)
            if total < 4 or total > limit:
                _check_total(total, limit)
            frame_end = pos + 4 + total
            if frame_end > end:
                return pos
            if cmd_size > total - 4:
                raise ProtocolError(
                    f"command size {cmd_size} exceeds the frame's {total - 4} remaining bytes"
                )
            cmd_end = pos + 8 + cmd_size
            command = new_command()
            try:
                # upb parses any buffer; a bytes copy would cost on the hot path.
                command.ParseFromString(view[pos + 8 : cmd_end])  # type: ignore[arg-type]
            except DecodeError as exc:
                raise ProtocolError(f"unparseable BaseCommand ({cmd_size} bytes): {exc}") from None
            kind = command.type
            field = sub_field.get(kind)
            # upb's parser does not enforce proto2 `required`; check so handlers can trust fields.
            if not command.IsInitialized() or field is None or not command.HasField(field):
                _reject_command(command, view[pos + 8 : cmd_end], field)
            if cmd_end == frame_end:
                if kind in payload_types:
                    raise ProtocolError(f"{_Type.Name(kind)} frame has no payload")
                append(_new_tuple(Frame, (command, None, True)))
            else:
                if kind not in payload_types:
                    raise ProtocolError(f"{_Type.Name(kind)} frame carries an unexpected payload")
                append(_new_tuple(Frame, (command, *_split_payload(view, cmd_end, frame_end))))
            pos = frame_end


# Frame(...) goes through a keyword-capable __new__; building from a tuple skips that.
_new_tuple = tuple.__new__


def _check_total(total: int, limit: int) -> None:
    if total < 4:
        raise ProtocolError(f"frame total size {total} is below the minimum of 4")
    if total > limit:
        raise ProtocolError(f"frame of {total} bytes exceeds the maximum frame size {limit}")


def _reject_command(command: pb.BaseCommand, raw: memoryview, field: str | None) -> None:
    """Raise the most specific ProtocolError for a parsed but unusable BaseCommand."""
    if not command.HasField("type"):
        # An out-of-range enum value lands in unknown fields, leaving `type` unset.
        raw_type = _leading_type(raw)
        if raw_type is None:
            raise ProtocolError("BaseCommand has no command type")
        raise ProtocolError(f"unknown command type {raw_type}")
    name = _Type.Name(command.type)
    if field is None:
        raise ProtocolError(f"unsupported command type {name}")
    if not command.HasField(field):
        if command.type not in _EMPTY_OK:
            raise ProtocolError(f"{name} command lacks its '{field}' body")
        getattr(command, field).SetInParent()  # normalise an omitted empty PING/PONG body
    if not command.IsInitialized():
        missing = ", ".join(command.FindInitializationErrors())  # type: ignore[attr-defined]  # upb has it
        raise ProtocolError(f"{name} command is missing required fields: {missing}")


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


def _split_payload(view: memoryview, start: int, end: int) -> tuple[bytes, bool]:
    """Validate a payload section's framing; return (stored entry bytes, checksum_ok).

    Works on offsets into the frame buffer: byte compares instead of slices, one copy at the end.
    """
    pos = start
    if view[pos] == 0x0E and end - pos >= 2 and view[pos + 1] == 0x02:
        if end - pos < 6:
            raise ProtocolError("truncated broker-entry-metadata header")
        bem_size = _U32.unpack_from(view, pos + 2)[0]
        if pos + 6 + bem_size > end:
            raise ProtocolError(f"broker-entry-metadata size {bem_size} overruns the frame")
        pos += 6 + bem_size
    ok = True
    body = pos
    if end - pos >= 2 and view[pos] == 0x0E and view[pos + 1] == 0x01:
        if end - pos < 6:
            raise ProtocolError("truncated checksum header")
        body = pos + 6
        ok = crc32c.crc32c(view[body:end]) == _U32.unpack_from(view, pos + 2)[0]
    if end - body < 4:
        raise ProtocolError("payload section lacks its metadata size")
    meta_size = _U32.unpack_from(view, body)[0]
    if meta_size > end - body - 4:
        raise ProtocolError(
            f"metadata size {meta_size} overruns the {end - body - 4} bytes left in the frame"
        )
    return bytes(view[pos:end]), ok
