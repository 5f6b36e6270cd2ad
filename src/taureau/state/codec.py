"""Sans-IO framed codec for the state wire protocol: bytes in, frames out, frames to bytes."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any, NamedTuple

from taureau.common import errors

# Byte grammar, version 1 (every integer big-endian):
#
#   frame   := length:u32 kind:u8 op:u8 req_id:u32 field*
#   length  := bytes after the length word; 6 <= length <= the receiver's limit for (kind, op)
#   kind    := 0 request | 1 ok reply | 2 error reply | 3 event (one-way push, req_id 0)
#   field   := flen:u32 byte{flen}          ; as many fields as `length` holds
#
#   error reply fields := code:u16 (a 2-byte field), message (utf-8), hint*
#   control ops (controller API) carry one field holding a JSON object; data ops carry
#   raw byte fields, the first being the target block's alloc id as u64.
#
# A reply reuses the request's op and req_id, so many requests can be in flight on one
# connection and replies are matched by req_id (pipelining), whatever order they come in.
#
# Each receiver bounds frames per (kind, op) (FrameLimits; the servers' tables are in
# limits.py) and checks the 10-byte header before buffering the body: an oversized frame is
# refused unread with FrameTooLargeError to its req_id, and that connection is closed.

_HEAD = struct.Struct(">IBBI")
_LEN = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")
HEAD_SIZE = _HEAD.size
# Clients accept replies this large from the servers they dial (a block map or a listing has
# no smaller natural bound); servers use the tighter tables of limits.py.
DEFAULT_MAX_FRAME = 1 << 30

REQUEST, OK, ERROR, EVENT = 0, 1, 2, 3


class Op(IntEnum):
    """Operation numbers. 1-63 data plane (memory server), 64+ control plane (controller)."""

    # hash table
    GET = 1
    PUT = 2
    UPSERT = 3
    UPDATE = 4
    REMOVE = 5
    EXISTS = 6
    MULTI_GET = 7
    MULTI_PUT = 8
    COUNT = 9
    # queue
    ENQUEUE = 16
    DEQUEUE = 17
    QUEUE_LENGTH = 18
    MULTI_ENQUEUE = 19
    # file
    WRITE = 24
    READ = 25
    FILE_SIZE = 26
    # block management (controller -> memory server, memory server -> memory server)
    NEW_BLOCK = 40
    FREE_BLOCK = 41
    SPLIT = 42
    MERGE_OUT = 43
    EXPECT = 44
    IMPORT = 45
    EXPORT = 46
    LINK_NEXT = 47
    WATCH = 48
    RESET_RANGE = 49
    DESCRIBE = 50
    CHAIN = 51  # a block's place in its replica chain
    SYNC = 52  # a chain's head copies its state to the other members
    INSTALL = 53  # (memory server -> memory server) that copy
    CHAIN_WRITE = 54  # (memory server -> memory server) a write forwarded along a chain
    # control plane (client -> controller)
    HELLO = 64
    CREATE = 65
    OPEN = 66
    EXISTS_PATH = 67
    REMOVE_PATH = 68
    RENAME = 69
    LIST = 70
    STATUS = 71
    BLOCK_MAP = 72
    RENEW = 73
    CLOSE = 74
    DUMP = 75
    LOAD = 76
    STATS = 77
    SUBSCRIBE = 78
    GROW = 79
    QUOTA = 80
    DROP_DUMP = 81
    # memory server -> controller
    REGISTER = 96
    SPLIT_REQUEST = 97
    MERGE_REQUEST = 98
    APPEND_REQUEST = 99
    DRAINED = 100
    NOTIFY = 101
    REPORT = 102
    USAGE = 103
    # internal authentication (memory server -> controller or another memory server)
    CHALLENGE = 104
    PROVE = 105
    # client authentication (client_auth.py): credentials to the controller, a structure's
    # ticket to a memory server
    AUTH = 106
    ACCESS = 107


# Codes for error replies that are not exceptions but instructions to the client.
STALE = 200  # the block no longer serves that key/offset/end: refresh the block map and retry
REDO = 201  # the block is busy moving data in or out: retry shortly at the same place

_ERROR_CLASSES: dict[int, type[errors.StateError]] = {
    cls.code: cls
    for cls in (
        errors.StateError,
        errors.StateProtocolError,
        errors.PathNotFoundError,
        errors.PathExistsError,
        errors.InvalidPathError,
        errors.WrongTypeError,
        errors.KeyNotFoundError,
        errors.DuplicateKeyError,
        errors.QueueEmptyError,
        errors.OutOfMemoryError,
        errors.ValueTooLargeError,
        errors.BlockLostError,
        errors.StateNotEmptyError,
        errors.BackingStoreError,
        errors.StateUnavailableError,
        errors.FrameTooLargeError,
        errors.StateAuthError,
        errors.StateAuthenticationError,
        errors.StateAuthorizationError,
    )
}


class Redirect(Exception):
    """Not an error: tells the client to retry (REDO) or refresh its block map (STALE)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class FrameRefused(errors.FrameTooLargeError):
    """The decoder's refusal of an oversized frame, with the header the reply must answer."""

    def __init__(self, message: str, kind: int, op: int, req_id: int) -> None:
        super().__init__(message)
        self.kind, self.op, self.req_id = kind, op, req_id


class FrameLimits:
    """The largest `length` a receiver accepts for each (kind, op): a flat table, so checking
    a header costs one index."""

    __slots__ = ("table",)

    def __init__(self, default: int, overrides: Mapping[tuple[int, int], int] | None = None) -> None:
        self.table = [default] * ((EVENT + 1) << 8)
        for (kind, op), n in (overrides or {}).items():
            self.table[kind << 8 | op] = n

    def limit(self, kind: int, op: int) -> int:
        return self.table[kind << 8 | op]


_KIND_OPS: dict[int, str] = {}  # data ops a structure kind added (kinds/<kind>.py)


def data_op(number: int, name: str) -> int:
    """Claim a data op number (below NEW_BLOCK) for a structure kind's own operator."""
    if not 0 < number < Op.NEW_BLOCK or number in Op._value2member_map_ or number in _KIND_OPS:
        raise ValueError(f"data op {number} ({name}) is taken or out of range")
    _KIND_OPS[number] = name
    return number


def op_name(op: int) -> str:
    try:
        return Op(op).name
    except ValueError:
        return _KIND_OPS.get(op, f"op {op}")


class Frame(NamedTuple):
    kind: int
    op: int
    req_id: int
    fields: list[bytes]


def encode(kind: int, op: int, req_id: int, fields: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Return one frame's bytes."""
    parts = [b""]
    size = 6
    pack = _LEN.pack
    for f in fields:
        n = len(f)
        parts.append(pack(n))
        parts.append(f)
        size += 4 + n
    parts[0] = _HEAD.pack(size, kind, op, req_id)
    return b"".join(parts)


def encode_error(op: int, req_id: int, code: int, message: str, hints: Sequence[bytes] = ()) -> bytes:
    return encode(ERROR, op, req_id, [_U16.pack(code), message.encode(), *hints])


def encode_exc(op: int, req_id: int, exc: errors.StateError) -> bytes:
    return encode_error(op, req_id, exc.code, str(exc))


def error_code(fields: list[bytes]) -> int:
    """The code of an error reply's fields (StateProtocolError's code if malformed)."""
    if not fields or len(fields[0]) != 2:
        return errors.StateProtocolError.code
    return _U16.unpack(fields[0])[0]


def to_exception(fields: list[bytes]) -> errors.StateError:
    """Turn an error reply's fields back into the typed exception the server raised."""
    code = error_code(fields)
    message = fields[1].decode(errors="replace") if len(fields) > 1 else "malformed error reply"
    return _ERROR_CLASSES.get(code, errors.StateError)(message)


def reply_exception(fields: list[bytes]) -> Exception:
    """The exception an error reply stands for: a Redirect or the typed StateError."""
    code = error_code(fields)
    if code in (STALE, REDO):
        return Redirect(code, fields[1].decode(errors="replace") if len(fields) > 1 else "")
    return to_exception(fields)


def pack_u64(n: int) -> bytes:
    return _U64.pack(n)


def unpack_u64(b: bytes) -> int:
    if len(b) != 8:
        raise errors.StateProtocolError(f"expected an 8-byte integer field, got {len(b)} bytes")
    return _U64.unpack(b)[0]


def pack_json(obj: Any) -> list[bytes]:
    return [json.dumps(obj, separators=(",", ":")).encode()]


def unpack_json(fields: list[bytes]) -> dict[str, Any]:
    """The JSON object of a control frame; StateProtocolError if it is not one."""
    if len(fields) != 1:
        raise errors.StateProtocolError(f"control frame must have 1 field, got {len(fields)}")
    try:
        obj = json.loads(fields[0])
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.StateProtocolError(f"control frame is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise errors.StateProtocolError("control frame must hold a JSON object")
    return obj


def _parse(buf: bytes, start: int, end: int) -> Frame:
    _, kind, op, req_id = _HEAD.unpack_from(buf, start)
    fields: list[bytes] = []
    off = start + HEAD_SIZE
    unpack = _LEN.unpack_from
    while off < end:
        if off + 4 > end:
            raise errors.StateProtocolError("field length runs past the end of the frame")
        (n,) = unpack(buf, off)
        off += 4
        if off + n > end:
            raise errors.StateProtocolError("field runs past the end of the frame")
        fields.append(buf[off : off + n])
        off += n
    return Frame(kind, op, req_id, fields)


class FrameDecoder:
    """Accumulates bytes and yields whole frames. Raises StateProtocolError on bad input
    (FrameRefused for a frame over its limit, as soon as its header is in); after that the
    connection must be closed (its byte stream can no longer be trusted).

    What it holds is bounded by the largest limit plus one fed chunk."""

    def __init__(self, limits: FrameLimits | int = DEFAULT_MAX_FRAME) -> None:
        self._chunks: list[bytes] = []  # bytes received but not yet parsed into frames
        self._have = 0  # total length of _chunks
        self._need = HEAD_SIZE  # bytes needed before parsing can make progress (avoids O(n^2) joins)
        self.set_limits(limits)

    def set_limits(self, limits: FrameLimits | int) -> None:
        """Change what this connection may send (e.g. once a peer has said who it is)."""
        self._limits = (FrameLimits(limits) if isinstance(limits, int) else limits).table
        self._largest = max(self._limits)

    def feed(self, data: bytes) -> list[Frame]:
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            buf = b"".join(self._chunks)
        else:
            buf = data
        frames: list[Frame] = []
        off, size = 0, len(buf)
        need = HEAD_SIZE
        limits = self._limits
        while size - off >= 4:
            (length,) = _LEN.unpack_from(buf, off)
            if length < 6:
                raise errors.StateProtocolError(f"bad frame length {length}")
            if size - off < HEAD_SIZE:
                if length > self._largest:  # no op can be this long: refuse without the header
                    raise FrameRefused(f"a {length}-byte frame exceeds every limit of this server", 0, 0, 0)
                break
            _, kind, op, req_id = _HEAD.unpack_from(buf, off)
            if kind > EVENT:
                raise errors.StateProtocolError(f"unknown frame kind {kind}")
            limit = limits[kind << 8 | op]
            if length > limit:
                raise FrameRefused(
                    f"a {length}-byte {op_name(op)} frame exceeds this server's {limit}-byte limit "
                    "for it; connection closed",
                    kind,
                    op,
                    req_id,
                )
            end = off + 4 + length
            if end > size:
                need = 4 + length
                break
            frames.append(_parse(buf, off, end))
            off = end
        if off < size:
            rest = buf[off:]
            if len(rest) < 4:  # judge the length word as soon as it is in, however it is cut
                need = 4
            self._chunks, self._have, self._need = [rest], len(rest), need
        else:
            self._chunks, self._have, self._need = [], 0, HEAD_SIZE
        return frames

    @property
    def buffered(self) -> int:
        return self._have
