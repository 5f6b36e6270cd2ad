"""Partitioned topics created through the admin REST API and used by the official client."""

import collections

from pulsar import InitialPosition, PartitionsRoutingMode

from tests.compat.helpers import drain

PARTITIONS = 3


def rest(topic: str) -> str:
    return "/admin/v2/" + topic.replace("://", "/")


def test_keys_stay_on_one_partition_and_every_message_arrives(client, admin, topic):
    assert admin.put(f"{rest(topic)}/partitions", json=PARTITIONS).status_code == 204
    assert admin.get(f"{rest(topic)}/partitions").json()["partitions"] == PARTITIONS
    consumer = client.subscribe(topic, "sub", initial_position=InitialPosition.Earliest)
    producer = client.create_producer(topic, batching_enabled=False)
    for i in range(60):
        producer.send(f"{i % 6}:{i}".encode(), partition_key=f"key-{i % 6}")
    got = drain(consumer, idle_ms=1500)
    assert sorted(int(m.data().split(b":")[1]) for m in got) == list(range(60))
    partitions_of = collections.defaultdict(set)
    for m in got:
        partitions_of[m.partition_key()].add(m.topic_name())
    assert all(len(p) == 1 for p in partitions_of.values()), partitions_of
    assert {t for p in partitions_of.values() for t in p} <= {
        f"{topic}-partition-{n}" for n in range(PARTITIONS)
    }


def test_round_robin_spreads_over_every_partition(client, admin, topic):
    assert admin.put(f"{rest(topic)}/partitions", json=PARTITIONS).status_code == 204
    consumer = client.subscribe(topic, "sub", initial_position=InitialPosition.Earliest)
    producer = client.create_producer(
        topic, batching_enabled=False, message_routing_mode=PartitionsRoutingMode.RoundRobinDistribution
    )
    for i in range(30):
        producer.send(str(i).encode())
    got = drain(consumer, idle_ms=1500)
    assert sorted(int(m.data()) for m in got) == list(range(30))
    per_partition = collections.Counter(m.topic_name() for m in got)
    assert per_partition == {f"{topic}-partition-{n}": 10 for n in range(PARTITIONS)}
    stats = admin.get(f"{rest(topic)}/partitioned-stats").json()
    assert stats["metadata"]["partitions"] == PARTITIONS
    assert stats["msgInCounter"] == 30


def test_partition_count_can_grow(client, admin, topic):
    assert admin.put(f"{rest(topic)}/partitions", json=2).status_code == 204
    assert admin.post(f"{rest(topic)}/partitions", json=4).status_code == 204
    assert admin.get(f"{rest(topic)}/partitions").json()["partitions"] == 4
    assert client.get_topic_partitions(topic) == [f"{topic}-partition-{n}" for n in range(4)]
