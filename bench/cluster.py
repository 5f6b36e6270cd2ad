"""Cluster: publish throughput on remote bookies and with 1, 2 and 3 brokers against the
standalone, and how long producers wait when a bookie or the broker of their topic is killed.

Each run starts a private ZooKeeper (Debian's `zookeeper` package), the bookie processes and
one `taureau standalone --remote-bookies` per configuration, and publishes with the official
client (async sends, batching on, 1 KiB messages). The peer is the plain standalone (one
bookie in the broker's process), measured in the same run. Failover: a producer sends one
message at a time; a bookie of the current ledger is killed with SIGKILL; the gap is from the
last receipt before the kill to the first after it. Then another is frozen with SIGSTOP (alive
to TCP, answering nothing): the gap is the broker's bookie add timeout (--bookie-add-timeout,
default 5 s) plus the ensemble change.

Brokers: 3 bookies (E2/Qw2/Qa2) and N `taureau broker` processes; the client is given every
broker and publishes to 6 topics at once (spread over the bundles, so over the brokers); the
peer is the standalone publishing to 6 topics too. Broker failover: a synchronous producer,
connected through broker A to a topic broker B owns; B is killed with SIGKILL (session timeout
2 s); the gap is from the last receipt before the kill to the first after it.

    python bench/cluster.py                   # 20,000 messages per configuration
    python bench/cluster.py --messages 100000
    python bench/cluster.py --only brokers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pulsar  # noqa: E402

from taureau.metadata.zookeeper import ZooKeeperMetadataStore  # noqa: E402
from taureau.protocol import pb  # noqa: E402
from taureau.testing.zookeeper import ZooKeeperServer  # noqa: E402
from tests.e2e.bookies import BookieProcess  # noqa: E402
from tests.e2e.brokers import BrokerProcess  # noqa: E402
from tests.e2e.harness import Standalone  # noqa: E402
from tests.e2e.raw import RawClient, command  # noqa: E402

CONFIGS = [  # (label, bookies, E, Qw, Qa)
    ("1 bookie  E1 Qw1 Qa1", 1, 1, 1, 1),
    ("2 bookies E2 Qw2 Qa2", 2, 2, 2, 2),
    ("3 bookies E3 Qw2 Qa2", 3, 3, 2, 2),
]


TOPICS = 6  # topics published to at once in the broker runs


def _client(server: Standalone | BrokerProcess | str) -> pulsar.Client:
    url = server if isinstance(server, str) else server.service_url
    return pulsar.Client(url, operation_timeout_seconds=30, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def throughput_topics(url: str, messages: int, size: int, topics: int = TOPICS,
                      names: list[str] | None = None) -> float:
    """Messages per second acknowledged to `topics` producers (or one per topic of `names`)
    sending asynchronously."""
    client = _client(url)
    stamp = time.monotonic_ns()
    names = names or [f"persistent://public/default/bench-{stamp}-{i}" for i in range(topics)]
    topics = len(names)
    producers = [client.create_producer(name, block_if_queue_full=True, max_pending_messages=2000)
                 for name in names]
    payload = b"x" * size
    done = threading.Event()
    acked = [0]
    lock = threading.Lock()

    def on_ack(result, _msg_id) -> None:
        with lock:
            acked[0] += 1
            if acked[0] == messages:
                done.set()

    started = time.perf_counter()
    for i in range(messages):
        producers[i % topics].send_async(payload, on_ack)
    for producer in producers:
        producer.flush()
    done.wait(300)
    elapsed = time.perf_counter() - started
    client.close()
    return acked[0] / elapsed


def _owned_by(b: BrokerProcess) -> str:
    """A topic B serves: the first name whose bundle B takes (or holds) on an authoritative
    lookup; a bundle another broker holds already is skipped."""
    for attempt in range(100):
        topic = f"persistent://public/default/bench-broker-failover-{time.monotonic_ns()}-{attempt}"
        with RawClient(b.broker_port) as raw:
            raw.send(command(pb.BaseCommand.Type.LOOKUP, "lookupTopic", topic=topic, request_id=1,
                             authoritative=True))
            answer = raw.expect(pb.BaseCommand.Type.LOOKUP_RESPONSE).lookupTopicResponse
        if answer.response == 1 and answer.brokerServiceUrl == b.service_url:  # Connect: B serves it
            return topic
    raise RuntimeError("no bundle free for broker B")


def broker_failover_ms(a: BrokerProcess, b: BrokerProcess, messages: int = 400) -> float:
    """Last receipt before B's SIGKILL to the first after it, for a producer on B's topic
    connected through A."""
    topic = _owned_by(b)
    client = _client(a)
    producer = client.create_producer(topic, batching_enabled=False, send_timeout_millis=60_000)
    receipts = []
    for i in range(messages):
        if i == messages // 2:
            b.kill()
        producer.send(b"m")
        receipts.append(time.perf_counter())
    client.close()
    kill_at = messages // 2
    return (receipts[kill_at] - receipts[kill_at - 1]) * 1000


def run_brokers(root: Path, zk: ZooKeeperServer, messages: int, size: int) -> None:
    peer = Standalone(root / "standalone-topics", "--no-functions").start()
    base = throughput_topics(peer.service_url, messages, size)
    peer.stop()
    print(f"{'standalone, ' + str(TOPICS) + ' topics':34s} {base:10.0f} msg/s   1.00x")
    for n in (1, 2, 3):
        url = f"{zk.url}/brokers{n}"
        bookies = [BookieProcess(root / f"b{n}-bookie-{i}", url).start() for i in range(3)]
        brokers = [BrokerProcess(root / f"b{n}-broker-{i}", url).start() for i in range(n)]
        service_url = "pulsar://" + ",".join(f"127.0.0.1:{b.broker_port}" for b in brokers)
        rate = throughput_topics(service_url, messages, size)
        print(f"{f'{n} broker(s), 3 bookies E2 Qw2 Qa2':34s} {rate:10.0f} msg/s   {rate / base:.2f}x")
        if n == 2:
            gap = broker_failover_ms(brokers[0], brokers[1])
            print(f"{'  owner broker kill -9, receipt gap':34s} {gap:10.1f} ms")
        for b in [*brokers, *bookies]:
            b.kill()


def throughput(server: Standalone, messages: int, size: int) -> float:
    """Messages per second acknowledged to one producer sending asynchronously."""
    client = _client(server)
    producer = client.create_producer(f"persistent://public/default/bench-{time.monotonic_ns()}",
                                      block_if_queue_full=True, max_pending_messages=5000)
    payload = b"x" * size
    done = threading.Event()
    acked = [0]

    def on_ack(result, _msg_id) -> None:
        acked[0] += 1
        if acked[0] == messages:
            done.set()

    started = time.perf_counter()
    for _ in range(messages):
        producer.send_async(payload, on_ack)
    producer.flush()
    done.wait(120)
    elapsed = time.perf_counter() - started
    client.close()
    return messages / elapsed


def _newest_ensemble(url: str) -> list[str]:
    async def read() -> list[str]:
        store = await ZooKeeperMetadataStore.open(url)
        try:
            newest = max(int(n) for n in await store.children("/ledgers"))
            return json.loads((await store.get(f"/ledgers/{newest}"))[0])["ensemble"]
        finally:
            await store.close()

    return asyncio.run(read())


def failover_ms(server: Standalone, bookies: list[BookieProcess], url: str, messages: int = 600,
                freeze: bool = False) -> float:
    """Gap between two receipts of a synchronous producer around a bookie's SIGKILL (freeze:
    SIGSTOP, so only the add timeout notices it)."""
    client = _client(server)
    producer = client.create_producer("persistent://public/default/bench-failover", batching_enabled=False)
    receipts = []
    for i in range(messages):
        if i == messages // 2:
            victim = next(b for b in bookies if b.bookie_id == _newest_ensemble(url)[0])
            if freeze and victim.proc is not None:
                victim.proc.send_signal(signal.SIGSTOP)  # killed (SIGKILL works on it) at the end
            else:
                victim.kill()
        producer.send(b"m")
        receipts.append(time.perf_counter())
    client.close()
    kill_at = messages // 2
    return (receipts[kill_at] - receipts[kill_at - 1]) * 1000


def run(messages: int, size: int, only: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="taureau-cluster-bench-"))
    zk = ZooKeeperServer(str(root / "zk"))
    zk.start()
    try:
        if only in ("all", "brokers"):
            run_brokers(root, zk, messages, size)
        if only == "brokers":
            return
        peer = Standalone(root / "standalone", "--no-functions").start()
        base = throughput(peer, messages, size)
        peer.stop()
        print(f"{'standalone (in-process bookie)':34s} {base:10.0f} msg/s   1.00x")
        for n, (label, count, e, w, a) in enumerate(CONFIGS):
            url = f"{zk.url}/bench{n}"
            # Two spares: one replaces the bookie killed, the other the one frozen.
            bookies = [BookieProcess(root / f"c{n}-bookie-{i}", url).start() for i in range(count + 2)]
            server = Standalone(root / f"c{n}-broker", "--metadata-store", url, "--remote-bookies", "--no-functions",
                                "--ensemble-size", str(e), "--write-quorum", str(w), "--ack-quorum", str(a)).start()
            rate = throughput(server, messages, size)
            print(f"{'remote, ' + label:34s} {rate:10.0f} msg/s   {rate / base:.2f}x")
            if count > 1:
                gap = failover_ms(server, bookies, url)
                print(f"{'  bookie kill -9, receipt gap':34s} {gap:10.1f} ms")
                gap = failover_ms(server, bookies, url, freeze=True)
                print(f"{'  bookie SIGSTOP, receipt gap':34s} {gap:10.1f} ms")
            server.stop()
            for b in bookies:
                b.kill()
    finally:
        zk.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--only", choices=("all", "brokers", "bookies"), default="all")
    args = parser.parse_args()
    run(args.messages, args.size, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
