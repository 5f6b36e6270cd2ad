"""Broker-side publish latency: SEND to SEND_RECEIPT over a raw socket, at a paced rate.

The official Python client hands every send callback from its C++ I/O thread to Python
through the GIL, which adds milliseconds under load; this probe speaks the wire protocol
directly (taureau.protocol) from one asyncio loop, so what it measures is the broker: frame
decoding, the managed ledger, the journal's group commit (fsync) and the receipt.

    python bench/publish_latency.py                  # starts its own standalone, 10k msgs/s
    python bench/publish_latency.py --rate 20000 --seconds 10
    python bench/publish_latency.py --url 127.0.0.1:6650   # against a running broker
    python bench/publish_latency.py --receive        # also send -> receive, through a raw consumer

With --receive a consumer on a second connection of the same loop takes every message (an
exclusive subscription, permits topped up every 500 messages and a cumulative ACK every
100 ms, as the official clients do by default) and the report adds send -> receive: the
broker's share of the end-to-end latency the Python client cannot show apart from its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers.loop_report import loop_report  # noqa: E402

from taureau.protocol import FrameDecoder, encode_command, encode_payload_command, pb  # noqa: E402
from taureau.protocol.metadata import encode_entry, parse_entry  # noqa: E402

T = pb.BaseCommand.Type


def _command(kind: int, field: str, **values) -> bytes:
    return encode_command(pb.BaseCommand(type=kind, **{field: values}))


# A consumer's receiver queue, as the official clients': permits are topped up by half of it.
RECEIVER_QUEUE = 1000
ACK_EVERY_S = 0.1  # the clients' default acknowledgment grouping


class Receiver:
    """A raw-protocol consumer of the probe's topic: send -> receive latency of every message."""

    def __init__(self, sent_at: dict[int, float]) -> None:
        self.sent_at = sent_at  # sequence id -> perf_counter at send (the producer's, shared)
        self.latencies: list[float] = []
        self.subscribed = asyncio.get_running_loop().create_future()
        self._decoder = FrameDecoder()
        self._last: tuple[int, int] | None = None  # (ledger, entry) to acknowledge next
        self._unflowed = 0

    async def run(self, host: str, port: int, topic: str) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(_command(T.CONNECT, "connect", client_version="latency-probe", protocol_version=20))
        writer.write(_command(T.SUBSCRIBE, "subscribe", topic=topic, subscription="probe", subType=0,
                              consumer_id=1, request_id=1))  # fmt: skip
        acker = asyncio.create_task(self._ack_now_and_then(writer))
        try:
            while data := await reader.read(1 << 16):
                now = time.perf_counter()
                for frame in self._decoder.feed(data):
                    self._on_frame(frame, now, writer)
        finally:
            acker.cancel()
            writer.close()

    def _on_frame(self, frame, now: float, writer: asyncio.StreamWriter) -> None:
        kind = frame.command.type
        if kind == T.MESSAGE:
            sent = self.sent_at.get(parse_entry(frame.payload).sequence_id)
            if sent is not None:
                self.latencies.append((now - sent) * 1000)
            mid = frame.command.message.message_id
            self._last = (mid.ledgerId, mid.entryId)
            self._unflowed += 1
            if self._unflowed >= RECEIVER_QUEUE // 2:
                writer.write(_command(T.FLOW, "flow", consumer_id=1, messagePermits=self._unflowed))
                self._unflowed = 0
        elif kind == T.SUCCESS and not self.subscribed.done():
            # Permits only now: a FLOW for a consumer the broker has not finished adding is
            # dropped (as Pulsar's clients do, they send it once the SUBSCRIBE succeeded).
            writer.write(_command(T.FLOW, "flow", consumer_id=1, messagePermits=RECEIVER_QUEUE))
            self.subscribed.set_result(None)
        elif kind == T.ERROR and not self.subscribed.done():
            self.subscribed.set_exception(RuntimeError(frame.command.error.message))

    async def _ack_now_and_then(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(ACK_EVERY_S)
            if self._last is not None:
                ack = pb.CommandAck(consumer_id=1, ack_type=pb.CommandAck.Cumulative)
                ack.message_id.add(ledgerId=self._last[0], entryId=self._last[1])
                writer.write(encode_command(pb.BaseCommand(type=T.ACK, ack=ack)))
                self._last = None


async def probe(
    host: str, port: int, rate: int, seconds: float, size: int, receive: bool = False
) -> tuple[list[float], list[float], list[float]]:
    """Latencies in ms of every message sent at `rate` per second for `seconds`, and when each
    was sent (seconds into the run, same order); with `receive`, also each one's send ->
    receive latency through a consumer (in the order they arrived)."""
    reader, writer = await asyncio.open_connection(host, port)
    decoder = FrameDecoder()
    pending: dict[int, float] = {}
    sent_at: dict[int, float] = {}  # every send, kept for the receiver
    latencies: list[float] = []
    sent_offsets: list[float] = []
    start = 0.0  # set when the clock starts
    ready = asyncio.get_running_loop().create_future()
    topic = f"latency-probe-{time.time_ns()}"
    receiver = Receiver(sent_at) if receive else None
    consuming = None
    if receiver is not None:  # subscribed before the first send: it gets every message
        consuming = asyncio.create_task(receiver.run(host, port, topic))
        await receiver.subscribed

    async def receive() -> None:
        while data := await reader.read(1 << 16):
            now = time.perf_counter()
            for frame in decoder.feed(data):
                kind = frame.command.type
                if kind == T.SEND_RECEIPT:
                    sent = pending.pop(frame.command.send_receipt.sequence_id, None)
                    if sent is not None:
                        latencies.append((now - sent) * 1000)
                        sent_offsets.append(sent - start)
                elif kind == T.PRODUCER_SUCCESS and not ready.done():
                    ready.set_result(frame.command.producer_success.producer_name)
                elif kind == T.ERROR and not ready.done():
                    ready.set_exception(RuntimeError(frame.command.error.message))

    receiving = asyncio.create_task(receive())
    writer.write(_command(T.CONNECT, "connect", client_version="latency-probe", protocol_version=20))
    writer.write(_command(T.PRODUCER, "producer", topic=topic, producer_id=1, request_id=1))
    name = await ready
    # Every frame is encoded before the clock starts, so the probe's own Python work per send
    # is a dict store and a write: at 20k msgs/s, encoding protobufs here would be the client's
    # queueing, not the broker's.
    payload = b"x" * size
    publish_time = int(time.time() * 1000)
    frames = [
        encode_payload_command(
            pb.BaseCommand(type=T.SEND, send=pb.CommandSend(producer_id=1, sequence_id=sequence)),
            encode_entry(
                pb.MessageMetadata(producer_name=name, sequence_id=sequence, publish_time=publish_time),
                payload,
            ),
        )
        for sequence in range(int(rate * seconds) + 1)
    ]
    interval = 1.0 / rate
    start = time.perf_counter()
    sequence = 0
    while (now := time.perf_counter()) - start < seconds and sequence < len(frames):
        due = start + sequence * interval
        if now < due:
            await asyncio.sleep(due - now)
            continue
        pending[sequence] = sent_at[sequence] = time.perf_counter()
        writer.write(frames[sequence])
        sequence += 1
    deadline = time.perf_counter() + 5
    while (pending or (receiver is not None and len(receiver.latencies) < len(sent_at))) and (
        time.perf_counter() < deadline
    ):
        await asyncio.sleep(0.01)
    receiving.cancel()
    writer.close()
    if pending:
        print(f"warning: {len(pending)} sends had no receipt within 5 s", file=sys.stderr)
    received: list[float] = []
    if receiver is not None and consuming is not None:
        consuming.cancel()
        received = receiver.latencies
        if len(received) < len(sent_at):
            print(f"warning: {len(sent_at) - len(received)} messages not received within 5 s", file=sys.stderr)
    return latencies, sent_offsets, received


def worst(latencies: list[float], sent_offsets: list[float], n: int = 5) -> str:
    """The slowest receipt of each of the n worst 100 ms windows, with when it was sent: a
    start-up stall, a periodic one (a checkpoint every 30 s) and noise spread over the run
    look different here."""
    by_window: dict[int, tuple[float, float]] = {}
    for ms, at in zip(latencies, sent_offsets, strict=True):
        window = int(at * 10)
        if ms > by_window.get(window, (0.0, 0.0))[0]:
            by_window[window] = (ms, at)
    slowest = sorted(by_window.values(), reverse=True)[:n]
    return ", ".join(f"{ms:.1f} ms at {at:.1f} s" for ms, at in slowest)


def run_queue_wait_s(pid: int) -> float:
    """Seconds the process's main thread (the event loop's) has spent ready to run but waiting
    for a CPU (/proc/<pid>/schedstat): on a shared machine, latency the broker did not cause."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def machine_note(wait_s: float, wall_s: float) -> str:
    """How starved the broker was: what to read every latency figure of a run against."""
    load = Path("/proc/loadavg").read_text().split()[0]
    return (f"the broker's loop waited for a CPU {100 * wait_s / wall_s:.0f}% of the run; "
            f"load average {load} on {os.cpu_count()} CPUs")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="host:port of a running broker (default: start one)")
    parser.add_argument("--admin-url", help="its admin URL, for the loop-lag report (default: none with --url)")
    parser.add_argument("--rate", type=int, default=10_000, help="messages per second (default 10000)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=100, help="payload bytes (default 100)")
    parser.add_argument("--no-fsync", action="store_true", help="start the broker with --no-journal-fsync")
    parser.add_argument("--receive", action="store_true", help="also measure send -> receive through a consumer")
    args = parser.parse_args()
    server = None
    admin_url = args.admin_url
    if args.url:
        host, port = args.url.rsplit(":", 1)
    else:
        from tests.e2e.harness import Standalone

        extra = ["--no-journal-fsync"] if args.no_fsync else []
        server = Standalone(workdir := Path(tempfile.mkdtemp(prefix="taureau-latency-")), *extra).start()
        host, port = "127.0.0.1", str(server.broker_port)
        admin_url = server.admin_url
    pid = server.proc.pid if server is not None and server.proc is not None else None
    try:
        waited, began = run_queue_wait_s(pid) if pid else 0.0, time.perf_counter()
        cpu_before = process_cpu_s(pid) if pid else 0.0
        latencies, sent_offsets, received = asyncio.run(
            probe(host, int(port), args.rate, args.seconds, args.size, args.receive)
        )
        cpu_used = process_cpu_s(pid) - cpu_before if pid else None
        note = machine_note(run_queue_wait_s(pid) - waited, time.perf_counter() - began) if pid else None
        report = loop_report(admin_url) if admin_url else None
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    achieved = len(latencies) / args.seconds
    print(
        f"{len(latencies)} receipts, {achieved:,.0f} msgs/s offered {args.rate:,}/s, "
        f"fsync {'off' if args.no_fsync else 'on'}: "
        f"p50 {statistics.median(latencies):.2f} ms, p99 {percentile(latencies, 99):.2f} ms, "
        f"max {max(latencies):.2f} ms"
    )
    if latencies:
        print(f"  p99.9 {percentile(latencies, 99.9):.2f} ms; slowest per 100 ms: {worst(latencies, sent_offsets)}")
    if received:
        print(
            f"  send -> receive ({len(received)} messages): p50 {statistics.median(received):.2f} ms, "
            f"p99 {percentile(received, 99):.2f} ms, p99.9 {percentile(received, 99.9):.2f} ms, "
            f"max {max(received):.2f} ms"
        )
    if cpu_used is not None and latencies:
        print(f"  broker CPU: {cpu_used:.2f} s, {1e6 * cpu_used / len(latencies):.1f} us per message "
              "(all its threads)")
    if report:
        print("  broker: " + report)
    if note:
        print("  machine: " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
