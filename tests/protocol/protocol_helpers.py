"""Shared builders for the protocol tests: frames and entries made with the generated classes."""

from __future__ import annotations

from taureau.protocol import encode_command, encode_entry, encode_payload_command, pb


def make_entry(payload: bytes = b"hello", checksum: bool = True, **fields) -> bytes:
    meta = pb.MessageMetadata(producer_name="standalone-0-1", sequence_id=7, publish_time=1_700_000_000_000)
    for name, value in fields.items():
        setattr(meta, name, value)
    return encode_entry(meta, payload, checksum=checksum)


def send_frame(entry: bytes, producer_id: int = 1, sequence_id: int = 7) -> bytes:
    cmd = pb.BaseCommand(
        type=pb.BaseCommand.SEND, send=pb.CommandSend(producer_id=producer_id, sequence_id=sequence_id)
    )
    return encode_payload_command(cmd, entry)


def flow_frame(consumer_id: int = 1, permits: int = 1000) -> bytes:
    return encode_command(
        pb.BaseCommand(
            type=pb.BaseCommand.FLOW, flow=pb.CommandFlow(consumer_id=consumer_id, messagePermits=permits)
        )
    )


def ping_frame() -> bytes:
    cmd = pb.BaseCommand(type=pb.BaseCommand.PING)
    cmd.ping.SetInParent()
    return encode_command(cmd)


def mixed_stream() -> tuple[bytes, list[bytes]]:
    """A byte stream of assorted frames and the stored-entry payloads of its SEND frames."""
    entries = [make_entry(b"a" * n, checksum=n % 2 == 0) for n in (0, 1, 127, 128, 5000)]
    frames = [flow_frame(), ping_frame()]
    for i, entry in enumerate(entries):
        frames.append(send_frame(entry, sequence_id=i))
        frames.append(flow_frame(consumer_id=i, permits=i + 1))
    return b"".join(frames), entries
