"""Messages that are not acknowledged come back: negative acks, ack timeout, dead-letter topic."""

import time

import pulsar
from pulsar import ConsumerType, InitialPosition

from tests.compat.helpers import drain, receive, send_numbered, texts


def test_negative_acks_count_redeliveries_then_go_to_the_dead_letter_topic(client, topic):
    dead = topic + "-dead"
    policy = pulsar.ConsumerDeadLetterPolicy(max_redeliver_count=2, dead_letter_topic=dead)
    audit = client.subscribe(dead, "audit", initial_position=InitialPosition.Earliest)
    sub = client.subscribe(
        topic,
        "sub",
        consumer_type=ConsumerType.Shared,
        negative_ack_redelivery_delay_ms=100,
        dead_letter_policy=policy,
    )
    client.create_producer(topic).send(b"poison", properties={"origin": "compat"})

    def nack_once() -> int:
        msg = sub.receive(timeout_millis=10_000)
        sub.negative_acknowledge(msg)
        return msg.redelivery_count()

    assert [nack_once() for _ in range(3)] == [0, 1, 2]
    letter = audit.receive(timeout_millis=15_000)
    assert (letter.data(), letter.properties()["origin"]) == (b"poison", "compat")
    assert drain(sub, idle_ms=1000) == []


def test_ack_timeout_redelivers_what_was_not_acknowledged(client, topic):
    consumer = client.subscribe(
        topic, "sub", consumer_type=ConsumerType.Shared, unacked_messages_timeout_ms=10_000
    )
    send_numbered(client.create_producer(topic), 3)
    first = receive(consumer, 3, ack=False)
    consumer.acknowledge(first[1])
    again = receive(consumer, 2, timeout_ms=25_000)
    assert sorted(texts(again)) == ["0", "2"]
    assert [m.redelivery_count() for m in again] == [1, 1]


def test_redeliver_unacknowledged_on_request(client, topic):
    consumer = client.subscribe(topic, "sub", consumer_type=ConsumerType.Shared)
    send_numbered(client.create_producer(topic), 4)
    first = receive(consumer, 4, ack=False)
    consumer.acknowledge(first[0])
    consumer.acknowledge(first[3])
    time.sleep(0.5)  # the client groups acks for 100 ms: let them reach the broker first
    consumer.redeliver_unacknowledged_messages()
    assert sorted(texts(drain(consumer, idle_ms=2000))) == ["1", "2"]
