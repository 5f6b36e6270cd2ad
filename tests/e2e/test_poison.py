"""Poison: inputs that parse cleanly but would do lasting damage once stored (issue 7).

A SEND no consumer could read back is refused with SEND_ERROR(ChecksumError) in order with the
receipts around it, nothing of it is stored, and the producer keeps working. Entries that
were stored anyway (before validation existed, or below the broker) are skipped by dispatch.
A command refused for a non-UTF-8 string leaves no state behind.
"""

from __future__ import annotations

import asyncio
import time
import zlib

import httpx
import pulsar
import pytest
from pulsar import ConsumerType

from taureau.protocol import encode_entry, pb
from tests.e2e.harness import Standalone, append_below_the_broker, receive_all
from tests.e2e.raw import (
    CHECKSUM_ERROR,
    NOT_ALLOWED,
    RawClient,
    T,
    bad_string,
    batch_payload,
    command,
    entry,
    metadata,
)


def _stats(standalone, topic: str) -> httpx.Response:
    return httpx.get(f"{standalone.admin_url}/admin/v2/persistent/{topic.split('://')[1]}/stats")


def _poison(kind: str) -> bytes:
    """Entry bytes a client would choke on, one per way of being bad."""
    if kind == "partition_key":
        return encode_entry(bad_string(metadata(1), "partition_key"), b"bad")
    if kind == "producer_name":
        return encode_entry(bad_string(metadata(1), "producer_name"), b"bad")
    if kind == "property_value":
        meta = metadata(1)
        meta.properties.add().CopyFrom(bad_string(pb.KeyValue(key="k", value=""), "value"))
        return encode_entry(meta, b"bad")
    if kind == "property_key":
        meta = metadata(1)
        meta.properties.add().CopyFrom(bad_string(pb.KeyValue(key="", value="v"), "key"))
        return encode_entry(meta, b"bad")
    if kind == "batch-1-holds-0":
        return encode_entry(metadata(1, num_messages_in_batch=1), b"")
    if kind == "batch-10-holds-1":
        return encode_entry(metadata(1, num_messages_in_batch=10), batch_payload([b"x" * 100]))
    if kind == "batch-max-int":
        return encode_entry(metadata(1, num_messages_in_batch=2**31 - 1), batch_payload([b"x"]))
    if kind == "batch-0":
        return encode_entry(metadata(1, num_messages_in_batch=0), batch_payload([b"x"]))
    if kind == "zlib-batch-3-holds-2":
        raw = batch_payload([b"a" * 50, b"b" * 50])
        meta = metadata(1, num_messages_in_batch=3, compression=pb.ZLIB, uncompressed_size=len(raw))
        return encode_entry(meta, zlib.compress(raw))
    if kind == "zlib-size-lies":
        raw = batch_payload([b"a" * 50])
        meta = metadata(1, num_messages_in_batch=1, compression=pb.ZLIB, uncompressed_size=len(raw) + 7)
        return encode_entry(meta, zlib.compress(raw))
    if kind == "uncompressed-size-over-max":
        meta = metadata(1, compression=pb.LZ4, uncompressed_size=64 * 1024 * 1024)
        return encode_entry(meta, b"\x00" * 16)
    raise AssertionError(kind)


POISON = [
    ("partition_key", "partition_key is not valid UTF-8"),
    ("producer_name", "producer_name is not valid UTF-8"),
    ("property_value", "properties.value is not valid UTF-8"),
    ("property_key", "properties.key is not valid UTF-8"),
    ("batch-1-holds-0", "batch of 1 messages"),
    ("batch-10-holds-1", "batch of 10 messages"),
    ("batch-max-int", "batch of 2147483647 messages"),
    ("batch-0", "num_messages_in_batch is 0"),
    ("zlib-batch-3-holds-2", "batch of 3 messages"),
    ("zlib-size-lies", "ZLIB payload inflated to"),
    ("uncompressed-size-over-max", "exceeds the maximum message size"),
]


@pytest.mark.parametrize(("kind", "reason"), POISON, ids=[p[0] for p in POISON])
def test_poison_send_is_refused_in_order_and_nothing_is_stored(standalone, client, topic, kind, reason):
    with RawClient(standalone.broker_port) as raw:
        assert raw.producer(topic).type == T.PRODUCER_SUCCESS
        raw.publish(entry(b"before", 0), 0)
        raw.publish(_poison(kind), 1)
        raw.publish(entry(b"after", 2), 2)
        first, refused, last = raw.replies(3)
        assert first.type == T.SEND_RECEIPT and first.send_receipt.sequence_id == 0
        assert refused.type == T.SEND_ERROR
        assert refused.send_error.sequence_id == 1
        assert refused.send_error.error == CHECKSUM_ERROR
        assert reason in refused.send_error.message
        assert last.type == T.SEND_RECEIPT and last.send_receipt.sequence_id == 2
        # The producer keeps working after the refusal.
        raw.publish(entry(b"later", 3), 3)
        (later,) = raw.replies(1)
        assert later.type == T.SEND_RECEIPT and later.send_receipt.sequence_id == 3
    stats = _stats(standalone, topic).json()
    assert stats["entriesCount"] == 3 and stats["msgInCounter"] == 3
    assert receive_all(client, topic, "s", expect=3) == [b"before", b"after", b"later"]


def test_msg_in_counter_counts_what_is_stored_not_what_send_claims(standalone, topic):
    with RawClient(standalone.broker_port) as raw:
        assert raw.producer(topic).type == T.PRODUCER_SUCCESS
        batch = encode_entry(metadata(0, num_messages_in_batch=3), batch_payload([b"a", b"b", b"c"]))
        raw.publish(batch, 0, num_messages=2**31 - 1)
        (receipt,) = raw.replies(1)
        assert receipt.type == T.SEND_RECEIPT
    stats = _stats(standalone, topic).json()
    assert stats["msgInCounter"] == 3
    assert stats["publishers"] == [] or stats["publishers"][0]["msgInCounter"] == 3


def test_producer_with_non_utf8_name_is_refused_and_leaves_no_state(standalone, client, topic):
    first = client.create_producer(topic)
    first.send(b"exists")  # the topic exists, so its stats answer
    first.close()
    with RawClient(standalone.broker_port) as raw:
        body = bad_string(pb.CommandProducer(topic=topic, producer_id=7, request_id=1), "producer_name")
        raw.send(command(T.PRODUCER, "producer", body))
        error = raw.expect(T.ERROR, T.PRODUCER_SUCCESS)
        assert error.type == T.ERROR and error.error.request_id == 1
        assert error.error.error == NOT_ALLOWED
        assert "producer.producer_name is not valid UTF-8" in error.error.message
        stats = _stats(standalone, topic)
        assert stats.status_code == 200 and stats.json()["publishers"] == []
        # Nothing registered that id: a SEND on it is refused and nothing is stored.
        raw.publish(entry(b"smuggled", 0), 0, producer_id=7)
        (refused,) = raw.replies(1)
        assert refused.type == T.SEND_ERROR and refused.send_error.message == "producer is not ready"
    assert _stats(standalone, topic).json()["entriesCount"] == 1


def test_subscribe_with_non_utf8_consumer_name_is_refused_and_stats_keep_working(standalone, client, topic):
    client.create_producer(topic).send(b"exists")
    with RawClient(standalone.broker_port) as raw:
        body = bad_string(
            pb.CommandSubscribe(
                topic=topic, subscription="s", subType=pb.CommandSubscribe.Shared, consumer_id=1, request_id=2
            ),
            "consumer_name",
        )
        raw.send(command(T.SUBSCRIBE, "subscribe", body))
        error = raw.expect(T.ERROR, T.SUCCESS)
        assert error.type == T.ERROR and error.error.error == NOT_ALLOWED
        assert "subscribe.consumer_name is not valid UTF-8" in error.error.message
        stats = _stats(standalone, topic)
        assert stats.status_code == 200
        assert stats.json()["subscriptions"] == {}  # the subscription was not created either


def test_lookup_with_non_utf8_topic_gets_a_failed_lookup(standalone):
    with RawClient(standalone.broker_port) as raw:
        body = bad_string(pb.CommandLookupTopic(topic="", request_id=3), "topic")
        raw.send(command(T.LOOKUP, "lookupTopic", body))
        answer = raw.expect(T.LOOKUP_RESPONSE)
        assert answer.lookupTopicResponse.response == pb.CommandLookupTopicResponse.Failed
        assert answer.lookupTopicResponse.error == NOT_ALLOWED


# -- poison already in storage -------------------------------------------------------------------


def test_stored_poison_is_skipped_and_every_good_message_is_delivered(tmp_path):
    topic = "persistent://public/default/stored-poison"
    stored = [
        entry(b"good-0", 0),
        _poison("partition_key"),
        entry(b"good-1", 2),
        b"\x00\x00\x00\x05\xff\xff\xff\xff\xffpayload",  # unparseable metadata
        entry(b"good-2", 3),
        _poison("batch-max-int"),
        entry(b"good-3", 4),
        _poison("batch-10-holds-1"),
        entry(b"good-4", 5),
    ]
    subscriptions = ["exclusive", "shared", "key-shared"]
    asyncio.run(
        append_below_the_broker(tmp_path, "public/default/persistent/stored-poison", stored, subscriptions)
    )
    server = Standalone(tmp_path).start()
    try:
        client = pulsar.Client(server.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        try:
            want = [b"good-0", b"good-1", b"good-2", b"good-3", b"good-4"]
            for sub_type, name in [
                (ConsumerType.Exclusive, "exclusive"),
                (ConsumerType.Shared, "shared"),
                (ConsumerType.KeyShared, "key-shared"),
            ]:
                got = receive_all(client, topic, name, sub_type, expect=len(want))
                assert sorted(got) == sorted(want), name
            # The producer side still works on that topic.
            client.create_producer(topic).send(b"new")
            assert receive_all(client, topic, "exclusive", expect=1) == [b"new"]
        finally:
            client.close()
        time.sleep(0.2)
        log = "".join(server.output)
        assert "unreadable stored entr" in log
    finally:
        assert server.stop() == 0


def test_a_subscribe_refused_by_its_dispatcher_creates_no_subscription(standalone, client, topic):
    first = client.create_producer(topic)
    first.send(b"exists")
    first.close()
    with RawClient(standalone.broker_port) as raw:
        body = pb.CommandSubscribe(
            topic=topic,
            subscription="sticky",
            subType=pb.CommandSubscribe.Key_Shared,
            consumer_id=1,
            request_id=2,
        )
        body.keySharedMeta.keySharedMode = pb.KeySharedMode.Value("STICKY")
        body.keySharedMeta.hashRanges.add(start=10, end=5)  # an empty range: refused
        raw.send(command(T.SUBSCRIBE, "subscribe", body))
        error = raw.expect(T.ERROR, T.SUCCESS)
        assert error.type == T.ERROR and error.error.error == 19  # ConsumerAssignError
        assert "hash range [10, 5]" in error.error.message
    assert _stats(standalone, topic).json()["subscriptions"] == {}
    internal = httpx.get(f"{standalone.admin_url}/admin/v2/persistent/{topic.split('://')[1]}/internalStats")
    assert internal.json()["cursors"] == {}
