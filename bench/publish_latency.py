"""Broker-side publish latency: SEND to SEND_RECEIPT over a raw socket, at a paced rate.

The official Python client hands every send callback from its C++ I/O thread to Python
through the GIL, which adds milliseconds under load; this probe speaks the wire protocol
directly (taureau.protocol) from one asyncio loop, so what it measures is the broker: frame
decoding, the managed ledger, the journal's group commit (fsync) and the receipt.

    python bench/publish_latency.py                  # starts its own standalone, 10k msgs/s
    python bench/publish_latency.py --rate 20000 --seconds 10
    python bench/publish_latency.py --url 127.0.0.1:6650   # against a running broker
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
from taureau.protocol.metadata import encode_entry  # noqa: E402

T = pb.BaseCommand.Type


def _command(kind: int, field: str, **values) -> bytes:
    return encode_command(pb.BaseCommand(type=kind, **{field: values}))


async def probe(host: str, port: int, rate: int, seconds: float, size: int) -> tuple[list[float], list[float]]:
    """Latencies in ms of every message sent at `rate` per second for `seconds`, and when each
    was sent (seconds into the run, same order)."""
    reader, writer = await asyncio.open_connection(host, port)
    decoder = FrameDecoder()
    pending: dict[int, float] = {}
    latencies: list[float] = []
    sent_offsets: list[float] = []
    start = 0.0  # set when the clock starts
    ready = asyncio.get_running_loop().create_future()

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

    receiver = asyncio.create_task(receive())
    writer.write(_command(T.CONNECT, "connect", client_version="latency-probe", protocol_version=20))
    writer.write(
        _command(T.PRODUCER, "producer", topic=f"latency-probe-{time.time_ns()}", producer_id=1, request_id=1)
    )
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
        pending[sequence] = time.perf_counter()
        writer.write(frames[sequence])
        sequence += 1
    deadline = time.perf_counter() + 5
    while pending and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    receiver.cancel()
    writer.close()
    if pending:
        print(f"warning: {len(pending)} sends had no receipt within 5 s", file=sys.stderr)
    return latencies, sent_offsets


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
        latencies, sent_offsets = asyncio.run(probe(host, int(port), args.rate, args.seconds, args.size))
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
