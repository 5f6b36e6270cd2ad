"""What a client can make a standalone broker hold: RSS under the memory attacks of issue 7.

Each attack runs against a fresh `taureau standalone` and reports the broker's RSS before,
at the peak while the attack runs, and after the attacking connections closed:

- half-frames: 200 connections that never send CONNECT, each sending half of a 5 MB frame;
- pipelined-sends: one producer pipelining 1 MiB SENDs without reading its receipts;
- unread-replies: one connection sending PINGs without reading the PONGs;
- idle-backlogs: 20 topics, each with a subscription that never reads, 48 MiB published to each.

    python bench/memory_attacks.py                 # every attack
    python bench/memory_attacks.py half-frames     # one
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taureau.protocol import encode_command, pb  # noqa: E402
from tests.e2e.harness import RssPeak, Standalone  # noqa: E402
from tests.e2e.raw import RawClient, command, entry, metadata  # noqa: E402

T = pb.BaseCommand.Type
MiB = 1024 * 1024


def half_frames(server: Standalone) -> None:
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", server.broker_port))
        try:
            s.sendall(struct.pack(">II", 5_000_000, 4) + b"\0" * 2_500_000)
        except OSError:
            pass  # the broker closed it: that is the defence
        socks.append(s)
    time.sleep(1.0)
    for s in socks:
        s.close()


def pipelined_sends(server: Standalone, total_mib: int = 1000) -> None:
    raw = RawClient(server.broker_port, timeout=60)
    assert raw.producer("persistent://public/default/pipelined").type == T.PRODUCER_SUCCESS
    body = b"x" * (MiB - 200)
    for seq in range(total_mib):
        raw.publish(entry(body, seq), seq)  # never reads a receipt
    time.sleep(1.0)
    raw.close()


def unread_replies(server: Standalone, pings: int = 5_000_000) -> None:
    raw = RawClient(server.broker_port, timeout=60)
    ping = encode_command(command(T.PING, "ping"))
    chunk = ping * 100_000
    raw.sock.settimeout(5)
    try:
        for _ in range(pings // 100_000):
            raw.sock.sendall(chunk)
    except OSError:
        pass  # the broker stopped reading: sendall times out
    time.sleep(1.0)
    raw.close()


def idle_backlogs(server: Standalone, topics: int = 20, mib_each: int = 48) -> None:
    body = b"y" * (MiB - 200)
    for t in range(topics):
        topic = f"persistent://public/default/backlog-{t}"
        with RawClient(server.broker_port, timeout=60) as raw:
            raw.send(
                command(
                    T.SUBSCRIBE,
                    "subscribe",
                    topic=topic,
                    subscription="idle",
                    subType=pb.CommandSubscribe.Shared,
                    consumer_id=1,
                    request_id=9,
                )
            )
            raw.expect(T.SUCCESS)
            assert raw.producer(topic).type == T.PRODUCER_SUCCESS
            for seq in range(mib_each):
                raw.publish(entry(body, seq, metadata(seq)), seq)
            raw.replies(mib_each, timeout=60)


ATTACKS = {
    "half-frames": half_frames,
    "pipelined-sends": pipelined_sends,
    "unread-replies": unread_replies,
    "idle-backlogs": idle_backlogs,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("attacks", nargs="*", help=f"some of {', '.join(ATTACKS)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.attacks) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attack(s): {', '.join(sorted(unknown))}")
    for name in args.attacks or ATTACKS:
        server = Standalone(Path(tempfile.mkdtemp(prefix="taureau-attack-")), "--no-journal-fsync").start()
        try:
            time.sleep(0.5)
            before = server.rss_mib()
            peak = RssPeak(server)
            try:
                ATTACKS[name](server)
            except Exception:
                code = server.proc.poll()
                print(f"broker exit code {code}:", "".join(server.output[-30:]), file=sys.stderr)
                raise
            top = peak.stop()
            time.sleep(7.0)  # the broker trims its heap 5 s after a connection closes
            after = server.rss_mib()
            print(
                f"{name:16s} RSS before {before:7.0f} MiB, peak {top:7.0f} MiB, after {after:7.0f} MiB",
                flush=True,
            )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
