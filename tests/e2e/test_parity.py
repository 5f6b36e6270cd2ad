"""Pulsar parity (issue 8): what a program written for Apache Pulsar expects, driven by the
official Python client and the admin REST API, each test a regression test of one bug."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import httpx
import mmh3
import pulsar
import pytest

from taureau.protocol import pb
from tests.e2e.harness import Standalone
from tests.e2e.raw import RawClient, T, command


def _client(server: Standalone) -> pulsar.Client:
    return pulsar.Client(
        server.service_url, operation_timeout_seconds=10, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
    )


def _rest(topic: str) -> str:
    return "/admin/v2/" + topic.replace("://", "/")


# -- subscriptions after a restart -------------------------------------------------------------


def test_subscriptions_are_restored_when_a_topic_loads_after_a_restart(tmp_path):
    topic = "persistent://public/default/restored"
    server = Standalone(tmp_path / "data").start()
    try:
        client = _client(server)
        consumer = client.subscribe(topic, "sub", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(5):
            producer.send(f"m{i}".encode())
        for _ in range(2):
            consumer.acknowledge(consumer.receive(5000))
        client.close()
        assert server.stop() == 0
        server.restart()

        with httpx.Client(base_url=server.admin_url, timeout=10) as admin:
            path = _rest(topic)
            assert admin.get(f"{path}/subscriptions").json() == ["sub"]
            stats = admin.get(f"{path}/stats").json()
            assert stats["subscriptions"]["sub"]["msgBacklog"] == 3
            peek = admin.get(f"{path}/subscription/sub/position/1")
            assert peek.status_code == 200 and peek.content == b"m2"
            # Creating it again is a conflict and keeps its position, as Pulsar.
            again = admin.put(f"{path}/subscription/sub", json={"ledgerId": -1, "entryId": -1})
            assert again.status_code == 409
            assert admin.get(f"{path}/stats").json()["subscriptions"]["sub"]["msgBacklog"] == 3
            assert admin.delete(f"{path}/subscription/sub").status_code == 204
            assert admin.get(f"{path}/subscriptions").json() == []
    finally:
        server.kill()


# -- the CLI -----------------------------------------------------------------------------------


def taureau(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "taureau.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def _one_clear_line(result: subprocess.CompletedProcess, code: int, expected: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["admin", "topics", "stats", "my topic"], "invalid topic name"),
        (["admin", "topics", "create-subscription", "a/b/c/d/e", "-s", "s"], "invalid topic name"),
        (["admin", "topics", "subscriptions", "persistent://a/b"], "invalid topic name"),
        (["admin", "namespaces", "create", "acme"], "e.g. public/default"),
        (["client", "--service-url", "localhost:6650", "produce", "t", "-m", "x"], "invalid service URL"),
        (["client", "produce", "my topic", "-m", "x"], "invalid topic name"),
        (["client", "consume", "-s", "s", "bad topic"], "invalid topic name"),
    ],
)
def test_cli_checks_names_before_connecting(argv, expected):
    # Nothing listens on port 1: an answer within seconds proves nothing tried to connect.
    started = time.monotonic()
    if argv[0] == "admin":
        argv = [argv[0], "--admin-url", "http://127.0.0.1:1", *argv[1:]]
    elif "--service-url" not in argv:
        argv = [argv[0], "--service-url", "pulsar://127.0.0.1:1", *argv[1:]]
    result = taureau(*argv)
    _one_clear_line(result, 2, expected)
    assert time.monotonic() - started < 10


def test_cli_help_lists_groups_and_verbs():
    groups = taureau("admin", "--help")
    assert groups.returncode == 0
    for group in ("tenants", "namespaces", "topics"):
        assert f"    {group}" in groups.stdout
    verbs = taureau("admin", "topics", "--help")
    assert verbs.returncode == 0
    for verb in ("create-subscription", "peek-messages", "stats", "unsubscribe", "create-partitioned-topic"):
        assert f"    {verb}" in verbs.stdout


def test_cli_version():
    result = taureau("--version")
    assert result.returncode == 0 and result.stdout.strip() == "taureau 0.1.0"


def test_cli_urls_after_the_verb(standalone, topic):
    listed = taureau("admin", "tenants", "list", "--admin-url", standalone.admin_url)
    assert listed.returncode == 0, listed.stderr
    assert "public" in json.loads(listed.stdout)
    produced = taureau("client", "produce", topic, "-m", "x", "--service-url", standalone.service_url)
    assert produced.returncode == 0, produced.stderr


def test_set_retention_reads_sizes_as_binary_units(standalone):
    admin = ["admin", "--admin-url", standalone.admin_url, "namespaces"]
    assert taureau(*admin, "create", "public/retention").returncode == 0
    for size, mb in (("1G", 1024), ("512M", 512), ("2048k", 2), ("1t", 1024 * 1024), ("-1", -1)):
        result = taureau(*admin, "set-retention", "public/retention", "--time", "1h", "--size", size)
        assert result.returncode == 0, result.stderr
        policy = json.loads(taureau(*admin, "get-retention", "public/retention").stdout)
        assert policy == {"retentionTimeInMinutes": 60, "retentionSizeInMB": mb}


@contextlib.contextmanager
def _cli_consumer(standalone, topic: str, subscription: str, *options: str):
    """`taureau client consume` in a process, yielded once its subscription exists; killed after."""
    consumer = subprocess.Popen(
        [sys.executable, "-m", "taureau.cli.main", "client", "--service-url", standalone.service_url,
         "consume", topic, "-s", subscription, *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=standalone.admin_url, timeout=10) as admin:
            deadline = time.monotonic() + 30
            while subscription not in admin.get(f"{_rest(topic)}/subscriptions").json():
                assert time.monotonic() < deadline, "the consumer never subscribed"
                time.sleep(0.1)
        yield consumer
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()


def test_consume_n_0_consumes_until_interrupted(standalone, client, topic):
    with _cli_consumer(standalone, topic, "forever", "-n", "0", "--timeout", "1") as consumer:
        time.sleep(2.5)  # longer than --timeout: -n 0 must not give up
        assert consumer.poll() is None
        producer = client.create_producer(topic)
        for body in (b"one", b"two"):
            producer.send(body)
        time.sleep(1.5)
        consumer.send_signal(signal.SIGINT)
        out, err = consumer.communicate(timeout=20)
    assert consumer.returncode == 0, err
    assert "content:one" in out and "content:two" in out
    assert "2 messages successfully consumed" in out


def test_ctrl_c_while_waiting_for_a_message_ends_the_consume_at_once(standalone, topic):
    with _cli_consumer(standalone, topic, "waiting", "-n", "3", "--timeout", "60") as consumer:
        interrupted_at = time.monotonic()
        consumer.send_signal(signal.SIGINT)
        out, err = consumer.communicate(timeout=20)
        took = time.monotonic() - interrupted_at
    assert consumer.returncode == 0, err
    assert "0 messages successfully consumed" in out and "Traceback" not in err
    assert took < 5.0  # the receive waits in slices of a second, not the whole --timeout


# -- stats and listings ------------------------------------------------------------------------


def test_backlog_size_counts_what_the_slowest_subscription_has_not_acknowledged(standalone, client, topic):
    with httpx.Client(base_url=standalone.admin_url, timeout=10) as admin:
        producer = client.create_producer(topic, batching_enabled=False)
        producer.send(b"x" * 100)
        assert admin.get(f"{_rest(topic)}/stats").json()["backlogSize"] == 0  # no subscription
        consumer = client.subscribe(topic, "slow", initial_position=pulsar.InitialPosition.Earliest)
        for _ in range(3):
            producer.send(b"x" * 100)
        stats = admin.get(f"{_rest(topic)}/stats").json()
        assert stats["backlogSize"] == stats["storageSize"] > 0
        for _ in range(2):
            consumer.acknowledge(consumer.receive(5000))
        deadline = time.monotonic() + 10
        while (stats := admin.get(f"{_rest(topic)}/stats").json())["backlogSize"] == stats["storageSize"]:
            assert time.monotonic() < deadline, "the acks never showed"
            time.sleep(0.05)
        assert stats["backlogSize"] == stats["storageSize"] // 2


def test_topics_list_includes_partitions_right_after_creation(standalone):
    with httpx.Client(base_url=standalone.admin_url, timeout=10) as admin:
        assert (
            admin.put("/admin/v2/persistent/public/default/fresh-parts/partitions", json=3).status_code == 204
        )
        listed = admin.get("/admin/v2/persistent/public/default").json()
    assert {f"persistent://public/default/fresh-parts-partition-{i}" for i in range(3)} <= set(listed)
    cli = taureau("admin", "--admin-url", standalone.admin_url, "topics", "list", "public/default")
    assert "persistent://public/default/fresh-parts-partition-2" in json.loads(cli.stdout)


def test_a_partition_is_a_topic_of_its_own_to_a_client(standalone, client, admin):
    # Partitioned metadata of `t-partition-1` is 0 partitions, as Pulsar answers: told the
    # parent's count, the client wrote to `t-partition-1-partition-0` instead.
    assert admin.put("/admin/v2/persistent/public/default/one-part/partitions", json=2).status_code == 204
    partition = "persistent://public/default/one-part-partition-1"
    assert client.get_topic_partitions(partition) == [partition]
    consumer = client.subscribe(partition, "s", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(partition, batching_enabled=False)
    producer.send(b"to partition 1")
    assert consumer.receive(timeout_millis=10_000).data() == b"to partition 1"
    stats = admin.get("/admin/v2/persistent/public/default/one-part-partition-1/stats").json()
    assert stats["msgInCounter"] == 1
    listed = admin.get("/admin/v2/persistent/public/default").json()
    assert not [name for name in listed if "partition-1-partition" in name]


# -- Key_Shared hashing ------------------------------------------------------------------------


@pytest.mark.parametrize("batching", ["none", "key_based"])
def test_key_shared_sticky_ranges_hold_the_keys_pulsar_puts_there(client, topic, batching):
    # Pulsar hashes a key with Murmur3 (x86, 32 bit, seed 0) mod 65536: a range a client
    # chooses must name the same keys here.
    ranges = {"low": (0, 32767), "high": (32768, 65535)}
    consumers = {
        name: client.subscribe(
            topic,
            "sticky",
            consumer_type=pulsar.ConsumerType.KeyShared,
            key_shared_policy=pulsar.ConsumerKeySharedPolicy(
                pulsar.KeySharedMode.Sticky, sticky_ranges=[span]
            ),
        )
        for name, span in ranges.items()
    }
    if batching == "none":
        producer = client.create_producer(topic, batching_enabled=False)
    else:  # one key per batch: a batch goes whole to the consumer of its key
        producer = client.create_producer(
            topic, batching_enabled=True, batching_type=pulsar.BatchingType.KeyBased, batching_max_messages=10
        )
    keys = [f"key-{i}" for i in range(100)]
    for _ in range(3):
        for key in keys:
            producer.send_async(key.encode(), None, partition_key=key)
    producer.flush()
    seen: dict[str, set[str]] = {}
    received = 0
    for name, consumer in consumers.items():
        while True:
            try:
                msg = consumer.receive(1000)
            except pulsar.Timeout:
                break
            seen.setdefault(msg.partition_key(), set()).add(name)
            received += 1
            consumer.acknowledge(msg)
    assert received == 3 * len(keys)
    assert sorted(seen) == sorted(keys)
    for key, names in seen.items():
        assert len(names) == 1, key
        low, high = ranges[names.pop()]
        assert low <= mmh3.hash(key.encode(), 0, signed=False) % 65536 <= high, key


# -- exclusive producers -----------------------------------------------------------------------


def _epoch(standalone, topic) -> int:
    return httpx.get(f"{standalone.admin_url}{_rest(topic)}/stats", timeout=10).json()["topicEpoch"]


def test_a_second_exclusive_producer_is_fenced_and_a_shared_one_busy(standalone, client, topic):
    first = client.create_producer(topic, access_mode=pulsar.ProducerAccessMode.Exclusive)
    with pytest.raises(pulsar.ProducerFenced):
        client.create_producer(topic, access_mode=pulsar.ProducerAccessMode.Exclusive)
    with pytest.raises(pulsar.ProducerBusy):
        client.create_producer(topic)
    epoch = _epoch(standalone, topic)
    first.send(b"still mine")
    first.close()
    second = client.create_producer(topic, access_mode=pulsar.ProducerAccessMode.Exclusive)
    assert _epoch(standalone, topic) == epoch + 1  # each exclusive holder gets a new epoch
    second.send(b"ok")


def test_exclusive_with_fencing_takes_over(standalone, client, topic):
    old = client.create_producer(
        topic, access_mode=pulsar.ProducerAccessMode.Exclusive, send_timeout_millis=5000
    )
    old.send(b"before")
    new = client.create_producer(topic, access_mode=pulsar.ProducerAccessMode.ExclusiveWithFencing)
    new.send(b"after")
    # The fenced producer's reconnection presents an older epoch: refused, for good.
    with pytest.raises(pulsar.ProducerFenced):
        old.send(b"too late")
    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    bodies = [reader.read_next(5000).data() for _ in range(2)]
    assert bodies == [b"before", b"after"]
    with pytest.raises(pulsar.Timeout):
        reader.read_next(500)


def test_wait_for_exclusive_waits_until_the_holder_leaves(client, topic):
    holder = client.create_producer(topic, access_mode=pulsar.ProducerAccessMode.Exclusive)
    waited: list = []
    thread = threading.Thread(
        target=lambda: waited.append(
            client.create_producer(topic, access_mode=pulsar.ProducerAccessMode.WaitForExclusive)
        )
    )
    thread.start()
    thread.join(2.0)
    assert thread.is_alive() and not waited  # queued behind the holder
    holder.send(b"first")
    holder.close()
    thread.join(10.0)
    assert waited, "the waiting producer never got the topic"
    waited[0].send(b"second")
    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    assert [reader.read_next(5000).data() for _ in range(2)] == [b"first", b"second"]


# -- advertised listeners ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_listeners(tmp_path_factory):
    server = Standalone(tmp_path_factory.mktemp("listeners"))
    port = server.broker_port
    server.extra += [
        "--advertised-listeners",
        f"internal:pulsar://127.0.0.1:{port},external:pulsar://localhost:{port}",
    ]
    server.start()
    yield server
    server.stop()


def _lookup(server: Standalone, listener: str | None) -> pb.CommandLookupTopicResponse:
    session = RawClient(server.broker_port)
    extra = {} if listener is None else {"advertised_listener_name": listener}
    session.send(
        command(T.LOOKUP, "lookupTopic", topic="persistent://public/default/l", request_id=7, **extra)
    )
    return session.expect(T.LOOKUP_RESPONSE).lookupTopicResponse


def test_lookups_answer_per_listener(with_listeners):
    port = with_listeners.broker_port
    assert _lookup(with_listeners, "external").brokerServiceUrl == f"pulsar://localhost:{port}"
    assert _lookup(with_listeners, "internal").brokerServiceUrl == f"pulsar://127.0.0.1:{port}"
    assert _lookup(with_listeners, None).brokerServiceUrl == with_listeners.service_url
    unknown = _lookup(with_listeners, "nope")
    assert unknown.response == pb.CommandLookupTopicResponse.Failed
    assert unknown.error == pb.ServiceNotReady and "nope" in unknown.message


def test_the_official_client_uses_its_listener(with_listeners):
    topic = "persistent://public/default/through-a-listener"
    client = pulsar.Client(
        with_listeners.service_url,
        listener_name="external",
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
    )
    try:
        consumer = client.subscribe(topic, "s")
        client.create_producer(topic).send(b"via external")
        assert consumer.receive(5000).data() == b"via external"
    finally:
        client.close()
    lost = pulsar.Client(
        with_listeners.service_url,
        listener_name="nope",
        operation_timeout_seconds=3,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )
    try:
        # As on Pulsar, the lookup fails with ServiceNotReady, which the client retries (logging
        # the reason) until its operation timeout.
        with pytest.raises(pulsar.Timeout):
            lost.create_producer(topic)
    finally:
        lost.close()


def test_advertised_listeners_are_checked_at_startup():
    result = taureau("standalone", "--advertised-listeners", "internal=pulsar://x:1")
    _one_clear_line(result, 2, "is not name:pulsar://host:port")


# -- chunked messages --------------------------------------------------------------------------

BIG = bytes(range(256)) * (20 * 1024 * 1024 // 256)  # 20 MiB: four times the 5 MiB message limit


@pytest.mark.parametrize("sub_type", [pulsar.ConsumerType.Exclusive, pulsar.ConsumerType.Shared])
def test_a_20_mib_message_travels_in_chunks(client, topic, sub_type):
    consumer = client.subscribe(topic, "chunks", consumer_type=sub_type)
    producer = client.create_producer(topic, chunking_enabled=True, batching_enabled=False)
    producer.send(BIG)
    producer.send(b"small after big")
    msg = consumer.receive(30000)
    assert msg.data() == BIG
    consumer.acknowledge(msg)
    assert consumer.receive(10000).data() == b"small after big"


def test_chunks_survive_a_consumer_restart_in_the_middle(client, topic):
    consumer = client.subscribe(topic, "chunks", receiver_queue_size=2)  # holds 2 of the 5 chunks
    producer = client.create_producer(topic, chunking_enabled=True, batching_enabled=False)
    producer.send(BIG)
    time.sleep(1)  # the first chunks reach the consumer's queue; the rest wait for permits
    consumer.close()
    again = client.subscribe(topic, "chunks")
    msg = again.receive(30000)
    assert msg.data() == BIG
    again.acknowledge(msg)


# -- delayed delivery --------------------------------------------------------------------------


@pytest.mark.parametrize("sub_type", [pulsar.ConsumerType.Shared, pulsar.ConsumerType.KeyShared])
def test_delayed_messages_wait_on_shared_and_key_shared(client, topic, sub_type):
    consumer = client.subscribe(topic, "later", consumer_type=sub_type)
    producer = client.create_producer(topic, batching_enabled=False)
    sent = time.monotonic()
    producer.send(b"after 2 s", partition_key="k", deliver_after=timedelta(seconds=2))
    producer.send(b"at +1 s", partition_key="k", deliver_at=int(time.time() * 1000) + 1000)
    producer.send(b"now", partition_key="k")
    arrivals = []
    for _ in range(3):
        msg = consumer.receive(10000)
        arrivals.append((msg.data(), time.monotonic() - sent))
        consumer.acknowledge(msg)
    assert [body for body, _ in arrivals] == [b"now", b"at +1 s", b"after 2 s"]
    assert arrivals[0][1] < 0.9
    assert 0.9 <= arrivals[1][1] < 1.9
    assert arrivals[2][1] >= 1.9


def test_exclusive_subscriptions_deliver_delayed_messages_at_once(client, topic):
    # As on Pulsar: a delay applies to Shared and Key_Shared subscriptions only.
    consumer = client.subscribe(topic, "now", consumer_type=pulsar.ConsumerType.Exclusive)
    producer = client.create_producer(topic, batching_enabled=False)
    sent = time.monotonic()
    producer.send(b"delayed", deliver_after=timedelta(seconds=5))
    assert consumer.receive(3000).data() == b"delayed"
    assert time.monotonic() - sent < 3


# -- batch-index acknowledgements --------------------------------------------------------------


def _one_batch_of_five(client, topic) -> None:
    producer = client.create_producer(
        topic, batching_enabled=True, batching_max_messages=5, batching_max_publish_delay_ms=60_000
    )
    for i in range(5):
        producer.send_async(f"m{i}".encode(), None)
    producer.flush()
    producer.close()


def _ack_two_of_five(client, topic) -> None:
    consumer = client.subscribe(
        topic, "partial", consumer_type=pulsar.ConsumerType.Shared, batch_index_ack_enabled=True
    )
    _one_batch_of_five(client, topic)
    received = [consumer.receive(5000) for _ in range(5)]
    assert [m.data() for m in received] == [f"m{i}".encode() for i in range(5)]
    assert len({(m.message_id().ledger_id(), m.message_id().entry_id()) for m in received}) == 1  # one entry
    for msg in received[:2]:
        consumer.acknowledge(msg)
    consumer.close()  # flushes the grouped acks


def _the_rest(client, topic) -> list[bytes]:
    consumer = client.subscribe(
        topic, "partial", consumer_type=pulsar.ConsumerType.Shared, batch_index_ack_enabled=True
    )
    bodies = []
    while True:
        try:
            msg = consumer.receive(1500)
        except pulsar.Timeout:
            return bodies
        bodies.append(msg.data())


def test_batch_index_acks_are_kept_and_sent_with_redeliveries(client, topic):
    _ack_two_of_five(client, topic)
    assert _the_rest(client, topic) == [b"m2", b"m3", b"m4"]


def test_batch_index_acks_survive_a_restart(tmp_path):
    topic = "persistent://public/default/partial-restart"
    server = Standalone(tmp_path / "data").start()
    try:
        client = _client(server)
        _ack_two_of_five(client, topic)
        time.sleep(0.5)  # the cursor saves within its persist interval
        client.close()
        assert server.stop() == 0
        server.restart()
        client = _client(server)
        assert _the_rest(client, topic) == [b"m2", b"m3", b"m4"]
        client.close()
    finally:
        server.kill()


# -- HTTP lookup -------------------------------------------------------------------------------


def test_an_http_service_url_works(standalone, topic):
    with httpx.Client(base_url=standalone.admin_url, timeout=10) as admin:
        assert admin.put(f"{_rest(topic)}-parts/partitions", json=2).status_code == 204
        assert admin.get("/admin/v2/clusters").json() == ["standalone"]
        cluster = admin.get("/admin/v2/clusters/standalone").json()
        assert cluster["brokerServiceUrl"] == standalone.service_url
        looked_up = admin.get("/lookup/v2/topic/" + topic.replace("://", "/")).json()
        assert looked_up["brokerUrl"] == standalone.service_url
        assert looked_up["httpUrl"] == standalone.admin_url
    client = pulsar.Client(standalone.admin_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        for name in (topic, f"{topic}-parts"):
            consumer = client.subscribe(name, "over-http")
            producer = client.create_producer(name, batching_enabled=False)
            for i in range(4):
                producer.send(f"{i}".encode())
            assert sorted(consumer.receive(5000).data() for _ in range(4)) == [b"0", b"1", b"2", b"3"]
    finally:
        client.close()


def test_http_lookups_answer_per_listener(with_listeners):
    path = "/lookup/v2/topic/persistent/public/default/l"
    with httpx.Client(base_url=with_listeners.admin_url, timeout=10) as admin:
        by_query = admin.get(path, params={"listenerName": "external"}).json()
        assert by_query["brokerUrl"] == f"pulsar://localhost:{with_listeners.broker_port}"
        by_header = admin.get(path, headers={"X-Pulsar-ListenerName": "internal"}).json()
        assert by_header["brokerUrl"] == f"pulsar://127.0.0.1:{with_listeners.broker_port}"
        unknown = admin.get(path, params={"listenerName": "nope"})
        assert unknown.status_code == 503 and "nope" in unknown.json()["reason"]
