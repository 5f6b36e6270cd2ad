"""The load manager and bundle splits on real `taureau broker` processes, a real ZooKeeper and
shared bookies: the leader sheds the hottest bundle of an overloaded broker onto an idle one
while the official client publishes; `split-bundle` through a broker that does not own the
bundle (every broker sees the new boundaries, clients carry on, bad input changes nothing);
policy changes made at one broker reach topics loaded on another."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pulsar
import pytest

from taureau.broker.ownership.bundles import bundle_at, bundle_for, bundles_of
from taureau.common.names import NamespaceName, TopicName
from tests.e2e.bookies import running_bookies
from tests.e2e.brokers import BrokerProcess, Brokers
from tests.e2e.harness import receive_until

# Rounds every 3 s; a broker 20 msg/s above the average sheds; at most 6 bundles a namespace.
LOAD_BALANCER = ["--load-balancer-shedding-interval-minutes", "0.05", "--load-balancer-min-unload-msg-rate", "20",
                 "--load-balancer-namespace-maximum-bundles", "6"]


@pytest.fixture(scope="module")
def cluster_url(zookeeper):
    return f"{zookeeper.url}/t/loadbalance-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def bookies(cluster_url, tmp_path_factory):
    with running_bookies(tmp_path_factory, cluster_url, 2, prefix="lb-bookie") as started:
        yield started


@pytest.fixture
def brokers(bookies, cluster_url, tmp_path):
    """start(n): n more brokers with the load manager settings above (every one so far)."""
    started = Brokers(tmp_path, cluster_url, *LOAD_BALANCER)
    yield started.start
    started.stop_all()


def _admin(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", url, *args],
                          capture_output=True, text=True, timeout=60)


def _ok(url: str, *args: str) -> str:
    done = _admin(url, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _http(method: str, url: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _namespace(broker: BrokerProcess) -> str:
    ns = f"public/lb-{uuid.uuid4().hex[:8]}"
    _ok(broker.web_url, "namespaces", "create", ns)
    return ns


def _owner(at: BrokerProcess, topic: str, authoritative: bool = False) -> str:
    """The broker service URL serving `topic`, by the HTTP lookup at `at` (which places an
    unowned bundle, as any lookup does); `HTTP 503` while the bundle is being let go."""
    name = TopicName.parse(topic)
    query = "?authoritative=true" if authoritative else ""
    status, data = _http("GET", f"{at.web_url}/lookup/v2/topic/persistent/{name.tenant}/{name.namespace}/"
                                f"{name.local_name}{query}")
    return data["brokerUrl"] if status == 200 else f"HTTP {status}"


def _bundles(broker: BrokerProcess, ns: str) -> list[str]:
    status, data = _http("GET", f"{broker.web_url}/admin/v2/namespaces/{ns}/bundles")
    assert status == 200, data
    return data["boundaries"]


def _eventually(check, timeout_s: float, what: str) -> float:
    """Seconds until check() holds; fails the test past timeout_s."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"{what} not within {timeout_s} s"
        time.sleep(0.2)
    return time.monotonic() - started


def _client(url: str) -> pulsar.Client:
    return pulsar.Client(url, operation_timeout_seconds=30, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))


def _two_bundles(ns: str) -> tuple[str, str]:
    """Two topic names of `ns` in different bundles (of its first 4)."""
    first = f"persistent://{ns}/hot"
    other = next(f"persistent://{ns}/warm-{i}" for i in range(100)
                 if bundle_for(TopicName.parse(f"persistent://{ns}/warm-{i}"), 4)
                 != bundle_for(TopicName.parse(first), 4))
    return first, other


class Traffic:
    """A thread publishing to each topic at its rate until stopped; what was acknowledged."""

    def __init__(self, producers: dict[str, tuple[pulsar.Producer, float]]) -> None:
        self.producers = producers
        self.acked: dict[str, list[str]] = {t: [] for t in producers}
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started, sent = time.monotonic(), dict.fromkeys(self.producers, 0)
        while not self._stop.is_set():
            elapsed = time.monotonic() - started
            for topic, (producer, rate) in self.producers.items():
                while sent[topic] < elapsed * rate:
                    body = f"{topic}:{sent[topic]}"
                    producer.send_async(body.encode(), lambda res, _id, t=topic, b=body: self._answered(res, t, b))
                    sent[topic] += 1
            time.sleep(0.01)

    def _answered(self, result, topic: str, body: str) -> None:  # the client's thread
        with self._lock:
            (self.acked[topic] if result == pulsar.Result.Ok else self.failed).append(body)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for producer, _rate in self.producers.values():
            producer.flush()


def test_the_leader_sheds_the_hottest_bundle_of_an_overloaded_broker_and_clients_carry_on(brokers):
    (a,) = brokers(1)
    ns = _namespace(a)
    hot, warm = _two_bundles(ns)
    client = _client(a.service_url)  # given A only: after the move, lookups redirect
    try:
        consumers = {t: client.subscribe(t, "s") for t in (hot, warm)}
        producers = {t: client.create_producer(t, batching_enabled=False) for t in (hot, warm)}
        assert _owner(a, hot) == _owner(a, warm) == a.service_url  # A alone: both bundles on A
        b = brokers(1)[1]  # B joins idle; A, the first broker, leads the load manager
        traffic = Traffic({hot: (producers[hot], 100.0), warm: (producers[warm], 10.0)})
        try:
            # A carries ~220 msg/s (in and out) against an average of ~110: it sheds the hottest
            # bundle, naming B, and the hot topic's next lookup lands there.
            moved_after = _eventually(lambda: _owner(a, hot) == b.service_url, 60, "the hot bundle moving to B")
            time.sleep(3)  # traffic goes on through B; the next rounds must not move it back
            assert _owner(a, hot) == b.service_url and _owner(a, warm) == a.service_url
        finally:
            traffic.stop()
        print(f"hot bundle moved to B {moved_after:.1f} s after B joined")
        assert traffic.failed == [] and len(traffic.acked[hot]) > 300
        for topic, consumer in consumers.items():
            expected = set(traffic.acked[topic])
            received: set[str] = set()
            while not expected <= received:
                msg = consumer.receive(20_000)  # a 20 s silence fails: something acknowledged is lost
                received.add(msg.data().decode())
                consumer.acknowledge(msg)
    finally:
        client.close()


def _topic_served_by_b(brokers, local_name: str) -> tuple[BrokerProcess, BrokerProcess, str, str]:
    """Brokers A and B, a new namespace, and a topic of it whose bundle B took: (a, b, ns, topic)."""
    a, b = brokers(2)
    ns = _namespace(a)
    topic = f"persistent://{ns}/{local_name}"
    assert _owner(b, topic, authoritative=True) == b.service_url
    return a, b, ns, topic


def test_split_bundle_through_any_broker_every_broker_sees_it_and_bad_input_changes_nothing(brokers):
    a, b, ns, topic = _topic_served_by_b(brokers, "split-me")
    bundle = bundle_for(TopicName.parse(topic), 4)
    client = _client(a.service_url)
    try:
        consumer = client.subscribe(topic, "s")
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(5):
            producer.send(f"m{i}".encode())

        # At A, which does not own it: the CLI follows the 307 to B, which splits it.
        _ok(a.web_url, "namespaces", "split-bundle", ns, "--bundle", bundle.range)
        middle = f"0x{bundle.lower + (bundle.upper - bundle.lower) // 2:08x}"
        expected = sorted(["0x00000000", "0x40000000", "0x80000000", "0xc0000000", "0xffffffff", middle])
        assert _bundles(b, ns) == expected
        _eventually(lambda: _bundles(a, ns) == expected, 10, "A seeing the split")
        for i in range(5, 10):
            producer.send(f"m{i}".encode())  # the client reconnected (its topic was closed)
        seen: set[bytes] = set()
        for i in range(10):
            receive_until(consumer, f"m{i}".encode(), seen)

        # Bad input at either broker: a clear 4xx, one line from the CLI, nothing changed.
        base = f"{a.web_url}/admin/v2/namespaces/{ns}"
        assert _http("PUT", f"{base}/0x00000000_0x80000000/split")[0] == 404  # two bundles' range
        assert _http("PUT", f"{base}/junk/split")[0] == 400
        assert _http("PUT", f"{a.web_url}/admin/v2/namespaces/public/nope-{uuid.uuid4().hex[:6]}/"
                            f"{bundle.range}/split")[0] == 404
        assert _http("PUT", f"{base}/{bundle.range}/split")[0] == 404  # split already: not a bundle now
        status, body = _http("PUT", f"{base}/0x00000000_0x40000000/split?splitAlgorithmName=topic_count_equally_divide")
        assert status == 412 and "not supported" in body["reason"]
        done = _admin(b.web_url, "namespaces", "split-bundle", ns, "--bundle", "0x00000000_0x80000000")
        assert done.returncode == 1 and "has no bundle" in done.stderr and len(done.stderr.splitlines()) == 1
        others = [x for x in bundles_of(NamespaceName.parse(ns), 4) if x != bundle]
        _ok(b.web_url, "namespaces", "split-bundle", ns, "--bundle", others[0].range)  # the 6th
        done = _admin(a.web_url, "namespaces", "split-bundle", ns, "--bundle", others[1].range)
        assert done.returncode == 1 and "at most 6" in done.stderr
        six = _bundles(b, ns)
        assert len(six) == 7 and f"0x{others[0].lower + 0x20000000:08x}" in six
        _eventually(lambda: _bundles(a, ns) == six, 10, "A seeing the second split")
        producer.send(b"after")
        receive_until(consumer, b"after", seen)

        # An unload naming the broker to take the bundle (pulsar-admin's --destinationBroker).
        now = bundle_at(NamespaceName.parse(ns), [int(edge, 16) for edge in six], TopicName.parse(topic))
        target = b if _owner(a, topic) == a.service_url else a
        done = _admin(a.web_url, "namespaces", "unload", ns, "--bundle", now.range, "-d", "127.0.0.1:1")
        assert done.returncode == 1 and "not a live broker" in done.stderr
        _ok(a.web_url, "namespaces", "unload", ns, "--bundle", now.range, "-d", target.broker_id)
        # Until the bundle is placed again a lookup may answer 503 (retryable), then the target.
        _eventually(lambda: _owner(a, topic) == target.service_url, 10, "the bundle on the named broker")
        producer.send(b"moved")
        receive_until(consumer, b"moved", seen)
    finally:
        client.close()


def test_policy_changes_made_at_one_broker_reach_topics_loaded_on_another(brokers):
    a, b, ns, topic = _topic_served_by_b(brokers, "capped")
    partitioned = f"persistent://{ns}/dedup"
    assert _owner(b, f"{partitioned}-partition-0", authoritative=True) == b.service_url
    _ok(a.web_url, "topics", "create-partitioned-topic", partitioned, "-p", "1")
    client = _client(b.service_url)
    try:
        first = client.create_producer(topic)
        client.create_producer(topic).close()  # no cap yet: a second producer is welcome

        # A namespace policy set at A (which has none of its topics): B's loaded topic takes it.
        _ok(a.web_url, "namespaces", "set-max-producers-per-topic", ns, "-p", "1")

        def refused() -> bool:
            try:
                client.create_producer(topic).close()
                return False
            except pulsar.ProducerBusy:
                return True

        took = _eventually(refused, 10, "B refusing a second producer")
        first.send(b"still")  # the producer it had stays

        # A topic policy of a partitioned topic set at A (answered there: its partitions may be
        # anywhere): de-duplication turns on in B's loaded partition.
        consumer = client.subscribe(partitioned, "s")
        producer = client.create_producer(partitioned, batching_enabled=False)
        producer.send(b"10", sequence_id=10)
        producer.send(b"5", sequence_id=5)  # de-duplication is off: stored
        assert [consumer.receive(10_000).data() for _ in range(2)] == [b"10", b"5"]
        _ok(a.web_url, "topics", "set-deduplication", partitioned, "--enable")
        started, sequence = time.monotonic(), 100
        while True:
            producer.send(str(sequence).encode(), sequence_id=sequence)
            producer.send(str(sequence - 5).encode(), sequence_id=sequence - 5)
            assert consumer.receive(10_000).data() == str(sequence).encode()
            try:
                late = consumer.receive(1_000)
            except pulsar.Timeout:
                break  # the lower sequence id was dropped: de-duplication is on at B
            assert late.data() == str(sequence - 5).encode()
            assert time.monotonic() - started < 10, "de-duplication did not reach B within 10 s"
            sequence += 100
        print(f"namespace policy reached B in {took:.1f} s, topic policy in {time.monotonic() - started:.1f} s")
    finally:
        client.close()
