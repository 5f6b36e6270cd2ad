"""Micro-benchmark of the codec hot paths against protobuf-object equivalents (not a test).

Run from the repository root: /work/venv/bin/python -m tests.protocol.bench_codec
"""

from __future__ import annotations

import time

from taureau.protocol import (
    FrameDecoder,
    append_message,
    encode_command,
    encode_message,
    encode_payload_command,
    encode_send_receipt,
    parse_entry,
    pb,
)
from tests.protocol.protocol_helpers import flow_frame, make_entry, send_frame


def per_call_us(fn, n: int = 200_000) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def protobuf_message(entry: bytes) -> bytes:
    cmd = pb.BaseCommand(type=pb.BaseCommand.MESSAGE)
    cmd.message.consumer_id = 3
    cmd.message.message_id.ledgerId = 10
    cmd.message.message_id.entryId = 2_000_000
    return encode_payload_command(cmd, entry)


def protobuf_receipt() -> bytes:
    cmd = pb.BaseCommand(type=pb.BaseCommand.SEND_RECEIPT)
    cmd.send_receipt.producer_id = 1
    cmd.send_receipt.sequence_id = 5000
    cmd.send_receipt.highest_sequence_id = 5000
    cmd.send_receipt.message_id.ledgerId = 10
    cmd.send_receipt.message_id.entryId = 2_000_000
    return encode_command(cmd)


def main() -> None:
    entry = make_entry(b"x" * 100)
    batch_entry = make_entry(b"x" * 500, num_messages_in_batch=10, compression=pb.LZ4, uncompressed_size=900)
    print(f"parse_entry (single)           {per_call_us(lambda: parse_entry(entry)):.2f} us")
    print(f"parse_entry (batch, LZ4)       {per_call_us(lambda: parse_entry(batch_entry)):.2f} us")
    fast = per_call_us(lambda: encode_message(3, 10, 2_000_000, -1, 0, entry))
    slow = per_call_us(lambda: protobuf_message(entry))
    print(
        f"encode_message                 {fast:.2f} us  (protobuf objects {slow:.2f} us, x{slow / fast:.1f})"
    )
    buf = bytearray()
    appended = per_call_us(lambda: append_message(buf, 3, 10, 2_000_000, -1, 0, entry), n=50_000)
    print(f"append_message                 {appended:.2f} us")
    fast = per_call_us(lambda: encode_send_receipt(1, 5000, 5000, 10, 2_000_000))
    slow = per_call_us(protobuf_receipt)
    print(
        f"encode_send_receipt            {fast:.2f} us  (protobuf objects {slow:.2f} us, x{slow / fast:.1f})"
    )
    for name, frame in (("SEND", send_frame(entry)), ("FLOW", flow_frame())):
        chunk = frame * 1000
        decoder = FrameDecoder()
        us = per_call_us(lambda chunk=chunk, decoder=decoder: decoder.feed(chunk), n=30) / 1000
        print(f"FrameDecoder {name} frames        {us:.2f} us/frame ({1 / us:.2f} M frames/s)")


if __name__ == "__main__":
    main()
