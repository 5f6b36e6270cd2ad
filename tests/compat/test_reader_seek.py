"""Readers and consumer seek: where each starts, with Apache Pulsar's inclusive/exclusive rules."""

import time

from pulsar import InitialPosition, MessageId

from tests.compat.helpers import drain, send_numbered, texts


def read_all(reader) -> list[str]:
    out = []
    while reader.has_message_available():
        out.append(reader.read_next(timeout_millis=5000).data().decode())
    return out


def test_reader_from_earliest_latest_and_a_message_id(client, topic):
    producer = client.create_producer(topic)
    ids = send_numbered(producer, 6)
    assert read_all(client.create_reader(topic, MessageId.earliest)) == [str(i) for i in range(6)]
    assert read_all(client.create_reader(topic, MessageId.latest)) == []
    assert read_all(client.create_reader(topic, ids[2])) == ["3", "4", "5"]
    inclusive = client.create_reader(topic, ids[2], start_message_id_inclusive=True)
    assert read_all(inclusive) == ["2", "3", "4", "5"]


def test_reader_on_an_empty_topic_has_nothing_then_sees_new_messages(client, topic):
    producer = client.create_producer(topic)
    reader = client.create_reader(topic, MessageId.earliest)
    assert not reader.has_message_available()
    producer.send(b"late")
    assert reader.read_next(timeout_millis=5000).data() == b"late"


def test_consumer_seek_to_a_message_id_earliest_and_a_time(client, topic):
    producer = client.create_producer(topic)
    consumer = client.subscribe(topic, "seeker", initial_position=InitialPosition.Earliest)
    ids = send_numbered(producer, 3)
    time.sleep(0.1)
    middle = int(time.time() * 1000)
    time.sleep(0.1)
    ids += send_numbered(producer, 3, start=3)
    assert texts(drain(consumer)) == ["0", "1", "2", "3", "4", "5"]
    consumer.seek(ids[4])  # the client skips the message sought: delivery resumes after it
    assert texts(drain(consumer)) == ["5"]
    consumer.seek(MessageId.earliest)
    assert texts(drain(consumer)) == ["0", "1", "2", "3", "4", "5"]
    consumer.seek(middle)
    assert texts(drain(consumer)) == ["3", "4", "5"]


def test_reader_seek_moves_it_back(client, topic):
    ids = send_numbered(client.create_producer(topic), 4)
    reader = client.create_reader(topic, MessageId.earliest)
    assert read_all(reader) == ["0", "1", "2", "3"]
    reader.seek(ids[1])
    assert read_all(reader) == ["2", "3"]
