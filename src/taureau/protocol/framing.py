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
# A frame of at least this many bytes (size field included) that does not arrive in one read
# is gathered in a buffer of its exact size, allocated once its size field has passed the
# max-frame check: no growing buffer (realloc and copy per read), and a transport that lends
# buffers (asyncio.BufferedProtocol) reads the rest of it straight into place.
LARGE_FRAME = 64 * 1024
# The buffer lent to a transport for reads outside a large frame: as much as uvloop reads.
READ_SIZE = 256 * 1024
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

    Or let a transport read into the decoder's buffers (asyncio.BufferedProtocol):

    >>> view = dec.get_buffer()        # where the next read should land
    >>> frames = dec.buffer_updated(n)  # n bytes were read into it

    After a ProtocolError the decoder is broken: every later feed raises the same error.
    """

    __slots__ = ("_buf", "_max", "_error", "_large", "_filled", "_read")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, read_buffer: bytearray | None = None) -> None:
        """`read_buffer`: what get_buffer lends outside a large frame (READ_SIZE bytes made on
        first use if None). Decoders of one event loop may share one: buffer_updated decodes
        or copies out all it holds before the loop reads from another socket."""
        self._buf = bytearray()  # unconsumed bytes: always starts at a frame boundary
        self._max = max_frame_size
        self._error: ProtocolError | None = None
        # A large frame being gathered (LARGE_FRAME): its exact size, the first _filled bytes
        # received. While it is set, _buf is empty: every byte that comes is this frame's first.
        self._large: bytearray | None = None
        self._filled = 0
        self._read = read_buffer

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf) + self._filled

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
        self._large = None
        self._filled = 0

    def get_buffer(self) -> memoryview:
        """Where a transport should read next: the missing part of a large frame, else the
        read buffer."""
        if self._large is not None:
            return memoryview(self._large)[self._filled :]
        if self._read is None:
            self._read = bytearray(READ_SIZE)
        return memoryview(self._read)

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        """Decode after `nbytes` were read into the view get_buffer returned last."""
        if self._large is None:
            assert self._read is not None, "buffer_updated without get_buffer"
            return self.feed(memoryview(self._read)[:nbytes])
        if self._error is not None:
            raise self._error
        self._filled += nbytes
        frames: list[Frame] = []
        if self._filled == len(self._large):
            try:
                self._complete_large(frames)
            except ProtocolError as exc:
                self._broken(exc, frames)
                raise
        return frames

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Decode every complete frame now available; keep the partial tail."""
        if self._error is not None:
            raise self._error
        frames: list[Frame] = []
        try:
            self._feed(data, frames)
        except ProtocolError as exc:
            self._broken(exc, frames)
            raise
        return frames

    def _broken(self, exc: ProtocolError, frames: list[Frame]) -> None:
        """A frame was bad: drop the buffers, fail every later feed with the same error, and
        hand the frames decoded before the bad one to the caller on the exception."""
        exc.frames = frames
        self._error = exc
        self.clear()

    def _feed(self, data: bytes | bytearray | memoryview, frames: list[Frame]) -> None:
        if self._large is not None:
            used = self._fill_large(data, frames)
            if used == len(data):
                return
            data = memoryview(data)[used:]
        # Parse straight from the caller's chunk when nothing is pending: no copy of the chunk.
        src = data if not self._buf else self._buf
        if src is self._buf:
            self._buf += data
        with memoryview(src) as view:
            pos = self._decode_all(view, frames)
            if pos < len(view):
                with view[pos:] as tail:  # released before _buf is cut below
                    self._keep_tail(tail)
        if src is self._buf:
            del self._buf[:pos]  # front deletion is O(1) amortized for bytearray

    def _keep_tail(self, tail: memoryview) -> None:
        """Hold an incomplete frame: in a buffer of its exact size when it is large (its size
        field already passed the max-frame check in _decode_all), else in _buf."""
        if len(tail) >= 4:
            size = 4 + _U32.unpack_from(tail, 0)[0]
            if size >= LARGE_FRAME:
                self._large = bytearray(size)
                self._large[: len(tail)] = tail
                self._filled = len(tail)
                self._buf = bytearray()
                return
        if tail.obj is not self._buf:
            self._buf = bytearray(tail)

    def _fill_large(self, data: bytes | bytearray | memoryview, frames: list[Frame]) -> int:
        """Copy what of `data` belongs to the large frame into its buffer; decode it once
        whole. Returns the bytes of `data` used."""
        assert self._large is not None
        take = min(len(self._large) - self._filled, len(data))
        self._large[self._filled : self._filled + take] = memoryview(data)[:take]
        self._filled += take
        if self._filled == len(self._large):
            self._complete_large(frames)
        return take

    def _complete_large(self, frames: list[Frame]) -> None:
        large, self._large, self._filled = self._large, None, 0
        assert large is not None
        with memoryview(large) as view:
            self._decode_all(view, frames)

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
