"""Client-side batching with each compression codec: what is sent is what is received."""

import pytest
from pulsar import CompressionType, InitialPosition

from tests.compat.helpers import receive


@pytest.mark.parametrize("compression", ["NONE", "LZ4", "ZLib", "ZSTD", "SNAPPY"])
def test_batches_of_each_codec_round_trip(client, topic, compression):
    consumer = client.subscribe(topic, "sub", initial_position=InitialPosition.Earliest)
    producer = client.create_producer(
        topic,
        batching_enabled=True,
        batching_max_messages=50,
        batching_max_publish_delay_ms=50,
        compression_type=getattr(CompressionType, compression),
    )
    bodies = [(f"{i:04d}-" + "abc" * (i % 200)).encode() for i in range(300)]  # compressible
    for body in bodies:
        producer.send_async(body, None, properties={"n": body[:4].decode()})
    producer.flush()
    got = receive(consumer, 300)
    assert [m.data() for m in got] == bodies
    assert [m.properties()["n"] for m in got] == [f"{i:04d}" for i in range(300)]
    entries = {(m.message_id().ledger_id(), m.message_id().entry_id()) for m in got}
    assert len(entries) <= 300 // 50 * 2, "messages were stored as batches of up to 50"
    assert {m.message_id().batch_index() for m in got} >= set(range(10))


def test_a_reader_starting_inside_a_batch_begins_after_that_message(client, topic):
    producer = client.create_producer(
        topic, batching_enabled=True, batching_max_messages=10, batching_max_publish_delay_ms=100
    )
    for i in range(10):
        producer.send_async(str(i).encode(), None)
    producer.flush()
    consumer = client.subscribe(topic, "sub", initial_position=InitialPosition.Earliest)
    ids = [m.message_id() for m in receive(consumer, 10)]
    assert len({(i.ledger_id(), i.entry_id()) for i in ids}) == 1, "one batch entry"
    reader = client.create_reader(topic, ids[6])
    assert [reader.read_next(timeout_millis=5000).data() for _ in range(3)] == [b"7", b"8", b"9"]
    assert not reader.has_message_available()
