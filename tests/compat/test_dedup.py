"""Broker-side de-duplication, switched on per namespace through the admin REST API."""

import uuid

import pytest
from pulsar import InitialPosition

from tests.compat.helpers import drain, texts


@pytest.fixture
def dedup_namespace(admin):
    namespace = f"public/compat-dedup-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"/admin/v2/namespaces/{namespace}").status_code == 204
    assert admin.post(f"/admin/v2/namespaces/{namespace}/deduplication", json=True).status_code == 204
    return namespace


def test_a_restarted_producer_resumes_its_sequence_and_repeats_are_dropped(client, dedup_namespace):
    topic = f"persistent://{dedup_namespace}/orders"
    producer = client.create_producer(topic, producer_name="orders-writer", batching_enabled=False)
    for seq in range(5):
        producer.send(f"order-{seq}".encode(), sequence_id=seq)
    producer.close()
    again = client.create_producer(topic, producer_name="orders-writer", batching_enabled=False)
    assert again.last_sequence_id() == 4
    for seq in (3, 4, 5):  # 3 and 4 were stored already
        again.send(f"order-{seq}".encode(), sequence_id=seq)
    consumer = client.subscribe(topic, "sub", initial_position=InitialPosition.Earliest)
    assert texts(drain(consumer)) == [f"order-{seq}" for seq in range(6)]


def test_without_deduplication_repeats_are_stored(client, topic):
    producer = client.create_producer(topic, producer_name="plain-writer", batching_enabled=False)
    producer.send(b"a", sequence_id=1)
    producer.send(b"a", sequence_id=1)
    consumer = client.subscribe(topic, "sub", initial_position=InitialPosition.Earliest)
    assert texts(drain(consumer)) == ["a", "a"]
