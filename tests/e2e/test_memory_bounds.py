"""What any client can make the broker hold is bounded (issue 7, "Memory that any client can
take"): frames before CONNECT, connections that never CONNECT or stop answering pings,
connections per IP, SEND bytes in flight, replies the peer does not read, the entry cache of
all topics together, and messages a Shared consumer leaves unacknowledged."""

from __future__ import annotations

import socket
import struct
import time

import httpx
import pytest

from taureau.protocol import encode_command, encode_entry, pb
from tests.e2e.harness import RssPeak, Standalone
from tests.e2e.raw import RawClient, T, batch_payload, command, entry, metadata

MiB = 1024 * 1024
FLAGS = (
    "--connect-timeout",
    "1",
    "--keepalive-interval",
    "1",
    "--max-connections-per-ip",
    "12",
    "--cache-size",
    "32MiB",
    "--no-journal-fsync",
)


@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    server = Standalone(tmp_path_factory.mktemp("bounded"), *FLAGS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """The same bounds with pings a minute apart: a test that pipelines hundreds of MiB without
    reading answers no ping meanwhile, and one that reads for seconds answers them only as it
    reads; on a loaded machine either takes longer than the 1 s keep-alive `bounded` uses to
    test closing silent peers (a starved shared-consumer test was closed mid-read)."""
    flags = list(FLAGS)
    flags[flags.index("--keepalive-interval") + 1] = "60"
    server = Standalone(tmp_path_factory.mktemp("patient"), *flags).start()
    yield server
    server.stop()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the peer closes `sock` within `seconds` (whatever it sent before)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def _stats(server: Standalone, topic: str) -> dict:
    return httpx.get(f"{server.admin_url}/admin/v2/persistent/{topic.split('://')[1]}/stats").json()


# -- connections --------------------------------------------------------------------------------


def test_a_large_frame_before_connect_closes_the_connection_at_once(bounded):
    peak = RssPeak(bounded)
    base = bounded.rss_mib()
    socks = []
    for _ in range(10):  # ten half frames of 5 MB: the broker buffered 25 MB before the fix
        s = socket.create_connection(("127.0.0.1", bounded.broker_port))
        try:
            s.sendall(struct.pack(">II", 5_000_000, 4) + b"\0" * 2_500_000)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: the point of the test
        socks.append(s)
    try:
        assert all(_closed_within(s, 2.0) for s in socks)
        assert peak.stop() - base < 15
    finally:
        for s in socks:
            s.close()


def test_a_connection_that_never_sends_connect_is_closed(bounded):
    with socket.create_connection(("127.0.0.1", bounded.broker_port)) as s:
        began = time.monotonic()
        assert _closed_within(s, 5.0)
        assert 0.8 < time.monotonic() - began < 3.0


def test_a_peer_that_never_answers_pings_is_closed(bounded):
    raw = RawClient(bounded.broker_port, answer_pings=False)
    try:
        frames = raw.until_closed(5.0)  # read, never answer
        assert [f.command.type for f in frames].count(T.PING) >= 1
        assert raw.closed
    finally:
        raw.close()


def test_a_peer_that_answers_pings_stays_connected(bounded, topic):
    with RawClient(bounded.broker_port) as raw:
        deadline = time.monotonic() + 3.5
        pings = []
        while time.monotonic() < deadline:
            pings += [f for f in raw.frames(0.2) if f.command.type == T.PING]  # answered as read
        assert len(pings) >= 2 and not raw.closed
        assert raw.producer(topic).type == T.PRODUCER_SUCCESS


def test_connections_per_ip_are_capped_and_freed_on_close(bounded):
    # Other tests of this module keep none open; 12 are allowed from 127.0.0.1.
    held = [RawClient(bounded.broker_port) for _ in range(12)]
    try:
        with socket.create_connection(("127.0.0.1", bounded.broker_port)) as refused:
            assert _closed_within(refused, 2.0)
        held.pop().close()
        time.sleep(0.2)
        held.append(RawClient(bounded.broker_port))  # a slot is free again: CONNECTED
    finally:
        for raw in held:
            raw.close()
    assert "refusing connection from 127.0.0.1: 12 connections are open from 127.0.0.1" in "".join(
        bounded.output
    )


# -- publish and reply buffers --------------------------------------------------------------------


def test_pipelined_large_sends_hold_bounded_memory_and_release_it(patient, topic):
    bounded = patient
    raw = RawClient(bounded.broker_port, timeout=60)
    assert raw.producer(topic).type == T.PRODUCER_SUCCESS
    base = bounded.rss_mib()
    peak = RssPeak(bounded)
    body = b"x" * (MiB - 200)
    with bounded.stacks_on_timeout():  # a client timeout says where the server waited
        for seq in range(200):  # 200 MiB pipelined, no receipt read: 200+ MiB held before the fix
            raw.publish(entry(body, seq), seq)
        replies = raw.replies(200, timeout=60)
    top = peak.stop()
    raw.close()
    assert [r.type for r in replies] == [T.SEND_RECEIPT] * 200
    assert top - base < 110, f"RSS grew from {base:.0f} to {top:.0f} MiB"
    assert _stats(bounded, topic)["entriesCount"] == 200
    time.sleep(6.5)  # the heap is trimmed 5 s after the connection closed
    assert bounded.rss_mib() - base < 30


def test_a_peer_that_does_not_read_its_replies_is_not_read_either(bounded):
    raw = RawClient(bounded.broker_port, timeout=3)
    base = bounded.rss_mib()
    peak = RssPeak(bounded)
    pings = encode_command(command(T.PING, "ping")) * 100_000
    sent = 0
    try:
        for _ in range(40):  # 4M PINGs, 40 MB of PONGs if the broker kept reading
            raw.sock.sendall(pings)
            sent += 1
    except TimeoutError:
        pass  # the broker stopped reading us: what the test wants
    top = peak.stop()
    assert sent < 40, "the broker kept reading from a peer that reads nothing"
    assert top - base < 60, f"RSS grew from {base:.0f} to {top:.0f} MiB"
    raw.close()


# -- entry cache ----------------------------------------------------------------------------------


def _subscribe(raw: RawClient, topic: str, sub_type: int, consumer_id: int = 1, request_id: int = 9) -> None:
    raw.send(
        command(
            T.SUBSCRIBE,
            "subscribe",
            topic=topic,
            subscription="s",
            subType=sub_type,
            consumer_id=consumer_id,
            request_id=request_id,
            initialPosition=pb.CommandSubscribe.Earliest,
        )
    )
    assert raw.expect(T.SUCCESS, T.ERROR).type == T.SUCCESS


def test_the_entry_cache_is_one_budget_for_every_topic(patient):
    """16 topics whose subscription reads nothing, 16 MiB published to each: per-topic caches
    (64 MiB each) would hold all 256 MiB; the shared 32 MiB budget evicts the coldest topics'
    entries, which are then read back from storage."""
    bounded = patient  # reads for seconds: a starved test must not miss the 1 s pings
    base = bounded.rss_mib()
    body = b"c" * (MiB - 200)
    topics = [f"persistent://public/default/cache-budget-{i}" for i in range(16)]
    for topic in topics:
        with RawClient(bounded.broker_port) as consumer:
            _subscribe(consumer, topic, pb.CommandSubscribe.Shared)  # a durable backlog from here
        with RawClient(bounded.broker_port, timeout=60) as producer:
            assert producer.producer(topic).type == T.PRODUCER_SUCCESS
            for seq in range(16):
                producer.publish(entry(body, seq), seq)
            assert [r.type for r in producer.replies(16, timeout=60)] == [T.SEND_RECEIPT] * 16
    held = bounded.rss_mib() - base
    assert held < 120, f"{held:.0f} MiB held for 256 MiB of idle backlog"
    with RawClient(bounded.broker_port) as consumer:  # the coldest topic: read from storage
        _subscribe(consumer, topics[0], pb.CommandSubscribe.Shared)
        consumer.send(command(T.FLOW, "flow", consumer_id=1, messagePermits=100))
        got = [consumer.expect(T.MESSAGE, timeout=10) for _ in range(16)]
        assert [m.message.message_id.entryId for m in got] == list(range(16))


# -- unacknowledged messages ------------------------------------------------------------------------


def _publish_batches(server: Standalone, topic: str, entries: int, per_entry: int = 1000) -> None:
    batch = encode_entry(metadata(0, num_messages_in_batch=per_entry), batch_payload([b"m"] * per_entry))
    with RawClient(server.broker_port, timeout=60) as producer:
        assert producer.producer(topic).type == T.PRODUCER_SUCCESS
        for seq in range(entries):
            producer.publish(batch, seq * per_entry)
        assert [r.type for r in producer.replies(entries, timeout=60)] == [T.SEND_RECEIPT] * entries


def _drain(raw: RawClient, quiet_s: float = 1.5) -> list[pb.BaseCommand]:
    got = []
    while True:
        frames = [f for f in raw.frames(quiet_s) if f.command.type == T.MESSAGE]
        if not frames:
            return got
        got += [f.command for f in frames]


def test_a_shared_consumer_stops_at_max_unacked_and_resumes_at_half(patient, topic):
    bounded = patient  # reads for seconds: a starved test must not miss the 1 s pings
    _publish_batches(bounded, topic, 60)  # 60,000 messages
    with RawClient(bounded.broker_port) as raw:
        _subscribe(raw, topic, pb.CommandSubscribe.Shared)
        raw.send(command(T.FLOW, "flow", consumer_id=1, messagePermits=1_000_000))
        first = _drain(raw)
        assert len(first) == 50  # 50 entries of 1000: maxUnackedMessagesPerConsumer = 50,000
        consumer = _stats(bounded, topic)["subscriptions"]["s"]["consumers"][0]
        assert consumer["unackedMessages"] == 50_000 and consumer["blockedConsumerOnUnackedMsgs"]
        ids = [m.message.message_id for m in first]
        raw.send(command(T.ACK, "ack", consumer_id=1, ack_type=pb.CommandAck.Individual, message_id=ids[:24]))
        assert _drain(raw) == []  # 26,000 unacked: still over half
        raw.send(
            command(T.ACK, "ack", consumer_id=1, ack_type=pb.CommandAck.Individual, message_id=ids[24:25])
        )
        rest = _drain(raw)
        assert len(rest) == 10  # 25,000 unacked: unblocked, the remaining 10 entries come
        consumer = _stats(bounded, topic)["subscriptions"]["s"]["consumers"][0]
        assert consumer["unackedMessages"] == 35_000 and not consumer["blockedConsumerOnUnackedMsgs"]


def test_an_exclusive_consumer_is_not_bounded_by_unacked_messages(patient, topic):
    """As in Pulsar: Exclusive/Failover consumers (readers too) acknowledge cumulatively or not
    at all, so only Shared and Key_Shared are held back."""
    bounded = patient  # reads for seconds: a starved test must not miss the 1 s pings
    _publish_batches(bounded, topic, 60)
    with RawClient(bounded.broker_port) as raw:
        _subscribe(raw, topic, pb.CommandSubscribe.Exclusive)
        raw.send(command(T.FLOW, "flow", consumer_id=1, messagePermits=1_000_000))
        assert len(_drain(raw)) == 60
