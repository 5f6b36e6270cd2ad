"""The bookie protocol codec, with byte strings alone."""

from __future__ import annotations

import random
import struct

import pytest

from taureau.common.errors import (
    CorruptedDataError,
    DiskFullError,
    LedgerFencedError,
    NoSuchEntryError,
    NoSuchLedgerError,
    StorageError,
)
from taureau.storage.bookie import wire


def test_requests_round_trip_through_any_split_of_the_stream():
    frames = [
        wire.encode_add(1, 7, 0, [b"a", b"", b"c" * 1000]),
        wire.encode_add(2, 7, 3, [b"d"], recovery=True),
        wire.encode_read(3, 7, 0, 3),
        wire.encode_ledger_op(wire.READ_LAST, 4, 7),
        wire.encode_ledger_op(wire.FENCE, 5, 7),
        wire.encode_ledger_op(wire.DELETE, 6, 2**63 - 1),
    ]
    stream = b"".join(frames)
    rng = random.Random(4)
    for _ in range(20):
        splitter = wire.FrameSplitter()
        got = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 300)
            got += splitter.feed(stream[pos : pos + step])
            pos += step
        requests = [wire.decode_request(f) for f in got]
        assert [r.request_id for r in requests] == [1, 2, 3, 4, 5, 6]
        assert splitter.buffered == 0
    add, recovery, read, last, fence, delete = requests
    assert (add.op, add.ledger_id, add.first, add.entries, add.recovery) == (
        wire.ADD, 7, 0, (b"a", b"", b"c" * 1000), False
    )
    assert recovery.recovery and recovery.first == 3 and recovery.entries == (b"d",)
    assert (read.op, read.first, read.last) == (wire.READ, 0, 3)
    assert (last.op, fence.op, delete.op, delete.ledger_id) == (wire.READ_LAST, wire.FENCE, wire.DELETE, 2**63 - 1)


def test_responses_round_trip():
    splitter = wire.FrameSplitter()
    frames = splitter.feed(
        wire.encode_ok(wire.ADD, 1)
        + wire.encode_ok(wire.READ, 2, entries=[b"x", b"yy"])
        + wire.encode_ok(wire.READ_LAST, 3, entry_id=-1)
        + wire.encode_ok(wire.FENCE, 4, entry_id=41)
        + wire.encode_error(wire.ADD, 5, wire.status_of(LedgerFencedError("fenced")), "ledger 7 is fenced")
    )
    add, read, last, fence, error = (wire.decode_response(f) for f in frames)
    assert add.status == wire.OK and add.request_id == 1
    assert read.entries == (b"x", b"yy")
    assert last.entry_id == -1 and fence.entry_id == 41
    assert error.status != wire.OK and error.reason == "ledger 7 is fenced"
    assert isinstance(wire.error_for(error.status, error.reason), LedgerFencedError)


@pytest.mark.parametrize(
    "exc", [NoSuchLedgerError("x"), NoSuchEntryError("x"), LedgerFencedError("x"), DiskFullError("x"),
            CorruptedDataError("x"), StorageError("x")],
)
def test_each_storage_error_crosses_the_wire_as_its_own_class(exc):
    assert type(wire.error_for(wire.status_of(exc), "r")) is type(exc)


def test_value_errors_are_bad_requests():
    assert wire.status_of(ValueError("bad id")) == wire.BAD_REQUEST
    assert isinstance(wire.error_for(wire.BAD_REQUEST, "r"), wire.BookieProtocolError)


def test_a_frame_over_the_limit_is_refused_from_its_length_alone():
    splitter = wire.FrameSplitter(max_frame=1000)
    with pytest.raises(wire.BookieProtocolError, match="over the 1000 allowed"):
        splitter.feed(struct.pack(">I", 1001))
    with pytest.raises(wire.BookieProtocolError):
        wire.encode_add(1, 7, 0, [b"x" * wire.MAX_FRAME])


@pytest.mark.parametrize(
    "frame, match",
    [
        (b"\x01", "shorter than its header"),
        (struct.pack(">BQ", 99, 1) + b"\x00" * 8, "unknown request op 99"),
        (struct.pack(">BQ", wire.READ, 1) + b"\x00" * 5, "truncated"),
        (struct.pack(">BQ", wire.FENCE, 1) + b"\x00" * 9, "unexpected bytes"),
        (struct.pack(">BQQQBI", wire.ADD, 1, 7, 0, 0, 0), "ADD of 0 entries"),
        (struct.pack(">BQQQBI", wire.ADD, 1, 7, 0, 0, 2) + struct.pack(">I", 1) + b"a", "truncated"),
        (struct.pack(">BQQQBI", wire.ADD, 1, 7, 0, 0, 1) + struct.pack(">I", 50) + b"a", "runs past"),
        (struct.pack(">BQQQBI", wire.ADD, 1, 7, 0, 0, 1) + struct.pack(">I", 1) + b"ab", "left over"),
        (struct.pack(">BQQQBI", wire.ADD, 1, 7, 0, 4, 1) + struct.pack(">I", 1) + b"a", "flags"),
    ],
)
def test_malformed_requests_are_protocol_errors(frame, match):
    with pytest.raises(wire.BookieProtocolError, match=match):
        wire.decode_request(frame)
