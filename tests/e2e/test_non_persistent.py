"""Non-persistent topics end to end with the official client: every subscription type,
partitions, readers, drops (and their stats), a flood into a consumer that reads nothing,
the /admin/v2/non-persistent REST paths (bad input included), lookups and the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import uuid

import pulsar
import pytest

from taureau.cli.app import run as cli
from tests.e2e.harness import RssPeak
from tests.e2e.raw import RawClient, T, command

STANDALONE = {"args": ["--idle-topic-unload", "1"]}
NS = "public/default"
API = f"/admin/v2/non-persistent/{NS}"


@pytest.fixture
def name():
    return f"np-{uuid.uuid4().hex[:8]}"


def topic_of(local: str) -> str:
    return f"non-persistent://{NS}/{local}"


def receive_all(consumer, timeout_ms: int = 300) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(consumer.receive(timeout_ms).data())
        except pulsar.Timeout:
            return out


def wait_for(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_exclusive_consumer_gets_messages_published_after_it_subscribed(client, name):
    producer = client.create_producer(topic_of(name), batching_enabled=False)
    before = producer.send(b"before")  # nobody subscribed: delivered to no one
    assert (before.ledger_id(), before.entry_id()) == (0, 0)  # Pulsar's synthetic id
    consumer = client.subscribe(topic_of(name), "s", consumer_type=pulsar.ConsumerType.Exclusive)
    for i in range(5):
        producer.send(str(i).encode())
    assert receive_all(consumer) == [b"0", b"1", b"2", b"3", b"4"]
    with pytest.raises(pulsar.ConsumerBusy):
        client.subscribe(topic_of(name), "s", consumer_type=pulsar.ConsumerType.Exclusive)


def test_shared_consumers_split_the_messages(client, name):
    a = client.subscribe(topic_of(name), "s", consumer_type=pulsar.ConsumerType.Shared)
    b = client.subscribe(topic_of(name), "s", consumer_type=pulsar.ConsumerType.Shared)
    producer = client.create_producer(topic_of(name), batching_enabled=False)
    for i in range(20):
        producer.send(str(i).encode())
    got_a, got_b = receive_all(a), receive_all(b)
    assert sorted(got_a + got_b, key=int) == [str(i).encode() for i in range(20)]
    assert got_a and got_b


def test_failover_standby_takes_over_when_the_active_consumer_leaves(client, name):
    first = client.subscribe(topic_of(name), "s", consumer_type=pulsar.ConsumerType.Failover, consumer_name="a")
    second = client.subscribe(topic_of(name), "s", consumer_type=pulsar.ConsumerType.Failover, consumer_name="b")
    producer = client.create_producer(topic_of(name), batching_enabled=False)
    producer.send(b"one")
    assert receive_all(first) == [b"one"] and receive_all(second) == []
    first.close()
    time.sleep(0.2)
    producer.send(b"two")
    assert receive_all(second) == [b"two"]


def test_key_shared_keeps_each_key_on_one_consumer(client, name):
    consumers = [client.subscribe(topic_of(name), "s", consumer_type=pulsar.ConsumerType.KeyShared)
                 for _ in range(2)]
    producer = client.create_producer(topic_of(name), batching_enabled=False)
    for i in range(40):
        producer.send(str(i).encode(), partition_key=f"k{i % 8}")
    owners: dict[str, set[int]] = {}
    total = 0
    for index, consumer in enumerate(consumers):
        while True:
            try:
                message = consumer.receive(300)
            except pulsar.Timeout:
                break
            owners.setdefault(message.partition_key(), set()).add(index)
            total += 1
    assert total == 40 and len(owners) == 8
    assert all(len(holders) == 1 for holders in owners.values())


def test_batches_pass_through_whole(client, name):
    consumer = client.subscribe(topic_of(name), "s")
    producer = client.create_producer(topic_of(name), batching_enabled=True, batching_max_messages=5,
                                      batching_max_publish_delay_ms=50)
    for i in range(5):
        producer.send_async(str(i).encode(), None)
    producer.flush()
    messages = [consumer.receive(5000) for _ in range(5)]
    assert [m.data() for m in messages] == [b"0", b"1", b"2", b"3", b"4"]
    assert [m.message_id().batch_index() for m in messages] == [0, 1, 2, 3, 4]


def test_a_reader_gets_only_what_is_published_after_it_connects(client, name):
    producer = client.create_producer(topic_of(name), batching_enabled=False)
    producer.send(b"old")
    reader = client.create_reader(topic_of(name), pulsar.MessageId.earliest)
    producer.send(b"new")
    assert reader.read_next(5000).data() == b"new"
    with pytest.raises(pulsar.Timeout):
        reader.read_next(300)


def test_a_regex_subscription_finds_non_persistent_topics(client, name):
    producers = [client.create_producer(topic_of(f"{name}-{i}"), batching_enabled=False) for i in range(2)]
    client.create_producer(f"persistent://{NS}/{name}-2")  # another domain: not matched
    consumer = client.subscribe(re.compile(f"non-persistent://{NS}/{name}-.*"), "s",
                                regex_subscription_mode=pulsar.RegexSubscriptionMode.NonPersistentOnly)
    for index, producer in enumerate(producers):
        producer.send(str(index).encode())
    assert sorted(consumer.receive(5000).data() for _ in range(2)) == [b"0", b"1"]


def test_partitioned_topic_spreads_keys_and_the_consumer_gets_them_all(client, admin, name):
    assert admin.put(f"{API}/{name}/partitions", json=3).status_code == 204
    assert admin.get(f"{API}/{name}/partitions").json()["partitions"] == 3
    consumer = client.subscribe(topic_of(name), "s")
    producer = client.create_producer(topic_of(name), batching_enabled=False)
    ids = [producer.send(str(i).encode(), partition_key=f"key-{i}") for i in range(12)]
    assert len({i.partition() for i in ids}) > 1
    assert sorted(receive_all(consumer), key=int) == [str(i).encode() for i in range(12)]
    stats = admin.get(f"{API}/{name}/partitioned-stats").json()
    assert stats["msgInCounter"] == 12 and stats["msgOutCounter"] == 12
    assert stats["metadata"] == {"partitions": 3}
    listed = admin.get(API).json()
    assert {f"{topic_of(name)}-partition-{i}" for i in range(3)} <= set(listed)
    assert admin.get(f"{API}/partitioned").json() == [topic_of(name)] or topic_of(name) in admin.get(
        f"{API}/partitioned").json()
    assert admin.delete(f"{API}/{name}/partitions").status_code == 412  # clients connected
    assert admin.delete(f"{API}/{name}/partitions", params={"force": "true"}).status_code == 204
    assert admin.get(f"{API}/{name}/partitions").json()["partitions"] == 0


def test_a_consumer_with_no_room_makes_messages_drop_and_stats_count_them(client, admin, name):
    consumer = client.subscribe(topic_of(name), "s", receiver_queue_size=10)  # 10 permits, never more
    producer = client.create_producer(topic_of(name), batching_enabled=False)
    for i in range(50):
        producer.send_async(str(i).encode(), None)
    producer.flush()
    stats = wait_for(lambda: (s := admin.get(f"{API}/{name}/stats").json())["subscriptions"]["s"]["msgDropRate"]
                     > 0 and s)
    sub = stats["subscriptions"]["s"]
    assert sub["msgDropCounter"] == 40 and sub["msgOutCounter"] == 10 and sub["msgBacklog"] == 0
    assert stats["msgInCounter"] == 50 and stats["storageSize"] == 0
    assert [int(m) for m in receive_all(consumer)] == list(range(10))


def test_a_flood_into_a_consumer_that_reads_nothing_holds_no_memory(standalone, client, admin, name):
    """A raw consumer grants a million permits and never reads its socket: once its send
    buffer is full the broker drops, instead of queueing 200 MiB for it."""
    with RawClient(standalone.broker_port) as raw:
        raw.send(command(T.SUBSCRIBE, "subscribe", topic=topic_of(name), subscription="s", subType=1,
                         consumer_id=1, request_id=2))
        assert raw.expect(T.SUCCESS).type == T.SUCCESS
        raw.send(command(T.FLOW, "flow", consumer_id=1, messagePermits=1_000_000))
        base = standalone.rss_mib()
        peak = RssPeak(standalone)
        producer = client.create_producer(topic_of(name), batching_enabled=False, max_pending_messages=64,
                                          block_if_queue_full=True)
        body = b"f" * (1024 * 1024 - 1024)
        for _ in range(200):
            producer.send_async(body, None)
        producer.flush()
        held = peak.stop() - base
        stats = admin.get(f"{API}/{name}/stats").json()
        sub = stats["subscriptions"]["s"]
    assert stats["msgInCounter"] == 200 and sub["msgOutCounter"] + sub["msgDropCounter"] == 200
    assert sub["msgDropCounter"] > 100, sub
    assert held < 100, f"{held:.0f} MiB held while 200 MiB went to a consumer reading nothing"
    # The raw consumer left with 16 MiB unread: the broker's next write to it meets a reset
    # connection (EPIPE). It drops that peer and serves on (it once died of SIGPIPE here).
    time.sleep(0.5)
    assert standalone.proc.poll() is None
    producer.send(b"after")
    assert admin.get(f"{API}/{name}/stats").json()["msgInCounter"] == 201


def test_seek_succeeds_and_changes_nothing_and_last_message_id_is_refused(client, name):
    consumer = client.subscribe(topic_of(name), "s")
    producer = client.create_producer(topic_of(name), batching_enabled=False)
    producer.send(b"a")
    assert receive_all(consumer) == [b"a"]
    consumer.seek(pulsar.MessageId.earliest)  # nothing stored to go back to (Pulsar: success)
    time.sleep(0.3)
    producer.send(b"b")
    assert consumer.receive(5000).data() == b"b"
    assert receive_all(consumer) == []
    with pytest.raises(pulsar.NotAllowedError):
        consumer.get_last_message_id()


def test_admin_rest_stats_unsubscribe_and_delete(client, admin, name):
    consumer = client.subscribe(topic_of(name), "s", consumer_type=pulsar.ConsumerType.Shared)
    producer = client.create_producer(topic_of(name), batching_enabled=False)
    producer.send(b"x")
    consumer.receive(5000)
    assert topic_of(name) in admin.get(API).json()
    assert admin.get(f"{API}/{name}/subscriptions").json() == ["s"]
    stats = admin.get(f"{API}/{name}/stats").json()
    assert stats["msgInCounter"] == 1 and stats["subscriptions"]["s"]["type"] == "Shared"
    assert len(stats["publishers"]) == 1
    lookup = admin.get(f"/lookup/v2/topic/non-persistent/{NS}/{name}").json()
    assert lookup["brokerUrl"].startswith("pulsar://")
    assert admin.delete(f"{API}/{name}/subscription/s").status_code == 412  # a consumer holds it
    assert admin.delete(f"{API}/{name}").status_code == 412
    assert admin.delete(f"{API}/{name}/subscription/s", params={"force": "true"}).status_code == 204
    assert admin.get(f"{API}/{name}/subscriptions").json() == []
    assert admin.delete(f"{API}/{name}", params={"force": "true"}).status_code == 204
    assert admin.get(f"{API}/{name}/stats").status_code == 404


@pytest.mark.parametrize(("method", "suffix", "body", "status"), [
    ("PUT", "/compaction", None, 405),
    ("GET", "/compaction", None, 405),
    ("GET", "/lastMessageId", None, 405),
    ("GET", "/examinemessage", None, 405),
    ("POST", "/messageTTL?messageTTL=10", None, 405),
    ("POST", "/subscription/s/skip_all", None, 405),
    ("POST", "/subscription/s/skip/3", None, 405),
    ("GET", "/subscription/s/position/1", None, 405),
    ("PUT", "/subscription/other", None, 400),
    ("POST", "/subscription/missing/resetcursor/0", None, 404),
    ("DELETE", "/subscription/missing", None, 404),
    ("PUT", "/partitions", "three", 400),
    ("PUT", "/partitions", 0, 400),
    ("PUT", "", None, 409),
])
def test_admin_bad_input_is_refused_and_changes_nothing(client, admin, name, method, suffix, body, status):
    consumer = client.subscribe(topic_of(name), "s")
    kwargs = {"json": body} if body is not None else {}
    response = admin.request(method, f"{API}/{name}{suffix}", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["reason"]
    assert admin.get(f"{API}/{name}/subscriptions").json() == ["s"]
    assert admin.get(f"{API}/{name}/partitions").json()["partitions"] == 0
    assert admin.post(f"{API}/{name}/subscription/s/resetcursor/0").status_code == 204  # Pulsar's answer
    consumer.close()


def test_admin_unknown_topics_and_bad_names(admin, name):
    assert admin.get(f"{API}/{name}/stats").status_code == 404
    assert admin.get(f"{API}/{name}/subscriptions").status_code == 404
    assert admin.delete(f"{API}/{name}").status_code == 204  # as Pulsar: nothing to delete
    assert admin.get(f"/admin/v2/non-persistent/{NS}/bad%20name/stats").status_code == 400
    assert admin.get("/admin/v2/non-persistent/public/nosuchns").status_code == 404
    assert admin.put(f"{API}/{name}").status_code == 204
    assert admin.get(f"{API}/{name}/stats").json()["msgInCounter"] == 0


def test_schemas_apply_to_non_persistent_topics(client, name):
    from pulsar.schema import JsonSchema, Record, String, StringSchema

    class Reading(Record):
        sensor = String()

    producer = client.create_producer(topic_of(name), schema=StringSchema())
    consumer = client.subscribe(topic_of(name), "s", schema=StringSchema())
    producer.send("text")
    assert consumer.receive(5000).value() == "text"
    with pytest.raises(pulsar.IncompatibleSchema):
        client.create_producer(topic_of(name), schema=JsonSchema(Reading))


def test_non_persistent_topics_count_toward_the_namespace_topic_limit(client, admin, name):
    ns = f"public/{name}"
    assert admin.put(f"/admin/v2/namespaces/{ns}").status_code == 204
    assert admin.post(f"/admin/v2/namespaces/{ns}/maxTopicsPerNamespace", json=1).status_code == 204
    producer = client.create_producer(f"non-persistent://{ns}/first")
    with pytest.raises(pulsar.NotAllowedError):
        client.create_producer(f"persistent://{ns}/second")
    with pytest.raises(pulsar.NotAllowedError):
        client.create_producer(f"non-persistent://{ns}/third")
    assert admin.get(f"/admin/v2/non-persistent/{ns}").json() == [f"non-persistent://{ns}/first"]
    producer.close()


def test_an_idle_topic_is_unloaded(client, admin, name):
    producer = client.create_producer(topic_of(name))
    assert admin.get(f"{API}/{name}/stats").status_code == 200
    producer.close()
    assert wait_for(lambda: admin.get(f"{API}/{name}/stats").status_code == 404, timeout=6.0)


def run_cli(standalone, *args: str) -> tuple[int, str, str]:
    """`taureau admin ...` in this process (a subprocess costs seconds of imports each)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["admin", "--admin-url", standalone.admin_url, *args])
    return code, out.getvalue(), err.getvalue()


def test_cli_topics_verbs_take_non_persistent_names(standalone, client, name):
    consumer = client.subscribe(topic_of(name), "s")
    code, out, _ = run_cli(standalone, "topics", "list", NS)
    assert code == 0 and topic_of(name) in json.loads(out)
    code, _, err = run_cli(standalone, "topics", "compact", topic_of(name))
    assert code == 1 and "non-persistent" in err
    consumer.close()
