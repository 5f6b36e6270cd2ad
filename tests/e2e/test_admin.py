"""The admin REST API and the CLI against a real standalone."""

import subprocess
import sys
import time

import httpx
import pulsar
import pytest
from pulsar import InitialPosition


@pytest.fixture
def admin(standalone):
    with httpx.Client(base_url=standalone.admin_url, timeout=10) as http:
        yield http


def rest_path(topic: str) -> str:
    return "/admin/v2/persistent/" + topic.split("://", 1)[1]


def test_public_default_exists_from_the_start(admin):
    assert "public" in admin.get("/admin/v2/tenants").json()
    assert "public/default" in admin.get("/admin/v2/namespaces/public").json()


def test_tenant_and_namespace_lifecycle(admin):
    assert (
        admin.put(
            "/admin/v2/tenants/acme", json={"adminRoles": ["ops"], "allowedClusters": ["standalone"]}
        ).status_code
        == 204
    )
    assert admin.get("/admin/v2/tenants/acme").json()["adminRoles"] == ["ops"]
    assert admin.put("/admin/v2/tenants/acme", json={}).status_code == 409
    assert admin.put("/admin/v2/namespaces/acme/ns1").status_code == 204
    assert admin.put("/admin/v2/namespaces/acme/ns1").status_code == 409
    assert admin.get("/admin/v2/namespaces/acme").json() == ["acme/ns1"]
    assert admin.delete("/admin/v2/tenants/acme").status_code == 412  # still has a namespace
    assert admin.delete("/admin/v2/namespaces/acme/ns1").status_code == 204
    assert admin.delete("/admin/v2/tenants/acme").status_code == 204
    assert admin.get("/admin/v2/tenants/acme").status_code == 404


@pytest.mark.parametrize(
    "method,path,body,status",
    [
        ("put", "/admin/v2/tenants/bad%20name", {}, 400),
        ("put", "/admin/v2/tenants/t1", {"adminRoles": "not-a-list"}, 400),
        ("put", "/admin/v2/tenants/t2", {"unknown": 1}, 400),
        ("put", "/admin/v2/tenants/t3", [1, 2], 400),
        ("get", "/admin/v2/namespaces/nope", None, 404),
        ("post", "/admin/v2/namespaces/public/default/retention", {"retentionTimeInMinutes": "x"}, 400),
        (
            "post",
            "/admin/v2/namespaces/public/default/retention",
            {"retentionTimeInMinutes": -5, "retentionSizeInMB": 0},
            400,
        ),
        ("post", "/admin/v2/namespaces/public/default/deduplication", "yes", 400),
        ("put", "/admin/v2/persistent/public/default/pt-bad/partitions", 0, 400),
        ("put", "/admin/v2/persistent/public/default/pt-bad/partitions", "three", 400),
        ("get", "/admin/v2/persistent/public/default/no-such-topic/stats", None, 404),
        ("post", "/admin/v2/persistent/public/default/no-such-topic/subscription/s/skip/-1", None, 400),
        ("put", "/admin/v2/persistent/nope/nope/t", None, 404),
    ],
)
def test_bad_rest_input_gets_a_4xx_with_a_reason(admin, method, path, body, status):
    kwargs = {"json": body} if body is not None else {}
    response = getattr(admin, method)(path, **kwargs) if method != "get" else admin.get(path)
    assert response.status_code == status, response.text
    assert response.json().get("reason") or response.json().get("detail")
    assert admin.get("/admin/v2/tenants").status_code == 200  # still serving


def test_topic_admin_stats_and_subscriptions(admin, client, topic):
    path = rest_path(topic)
    assert admin.put(path).status_code == 204
    assert admin.put(path).status_code == 409
    assert topic in admin.get("/admin/v2/persistent/public/default").json()
    producer = client.create_producer(topic)
    for i in range(5):
        producer.send(f"m{i}".encode(), properties={"i": str(i)})
    assert admin.put(f"{path}/subscription/sub1", json={"ledgerId": -1, "entryId": -1}).status_code == 204
    assert admin.get(f"{path}/subscriptions").json() == ["sub1"]
    stats = admin.get(f"{path}/stats").json()
    assert stats["msgInCounter"] == 5
    assert stats["subscriptions"]["sub1"]["msgBacklog"] == 5
    assert stats["publishers"][0]["producerName"] == producer.producer_name()
    peek = admin.get(f"{path}/subscription/sub1/position/2")
    assert peek.content == b"m1" and peek.headers["X-Pulsar-PROPERTY-i"] == "1"
    assert admin.post(f"{path}/subscription/sub1/skip/2").status_code == 204
    assert admin.get(f"{path}/stats").json()["subscriptions"]["sub1"]["msgBacklog"] == 3
    internal = admin.get(f"{path}/internalStats").json()
    assert internal["numberOfEntries"] == 5 and "sub1" in internal["cursors"]
    last = admin.get(f"{path}/lastMessageId").json()
    assert last["entryId"] >= 4
    assert (
        admin.post(f"{path}/subscription/sub1/resetcursor", json={"ledgerId": -1, "entryId": -1}).status_code
        == 204
    )
    assert admin.get(f"{path}/stats").json()["subscriptions"]["sub1"]["msgBacklog"] == 5
    consumer = client.subscribe(topic, "sub1")
    assert consumer.receive(timeout_millis=5000).data() == b"m0"
    consumer.close()
    assert admin.post(f"{path}/subscription/sub1/skip_all").status_code == 204
    assert admin.get(f"{path}/stats").json()["subscriptions"]["sub1"]["msgBacklog"] == 0
    assert admin.delete(f"{path}/subscription/sub1").status_code == 204
    producer.close()
    assert admin.delete(path).status_code == 204
    assert admin.get(f"{path}/stats").status_code == 404


def test_internal_info_shows_what_the_metadata_holds_once_a_cursor_is_saved(admin, client, topic):
    path = rest_path(topic)
    assert admin.get(f"{path}/internal-info").status_code == 404  # no such topic
    consumer = client.subscribe(topic, "saved", consumer_type=pulsar.ConsumerType.Shared)
    producer = client.create_producer(topic, batching_enabled=False)
    ids = [producer.send(f"m{i}".encode()) for i in range(4)]
    for index in (0, 2):  # the first and the third: a mark-delete position and a range after it
        msg = consumer.receive(timeout_millis=5000)
        while msg.message_id() != ids[index]:
            msg = consumer.receive(timeout_millis=5000)
        consumer.acknowledge(msg)
    ledger, entry = ids[0].ledger_id(), ids[0].entry_id()
    want_cursor = {
        "markDelete": {"ledgerId": ledger, "entryId": entry},
        "individualDeletedMessages": [
            {"from": {"ledgerId": ledger, "entryId": entry + 1}, "to": {"ledgerId": ledger, "entryId": entry + 2}}
        ],
    }
    deadline = time.monotonic() + 15  # the client groups acks (100 ms), the cursor saves once a second
    while True:
        info = admin.get(f"{path}/internal-info").json()
        cursor = info["cursors"]["saved"]
        if {k: cursor[k] for k in want_cursor} == want_cursor:
            break
        assert time.monotonic() < deadline, cursor
        time.sleep(0.1)
    assert cursor["version"] >= 1 and cursor["modificationDate"] >= cursor["creationDate"]
    assert [row["ledgerId"] for row in info["ledgers"]][-1] == ledger
    stats = admin.get(f"{path}/internalStats").json()  # memory agrees with what was saved
    assert stats["cursors"]["saved"]["markDeletePosition"] == f"{ledger}:{entry}"


def test_partitioned_topic_end_to_end(admin, client, topic):
    path = rest_path(topic)
    assert admin.put(f"{path}/partitions", json=3).status_code == 204
    assert admin.get(f"{path}/partitions").json() == {"partitions": 3}
    assert client.get_topic_partitions(topic) == [f"{topic}-partition-{i}" for i in range(3)]
    consumer = client.subscribe(topic, "s", initial_position=InitialPosition.Earliest)
    producer = client.create_producer(
        topic, message_routing_mode=pulsar.PartitionsRoutingMode.RoundRobinDistribution
    )
    for i in range(30):
        producer.send(str(i).encode())
    got = sorted(int(consumer.receive(timeout_millis=5000).data()) for _ in range(30))
    assert got == list(range(30))
    stats = admin.get(f"{path}/partitioned-stats").json()
    assert stats["msgInCounter"] == 30 and len(stats["partitions"]) == 3
    assert topic in admin.get("/admin/v2/persistent/public/default/partitioned").json()
    producer.close()
    consumer.close()
    assert admin.delete(f"{path}/partitions", params={"force": "true"}).status_code == 204
    assert admin.get(f"{path}/partitions").json() == {"partitions": 0}


def test_auto_topic_creation_can_be_turned_off(admin, client):
    assert admin.put("/admin/v2/namespaces/public/strict").status_code == 204
    body = {"allowAutoTopicCreation": False, "topicType": "non-partitioned", "defaultNumPartitions": 1}
    assert admin.post("/admin/v2/namespaces/public/strict/autoTopicCreation", json=body).status_code == 204
    with pytest.raises(pulsar.TopicNotFound):
        client.create_producer("persistent://public/strict/nothing-here")
    assert admin.put("/admin/v2/persistent/public/strict/created").status_code == 204
    client.create_producer("persistent://public/strict/created").send(b"ok")


def test_auto_creation_of_partitioned_topics(admin, client):
    assert admin.put("/admin/v2/namespaces/public/parts").status_code == 204
    body = {"allowAutoTopicCreation": True, "topicType": "partitioned", "defaultNumPartitions": 2}
    assert admin.post("/admin/v2/namespaces/public/parts/autoTopicCreation", json=body).status_code == 204
    assert len(client.get_topic_partitions("persistent://public/parts/auto")) == 2


def test_retention_policy_round_trip(admin):
    body = {"retentionTimeInMinutes": 60, "retentionSizeInMB": 100}
    assert admin.post("/admin/v2/namespaces/public/default/retention", json=body).status_code == 204
    assert admin.get("/admin/v2/namespaces/public/default/retention").json() == body
    assert admin.delete("/admin/v2/namespaces/public/default/retention").status_code == 204


def test_openapi_and_metrics(admin, client, topic):
    client.create_producer(topic).send(b"x")
    spec = admin.get("/openapi.json").json()
    assert "/admin/v2/tenants" in spec["paths"]
    metrics = admin.get("/metrics").text
    assert f'topic="{topic}"' in metrics
    assert "pulsar_storage_size" in metrics and "pulsar_rate_in" in metrics
    lag_count = next(line for line in metrics.splitlines() if line.startswith("taureau_event_loop_lag_seconds_count"))
    assert int(lag_count.rsplit(" ", 1)[1]) > 0  # the loop probe has been sampling
    assert 'taureau_gc_pause_seconds_bucket{generation="2",le="+Inf"}' in metrics
    # The local bookie's journal: the send above went through at least one fsync round.
    for series in (
        "taureau_journal_sync_seconds_count",
        "taureau_journal_add_seconds_count",
        "taureau_journal_inbox_seconds_count",
        "taureau_journal_hand_back_seconds_count",
    ):
        count = next(line for line in metrics.splitlines() if line.startswith(f'{series}{{bookie="bookie-0"}}'))
        assert int(count.rsplit(" ", 1)[1]) > 0, count


def run_cli(standalone, *args):
    env_args = (
        ["--admin-url", standalone.admin_url]
        if args[0] == "admin"
        else ["--service-url", standalone.service_url]
    )
    return subprocess.run(
        [sys.executable, "-m", "taureau.cli.main", args[0], *env_args, *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_admin_and_client(standalone, topic):
    assert run_cli(standalone, "admin", "tenants", "create", "clitenant").returncode == 0
    listed = run_cli(standalone, "admin", "tenants", "list")
    assert "clitenant" in listed.stdout
    bad = run_cli(standalone, "admin", "tenants", "create", "clitenant")
    assert bad.returncode == 1 and "409" in bad.stderr
    produced = run_cli(standalone, "client", "produce", "-m", "hi", "-n", "3", topic)
    assert produced.returncode == 0, produced.stderr
    assert "3 messages successfully produced" in produced.stdout
    run_cli(standalone, "admin", "topics", "create-subscription", topic, "-s", "cli", "-m", "earliest")
    consumed = run_cli(standalone, "client", "consume", "-s", "cli", "-n", "3", topic)
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.count("content:hi") == 3
    stats = run_cli(standalone, "admin", "topics", "stats", topic)
    assert '"msgInCounter": 3' in stats.stdout


def test_force_delete_disconnects_clients_and_frees_storage(admin, client, topic):
    path = rest_path(topic)
    producer = client.create_producer(topic)
    consumer = client.subscribe(topic, "s")
    producer.send(b"x")
    assert admin.delete(path).status_code == 412  # still in use
    assert admin.delete(path, params={"force": "true"}).status_code == 204
    assert admin.get(f"{path}/stats").status_code == 404
    # The clients are told to reconnect; their reconnection creates the topic anew (auto-creation).
    consumer.close()
    producer.close()


def test_exclusive_producer_access_mode(client, topic):
    first = client.create_producer(topic, access_mode=pulsar.ProducerAccessMode.Exclusive)
    with pytest.raises(Exception, match="(?i)busy|fenced|exclusive"):
        client.create_producer(topic)
    first.close()
    client.create_producer(topic).send(b"ok")


def test_failover_spreads_partitions_over_consumers(admin, client, topic):
    assert admin.put(f"{rest_path(topic)}/partitions", json=4).status_code == 204
    a = client.subscribe(topic, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="a")
    b = client.subscribe(topic, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="b")
    producer = client.create_producer(
        topic, message_routing_mode=pulsar.PartitionsRoutingMode.RoundRobinDistribution
    )
    for i in range(40):
        producer.send(str(i).encode())
    partitions = {"a": set(), "b": set()}
    seen = []
    for name, consumer in (("a", a), ("b", b)):
        while True:
            try:
                msg = consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                break
            partitions[name].add(msg.topic_name())
            seen.append(int(msg.data()))
            consumer.acknowledge(msg)
    assert sorted(seen) == list(range(40))
    assert len(partitions["a"]) == 2 and len(partitions["b"]) == 2
    assert not partitions["a"] & partitions["b"]


def test_deduplication_with_batching(admin, client):
    assert admin.put("/admin/v2/namespaces/public/dedup").status_code == 204
    assert admin.post("/admin/v2/namespaces/public/dedup/deduplication", json=True).status_code == 204
    topic = "persistent://public/dedup/batched"
    assert (
        admin.put(f"{rest_path(topic)}/subscription/audit", json={"ledgerId": -1, "entryId": -1}).status_code
        == 204
    )
    producer = client.create_producer(
        topic, producer_name="p1", batching_enabled=True, batching_max_messages=10
    )
    for i in range(100):
        producer.send_async(str(i).encode(), None, sequence_id=i)
    producer.flush()
    producer.close()
    again = client.create_producer(topic, producer_name="p1", batching_enabled=True, batching_max_messages=10)
    assert again.last_sequence_id() == 99
    for i in range(50, 150):  # half of these are resends
        again.send_async(str(i).encode(), None, sequence_id=i)
    again.flush()
    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    stored = []
    while reader.has_message_available():
        stored.append(int(reader.read_next(timeout_millis=5000).data()))
    assert stored == list(range(150))


def test_peek_decodes_compressed_batches(admin, client, topic):
    path = rest_path(topic)
    assert admin.put(f"{path}/subscription/s", json={"ledgerId": -1, "entryId": -1}).status_code == 204
    producer = client.create_producer(
        topic, batching_enabled=True, batching_max_messages=5, compression_type=pulsar.CompressionType.ZSTD
    )
    for i in range(5):
        producer.send_async(f"zstd-{i}".encode(), None, properties={"n": str(i)})
    producer.flush()
    peeked = admin.get(f"{path}/subscription/s/position/4")
    assert peeked.status_code == 200
    assert peeked.content == b"zstd-3" and peeked.headers["X-Pulsar-PROPERTY-n"] == "3"
    assert peeked.headers["X-Pulsar-batch-index"] == "3"
    assert admin.get(f"{path}/subscription/s/position/6").status_code == 404


def test_topic_level_deduplication_overrides_the_namespace(admin, client, topic):
    path = f"{rest_path(topic)}/deduplication"
    assert admin.get(path).json() is None  # unset: the namespace decides (off)
    producer = client.create_producer(topic, producer_name="dup")
    producer.send(b"a", sequence_id=1)
    producer.send(b"a-again", sequence_id=1)  # stored: de-duplication is off
    producer.close()
    assert admin.post(path, json="yes").status_code == 400
    assert admin.post(path, json=True).status_code == 204
    assert admin.get(path).json() is True
    producer = client.create_producer(topic, producer_name="dup")
    assert producer.last_sequence_id() == 1
    producer.send(b"b", sequence_id=1)  # dropped now
    producer.send(b"c", sequence_id=2)
    producer.close()
    assert admin.delete(path).status_code == 204
    assert admin.get(path).json() is None
    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    stored = []
    while reader.has_message_available():
        stored.append(reader.read_next(timeout_millis=5000).data())
    assert stored == [b"a", b"a-again", b"c"]
