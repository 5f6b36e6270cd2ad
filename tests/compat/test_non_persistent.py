"""Non-persistent topics as Apache Pulsar serves them: messages reach the consumers connected
when they are published, and no one else; every message id is the synthetic (0, 0); a consumer
without permits loses what it had no room for; a seek succeeds and changes nothing; what
needs stored messages (last message id, peek) is refused; subscriptions are made by clients."""

import time
import uuid

import pulsar
import pytest
from pulsar import ConsumerType, MessageId

from tests.compat.helpers import drain, receive, send_numbered, texts
from tests.compat.test_admin_rest import rest


@pytest.fixture
def np_topic():
    return f"non-persistent://public/default/compat-np-{uuid.uuid4().hex[:8]}"


def test_a_non_persistent_topic_carries_messages_to_a_live_consumer(client, np_topic):
    producer = client.create_producer(np_topic, batching_enabled=False)
    early = producer.send(b"before anyone subscribed")
    consumer = client.subscribe(np_topic, "live")
    ids = send_numbered(producer, 3)
    got = receive(consumer, 3)
    assert texts(got) == ["0", "1", "2"]
    assert drain(consumer, 500) == []  # the early message went to no one
    assert {(i.ledger_id(), i.entry_id()) for i in [early, *ids, *(m.message_id() for m in got)]} == {(0, 0)}


def test_a_reader_gets_only_what_is_published_after_it_connects(client, np_topic):
    producer = client.create_producer(np_topic, batching_enabled=False)
    producer.send(b"old")
    reader = client.create_reader(np_topic, MessageId.earliest)
    producer.send(b"new")
    assert reader.read_next(10_000).data() == b"new"
    with pytest.raises(pulsar.Timeout):
        reader.read_next(500)


def test_shared_and_key_shared_consumers_split_the_messages(client, np_topic):
    shared = [client.subscribe(np_topic, "shared", consumer_type=ConsumerType.Shared) for _ in range(2)]
    keyed = [client.subscribe(np_topic, "keyed", consumer_type=ConsumerType.KeyShared) for _ in range(2)]
    producer = client.create_producer(np_topic, batching_enabled=False)
    for i in range(20):
        producer.send(str(i).encode(), partition_key=f"k{i % 4}")
    parts = [texts(drain(c, 500)) for c in shared]
    assert sorted(parts[0] + parts[1], key=int) == [str(i) for i in range(20)]
    owners: dict[str, set[int]] = {}
    total = 0
    for index, consumer in enumerate(keyed):
        for message in drain(consumer, 500):
            owners.setdefault(message.partition_key(), set()).add(index)
            total += 1
    assert total == 20 and len(owners) == 4
    assert all(len(holders) == 1 for holders in owners.values())  # each key on one consumer


def test_a_consumer_without_room_loses_the_overflow(client, admin, np_topic):
    consumer = client.subscribe(np_topic, "slow", receiver_queue_size=5)
    producer = client.create_producer(np_topic, batching_enabled=False)
    for i in range(30):
        producer.send_async(str(i).encode(), None)
    producer.flush()
    time.sleep(0.5)
    got = texts(drain(consumer, 500))
    assert 5 <= len(got) < 30 and got == [str(i) for i in range(len(got))]
    stats = admin.get(f"{rest(np_topic)}/stats").json()
    assert stats["msgInCounter"] == 30 and "msgDropRate" in stats["subscriptions"]["slow"]


def test_partitioned_non_persistent_topic(client, admin, np_topic):
    assert admin.put(f"{rest(np_topic)}/partitions", json=3).status_code == 204
    assert admin.get(f"{rest(np_topic)}/partitions").json()["partitions"] == 3
    consumer = client.subscribe(np_topic, "all")
    producer = client.create_producer(np_topic, batching_enabled=False)
    ids = [producer.send(str(i).encode(), partition_key=f"key-{i}") for i in range(9)]
    assert len({i.partition() for i in ids}) > 1
    assert sorted(texts(receive(consumer, 9)), key=int) == [str(i) for i in range(9)]
    listed = admin.get("/admin/v2/non-persistent/public/default").json()
    assert {f"{np_topic}-partition-{i}" for i in range(3)} <= set(listed)
    assert np_topic in admin.get("/admin/v2/non-persistent/public/default/partitioned").json()


def test_seek_succeeds_and_stored_message_requests_are_refused(client, admin, np_topic):
    consumer = client.subscribe(np_topic, "s")
    producer = client.create_producer(np_topic, batching_enabled=False)
    producer.send(b"a")
    assert texts(receive(consumer, 1)) == ["a"]
    consumer.seek(MessageId.earliest)  # nothing stored to go back to
    time.sleep(0.5)
    producer.send(b"b")
    assert texts(drain(consumer, 1000)) == ["b"]
    with pytest.raises(pulsar.PulsarException):
        consumer.get_last_message_id()  # Pulsar: UnknownError; Taureau: NotAllowed
    base = rest(np_topic)
    assert admin.get(f"{base}/lastMessageId").status_code == 405
    assert admin.get(f"{base}/subscription/s/position/1").status_code == 405
    assert admin.put(f"{base}/subscription/by-admin").status_code == 400
    assert admin.post(f"{base}/subscription/s/resetcursor/0").status_code == 204
    assert admin.get(f"{base}/subscriptions").json() == ["s"]


def test_admin_deletes_subscriptions_and_topics(client, admin, np_topic):
    consumer = client.subscribe(np_topic, "s")
    producer = client.create_producer(np_topic)
    base = rest(np_topic)
    assert np_topic in admin.get("/admin/v2/non-persistent/public/default").json()
    assert admin.delete(base).status_code == 412  # clients connected
    consumer.close()
    assert admin.get(f"{base}/subscriptions").json() == []  # it went with its last consumer
    producer.close()
    assert admin.delete(base).status_code == 204
    assert admin.get(f"{base}/stats").status_code == 404
