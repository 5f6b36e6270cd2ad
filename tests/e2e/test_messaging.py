"""Produce and consume through the official pulsar-client against a real standalone."""

import collections
import re
import socket
import time

import pulsar
import pytest
from pulsar import CompressionType, ConsumerType, InitialPosition, MessageId


def drain(consumer, timeout_ms=500, ack=True):
    out = []
    while True:
        try:
            msg = consumer.receive(timeout_millis=timeout_ms)
        except pulsar.Timeout:
            return out
        out.append(msg)
        if ack:
            consumer.acknowledge(msg)


def test_produce_consume_with_properties_keys_and_event_time(client, topic):
    consumer = client.subscribe(topic, "sub")
    producer = client.create_producer(topic)
    msg_id = producer.send(b"hello", properties={"a": "1"}, partition_key="k1", event_timestamp=1234)
    msg = consumer.receive(timeout_millis=5000)
    assert msg.data() == b"hello"
    assert msg.properties() == {"a": "1"}
    assert msg.partition_key() == "k1"
    assert msg.event_timestamp() == 1234
    assert msg.message_id() == msg_id
    assert msg.topic_name() == topic
    consumer.acknowledge(msg)


@pytest.mark.parametrize(
    "compression",
    [
        CompressionType.NONE,
        CompressionType.LZ4,
        CompressionType.ZLib,
        CompressionType.ZSTD,
        CompressionType.SNAPPY,
    ],
)
def test_batching_and_compression_end_to_end(client, topic, compression):
    consumer = client.subscribe(topic, "sub", receiver_queue_size=50)
    producer = client.create_producer(
        topic, batching_enabled=True, batching_max_messages=100, compression_type=compression
    )
    for i in range(500):
        producer.send_async(f"m{i}".encode(), None)
    producer.flush()
    got = [consumer.receive(timeout_millis=5000) for _ in range(500)]
    assert [m.data() for m in got] == [f"m{i}".encode() for i in range(500)]
    for m in got:
        consumer.acknowledge(m)
    # Entries hold batches: fewer entries than messages were stored.
    assert len({(m.message_id().ledger_id(), m.message_id().entry_id()) for m in got}) < 500


def test_initial_position_earliest_and_latest(client, topic):
    producer = client.create_producer(topic)
    producer.send(b"before")
    earliest = client.subscribe(topic, "early", initial_position=InitialPosition.Earliest)
    latest = client.subscribe(topic, "late", initial_position=InitialPosition.Latest)
    producer.send(b"after")
    assert [m.data() for m in drain(earliest)] == [b"before", b"after"]
    assert [m.data() for m in drain(latest)] == [b"after"]


def test_shared_subscription_spreads_messages_once_each(client, topic):
    consumers = [
        client.subscribe(topic, "shared", consumer_type=ConsumerType.Shared, receiver_queue_size=5)
        for _ in range(3)
    ]
    producer = client.create_producer(topic)
    for i in range(90):
        producer.send(str(i).encode())
    seen = collections.Counter()
    per_consumer = []
    for consumer in consumers:
        got = drain(consumer, timeout_ms=1000)
        per_consumer.append(len(got))
        seen.update(int(m.data()) for m in got)
    # Drain each consumer again: a consumer's queue refills while the others drain.
    for consumer in consumers:
        seen.update(int(m.data()) for m in drain(consumer, timeout_ms=500))
    assert sorted(seen) == list(range(90))
    assert max(seen.values()) == 1
    assert sum(1 for n in per_consumer if n > 0) >= 2


def test_exclusive_second_consumer_is_refused(client, topic):
    client.subscribe(topic, "excl")
    with pytest.raises(pulsar.ConsumerBusy):
        client.subscribe(topic, "excl")


def test_failover_moves_unacked_messages_to_the_next_consumer(client, topic):
    first = client.subscribe(topic, "fo", consumer_type=ConsumerType.Failover, consumer_name="a")
    second = client.subscribe(topic, "fo", consumer_type=ConsumerType.Failover, consumer_name="b")
    producer = client.create_producer(topic)
    for i in range(10):
        producer.send(str(i).encode())
    got = [first.receive(timeout_millis=5000) for _ in range(10)]
    for m in got[:4]:
        first.acknowledge(m)
    with pytest.raises(pulsar.Timeout):
        second.receive(timeout_millis=300)
    first.close()
    rest = drain(second, timeout_ms=2000)
    assert [int(m.data()) for m in rest] == list(range(4, 10))


def test_key_shared_keeps_each_key_on_one_consumer_in_order(client, topic):
    consumers = [
        client.subscribe(topic, "ks", consumer_type=ConsumerType.KeyShared, receiver_queue_size=10)
        for _ in range(3)
    ]
    producer = client.create_producer(topic)
    for i in range(300):
        producer.send(str(i).encode(), partition_key=f"key-{i % 12}")
    owners = collections.defaultdict(set)
    order = collections.defaultdict(list)
    total = 0
    for _ in range(3):
        for index, consumer in enumerate(consumers):
            for m in drain(consumer, timeout_ms=300):
                owners[m.partition_key()].add(index)
                order[m.partition_key()].append(int(m.data()))
                total += 1
    assert total == 300
    assert all(len(o) == 1 for o in owners.values())
    assert all(v == sorted(v) for v in order.values())
    assert len({i for o in owners.values() for i in o}) >= 2


def test_negative_ack_redelivers_with_count_then_dead_letter_topic(client, topic):
    dlq_topic = topic + "-DLQ"
    dlq = client.subscribe(dlq_topic, "dlq-reader", initial_position=InitialPosition.Earliest)
    consumer = client.subscribe(
        topic,
        "sub",
        consumer_type=ConsumerType.Shared,
        negative_ack_redelivery_delay_ms=50,
        dead_letter_policy=pulsar.ConsumerDeadLetterPolicy(
            max_redeliver_count=2, dead_letter_topic=dlq_topic
        ),
    )
    client.create_producer(topic).send(b"poison")
    counts = []
    for _ in range(3):
        msg = consumer.receive(timeout_millis=5000)
        counts.append(msg.redelivery_count())
        consumer.negative_acknowledge(msg)
    assert counts == [0, 1, 2]
    assert dlq.receive(timeout_millis=10000).data() == b"poison"


def test_redeliver_unacknowledged_messages(client, topic):
    consumer = client.subscribe(topic, "sub", consumer_type=ConsumerType.Shared)
    producer = client.create_producer(topic)
    for i in range(3):
        producer.send(str(i).encode())
    first = [consumer.receive(timeout_millis=5000) for _ in range(3)]
    consumer.acknowledge(first[1])
    consumer.redeliver_unacknowledged_messages()
    again = drain(consumer, timeout_ms=2000)
    assert sorted(int(m.data()) for m in again) == [0, 2]
    assert all(m.redelivery_count() == 1 for m in again)


def test_acks_survive_reconnect_and_cumulative_ack(client, topic, standalone):
    producer = client.create_producer(topic)
    for i in range(10):
        producer.send(str(i).encode())
    consumer = client.subscribe(topic, "durable", initial_position=InitialPosition.Earliest)
    got = [consumer.receive(timeout_millis=5000) for _ in range(10)]
    consumer.acknowledge_cumulative(got[5])
    consumer.close()
    time.sleep(0.3)
    consumer = client.subscribe(topic, "durable", initial_position=InitialPosition.Earliest)
    assert [int(m.data()) for m in drain(consumer)] == [6, 7, 8, 9]


def test_reader_from_earliest_and_from_a_message_id(client, topic):
    producer = client.create_producer(topic)
    ids = [producer.send(str(i).encode()) for i in range(5)]
    reader = client.create_reader(topic, MessageId.earliest)
    seen = []
    while reader.has_message_available():
        seen.append(int(reader.read_next(timeout_millis=5000).data()))
    assert seen == [0, 1, 2, 3, 4]
    reader.close()
    reader = client.create_reader(topic, ids[2])
    assert int(reader.read_next(timeout_millis=5000).data()) == 3
    reader.close()
    inclusive = client.create_reader(topic, ids[2], start_message_id_inclusive=True)
    assert int(inclusive.read_next(timeout_millis=5000).data()) == 2


def test_has_message_available_on_empty_topic_and_latest(client, topic):
    client.create_producer(topic)
    reader = client.create_reader(topic, MessageId.earliest)
    assert not reader.has_message_available()
    latest = client.create_reader(topic, MessageId.latest)
    assert not latest.has_message_available()


def test_seek_by_message_id_and_by_time(client, topic):
    producer = client.create_producer(topic)
    consumer = client.subscribe(topic, "seeker", initial_position=InitialPosition.Earliest)
    ids = []
    for i in range(6):
        ids.append(producer.send(str(i).encode()))
        if i == 2:
            time.sleep(0.05)
            middle = int(time.time() * 1000)
            time.sleep(0.05)
    drain(consumer)
    consumer.seek(MessageId.earliest)
    assert [int(m.data()) for m in drain(consumer, timeout_ms=1000)] == [0, 1, 2, 3, 4, 5]
    consumer.seek(middle)
    assert [int(m.data()) for m in drain(consumer, timeout_ms=1000)] == [3, 4, 5]


def test_last_message_id_of_batched_topic(client, topic):
    producer = client.create_producer(topic, batching_enabled=True, batching_max_messages=10)
    for i in range(10):
        producer.send_async(str(i).encode(), None)
    producer.flush()
    consumer = client.subscribe(topic, "s", initial_position=InitialPosition.Earliest)
    msgs = [consumer.receive(timeout_millis=5000) for _ in range(10)]
    reader = client.create_reader(topic, msgs[8].message_id())
    assert reader.has_message_available()
    assert int(reader.read_next(timeout_millis=5000).data()) == 9
    assert not reader.has_message_available()


def test_regex_subscription_sees_topics_of_the_namespace(client, topic):
    for suffix in ("a", "b"):
        client.create_producer(f"{topic}-re-{suffix}").send(suffix.encode())
    client.create_producer(f"{topic}-other").send(b"x")
    pattern = re.compile(re.escape(topic.split("://")[1]) + "-re-.*")
    consumer = client.subscribe(pattern, "rs", initial_position=InitialPosition.Earliest)
    got = sorted(consumer.receive(timeout_millis=5000).data() for _ in range(2))
    assert got == [b"a", b"b"]
    with pytest.raises(pulsar.Timeout):
        consumer.receive(timeout_millis=300)


def test_invalid_topic_name_is_rejected(standalone):
    # The C++ client retries InvalidTopicName until its operation timeout, so check both the
    # typed error on the wire and that the client gives up with an error.
    from taureau.protocol import FrameDecoder, encode_command, pb

    T = pb.BaseCommand.Type
    connect = pb.BaseCommand(
        type=T.CONNECT, connect=pb.CommandConnect(client_version="t", protocol_version=20)
    )
    lookup = pb.BaseCommand(
        type=T.PARTITIONED_METADATA,
        partitionMetadata=pb.CommandPartitionedTopicMetadata(
            topic="persistent://public/default/bad name", request_id=7
        ),
    )
    with socket.create_connection(("127.0.0.1", standalone.broker_port), timeout=5) as sock:
        sock.sendall(encode_command(connect) + encode_command(lookup))
        decoder, frames = FrameDecoder(), []
        while len(frames) < 2:
            frames += decoder.feed(sock.recv(65536))
    response = frames[1].command.partitionMetadataResponse
    assert response.request_id == 7 and response.error == pb.InvalidTopicName
    c = pulsar.Client(standalone.service_url, operation_timeout_seconds=2)
    try:
        with pytest.raises(Exception):  # noqa: B017 - the client reports a timeout here
            c.create_producer("persistent://public/default/bad topic name")
    finally:
        c.close()


def test_reader_seek_moves_the_reader(client, topic):
    producer = client.create_producer(topic)
    ids = [producer.send(str(i).encode()) for i in range(6)]
    reader = client.create_reader(topic, MessageId.earliest)
    assert [int(reader.read_next(timeout_millis=5000).data()) for _ in range(6)] == list(range(6))
    reader.seek(ids[1])
    # As on Pulsar, a reader that seeks to a message id goes on *after* that message.
    assert int(reader.read_next(timeout_millis=5000).data()) == 2


def test_key_shared_sticky_ranges(client, topic):
    from pulsar import ConsumerKeySharedPolicy, KeySharedMode

    low = client.subscribe(
        topic,
        "sticky",
        consumer_type=ConsumerType.KeyShared,
        key_shared_policy=ConsumerKeySharedPolicy(KeySharedMode.Sticky, sticky_ranges=[(0, 32767)]),
    )
    high = client.subscribe(
        topic,
        "sticky",
        consumer_type=ConsumerType.KeyShared,
        key_shared_policy=ConsumerKeySharedPolicy(KeySharedMode.Sticky, sticky_ranges=[(32768, 65535)]),
    )
    producer = client.create_producer(topic)
    for i in range(60):
        producer.send(str(i).encode(), partition_key=f"k{i % 15}")
    owners = collections.defaultdict(set)
    total = 0
    for name, consumer in (("low", low), ("high", high)):
        for m in drain(consumer, timeout_ms=500):
            owners[m.partition_key()].add(name)
            total += 1
    assert total == 60
    assert all(len(o) == 1 for o in owners.values())
    with pytest.raises(Exception):  # noqa: B017 - overlapping ranges are refused
        client.subscribe(
            topic,
            "sticky",
            consumer_type=ConsumerType.KeyShared,
            key_shared_policy=ConsumerKeySharedPolicy(KeySharedMode.Sticky, sticky_ranges=[(100, 200)]),
        )


def test_unsubscribe_deletes_the_subscription(client, topic, standalone):
    import httpx

    producer = client.create_producer(topic)
    consumer = client.subscribe(topic, "gone")
    other = client.subscribe(topic, "shared-sub", consumer_type=ConsumerType.Shared)
    second = client.subscribe(topic, "shared-sub", consumer_type=ConsumerType.Shared)
    producer.send(b"x")
    consumer.unsubscribe()
    path = f"{standalone.admin_url}/admin/v2/persistent/{topic.split('://')[1]}/subscriptions"
    assert httpx.get(path).json() == ["shared-sub"]
    with pytest.raises(Exception):  # noqa: B017 - another consumer is still attached
        other.unsubscribe()
    assert httpx.get(path).json() == ["shared-sub"]
    second.close()
    other.unsubscribe()
    assert httpx.get(path).json() == []


def test_ack_timeout_redelivers(client, topic):
    # 10 s is the Python client's minimum ack timeout.
    consumer = client.subscribe(
        topic, "slow", consumer_type=ConsumerType.Shared, unacked_messages_timeout_ms=10_000
    )
    client.create_producer(topic).send(b"forgotten")
    first = consumer.receive(timeout_millis=5000)
    again = consumer.receive(timeout_millis=25_000)
    assert again.data() == b"forgotten" and again.message_id() == first.message_id()
    assert again.redelivery_count() == 1
    consumer.acknowledge(again)


def test_consumers_subscribing_at_once_to_a_new_subscription_all_succeed(standalone, topic):
    import threading

    errors: list[Exception] = []

    def subscribe(n: int) -> None:
        c = pulsar.Client(standalone.service_url, operation_timeout_seconds=5,
                          logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        try:
            c.subscribe(f"{topic}-{n}", "together", consumer_type=pulsar.ConsumerType.Shared)
        except Exception as exc:  # collected: the assertion below names what failed
            errors.append(exc)
        finally:
            c.close()

    for n in range(5):  # a fresh topic each round: the race is on the subscription's creation
        threads = [threading.Thread(target=subscribe, args=(n,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_large_and_small_messages_arrive_intact_and_in_order(client, topic):
    """Entries of 64 KiB and more leave the broker by reference, beside the small frames
    buffered around them (CoalescingWriter.write_large): order and bytes must not change."""
    consumer = client.subscribe(topic, "s")
    producer = client.create_producer(topic, batching_enabled=False)
    sizes = [10, 1 << 20, 100, 70_000, 65_535, 65_536, 3 << 20, 5] * 2
    payloads = [bytes([i]) * n for i, n in enumerate(sizes)]
    for payload in payloads:
        producer.send_async(payload, None)
    producer.flush()
    received = []
    for _ in payloads:
        msg = consumer.receive(10_000)
        received.append(msg.data())
        consumer.acknowledge(msg)
    assert received == payloads
