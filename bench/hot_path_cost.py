"""The broker's cost per message, counted in instructions: repeatable on a busy machine.

Wall-clock and even CPU-time figures move by tens of percent on a shared 2-core machine; an
instruction count does not. This drives the real broker objects in one process (BrokerService,
ServerConnection, the bookie with its journal thread, fsync off by default) with frames fed
straight into `data_received` and writes collected by a fake transport, so no socket, no
client process enters the count. A round is `--messages` unbatched SENDs (at least one per
topic) spread round-robin over the topics, each its own read (`--per-read` to put several in
one), fed in one loop turn as a busy broker receives them; the loop runs until every receipt
and MESSAGE is out, then each consumer acknowledges cumulatively and tops up its permits.

    python bench/hot_path_cost.py                                     # 1, 100, 1000 topics: CPU per message
    python bench/hot_path_cost.py --topics 1,1000 --callgrind --rounds 2   # instructions per message
    python bench/hot_path_cost.py --topics 1,1000 --repeat 5          # the median of 5 alternated passes

With --callgrind it runs itself twice under `valgrind --tool=callgrind` (R and 2R rounds) and
prints (I(2R) - I(R)) / (R x messages per round): the instructions of one more message, set-up
excluded. It counts the work a message causes, not the broker's once-a-second work: under
valgrind a round takes ~48x longer, so timers (each cursor's save, the per-topic rate update,
the bookie's checkpoint every 30 s, policy checks) came 48x as often per message, and whether
one fell inside the measured rounds moved the count at 1,000 topics by up to 12% between runs
of the same code. So under callgrind (HOT_PATH_TIMERS=off) cursors save once when first
acknowledged and never again, and the rate loop, the policy checks and the timed checkpoint
do not run, nor the keep-alive pings (nobody answers them here). The CPU figure (without
--callgrind) keeps every timer, at full speed. `--ack individual` acknowledges each message by
its id, as the official clients' grouped individual acks do, instead of one cumulative ACK.
To compare with other code, run it with PYTHONPATH=<its checkout>/src: this script imports
`taureau` as installed (editable: this checkout), not from a copy of the tree beside it.
The CPU figure leaves out the driver's own encoding of each round's ACKs (its thread's
CPU while it builds them; one ACK per message with 1,000 topics); the instruction count
cannot, and includes them. It also prints the objects the collector tracks per topic once
everything is set up. Every
topic count runs in a fresh process; the first count (1 topic by default) is the peer the
others are compared with, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taureau.broker import service as service_module  # noqa: E402
from taureau.broker.config import BrokerConfig  # noqa: E402
from taureau.broker.connection import ServerConnection  # noqa: E402
from taureau.broker.service import BrokerService  # noqa: E402
from taureau.net.server import install_fast_event_loop  # noqa: E402
from taureau.node import Node, tune_collector  # noqa: E402
from taureau.protocol import encode_command, encode_payload_command, pb  # noqa: E402
from taureau.protocol.metadata import encode_entry  # noqa: E402
from taureau.storage.bookie import bookie as bookie_module  # noqa: E402

try:  # as run_until_signalled does; a tree from before it had none (run against with PYTHONPATH)
    from taureau.common.memory import tune_allocator  # noqa: E402
except ImportError:
    tune_allocator = None

T = pb.BaseCommand.Type
CONNECTIONS = 8
# Under callgrind everything runs ~50x slower: set-up of 1,000 topics alone takes minutes.
SLOWDOWN = float(os.environ.get("HOT_PATH_SLOWDOWN", "1"))
# Under callgrind: no time-driven work during the rounds (see the module's docstring).
TIMERS = os.environ.get("HOT_PATH_TIMERS", "on") != "off"
NEVER_S = 1e9


def stop_timers() -> None:
    """The broker's and bookie's periodic work, off (callgrind only). The bench reaches into
    two module defaults for it: neither is a setting a server needs."""
    service_module.RATE_INTERVAL_S = NEVER_S
    bookie_module.Bookie.__init__.__kwdefaults__["checkpoint_interval_s"] = None


_MESSAGE, _RECEIPT = T.MESSAGE, T.SEND_RECEIPT
_HEAD = 10  # total_size, command_size, then the BaseCommand's type field: 08 <type>


def _cmd(kind: int, name: str, **values) -> bytes:
    return encode_command(pb.BaseCommand(type=kind, **{name: values}))


class Totals:
    """Frames written by type over every fake transport; wakes a waiter at a target (no
    spinning: a busy wait would count its own instructions)."""

    def __init__(self) -> None:
        self.counts = {_MESSAGE: 0, _RECEIPT: 0}
        self.target = 0
        self.reached: asyncio.Future[None] | None = None

    async def wait(self, target: int) -> None:
        self.target = target
        if min(self.counts.values()) < target:
            self.reached = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self.reached, 120 * SLOWDOWN)

    def add(self, kind: int) -> None:
        self.counts[kind] += 1
        reached = self.reached
        if reached is not None and not reached.done() and min(self.counts.values()) >= self.target:
            reached.set_result(None)


class FakeTransport:
    """What ServerConnection needs of a transport; counts the frames written by type.

    It reads the frames as they stream past without copying or joining what it is given: a
    transport writes a 1 MiB MESSAGE to its socket by reference, so a copy here would put page
    faults and memcpy of the bench's own into the broker's CPU per message.
    """

    def __init__(self, totals: Totals) -> None:
        self.totals = totals
        self.counts = totals.counts
        self.other: list[bytes] = []
        self.closing = False
        self._head = bytearray()  # the first bytes of the frame being read: sizes, then 08 <type>
        self._left = 0  # bytes of the current frame still to pass after its head
        self._keep: bytearray | None = None  # a frame of another type, kept whole for `other`

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data) -> None:
        with memoryview(data) as view:
            pos, end = 0, len(view)
            while pos < end:
                pos = self._body(view, pos, end) if self._left else self._frame_head(view, pos, end)

    def _frame_head(self, view: memoryview, pos: int, end: int) -> int:
        # Frames the fast-path encoders wrote start 08 <type> after the two sizes: 10 bytes.
        take = min(_HEAD - len(self._head), end - pos)
        self._head += view[pos : pos + take]
        if len(self._head) == _HEAD:
            kind = self._head[9]
            self._left = int.from_bytes(self._head[:4], "big") + 4 - _HEAD
            if kind in self.counts:
                self.totals.add(kind)
            else:
                self._keep = bytearray(self._head)
            self._head.clear()
            self._kept()
        return pos + take

    def _body(self, view: memoryview, pos: int, end: int) -> int:
        take = min(self._left, end - pos)
        if self._keep is not None:
            self._keep += view[pos : pos + take]
        self._left -= take
        self._kept()
        return pos + take

    def _kept(self) -> None:
        if not self._left and self._keep is not None:
            self.other.append(bytes(self._keep))
            self._keep = None

    def writelines(self, parts) -> None:
        for part in parts:  # parts may split a frame: the reader carries it across
            self.write(part)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True


async def wait_until(predicate, what: str, timeout: float = 120.0) -> None:
    """Set-up only (it polls)."""
    deadline = time.monotonic() + timeout * SLOWDOWN
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def socket_reads(read_size: int):
    """How a read of SENDs reaches the connection: whole (`data_received`, the default), or
    as a transport gets it from its socket, `read_size` bytes at most per read: into the
    buffers the connection lends when it is a BufferedProtocol (the copy stands for the
    kernel's), else as one new bytes object per read, as uvloop hands a plain Protocol."""
    if not read_size:
        return lambda conn, data: conn.data_received(data)

    def deliver(conn, data: bytes) -> None:
        pos, end = 0, len(data)
        lends = hasattr(conn, "get_buffer")
        with memoryview(data) as view:
            while pos < end:
                if lends:
                    buf = conn.get_buffer(-1)
                    n = min(len(buf), read_size, end - pos)
                    buf[:n] = view[pos : pos + n]
                    conn.buffer_updated(n)
                else:
                    n = min(read_size, end - pos)
                    conn.data_received(bytes(view[pos : pos + n]))
                pos += n

    return deliver


async def run(
    topics: int,
    rounds: int,
    messages: int,
    per_read: int,
    fsync: bool,
    size: int,
    read_size: int = 0,
    individual_acks: bool = False,
) -> None:
    data_dir = tempfile.mkdtemp(prefix="taureau-cost-")
    config = BrokerConfig(data_dir=data_dir, journal_fsync=fsync)
    if not TIMERS:
        stop_timers()
        config.policy_check_interval_s = 0
        # Nobody answers the keep-alive PINGs here: under callgrind a run outlasts two
        # intervals, and the broker closed the connections mid-run (the run then hung).
        config.keep_alive_interval_s = 0
    node = Node()
    store, factory = await node.open_storage(
        data_dir, None, fsync=fsync, config=config.managed_ledger,
        cache_budget_bytes=config.managed_ledger_cache_size_bytes,
        cursor_save_interval_s=config.cursor_save_interval_s if TIMERS else NEVER_S,
    )  # fmt: skip
    service = BrokerService(config, store, factory)
    await service.start()
    # As a server does once it is ready: topics come later, so the collector sees them.
    tune_collector()
    if tune_allocator is not None:
        tune_allocator()
    n_conns = min(CONNECTIONS, topics)
    totals = Totals()

    def connect() -> tuple[ServerConnection, FakeTransport]:
        conn, transport = ServerConnection(service), FakeTransport(totals)
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(_cmd(T.CONNECT, "connect", client_version="cost", protocol_version=20))
        return conn, transport

    producers = [connect() for _ in range(n_conns)]
    consumers = [connect() for _ in range(n_conns)]
    stamp = time.time_ns()
    for t in range(topics):
        topic = f"persistent://public/default/cost-{stamp}-{t}"
        consumers[t % n_conns][0].data_received(
            _cmd(T.SUBSCRIBE, "subscribe", topic=topic, subscription="s", subType=0, consumer_id=t,
                 request_id=t, consumer_name=f"c{t}", initialPosition=0)
        )  # fmt: skip
        producers[t % n_conns][0].data_received(
            _cmd(T.PRODUCER, "producer", topic=topic, producer_id=t, request_id=t)
        )
    await wait_until(
        lambda: sum(len(tr.other) for _, tr in producers) >= 2 * n_conns + topics - n_conns, "producers"
    )
    await wait_until(lambda: sum(len(tr.other) for _, tr in consumers) >= n_conns + topics, "subscriptions")
    sends = []
    for t in range(topics):
        meta = pb.MessageMetadata(producer_name=f"p{t}", sequence_id=0, publish_time=int(time.time() * 1000))
        send = pb.BaseCommand(type=T.SEND, send=pb.CommandSend(producer_id=t, sequence_id=0))
        sends.append(encode_payload_command(send, encode_entry(meta, b"x" * size)))
    per_round = max(messages, topics)
    # Message i of a round goes to topic i % topics; `per_read` consecutive SENDs of one
    # connection arrive in one read.
    by_conn: list[list[bytes]] = [[] for _ in range(n_conns)]
    for i in range(per_round):
        by_conn[i % topics % n_conns].append(sends[i % topics])
    reads = [(conn, b"".join(frames[i : i + per_read]))
             for (conn, _), frames in zip(producers, by_conn, strict=True)
             for i in range(0, len(frames), per_read)]  # fmt: skip
    for t in range(topics):  # one round's messages of each topic, and its top-up after each round
        consumers[t % n_conns][0].data_received(
            _cmd(T.FLOW, "flow", consumer_id=t, messagePermits=2 * len(range(t, per_round, topics)))
        )
    flows = [
        b"".join(
            _cmd(T.FLOW, "flow", consumer_id=t, messagePermits=len(range(t, per_round, topics)))
            for t in range(c, topics, n_conns)
        )
        for c in range(n_conns)
    ]
    tracked = len(gc.get_objects())  # not the frozen start-up heap
    deliver = socket_reads(read_size)
    acked: dict[int, int] = {}  # --ack individual: the last entry id each topic's consumer acked
    driver_cpu = 0.0  # CPU of this loop's own ACK encoding, taken out of the figure
    cpu0 = time.process_time()
    for r in range(rounds):
        for conn, chunk in reads:
            deliver(conn, chunk)
        await totals.wait((r + 1) * per_round)
        for c, (conn, _) in enumerate(consumers):
            encoding = time.thread_time()
            frames = []
            for t in range(c, topics, n_conns):
                binding = conn.session.find_consumer(t)
                assert binding is not None
                last = binding.topic.ledger.last_confirmed
                if individual_acks:  # the round's entries of this topic, each by its id
                    ack = pb.CommandAck(consumer_id=t, ack_type=pb.CommandAck.Individual)
                    for entry_id in range(acked.get(t, -1) + 1, last.entry_id + 1):
                        ack.message_id.add(ledgerId=last.ledger_id, entryId=entry_id)
                    acked[t] = last.entry_id
                else:
                    ack = pb.CommandAck(consumer_id=t, ack_type=pb.CommandAck.Cumulative)
                    ack.message_id.add(ledgerId=last.ledger_id, entryId=last.entry_id)
                frames.append(encode_command(pb.BaseCommand(type=T.ACK, ack=ack)))
            acks = b"".join(frames) + flows[c]
            # The driver's own encoding is not the broker's cost: with 1,000 topics it is one ACK
            # per message, 13 us of the 184 us a message cost before it was left out.
            driver_cpu += time.thread_time() - encoding
            conn.data_received(acks)
        await asyncio.sleep(0)
    cpu = time.process_time() - cpu0 - driver_cpu
    total = rounds * per_round
    print(
        f"{topics} topics x {rounds} rounds of {per_round} messages, {per_read} SEND(s) per read: "
        f"{1e6 * cpu / total:.1f} us CPU per message of {size:,} bytes (this process, all threads); "
        f"collector tracks {tracked:,} objects ({tracked / topics:,.1f} per topic)",
        flush=True,
    )
    await service.close()
    await node.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def instructions(argv: list[str]) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            *argv,
            "--one",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0", "HOT_PATH_SLOWDOWN": "100", "HOT_PATH_TIMERS": "off"},
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None or out.returncode != 0:  # a failed run counts instructions too
        raise SystemExit(f"callgrind failed:\n{out.stderr[-2000:]}")
    print("   " + out.stdout.strip().replace("\n", "\n   "), flush=True)
    return int(found[1])


def one_count(topics: int, args: argparse.Namespace) -> float:
    """Run one topic count in a fresh process (its own collector state); its cost per message
    (us of CPU, or instructions with --callgrind)."""
    base = ["--topics", str(topics), "--messages", str(args.messages), "--per-read", str(args.per_read)]
    base += ["--size", str(args.size), "--read-size", str(args.read_size)]
    base += ["--fsync"] if args.fsync else []
    base += ["--ack", args.ack]
    if args.callgrind:
        one = instructions([*base, "--rounds", str(args.rounds)])
        two = instructions([*base, "--rounds", str(2 * args.rounds)])
        per = (two - one) / (args.rounds * max(args.messages, topics))
        print(
            f"{topics} topics: {per:,.0f} instructions per message (callgrind, {args.rounds} extra rounds)",
            flush=True,
        )
        return per
    out = subprocess.run([sys.executable, __file__, *base, "--rounds", str(args.rounds), "--one"],
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{topics} topics failed:\n{out.stderr[-2000:]}")
    print(out.stdout.strip(), flush=True)
    found = re.search(r"([0-9.]+) us CPU per message", out.stdout)
    if found is None:
        raise SystemExit(f"no figure in:\n{out.stdout}")
    return float(found[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--topics",
        default="1,100,1000",
        help="topic counts, each in a fresh process; "
        "the first is the baseline the others are compared with (default 1,100,1000)",
    )
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--messages", type=int, default=1000, help="messages per round (at least one per topic)")
    ap.add_argument("--per-read", type=int, default=1, help="SENDs per connection read (default 1)")
    ap.add_argument("--fsync", action="store_true", help="fsync the journal (default off: CPU only)")
    ap.add_argument("--size", type=int, default=100, help="payload bytes per message (default 100)")
    ap.add_argument(
        "--read-size",
        type=int,
        default=0,
        help="deliver each read as a socket would, at most this many bytes per read (default 0: whole)",
    )
    ap.add_argument(
        "--ack",
        choices=("cumulative", "individual"),
        default="cumulative",
        help="how consumers acknowledge each round: one cumulative ACK per topic (default), or "
        "every message id in one ACK per topic, as the official clients' grouped individual acks",
    )
    ap.add_argument(
        "--callgrind", action="store_true", help="count instructions (valgrind) at R and 2R rounds"
    )
    ap.add_argument(
        "--repeat", type=int, default=1,
        help="passes over the topic counts, alternated; with more than one, the median ratio "
        "and its range too (CPU time moves by tens of percent between runs on a shared machine)",
    )  # fmt: skip
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one count, in-process
    args = ap.parse_args()
    counts = [int(n) for n in args.topics.split(",")]
    if args.one:
        install_fast_event_loop()  # as the server does
        asyncio.run(
            run(counts[0], args.rounds, args.messages, args.per_read, args.fsync, args.size, args.read_size,
                args.ack == "individual")
        )  # fmt: skip
        return 0
    unit = "instructions" if args.callgrind else "CPU"
    ratios: dict[int, list[float]] = {n: [] for n in counts[1:]}
    for done in range(args.repeat):
        if args.repeat > 1:
            print(f"-- pass {done + 1} of {args.repeat}", flush=True)
        costs = [one_count(n, args) for n in counts]
        for n, cost in zip(counts[1:], costs[1:], strict=True):
            ratios[n].append(cost / costs[0])
            print(f"{n} topics against {counts[0]} in this run: {cost / costs[0]:.2f}x the {unit} per message")
    if args.repeat > 1:
        for n, found in ratios.items():
            print(f"{n} topics against {counts[0]}, median of {len(found)} alternated passes: "
                  f"{statistics.median(found):.2f}x the {unit} per message "
                  f"(range {min(found):.2f}-{max(found):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
