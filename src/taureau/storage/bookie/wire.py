"""The bookie protocol, sans IO: byte strings in, requests and responses out (no sockets, no clock).

Every frame is `length(u32 BE)` then `length` bytes. A request is `op(u8) request_id(u64)`
then its body; a response is `op(u8) request_id(u64) status(u8)` then its body. Requests on
one connection may be answered in any order: the request id pairs them.

    op              request body                              OK response body
    1 ADD           ledger(u64) first(u64) flags(u8) count(u32)   (empty)
                    then count x (len(u32) data)              flags bit 0: recovery add
    2 READ          ledger(u64) first(u64) last(u64)          count(u32) then count x (len(u32) data):
                                                              entries first.., fewer than asked when
                                                              the next would pass MAX_READ_BYTES or
                                                              is absent (never zero)
    3 READ_LAST     ledger(u64)                               last entry id (i64, -1 if none)
    4 FENCE         ledger(u64)                               last entry id (i64)
    5 DELETE        ledger(u64)                               (empty)

A response with another status carries a UTF-8 reason; `ERRORS` maps each status to the
StorageError it stands for, both ways.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from taureau.common.errors import (
    CorruptedDataError,
    DiskFullError,
    LedgerFencedError,
    NoSuchEntryError,
    NoSuchLedgerError,
    StorageError,
)

LENGTH = struct.Struct(">I")
REQUEST_HEAD = struct.Struct(">BQ")
RESPONSE_HEAD = struct.Struct(">BQB")
_ADD = struct.Struct(">QQBI")
_RANGE = struct.Struct(">QQQ")
_LEDGER = struct.Struct(">Q")
_ENTRY_ID = struct.Struct(">q")
_COUNT = struct.Struct(">I")

ADD, READ, READ_LAST, FENCE, DELETE = 1, 2, 3, 4, 5
OPS = {ADD: "ADD", READ: "READ", READ_LAST: "READ_LAST", FENCE: "FENCE", DELETE: "DELETE"}
FLAG_RECOVERY = 1

MAX_FRAME = 32 * 1024 * 1024  # a frame over this is refused and its connection closed
MAX_ADD_BYTES = 8 * 1024 * 1024  # a client splits a batch of adds into requests of this much
MAX_READ_BYTES = 8 * 1024 * 1024  # a READ answer stops adding entries past this
MAX_ENTRIES_PER_ADD = 10_000

OK = 0
BAD_REQUEST = 1


class BookieProtocolError(StorageError):
    """Bytes that are not a well-formed bookie-protocol frame (or a request refused as one)."""


class BookieUnavailableError(StorageError):
    """The bookie could not be reached, or the connection broke before it answered."""


# status -> error class; a status not listed reads back as StorageError.
ERRORS: dict[int, type[StorageError]] = {
    BAD_REQUEST: BookieProtocolError,
    2: NoSuchLedgerError,
    3: NoSuchEntryError,
    4: LedgerFencedError,
    5: DiskFullError,
    6: StorageError,
    7: CorruptedDataError,
}
_STATUS_OF = {cls: status for status, cls in ERRORS.items()}


def status_of(exc: BaseException) -> int:
    """The status a server answers `exc` with (the most specific class listed)."""
    if isinstance(exc, ValueError | TypeError):
        return BAD_REQUEST
    for cls in type(exc).__mro__:
        if cls in _STATUS_OF:
            return _STATUS_OF[cls]
    return _STATUS_OF[StorageError]


def error_for(status: int, reason: str) -> StorageError:
    return ERRORS.get(status, StorageError)(reason)


@dataclass(frozen=True, slots=True)
class Request:
    op: int
    request_id: int
    ledger_id: int
    first: int = 0  # ADD, READ
    last: int = 0  # READ
    recovery: bool = False  # ADD
    entries: tuple[bytes, ...] = ()  # ADD


@dataclass(frozen=True, slots=True)
class Response:
    op: int
    request_id: int
    status: int
    entry_id: int = 0  # READ_LAST, FENCE
    entries: tuple[bytes, ...] = ()  # READ
    reason: str = ""  # status != OK


# -- encoding ---------------------------------------------------------------------------------


def _frame(head: bytes, *parts: bytes) -> bytes:
    size = len(head) + sum(len(p) for p in parts)
    if size > MAX_FRAME:
        raise BookieProtocolError(f"a frame of {size} bytes is over the {MAX_FRAME} allowed")
    return b"".join((LENGTH.pack(size), head, *parts))


def _entries(entries: list[bytes] | tuple[bytes, ...]) -> list[bytes]:
    parts: list[bytes] = []
    for data in entries:
        parts.append(LENGTH.pack(len(data)))
        parts.append(bytes(data))
    return parts


def encode_add(request_id: int, ledger_id: int, first: int, entries: list[bytes], recovery: bool = False) -> bytes:
    head = REQUEST_HEAD.pack(ADD, request_id) + _ADD.pack(
        ledger_id, first, FLAG_RECOVERY if recovery else 0, len(entries)
    )
    return _frame(head, *_entries(entries))


def encode_read(request_id: int, ledger_id: int, first: int, last: int) -> bytes:
    return _frame(REQUEST_HEAD.pack(READ, request_id) + _RANGE.pack(ledger_id, first, last))


def encode_ledger_op(op: int, request_id: int, ledger_id: int) -> bytes:
    """READ_LAST, FENCE or DELETE of one ledger."""
    if op not in (READ_LAST, FENCE, DELETE):
        raise ValueError(f"op {op} does not take a ledger alone")
    return _frame(REQUEST_HEAD.pack(op, request_id) + _LEDGER.pack(ledger_id))


def encode_ok(op: int, request_id: int, *, entry_id: int = 0, entries: list[bytes] | None = None) -> bytes:
    head = RESPONSE_HEAD.pack(op, request_id, OK)
    if op in (READ_LAST, FENCE):
        return _frame(head + _ENTRY_ID.pack(entry_id))
    if op == READ:
        found = entries or []
        return _frame(head + _COUNT.pack(len(found)), *_entries(found))
    return _frame(head)


def encode_error(op: int, request_id: int, status: int, reason: str) -> bytes:
    return _frame(RESPONSE_HEAD.pack(op, request_id, status), reason.encode()[:4096])


# -- decoding ---------------------------------------------------------------------------------


class FrameSplitter:
    """Cuts a byte stream into frames; BookieProtocolError for a length over max_frame (the
    stream cannot be trusted after that: close it)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        pos = 0
        buffer = self._buffer
        while len(buffer) - pos >= LENGTH.size:
            (size,) = LENGTH.unpack_from(buffer, pos)
            if size > self.max_frame:
                raise BookieProtocolError(f"a frame of {size} bytes is over the {self.max_frame} allowed")
            end = pos + LENGTH.size + size
            if end > len(buffer):
                break
            frames.append(bytes(buffer[pos + LENGTH.size : end]))
            pos = end
        del buffer[:pos]
        return frames


def request_head(frame: bytes) -> tuple[int, int]:
    """(op, request_id) of a request frame, so even a malformed one can be answered."""
    if len(frame) < REQUEST_HEAD.size:
        raise BookieProtocolError(f"a request of {len(frame)} bytes is shorter than its header")
    op, request_id = REQUEST_HEAD.unpack_from(frame, 0)
    return op, request_id


def _read_entries(frame: bytes, pos: int, count: int) -> tuple[bytes, ...]:
    entries = []
    for _ in range(count):
        (size,) = LENGTH.unpack_from(frame, pos)
        pos += LENGTH.size
        if pos + size > len(frame):
            raise BookieProtocolError("an entry runs past the end of its frame")
        entries.append(frame[pos : pos + size])
        pos += size
    if pos != len(frame):
        raise BookieProtocolError(f"{len(frame) - pos} bytes left over after the entries")
    return tuple(entries)


def decode_request(frame: bytes) -> Request:
    op, request_id = request_head(frame)
    body = REQUEST_HEAD.size
    try:
        if op == ADD:
            ledger_id, first, flags, count = _ADD.unpack_from(frame, body)
            if count > MAX_ENTRIES_PER_ADD or count == 0:
                raise BookieProtocolError(f"an ADD of {count} entries (1 to {MAX_ENTRIES_PER_ADD} allowed)")
            if flags & ~FLAG_RECOVERY:
                raise BookieProtocolError(f"unknown ADD flags {flags:#x}")
            entries = _read_entries(frame, body + _ADD.size, count)
            return Request(op, request_id, ledger_id, first, recovery=bool(flags & FLAG_RECOVERY), entries=entries)
        if op == READ:
            ledger_id, first, last = _RANGE.unpack_from(frame, body)
            _exact(frame, body + _RANGE.size)
            return Request(op, request_id, ledger_id, first, last)
        if op in (READ_LAST, FENCE, DELETE):
            (ledger_id,) = _LEDGER.unpack_from(frame, body)
            _exact(frame, body + _LEDGER.size)
            return Request(op, request_id, ledger_id)
    except struct.error as exc:
        raise BookieProtocolError(f"{OPS.get(op, op)} request is truncated: {exc}") from None
    raise BookieProtocolError(f"unknown request op {op}")


def _exact(frame: bytes, end: int) -> None:
    if len(frame) != end:
        raise BookieProtocolError(f"{len(frame) - end} unexpected bytes after the request")


def decode_response(frame: bytes) -> Response:
    try:
        op, request_id, status = RESPONSE_HEAD.unpack_from(frame, 0)
        body = RESPONSE_HEAD.size
        if status != OK:
            return Response(op, request_id, status, reason=frame[body:].decode(errors="replace"))
        if op in (READ_LAST, FENCE):
            (entry_id,) = _ENTRY_ID.unpack_from(frame, body)
            return Response(op, request_id, status, entry_id=entry_id)
        if op == READ:
            (count,) = _COUNT.unpack_from(frame, body)
            return Response(op, request_id, status, entries=_read_entries(frame, body + _COUNT.size, count))
        if op in (ADD, DELETE):
            return Response(op, request_id, status)
    except struct.error as exc:
        raise BookieProtocolError(f"response is truncated: {exc}") from None
    raise BookieProtocolError(f"unknown response op {op}")
