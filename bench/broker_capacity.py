"""The broker's own batched capacity, with clients that cost almost nothing per message.

The official Python client spends several microseconds of Python per message, so on 2 cores it,
not the broker, sets the pace (docs/performance.md). This benchmark drives the broker over the
raw protocol (taureau.protocol) with entries built once up front: each producer process sends
the same pre-encoded batch entry (N messages of 100 bytes, as a batching client would) with a
window of sends in flight; each consumer process subscribes, grants large permits and counts
messages from each entry's metadata, acknowledging cumulatively. It reports end-to-end
messages/s and the broker's CPU, so the result is what the broker sustains.

    python bench/broker_capacity.py                     # starts its own standalone (fsync on)
    python bench/broker_capacity.py --pairs 2 --batch 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taureau.protocol import FrameDecoder, encode_command, encode_payload_command, pb, split_batch  # noqa: E402
from taureau.protocol.metadata import encode_entry, parse_entry  # noqa: E402

T = pb.BaseCommand.Type


def _cmd(kind: int, field: str, **values) -> bytes:
    return encode_command(pb.BaseCommand(type=kind, **{field: values}))


def _connect(port: int) -> tuple[socket.socket, FrameDecoder]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_cmd(T.CONNECT, "connect", client_version="capacity-bench", protocol_version=20))
    return sock, FrameDecoder(64 * 1024 * 1024)


def _await(sock: socket.socket, decoder: FrameDecoder, kind: int) -> pb.BaseCommand:
    while True:
        for frame in decoder.feed(sock.recv(1 << 20)):
            if frame.command.type == kind:
                return frame.command
            if frame.command.type == T.ERROR:
                raise RuntimeError(frame.command.error.message)


def batch_entry(producer_name: str, messages: int, size: int) -> bytes:
    """One batch entry as a batching client builds it: N single-message records."""
    record = pb.SingleMessageMetadata(payload_size=size).SerializeToString()
    one = len(record).to_bytes(4, "big") + record + b"x" * size
    meta = pb.MessageMetadata(
        producer_name=producer_name,
        sequence_id=0,
        publish_time=int(time.time() * 1000),
        num_messages_in_batch=messages,
    )
    return encode_entry(meta, one * messages)


def produce(port: int, topic: str, batch: int, size: int, seconds: float, window: int, start, out) -> None:
    sock, decoder = _connect(port)
    _await(sock, decoder, T.CONNECTED)
    sock.sendall(_cmd(T.PRODUCER, "producer", topic=topic, producer_id=1, request_id=1))
    name = _await(sock, decoder, T.PRODUCER_SUCCESS).producer_success.producer_name
    entry = batch_entry(name, batch, size)
    assert len(split_batch(entry)) == batch
    start.wait()
    deadline = time.monotonic() + seconds
    sent = acked = 0
    while time.monotonic() < deadline:
        frames = []
        while sent - acked < window:
            send = pb.BaseCommand(
                type=T.SEND, send=pb.CommandSend(producer_id=1, sequence_id=sent * batch, num_messages=batch)
            )
            frames.append(encode_payload_command(send, entry))
            sent += 1
        if frames:
            sock.sendall(b"".join(frames))
        for frame in decoder.feed(sock.recv(1 << 20)):
            if frame.command.type == T.SEND_RECEIPT:
                acked += 1
    out.put(("produced", acked * batch))
    sock.close()


def consume(port: int, topic: str, seconds: float, start, out) -> None:
    sock, decoder = _connect(port)
    _await(sock, decoder, T.CONNECTED)
    sock.sendall(
        _cmd(
            T.SUBSCRIBE,
            "subscribe",
            topic=topic,
            subscription="capacity",
            subType=0,
            consumer_id=1,
            request_id=1,
            consumer_name="c",
            initialPosition=1,
        )  # fmt: skip
    )
    _await(sock, decoder, T.SUCCESS)
    sock.sendall(_cmd(T.FLOW, "flow", consumer_id=1, messagePermits=1_000_000))
    start.wait()
    deadline = time.monotonic() + seconds
    received = since_flow = 0
    last = None
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(1 << 22)
        except TimeoutError:
            break
        for frame in decoder.feed(data):
            if frame.command.type != T.MESSAGE:
                continue
            count = parse_entry(frame.payload).num_messages
            received += count
            since_flow += count
            last = frame.command.message.message_id
        if since_flow >= 500_000 and last is not None:
            ack = pb.CommandAck(consumer_id=1, ack_type=pb.CommandAck.Cumulative)
            ack.message_id.add(ledgerId=last.ledgerId, entryId=last.entryId)
            sock.sendall(
                encode_command(pb.BaseCommand(type=T.ACK, ack=ack))
                + _cmd(T.FLOW, "flow", consumer_id=1, messagePermits=since_flow)
            )
            since_flow = 0
    out.put(("consumed", received))
    sock.close()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=1, help="producer/consumer process pairs (one topic each)"
    )
    parser.add_argument("--batch", type=int, default=1000, help="messages per batch entry (default 1000)")
    parser.add_argument("--size", type=int, default=100, help="bytes per message (default 100)")
    parser.add_argument("--window", type=int, default=16, help="entries in flight per producer")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()

    from tests.e2e.harness import Standalone

    extra = ["--no-journal-fsync"] if args.no_fsync else []
    server = Standalone(Path(tempfile.mkdtemp(prefix="taureau-capacity-")), *extra).start()
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = []
    try:
        for pair in range(args.pairs):
            topic = f"persistent://public/default/capacity-{pair}"
            procs.append(
                ctx.Process(target=consume, args=(server.broker_port, topic, args.seconds, start, out))
            )
            procs.append(
                ctx.Process(
                    target=produce,
                    args=(
                        server.broker_port,
                        topic,
                        args.batch,
                        args.size,
                        args.seconds,
                        args.window,
                        start,
                        out,
                    ),
                )
            )
        for proc in procs:
            proc.start()
        time.sleep(2.0)  # connect, subscribe, warm up
        ticks = cpu_ticks(server.proc.pid)
        began = time.monotonic()
        start.set()
        results = [out.get(timeout=args.seconds + 60) for _ in procs]
        elapsed = time.monotonic() - began
        broker_cpu = (cpu_ticks(server.proc.pid) - ticks) / 100 / elapsed
        for proc in procs:
            proc.join(10)
    finally:
        server.stop()
    produced = sum(n for kind, n in results if kind == "produced")
    consumed = sum(n for kind, n in results if kind == "consumed")
    print(
        f"{args.pairs} pair(s), {args.batch} x {args.size} B per entry, fsync {'off' if args.no_fsync else 'on'}: "
        f"produced {produced / args.seconds:,.0f} msgs/s, end to end {consumed / args.seconds:,.0f} msgs/s, "
        f"broker CPU {broker_cpu:.0%} of one core"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
