"""Issue 8's parity behaviours, asserted as Apache Pulsar behaves: producer access modes, sticky
Key_Shared ranges, chunks, delayed delivery on Exclusive, HTTP service URLs, backlogSize and
topic listings, schemas and compaction. Non-persistent topics, the last gap, are
test_non_persistent.py's."""

import datetime
import threading
import time
from dataclasses import dataclass

import mmh3
import pulsar
import pytest
from pulsar import ConsumerType, InitialPosition, MessageId, ProducerAccessMode
from pulsar.schema import JsonSchema, Record, String, StringSchema

from tests.compat.helpers import drain, receive, send_numbered, texts
from tests.compat.test_admin_rest import rest


def new_client(url: str) -> pulsar.Client:
    return pulsar.Client(url, operation_timeout_seconds=15, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


# -- producer access modes ----------------------------------------------------------------------


def test_a_shared_producer_beside_an_exclusive_one_is_busy(client, topic):
    holder = client.create_producer(topic, access_mode=ProducerAccessMode.Exclusive)
    with pytest.raises(pulsar.ProducerBusy):
        client.create_producer(topic)
    holder.send(b"still mine")


def test_exclusive_with_fencing_takes_the_topic_over(client, topic):
    old = client.create_producer(topic, access_mode=ProducerAccessMode.Exclusive, send_timeout_millis=5000)
    old.send(b"before")
    new = client.create_producer(topic, access_mode=ProducerAccessMode.ExclusiveWithFencing)
    new.send(b"after")
    with pytest.raises(pulsar.ProducerFenced):
        old.send(b"too late")
    reader = client.create_reader(topic, MessageId.earliest)
    assert [reader.read_next(5000).data() for _ in range(2)] == [b"before", b"after"]
    with pytest.raises(pulsar.Timeout):
        reader.read_next(500)


def test_wait_for_exclusive_waits_until_the_holder_leaves(client, topic):
    holder = client.create_producer(topic, access_mode=ProducerAccessMode.Exclusive)
    waited: list = []
    thread = threading.Thread(
        target=lambda: waited.append(client.create_producer(topic, access_mode=ProducerAccessMode.WaitForExclusive))
    )
    thread.start()
    thread.join(2.0)
    assert thread.is_alive() and not waited  # queued behind the holder
    holder.send(b"first")
    holder.close()
    thread.join(15.0)
    assert waited, "the waiting producer never got the topic"
    waited[0].send(b"second")
    reader = client.create_reader(topic, MessageId.earliest)
    assert [reader.read_next(5000).data() for _ in range(2)] == [b"first", b"second"]


# -- subscriptions ------------------------------------------------------------------------------


def test_key_shared_sticky_ranges_hold_the_keys_murmur3_puts_there(client, topic):
    # Murmur3 (x86, 32 bit, seed 0) of the key, mod 65536: a client's range names the same keys.
    ranges = {"low": (0, 32767), "high": (32768, 65535)}
    consumers = {
        name: client.subscribe(
            topic,
            "sticky",
            consumer_type=ConsumerType.KeyShared,
            key_shared_policy=pulsar.ConsumerKeySharedPolicy(pulsar.KeySharedMode.Sticky, sticky_ranges=[span]),
        )
        for name, span in ranges.items()
    }
    producer = client.create_producer(topic, batching_enabled=False)
    keys = [f"key-{i}" for i in range(40)]
    for key in keys:
        producer.send_async(key.encode(), None, partition_key=key)
    producer.flush()
    owner = {}
    for name, consumer in consumers.items():
        for msg in drain(consumer):
            owner[msg.partition_key()] = name
    assert sorted(owner) == sorted(keys)
    for key, name in owner.items():
        low, high = ranges[name]
        assert low <= mmh3.hash(key.encode(), 0, signed=False) % 65536 <= high, key


def test_two_consumers_creating_one_subscription_at_once_both_get_it(broker, topic):
    clients = [new_client(broker.service_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcome: list = []

    def subscribe(c: pulsar.Client) -> None:
        barrier.wait()
        try:
            outcome.append(c.subscribe(topic, "fresh", consumer_type=ConsumerType.Shared))
        except pulsar.PulsarException as exc:  # recorded, so the assertion names it
            outcome.append(exc)

    try:
        threads = [threading.Thread(target=subscribe, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(outcome) == 2 and all(isinstance(o, pulsar.Consumer) for o in outcome), outcome
    finally:
        for c in clients:
            c.close()


def test_exclusive_subscriptions_deliver_delayed_messages_at_once(client, topic):
    consumer = client.subscribe(topic, "now", consumer_type=ConsumerType.Exclusive)
    producer = client.create_producer(topic, batching_enabled=False)
    sent = time.monotonic()
    producer.send(b"delayed", deliver_after=datetime.timedelta(seconds=5))
    assert consumer.receive(3000).data() == b"delayed"
    assert time.monotonic() - sent < 3


def test_a_message_over_the_size_limit_travels_in_chunks(client, topic):
    big = bytes(range(256)) * (6 * 1024 * 1024 // 256)  # over the 5 MiB default of both brokers
    consumer = client.subscribe(topic, "chunks", consumer_type=ConsumerType.Shared)
    producer = client.create_producer(topic, chunking_enabled=True, batching_enabled=False)
    producer.send(big)
    producer.send(b"small after big")
    msg = consumer.receive(30000)
    assert msg.data() == big
    consumer.acknowledge(msg)
    assert consumer.receive(10000).data() == b"small after big"


def test_an_unchunked_message_over_the_size_limit_is_refused(client, topic):
    producer = client.create_producer(topic, batching_enabled=False)
    with pytest.raises(pulsar.MessageTooBig):
        producer.send(b"x" * (6 * 1024 * 1024))
    producer.send(b"the producer still works")


# -- service URLs, stats and listings -----------------------------------------------------------


def test_an_http_service_url_works(broker, admin, topic):
    assert "standalone" in admin.get("/admin/v2/clusters").json()
    looked_up = admin.get("/lookup/v2/topic/" + topic.replace("://", "/")).json()
    assert looked_up["brokerUrl"] == broker.service_url
    over_http = new_client(broker.admin_url)
    try:
        consumer = over_http.subscribe(topic, "over-http")
        send_numbered(over_http.create_producer(topic, batching_enabled=False), 3)
        assert texts(receive(consumer, 3)) == ["0", "1", "2"]
    finally:
        over_http.close()


def _stats(admin, topic: str) -> dict:
    return admin.get(f"{rest(topic)}/stats").json()


def test_backlog_size_is_what_subscriptions_have_not_acknowledged(client, admin, topic):
    producer = client.create_producer(topic, batching_enabled=False)
    producer.send(b"x" * 100)
    assert _stats(admin, topic)["backlogSize"] == 0  # no subscription: no backlog
    consumer = client.subscribe(topic, "slow", initial_position=InitialPosition.Earliest)
    send_numbered(producer, 3)
    assert _stats(admin, topic)["backlogSize"] > 0
    receive(consumer, 4)
    deadline = time.monotonic() + 10
    while (stats := _stats(admin, topic))["backlogSize"] != 0:
        assert time.monotonic() < deadline, f"backlogSize stays {stats['backlogSize']} after every ack"
        time.sleep(0.1)
    assert stats["storageSize"] > 0  # acknowledged, still stored


def test_topics_list_includes_partitions_right_after_creation(admin, topic):
    assert admin.put(f"{rest(topic)}/partitions", json=3).status_code == 204
    listed = admin.get("/admin/v2/persistent/public/default").json()
    assert {f"{topic}-partition-{i}" for i in range(3)} <= set(listed)
    assert topic in admin.get("/admin/v2/persistent/public/default/partitioned").json()


# -- what Taureau does not have yet -------------------------------------------------------------


class Reading(Record):
    sensor = String()


def test_a_producer_with_an_incompatible_schema_is_refused(client, topic):
    client.create_producer(topic, schema=StringSchema()).send("text")
    with pytest.raises(pulsar.IncompatibleSchema):
        client.create_producer(topic, schema=JsonSchema(Reading))


@dataclass
class Compaction:
    status: str
    error: str | None


def _compaction(admin, topic: str) -> Compaction:
    body = admin.get(f"{rest(topic)}/compaction").json()
    return Compaction(body.get("status", "?"), body.get("lastError"))


def test_a_compacted_read_sees_the_latest_value_of_each_key(client, admin, topic):
    producer = client.create_producer(topic, batching_enabled=False)
    for key, value in [("a", "1"), ("b", "1"), ("a", "2"), ("b", "2"), ("a", "3")]:
        producer.send(value.encode(), partition_key=key)
    assert admin.put(f"{rest(topic)}/compaction").status_code == 204
    deadline = time.monotonic() + 30
    while (state := _compaction(admin, topic)).status != "SUCCESS":
        assert state.status in ("RUNNING", "NOT_RUN") and time.monotonic() < deadline, state
        time.sleep(0.2)
    reader = client.create_reader(topic, MessageId.earliest, is_read_compacted=True)
    latest = [(m.partition_key(), m.data().decode()) for m in (reader.read_next(5000) for _ in range(2))]
    assert sorted(latest) == [("a", "3"), ("b", "2")]
