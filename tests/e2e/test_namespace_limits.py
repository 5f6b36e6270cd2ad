"""Namespace limits that stop one tenant from starving the others, set with pulsar-admin's
verbs and REST paths and enforced on the official client: producers and consumers per topic
(ProducerBusy / ConsumerBusy), topics per namespace (412 over REST, NotAllowedError on the
wire), and a publish rate that throttles instead of refusing."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pulsar
import pytest

from taureau.broker.error_codes import ServerError
from tests.e2e.raw import RawClient, T

STANDALONE = {"args": ["--no-functions"]}


def _admin(standalone, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", standalone.admin_url,
                           *args], capture_output=True, text=True, timeout=60)


def _namespace(standalone, name: str) -> str:
    ns = f"public/{name}"
    assert _admin(standalone, "namespaces", "create", ns).returncode == 0
    return ns


def test_max_producers_per_topic(standalone, client):
    ns = _namespace(standalone, "lim-producers")
    topic = f"persistent://{ns}/t"
    set_ = _admin(standalone, "namespaces", "set-max-producers-per-topic", ns, "-p", "2")
    assert set_.returncode == 0, set_.stderr
    shown = _admin(standalone, "namespaces", "get-max-producers-per-topic", ns)
    assert shown.returncode == 0 and shown.stdout.strip() == "2"
    first, second = client.create_producer(topic), client.create_producer(topic)
    with pytest.raises(pulsar.ProducerBusy):
        client.create_producer(topic)
    raw = RawClient(standalone.broker_port)
    refused = raw.producer(topic)
    assert refused.type == T.ERROR and refused.error.error == ServerError.ProducerBusy
    assert refused.error.message == f"Topic reached max producers limit (2): {topic}"
    first.close()
    client.create_producer(topic).send(b"room again")  # a closed producer frees its place
    assert _admin(standalone, "namespaces", "remove-max-producers-per-topic", ns).returncode == 0
    client.create_producer(topic)
    second.close()


def test_max_consumers_per_topic(standalone, client):
    ns = _namespace(standalone, "lim-consumers")
    topic = f"persistent://{ns}/t"
    assert _admin(standalone, "namespaces", "set-max-consumers-per-topic", ns, "-c", "1").returncode == 0
    consumer = client.subscribe(topic, "a")
    with pytest.raises(pulsar.ConsumerBusy):
        client.subscribe(topic, "b")  # any subscription of the topic counts
    consumer.close()
    client.subscribe(topic, "b").close()


def test_max_subscriptions_per_topic(standalone, client):
    ns = _namespace(standalone, "lim-subscriptions")
    topic = f"persistent://{ns}/t"
    set_ = _admin(standalone, "namespaces", "set-max-subscriptions-per-topic", ns, "-s", "2")
    assert set_.returncode == 0, set_.stderr
    client.subscribe(topic, "a").close()
    client.subscribe(topic, "b").close()
    with pytest.raises(pulsar.NotAllowedError):
        client.subscribe(topic, "c")
    stats = httpx.get(f"{standalone.admin_url}/admin/v2/persistent/{ns}/t/stats").json()
    assert sorted(stats["subscriptions"]) == ["a", "b"]  # the refused one left nothing behind
    client.subscribe(topic, "a").close()  # an existing subscription is not a new one
    reader = client.create_reader(topic, pulsar.MessageId.earliest)  # readers are not counted
    reader.close()
    assert _admin(standalone, "namespaces", "remove-max-subscriptions-per-topic", ns).returncode == 0
    client.subscribe(topic, "c").close()


def test_max_topics_per_namespace(standalone, client):
    ns = _namespace(standalone, "lim-topics")
    assert _admin(standalone, "namespaces", "set-max-topics-per-namespace", ns, "-t", "3").returncode == 0
    with httpx.Client(base_url=standalone.admin_url, timeout=10) as http:
        assert http.put(f"/admin/v2/persistent/{ns}/one").status_code == 204
        assert http.put(f"/admin/v2/persistent/{ns}/two").status_code == 204
        over = http.put(f"/admin/v2/persistent/{ns}/parted/partitions", json=2)  # 2 partitions: 4 topics
        assert over.status_code == 412
        assert over.json()["reason"] == f"Exceed maximum number of topics in namespace {ns}: 2 of 3"
        client.create_producer(f"persistent://{ns}/three").send(b"x")  # auto-created: the third
        with pytest.raises(pulsar.NotAllowedError):
            client.create_producer(f"persistent://{ns}/four")
        assert http.put(f"/admin/v2/persistent/{ns}/four").status_code == 412
        assert sorted(http.get(f"/admin/v2/persistent/{ns}").json()) == [
            f"persistent://{ns}/{t}" for t in ("one", "three", "two")
        ]


def _send_all(client, topic: str, count: int) -> float:
    """A burst of `count - 1` messages, then one more once they are stored: the seconds taken."""
    producer = client.create_producer(topic, batching_enabled=False, send_timeout_millis=60_000)
    started = time.monotonic()
    for i in range(count - 1):
        producer.send_async(b"%d" % i, None)
    producer.flush()
    producer.send(b"%d" % (count - 1))
    elapsed = time.monotonic() - started
    producer.close()
    return elapsed


def test_publish_rate_throttles_and_stores_everything(standalone, client):
    ns = _namespace(standalone, "lim-rate")
    topic = f"persistent://{ns}/t"
    consumer = client.subscribe(topic, "all")
    rate = _admin(standalone, "namespaces", "set-publish-rate", ns, "-m", "20")
    assert rate.returncode == 0, rate.stderr
    shown = _admin(standalone, "namespaces", "get-publish-rate", ns)
    assert '"publishThrottlingRateInMsg": 20' in shown.stdout
    # 100 messages at 20 a second, one second's worth as a burst: the last is read 4 s after
    # the first at the earliest, however fast the box.
    assert _send_all(client, topic, 100) >= 3.5
    received = [consumer.receive(5000).data() for _ in range(100)]
    assert received == [b"%d" % i for i in range(100)]  # throttled, not dropped
    assert _admin(standalone, "namespaces", "remove-publish-rate", ns).returncode == 0
    assert _send_all(client, topic, 100) < 3.5


def test_bad_limits_are_refused_and_store_nothing(standalone):
    ns = _namespace(standalone, "lim-bad")
    with httpx.Client(base_url=standalone.admin_url, timeout=10) as http:
        for path, body in [("maxProducersPerTopic", -1), ("maxProducersPerTopic", "2"),
                           ("maxConsumersPerTopic", True), ("maxTopicsPerNamespace", 1.5),
                           ("maxSubscriptionsPerTopic", -2),
                           ("publishRate", {"publishThrottlingRateInMsg": -5}),
                           ("publishRate", {"publishThrottlingRateInMsg": "fast"}),
                           ("publishRate", {"rate": 1}), ("publishRate", [1])]:
            response = http.post(f"/admin/v2/namespaces/{ns}/{path}", json=body)
            assert response.status_code == 400, (path, body, response.text)
        policies = http.get(f"/admin/v2/namespaces/{ns}").json()
        assert policies["max_producers_per_topic"] is None and policies["publishMaxMessageRate"] is None
    bad = _admin(standalone, "namespaces", "set-publish-rate", ns, "-m", "lots")
    assert bad.returncode == 2 and "invalid rate 'lots'" in bad.stderr
