"""Behaviours issue 8 listed as missing in Taureau, asserted as Apache Pulsar behaves.

Each was a strict xfail against Taureau (taureau_gap) until the parity work landed; all must pass
against both brokers.
"""

import datetime
import time

import pulsar
import pytest
from pulsar import ConsumerType, InitialPosition, ProducerAccessMode

from tests.compat.helpers import drain, receive, texts


def test_delayed_delivery_holds_a_message_back_on_a_shared_subscription(client, topic):
    consumer = client.subscribe(topic, "sub", consumer_type=ConsumerType.Shared)
    producer = client.create_producer(topic, batching_enabled=False)
    sent = time.monotonic()
    producer.send(b"later", deliver_after=datetime.timedelta(seconds=3))
    producer.send(b"now")
    assert texts(receive(consumer, 1)) == ["now"]
    assert receive(consumer, 1, timeout_ms=10_000)[0].data() == b"later"
    assert time.monotonic() - sent >= 2.5


def test_a_second_exclusive_producer_is_fenced(client, topic):
    client.create_producer(topic, access_mode=ProducerAccessMode.Exclusive)
    with pytest.raises(pulsar.ProducerFenced):
        client.create_producer(topic, access_mode=ProducerAccessMode.Exclusive)


def test_batch_index_acks_keep_the_acknowledged_half_of_a_batch(client, topic):
    producer = client.create_producer(
        topic, batching_enabled=True, batching_max_messages=5, batching_max_publish_delay_ms=100
    )
    for i in range(5):
        producer.send_async(str(i).encode(), None)
    producer.flush()
    consumer = client.subscribe(
        topic, "sub", initial_position=InitialPosition.Earliest, batch_index_ack_enabled=True
    )
    got = receive(consumer, 5, ack=False)
    consumer.acknowledge(got[0])
    consumer.acknowledge(got[1])
    time.sleep(0.5)  # the client groups acks for 100 ms: let them reach the broker first
    consumer.close()
    again = client.subscribe(topic, "sub", batch_index_ack_enabled=True)
    assert texts(drain(again)) == ["2", "3", "4"]
