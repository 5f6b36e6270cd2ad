"""What compaction keeps of each entry (broker.compaction.keys), on entry bytes alone."""

from __future__ import annotations

import struct
import zlib

from taureau.broker.compaction import keys
from taureau.protocol import encode_entry, iter_batch, parse_metadata, pb
from taureau.storage.position import Position


def single(key: str | None, body: bytes, null: bool = False) -> bytes:
    meta = pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1)
    if key is not None:
        meta.partition_key = key
    if null:
        meta.null_value = True
    return encode_entry(meta, body)


def batch(records: list[tuple[str | None, bytes]], compressed: bool = False) -> bytes:
    payload = b""
    for key, body in records:
        smm = pb.SingleMessageMetadata(payload_size=len(body))
        if key is not None:
            smm.partition_key = key
        raw = smm.SerializeToString()
        payload += struct.pack(">I", len(raw)) + raw + body
    meta = pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1, num_messages_in_batch=len(records))
    if compressed:
        meta.compression = pb.ZLIB
        meta.uncompressed_size = len(payload)
        payload = zlib.compress(payload)
    return encode_entry(meta, payload)


def compact(entries: list[bytes]) -> list[tuple[Position, bytes]]:
    latest: dict[str, keys.MessageRef] = {}
    positions = [Position(1, i) for i in range(len(entries))]
    for position, data in zip(positions, entries, strict=True):
        keys.fold(latest, position, data)
    out = []
    for position, data in zip(positions, entries, strict=True):
        kept = keys.kept(latest, position, data)
        if kept is not None:
            out.append((position, kept))
    return out


def test_the_last_value_of_a_key_wins_and_unkeyed_messages_go():
    kept = compact([single("a", b"1"), single(None, b"x"), single("a", b"2"), single("b", b"1")])
    assert [p.entry_id for p, _ in kept] == [2, 3]


def test_an_empty_payload_or_null_value_removes_the_key():
    kept = compact([single("a", b"1"), single("b", b"1"), single("a", b""), single("b", b"z", null=True)])
    assert kept == []
    assert [p.entry_id for p, _ in compact([single("a", b""), single("a", b"back")])] == [1]


def test_a_batch_keeps_its_winners_rebuilt_uncompressed():
    for compressed in (False, True):
        first = batch([("a", b"1"), ("b", b"1"), (None, b"n"), ("c", b"1")], compressed)
        kept = compact([first, single("b", b"2")])
        (position, data), _ = kept
        assert position == Position(1, 0)
        meta, offset = parse_metadata(data)
        assert meta.num_messages_in_batch == 2 and meta.compression == pb.NONE
        bodies = [(smm.partition_key, body) for smm, body in iter_batch(data[offset:], 2)]
        assert bodies == [("a", b"1"), ("c", b"1")]


def test_a_batch_whose_messages_all_won_is_kept_byte_for_byte():
    whole = batch([("a", b"1"), ("b", b"1")], compressed=True)
    assert compact([whole]) == [(Position(1, 0), whole)]


def test_unreadable_entries_are_left_out():
    assert compact([b"\x00\x00\x00\x05junk", single("a", b"1")]) == [(Position(1, 1), single("a", b"1"))]
