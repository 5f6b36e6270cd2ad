"""Hand-assembled MESSAGE and SEND_RECEIPT frames: the broker's two per-entry hot paths."""

from __future__ import annotations

import struct

# These encoders write protobuf bytes directly instead of building a BaseCommand per entry.
# Field order and presence match what the generated classes emit for the same values, which
# tests/protocol checks byte for byte. Byte grammar (protobuf wire format, tag = field<<3|wire):
#
#   MESSAGE frame      := total:u32 cmd_size:u32 base entry
#   base               := 08 09                      BaseCommand.type = MESSAGE (9)
#                         4a len(msg) msg            BaseCommand.message (field 9, bytes)
#   msg                := 08 varint(consumer_id)
#                         12 len(mid) mid            CommandMessage.message_id (field 2)
#                         [18 varint(redelivery_count)]   only when > 0
#   mid                := 08 varint(ledger_id) 10 varint(entry_id)
#                         [18 varint(partition)]     only when partition >= 0
#   entry              := the stored payload section, verbatim (see framing.py)
#
#   SEND_RECEIPT frame := total:u32 cmd_size:u32 base
#   base               := 08 07 3a len(rcpt) rcpt    BaseCommand.type = SEND_RECEIPT (7), field 7
#   rcpt               := 08 varint(producer_id) 10 varint(sequence_id)
#                         1a len(mid) mid            message_id (field 3), mid without partition
#                         20 varint(highest_sequence_id)
#
# uint64 fields take Python ints; -1 is written as 0xFFFFFFFFFFFFFFFF, as Pulsar does for
# "earliest"/"none" ids. Lengths of nested messages here are always < 128, so one byte each.

_U64_MASK = 0xFFFFFFFFFFFFFFFF
_SIZES = struct.Struct(">II")
_pack_sizes = _SIZES.pack
# Ids below 2**14 (producer/consumer ids, early sequence and entry ids) are table lookups;
# the table costs about 0.7 MB and saves the per-byte loop on almost every field.
_SMALL = [bytes((i,)) for i in range(128)]
_TWO_BYTE = _SMALL + [bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(128, 1 << 14)]
_MINUS_ONE = b"\xff" * 9 + b"\x01"  # uint64 0xFFFFFFFFFFFFFFFF: "earliest", "no request"


def uvarint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (negative ints wrap to uint64 first)."""
    if 0 <= value < 0x4000:
        return _TWO_BYTE[value]
    if 0 < value < 0x10000000:
        if value < 0x200000:
            return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
        return bytes(
            ((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, ((value >> 14) & 0x7F) | 0x80, value >> 21)
        )
    value &= _U64_MASK
    if value == _U64_MASK:
        return _MINUS_ONE
    out = []
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _message_command(
    consumer_id: int,
    ledger_id: int,
    entry_id: int,
    partition: int,
    redelivery: int,
    ack_set: tuple[int, ...] = (),
) -> bytes:
    mid = b"\x08" + uvarint(ledger_id) + b"\x10" + uvarint(entry_id)
    if partition >= 0:
        mid += b"\x18" + uvarint(partition)
    msg = b"\x08" + uvarint(consumer_id) + b"\x12" + _SMALL[len(mid)] + mid
    if redelivery > 0:
        msg += b"\x18" + uvarint(redelivery)
    if ack_set:
        # CommandMessage.ack_set (field 4, repeated int64): the batch indexes not acked yet.
        msg += b"".join(b"\x20" + uvarint(word) for word in ack_set)
        return b"\x08\x09\x4a" + uvarint(len(msg)) + msg
    return b"\x08\x09\x4a" + _SMALL[len(msg)] + msg


def encode_message(
    consumer_id: int, ledger_id: int, entry_id: int, partition: int, redelivery_count: int, entry: bytes
) -> bytes:
    """A complete MESSAGE frame delivering one stored entry (partition -1: not partitioned)."""
    cmd = _message_command(consumer_id, ledger_id, entry_id, partition, redelivery_count)
    return _pack_sizes(4 + len(cmd) + len(entry), len(cmd)) + cmd + entry


def message_head(
    consumer_id: int,
    ledger_id: int,
    entry_id: int,
    partition: int,
    redelivery_count: int,
    entry_size: int,
    ack_set: tuple[int, ...] = (),
) -> bytes:
    """A MESSAGE frame up to its entry (sizes and command): the entry's bytes follow it."""
    cmd = _message_command(consumer_id, ledger_id, entry_id, partition, redelivery_count, ack_set)
    return _pack_sizes(4 + len(cmd) + entry_size, len(cmd)) + cmd


def append_message(
    buf: bytearray,
    consumer_id: int,
    ledger_id: int,
    entry_id: int,
    partition: int,
    redelivery_count: int,
    entry: bytes,
    ack_set: tuple[int, ...] = (),
) -> None:
    """Append a MESSAGE frame to `buf`, so many frames leave in one socket write; `ack_set`
    (a partly acknowledged batch) tells the client which of its messages are still due."""
    buf += message_head(consumer_id, ledger_id, entry_id, partition, redelivery_count, len(entry), ack_set)
    buf += entry


def _receipt_command(
    producer_id: int, sequence_id: int, highest: int, ledger_id: int, entry_id: int
) -> bytes:
    mid = b"\x08" + uvarint(ledger_id) + b"\x10" + uvarint(entry_id)
    rcpt = (
        b"\x08"
        + uvarint(producer_id)
        + b"\x10"
        + uvarint(sequence_id)
        + b"\x1a"
        + _SMALL[len(mid)]
        + mid
        + b"\x20"
        + uvarint(highest)
    )
    return b"\x08\x07\x3a" + _SMALL[len(rcpt)] + rcpt


def encode_send_receipt(
    producer_id: int, sequence_id: int, highest_sequence_id: int, ledger_id: int, entry_id: int
) -> bytes:
    """A complete SEND_RECEIPT frame acknowledging one persisted entry."""
    cmd = _receipt_command(producer_id, sequence_id, highest_sequence_id, ledger_id, entry_id)
    return _pack_sizes(4 + len(cmd), len(cmd)) + cmd


def append_send_receipt(
    buf: bytearray,
    producer_id: int,
    sequence_id: int,
    highest_sequence_id: int,
    ledger_id: int,
    entry_id: int,
) -> None:
    """Append a SEND_RECEIPT frame to `buf` (coalesced writes)."""
    cmd = _receipt_command(producer_id, sequence_id, highest_sequence_id, ledger_id, entry_id)
    buf += _pack_sizes(4 + len(cmd), len(cmd))
    buf += cmd
