"""Each subscription type, through the official Python client, as Apache Pulsar defines it."""

import collections

import pulsar
import pytest
from pulsar import ConsumerType, InitialPosition

from tests.compat.helpers import collect, drain, receive, send_numbered, texts


def test_exclusive_keeps_order_and_metadata_and_refuses_a_second_consumer(client, topic):
    consumer = client.subscribe(topic, "sub", consumer_type=ConsumerType.Exclusive)
    producer = client.create_producer(topic)
    sent = [
        producer.send(
            f"m{i}".encode(), properties={"i": str(i)}, partition_key=f"k{i}", event_timestamp=1000 + i
        )
        for i in range(5)
    ]
    got = receive(consumer, 5)
    assert texts(got) == [f"m{i}" for i in range(5)]
    assert [m.message_id() for m in got] == sent
    assert [(m.properties(), m.partition_key(), m.event_timestamp()) for m in got] == [
        ({"i": str(i)}, f"k{i}", 1000 + i) for i in range(5)
    ]
    with pytest.raises(pulsar.ConsumerBusy):
        client.subscribe(topic, "sub", consumer_type=ConsumerType.Exclusive)


def test_shared_gives_each_message_to_exactly_one_consumer(client, topic):
    consumers = [
        client.subscribe(topic, "sub", consumer_type=ConsumerType.Shared, receiver_queue_size=5)
        for _ in range(2)
    ]
    send_numbered(client.create_producer(topic), 40)
    got = collect(consumers, 40)
    assert sorted(int(msg.data()) for _, msg in got) == list(range(40))
    assert {n for n, _ in got} == {0, 1}, "a receiver queue of 5 cannot hold 40 messages: both must get some"


def test_failover_sends_everything_to_one_consumer_until_it_leaves(client, topic):
    first = client.subscribe(topic, "sub", consumer_type=ConsumerType.Failover, consumer_name="a")
    second = client.subscribe(topic, "sub", consumer_type=ConsumerType.Failover, consumer_name="b")
    send_numbered(client.create_producer(topic), 10)
    got = collect([first, second], 10, ack=False)
    assert len({n for n, _ in got}) == 1, "one active consumer gets every message"
    active, standby = (first, second) if got[0][0] == 0 else (second, first)
    assert texts(msg for _, msg in got) == [str(i) for i in range(10)]
    for _, msg in got[:4]:
        active.acknowledge(msg)
    active.close()  # the unacknowledged 4..9 go to the standby
    assert texts(receive(standby, 6)) == [str(i) for i in range(4, 10)]


def test_key_shared_keeps_each_key_on_one_consumer_in_order(client, topic):
    consumers = [client.subscribe(topic, "sub", consumer_type=ConsumerType.KeyShared) for _ in range(2)]
    producer = client.create_producer(topic, batching_enabled=False)
    keys = [f"key-{k}" for k in range(8)]
    for i in range(10):
        for key in keys:
            producer.send(f"{key}:{i}".encode(), partition_key=key)
    owners: dict[str, set[int]] = collections.defaultdict(set)
    order: dict[str, list[int]] = collections.defaultdict(list)
    for n, consumer in enumerate(consumers):
        for msg in drain(consumer, idle_ms=1500):
            owners[msg.partition_key()].add(n)
            order[msg.partition_key()].append(int(msg.data().decode().split(":")[1]))
    assert {key: len(o) for key, o in owners.items()} == {key: 1 for key in keys}
    assert dict(order) == {key: list(range(10)) for key in keys}


def test_cumulative_ack_is_kept_across_resubscribe(client, topic):
    send_numbered(client.create_producer(topic), 10)
    consumer = client.subscribe(topic, "durable", initial_position=InitialPosition.Earliest)
    got = receive(consumer, 10, ack=False)
    consumer.acknowledge_cumulative(got[6])
    consumer.close()
    again = client.subscribe(topic, "durable", initial_position=InitialPosition.Earliest)
    assert texts(drain(again)) == ["7", "8", "9"]


def test_a_new_subscription_starts_at_the_end_unless_asked_for_the_start(client, topic):
    producer = client.create_producer(topic)
    send_numbered(producer, 2)
    by_default, from_start = (
        client.subscribe(topic, "default"),
        client.subscribe(topic, "start", initial_position=InitialPosition.Earliest),
    )
    send_numbered(producer, 1, start=2)
    assert (texts(drain(by_default)), texts(drain(from_start))) == (["2"], ["0", "1", "2"])
