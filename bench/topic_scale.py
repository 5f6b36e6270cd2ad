"""Per-topic cost: broker CPU per message, idle cost and latency with 1 to 5,000 active topics.

Each run starts a fresh standalone (fsync on unless --no-fsync) and makes N active topics: a
producer and an Exclusive consumer on each, spread over a few connections of one raw-protocol
client (taureau.protocol, one asyncio loop), so the broker's per-topic work is what changes
between runs. It measures, per topic count:

- idle: the broker's CPU (% of one core, from /proc) for `--idle` seconds with every topic
  loaded, connected and quiet: what a topic costs while nothing happens on it;
- busy: `--rate` unbatched 100-byte messages per second offered round-robin over the topics
  for `--seconds`; the consumers acknowledge cumulatively once per read. Reported: broker CPU
  per message (us, CPU over the window / messages received), publish latency (SEND to
  SEND_RECEIPT) and end-to-end latency (SEND to MESSAGE) p50 / p99 / p99.9 / max, and the
  broker's loop-lag and collector histograms from /metrics.

    python bench/topic_scale.py                              # 1, 100, 1000, 5000 topics
    python bench/topic_scale.py --topics 1000 --rate 10000   # one point, the latency target
    python bench/topic_scale.py --topics 1,5000 --unload-after 5 # and what is left once clients leave
    python bench/topic_scale.py --json run.json --plot docs/topic-scale.png
    python bench/topic_scale.py --from-json run.json --plot docs/topic-scale.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from publish_latency import loop_report, machine_note, run_queue_wait_s  # noqa: E402

from taureau.protocol import FrameDecoder, encode_command, encode_payload_command, pb  # noqa: E402
from taureau.protocol.metadata import encode_entry  # noqa: E402

T = pb.BaseCommand.Type
CONNECTIONS = 8  # producer connections (and as many consumer connections), topics spread over them
PERMITS = 1000


def _cmd(kind: int, name: str, **values) -> bytes:
    return encode_command(pb.BaseCommand(type=kind, **{name: values}))


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)
    pick = lambda q: ordered[min(n - 1, int(q * n))]  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99), "p99.9": pick(0.999), "max": ordered[-1]}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Point:
    topics: int
    rate: float  # offered msgs/s
    received: float = 0.0  # msgs/s that reached the consumers
    us_per_msg: float = 0.0  # broker CPU per message
    busy_cpu: float = 0.0  # broker CPU while busy, % of one core
    idle_cpu: float = 0.0  # broker CPU with every topic quiet, % of one core
    rss_mib: float = 0.0
    publish_ms: dict[str, float] = field(default_factory=dict)
    e2e_ms: dict[str, float] = field(default_factory=dict)
    loop: str = ""
    machine: str = ""  # how starved the broker was while busy
    # With --unload-after: once every client has left and the broker had time to unload
    left_loaded: int = -1  # topics still loaded
    left_cpu: float = 0.0  # broker CPU then, % of one core
    left_rss_mib: float = 0.0


class Conn:
    """One raw connection: frames out through `send`, frames in to `on_frame`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_frame) -> None:
        self.reader, self.writer, self.on_frame = reader, writer, on_frame
        self.decoder = FrameDecoder(8 << 20)
        self.task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        while data := await self.reader.read(1 << 20):
            now = time.perf_counter()
            for frame in self.decoder.feed(data):
                self.on_frame(self, frame, now)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
        self.task.cancel()


class Client:
    def __init__(self, host: str, port: int, topics: int) -> None:
        self.host, self.port, self.topics = host, port, topics
        self.waiting: dict[int, asyncio.Future] = {}  # request id -> reply
        # (topic, sequence) -> send time, once per reply awaited: a MESSAGE may come before
        # its SEND_RECEIPT, so each reply pops its own copy.
        self.sent: dict[tuple[int, int], float] = {}  # awaiting the SEND_RECEIPT
        self.unseen: dict[tuple[int, int], float] = {}  # awaiting the MESSAGE
        self.publish: list[float] = []
        self.e2e: list[float] = []
        self.received = 0
        self.measuring = False
        self.names: list[str] = []
        self.since_flow: dict[int, int] = {}
        self.producers: list[Conn] = []
        self.consumers: list[Conn] = []
        self._pending_acks: dict[Conn, dict[int, tuple[int, int]]] = {}  # newest message per topic
        self._ack_scheduled = False

    async def _connect(self) -> Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        conn = Conn(reader, writer, self._on_frame)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[-1] = fut
        conn.send(_cmd(T.CONNECT, "connect", client_version="topic-scale", protocol_version=20))
        await fut
        return conn

    def _on_frame(self, conn: Conn, frame, now: float) -> None:
        cmd = frame.command
        kind = cmd.type
        if kind == T.SEND_RECEIPT:
            r = cmd.send_receipt
            sent = self.sent.pop((r.producer_id, r.sequence_id), None)
            if sent is not None and self.measuring:
                self.publish.append((now - sent) * 1000)
        elif kind == T.MESSAGE:
            m = cmd.message
            topic = m.consumer_id
            seq = int.from_bytes(frame.payload[-8:], "big")
            sent = self.unseen.pop((topic, seq), None)
            if sent is not None and self.measuring:
                self.e2e.append((now - sent) * 1000)
                self.received += 1
            self._pending_acks[conn][topic] = (m.message_id.ledgerId, m.message_id.entryId)
            self.since_flow[topic] = self.since_flow.get(topic, 0) + 1
            if not self._ack_scheduled:
                self._ack_scheduled = True
                asyncio.get_running_loop().call_soon(self._send_acks)
        elif kind in (T.CONNECTED, T.PRODUCER_SUCCESS, T.SUCCESS):
            rid = (
                -1
                if kind == T.CONNECTED
                else getattr(cmd, "producer_success" if kind == T.PRODUCER_SUCCESS else "success").request_id
            )
            fut = self.waiting.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(cmd)
        elif kind == T.ERROR:
            fut = self.waiting.pop(cmd.error.request_id, None)
            if fut is not None and not fut.done():
                fut.set_exception(RuntimeError(cmd.error.message))
        elif kind == T.PING:
            conn.send(_cmd(T.PONG, "pong"))

    def _send_acks(self) -> None:
        self._ack_scheduled = False
        for conn, acks in self._pending_acks.items():
            if not acks:
                continue
            out = []
            for topic, (ledger, entry) in acks.items():
                ack = pb.CommandAck(consumer_id=topic, ack_type=pb.CommandAck.Cumulative)
                ack.message_id.add(ledgerId=ledger, entryId=entry)
                out.append(encode_command(pb.BaseCommand(type=T.ACK, ack=ack)))
                n = self.since_flow.get(topic, 0)
                if n >= PERMITS // 2:
                    self.since_flow[topic] = 0
                    out.append(_cmd(T.FLOW, "flow", consumer_id=topic, messagePermits=n))
            acks.clear()
            conn.send(b"".join(out))

    async def setup(self) -> None:
        loop = asyncio.get_running_loop()
        n_conns = min(CONNECTIONS, self.topics)
        self.producers = [await self._connect() for _ in range(n_conns)]
        self.consumers = [await self._connect() for _ in range(n_conns)]
        self._pending_acks = {c: {} for c in self.consumers}
        stamp = time.time_ns()
        rid = 0
        step = 250  # requests in flight at once
        for first in range(0, self.topics, step):
            futs = []
            for t in range(first, min(first + step, self.topics)):
                topic = f"persistent://public/default/scale-{stamp}-{t}"
                rid += 1
                fut = self.waiting[rid] = loop.create_future()
                futs.append(fut)
                self.consumers[t % n_conns].send(
                    _cmd(T.SUBSCRIBE, "subscribe", topic=topic, subscription="s", subType=0, consumer_id=t,
                         request_id=rid, consumer_name=f"c{t}", initialPosition=0)
                )  # fmt: skip
                rid += 1
                fut = self.waiting[rid] = loop.create_future()
                futs.append(fut)
                self.producers[t % n_conns].send(
                    _cmd(T.PRODUCER, "producer", topic=topic, producer_id=t, request_id=rid)
                )
            replies = await asyncio.gather(*futs)
            self.names += [r.producer_success.producer_name for r in replies if r.type == T.PRODUCER_SUCCESS]
        for t in range(self.topics):  # after SUBSCRIBE's reply: a FLOW is handled inline, before it
            self.consumers[t % n_conns].send(_cmd(T.FLOW, "flow", consumer_id=t, messagePermits=PERMITS))

    def _send(self, topic: int, seq: int) -> None:
        meta = pb.MessageMetadata(
            producer_name=self.names[topic], sequence_id=seq, publish_time=int(time.time() * 1000)
        )
        send = pb.BaseCommand(type=T.SEND, send=pb.CommandSend(producer_id=topic, sequence_id=seq))
        payload = b"x" * 92 + seq.to_bytes(8, "big")
        self.sent[(topic, seq)] = self.unseen[(topic, seq)] = time.perf_counter()
        self.producers[topic % len(self.producers)].send(
            encode_payload_command(send, encode_entry(meta, payload))
        )

    async def run(self, rate: float, seconds: float, first_seq: int) -> int:
        """Offer `rate` msgs/s round-robin over the topics; returns the next sequence id."""
        start = time.perf_counter()
        total = int(rate * seconds)
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                topic = sent % self.topics
                self._send(topic, first_seq + sent // self.topics)
                sent += 1
            await asyncio.sleep(0.0005)
        deadline = time.perf_counter() + 10
        while (self.sent or self.unseen) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        if self.sent or self.unseen:
            print(
                f"  warning: {len(self.sent)} receipts and {len(self.unseen)} messages missing after 10 s",
                file=sys.stderr,
            )
            self.sent.clear()
            self.unseen.clear()
        return first_seq + (total + self.topics - 1) // self.topics + 1


async def measure(
    host: str,
    port: int,
    pid: int,
    topics: int,
    rate: float,
    seconds: float,
    idle: float,
    profile: bool = False,
    unload_after: float = 0.0,
    admin_url: str = "",
) -> Point:
    point = Point(topics, rate)
    client = Client(host, port, topics)
    began = time.monotonic()
    await client.setup()
    print(f"  {topics} topics set up in {time.monotonic() - began:.1f}s", flush=True)
    # Warm up: a message on every topic, so every topic has written, dispatched and saved once.
    seq = await client.run(min(rate, 5000), max(topics / min(rate, 5000), 1.0), 0)
    await asyncio.sleep(2.0)  # cursor saves and collections of the warm-up settle
    cpu0 = cpu_seconds(pid)
    await asyncio.sleep(idle)
    point.idle_cpu = 100 * (cpu_seconds(pid) - cpu0) / idle
    client.measuring = True
    profiler = None
    if profile:
        from peers.profile import Profiler

        profiler = Profiler(pid, seconds)
        profiler.start()
    cpu0, t0, waited = cpu_seconds(pid), time.perf_counter(), run_queue_wait_s(pid)
    await client.run(rate, seconds, seq)
    cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
    point.machine = machine_note(run_queue_wait_s(pid) - waited, wall)
    if profiler is not None:
        print(profiler.finish(f"{topics} topics at {rate:,.0f}/s").render(), flush=True)
    client.measuring = False
    point.received = client.received / seconds
    point.us_per_msg = 1e6 * cpu / max(client.received, 1)
    point.busy_cpu = 100 * cpu / wall
    point.rss_mib = rss_mib(pid)
    point.publish_ms = percentiles(client.publish)
    point.e2e_ms = percentiles(client.e2e)
    if unload_after > 0:
        for conn in client.producers + client.consumers:
            await conn.close()
        await asyncio.sleep(unload_after * 1.5 + 2)  # the sweep runs every quarter period
        cpu0 = cpu_seconds(pid)
        await asyncio.sleep(idle)
        point.left_cpu = 100 * (cpu_seconds(pid) - cpu0) / idle
        point.left_rss_mib = rss_mib(pid)
        point.left_loaded = loaded_topics(admin_url)
    return point


def loaded_topics(admin_url: str) -> int:
    import httpx

    for line in httpx.get(f"{admin_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("pulsar_topics_count "):
            return int(float(line.split()[1]))
    return -1


def fmt(p: dict[str, float]) -> str:
    return " / ".join(f"{p[k]:.2f}" for k in ("p50", "p99", "p99.9", "max")) if p else "-"


def print_point(p: Point) -> None:
    print(
        f"{p.topics:>5} topics, {p.rate:,.0f}/s offered, {p.received:,.0f}/s received: broker "
        f"{p.us_per_msg:.1f} us/msg ({p.busy_cpu:.0f}% busy, {p.idle_cpu:.1f}% idle), RSS {p.rss_mib:.0f} MiB\n"
        f"      publish p50/p99/p99.9/max {fmt(p.publish_ms)} ms; end to end {fmt(p.e2e_ms)} ms"
        + (f"\n      broker: {p.loop}" if p.loop else "")
        + (f"\n      machine: {p.machine}" if p.machine else "")
        + (
            f"\n      clients gone: {p.left_loaded} topics still loaded, broker {p.left_cpu:.1f}% CPU, "
            f"RSS {p.left_rss_mib:.0f} MiB"
            if p.left_loaded >= 0
            else ""
        ),
        flush=True,
    )


def print_ratios(points: list[Point]) -> None:
    """Each topic count against the smallest one of the same run (the target: broker cost per
    message at 1,000 topics within 2x of 1 topic)."""
    base = min(points, key=lambda p: p.topics)
    print(f"against {base.topics} topic(s) in this run:")
    for p in points:
        if p is base:
            continue
        p99 = p.publish_ms.get("p99", float("nan")) / max(base.publish_ms.get("p99", float("nan")), 1e-9)
        print(
            f"  {p.topics:>5} topics: broker CPU per message {p.us_per_msg / max(base.us_per_msg, 1e-9):.2f}x, "
            f"idle CPU {p.idle_cpu:.1f}% vs {base.idle_cpu:.1f}%, RSS {p.rss_mib - base.rss_mib:+.0f} MiB "
            f"({1024 * (p.rss_mib - base.rss_mib) / max(p.topics - base.topics, 1):.0f} KiB per extra topic), "
            f"publish p99 {p99:.2f}x",
            flush=True,
        )


def plot(points: list[Point], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cost, lat) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [p.topics for p in points]
    cost.plot(xs, [p.us_per_msg for p in points], "o-", label="broker CPU per message (us)")
    cost.plot(xs, [p.idle_cpu for p in points], "s--", label="idle broker CPU (% of a core)")
    cost.set_xscale("log")
    cost.set_xlabel("active topics")
    cost.set_title(f"per-topic cost at {points[0].rate:,.0f} msgs/s")
    cost.legend()
    cost.grid(alpha=0.3)
    for key, style in (("p50", "o-"), ("p99", "s-"), ("p99.9", "^-")):
        lat.plot(xs, [p.publish_ms.get(key, float("nan")) for p in points], style, label=f"publish {key}")
    lat.plot(xs, [p.e2e_ms.get("p99", float("nan")) for p in points], "d--", label="end to end p99")
    lat.set_xscale("log")
    lat.set_yscale("log")
    lat.set_xlabel("active topics")
    lat.set_ylabel("ms")
    lat.set_title("latency (fsync on)")
    lat.legend()
    lat.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topics", default="1,100,1000,5000", help="topic counts, one broker each")
    ap.add_argument("--rate", type=float, default=4000, help="offered msgs/s over all topics (default 4000)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idle measurement")
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument(
        "--unload-after",
        type=float,
        default=0.0,
        help="start the broker with --idle-topic-unload S; at the end every client leaves and the "
        "broker's loaded topics, CPU and RSS are measured once it had time to unload them",
    )
    ap.add_argument(
        "--profile", action="store_true", help="py-spy the broker while busy (pip install py-spy)"
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--from-json", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    if args.from_json:
        points = [Point(**d) for d in json.loads(args.from_json.read_text())]
    else:
        from tests.e2e.harness import Standalone

        points = []
        for topics in [int(n) for n in args.topics.split(",")]:
            extra = ["--no-journal-fsync"] if args.no_fsync else []
            if args.unload_after > 0:
                extra += ["--idle-topic-unload", str(args.unload_after)]
            server = Standalone(Path(tempfile.mkdtemp(prefix="taureau-scale-")), *extra).start()
            try:
                assert server.proc is not None
                point = asyncio.run(
                    measure(
                        "127.0.0.1",
                        server.broker_port,
                        server.proc.pid,
                        topics,
                        args.rate,
                        args.seconds,
                        args.idle,
                        args.profile,
                        args.unload_after,
                        server.admin_url,
                    )
                )
                point.loop = loop_report(server.admin_url)
            finally:
                server.stop()
            points.append(point)
            print_point(point)
        if args.json:
            args.json.write_text(json.dumps([asdict(p) for p in points], indent=1))
    for p in points if args.from_json else []:
        print_point(p)
    print_ratios(points)
    if args.plot:
        plot(points, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
