"""Topic compaction with the official client: compacted readers see the latest value of each key."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pulsar
import pytest

LOG = pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)


def _rest(standalone, topic: str) -> str:
    return f"{standalone.admin_url}/admin/v2/{topic.replace('://', '/')}"


def _compact(standalone, topic: str) -> None:
    started = httpx.put(f"{_rest(standalone, topic)}/compaction")
    assert started.status_code == 204, started.text
    _wait_success(standalone, topic)


def _wait_success(standalone, topic: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(f"{_rest(standalone, topic)}/compaction").json()
        if status["status"] == "SUCCESS":
            return
        assert status["status"] in ("RUNNING", "NOT_RUN"), status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def _read_all(client, topic: str, compacted: bool, expected: int | None = None) -> list[tuple[str | None, bytes]]:
    reader = client.create_reader(topic, pulsar.MessageId.earliest, is_read_compacted=compacted)
    out = []
    try:
        while reader.has_message_available():
            message = reader.read_next(5000)
            out.append((message.partition_key() or None, message.data()))
    finally:
        reader.close()
    if expected is not None:
        assert len(out) == expected, out
    return out


def _produce(client, topic: str, records, batching: bool = False) -> None:
    producer = client.create_producer(topic, batching_enabled=batching, batching_max_publish_delay_ms=50)
    for key, value in records:
        if key is None:
            producer.send_async(value, None)
        else:
            producer.send_async(value, None, partition_key=key)
    producer.flush()
    producer.close()


RECORDS = [("a", b"1"), ("b", b"1"), (None, b"no key"), ("a", b"2"), ("c", b"1"), ("b", b""), ("a", b"3")]


@pytest.mark.parametrize("batching", [False, True], ids=["single", "batched"])
def test_compacted_readers_see_the_latest_value_of_each_key(client, standalone, topic, batching):
    _produce(client, topic, RECORDS, batching)
    _compact(standalone, topic)
    # b's empty value is a tombstone; the message without a key is not kept.
    assert sorted(_read_all(client, topic, compacted=True)) == [("a", b"3"), ("c", b"1")]
    assert len(_read_all(client, topic, compacted=False)) == len(RECORDS)  # the topic itself is whole
    _produce(client, topic, [("a", b"4"), ("d", b"1")])  # after the horizon: read as written
    assert _read_all(client, topic, compacted=True)[-2:] == [("a", b"4"), ("d", b"1")]
    _compact(standalone, topic)  # a second compaction reads the first one's view and what followed
    assert sorted(_read_all(client, topic, compacted=True)) == [("a", b"4"), ("c", b"1"), ("d", b"1")]


def test_a_compacted_subscription_acknowledges_and_resumes(client, standalone, topic):
    _produce(client, topic, [("k", b"old"), ("k", b"new"), ("j", b"only")])
    _compact(standalone, topic)
    consumer = client.subscribe(topic, "table", consumer_type=pulsar.ConsumerType.Exclusive,
                                initial_position=pulsar.InitialPosition.Earliest, is_read_compacted=True)
    first = consumer.receive(5000)
    assert (first.partition_key(), first.data()) == ("k", b"new")
    consumer.acknowledge_cumulative(first)
    consumer.close()
    again = client.subscribe(topic, "table", consumer_type=pulsar.ConsumerType.Exclusive, is_read_compacted=True)
    second = again.receive(5000)
    assert (second.partition_key(), second.data()) == ("j", b"only")


def test_read_compacted_on_a_shared_subscription_is_refused(client, standalone, topic):
    from taureau.protocol import pb
    from tests.e2e.raw import RawClient, T, command

    _produce(client, topic, [("k", b"v")])
    with pytest.raises(pulsar.exceptions.InvalidConfiguration):  # the client checks it first
        client.subscribe(topic, "shared", consumer_type=pulsar.ConsumerType.Shared, is_read_compacted=True)
    raw = RawClient(standalone.broker_port)  # and the broker, for clients that do not
    raw.send(command(T.SUBSCRIBE, "subscribe", topic=topic, subscription="shared", subType=pb.CommandSubscribe.Shared,
                     consumer_id=1, request_id=1, read_compacted=True))
    refused = raw.expect(T.SUCCESS, T.ERROR)
    assert refused.type == T.ERROR and refused.error.error == pb.NotAllowedError
    raw.close()
    assert "shared" not in httpx.get(f"{_rest(standalone, topic)}/subscriptions").json()  # nothing left behind


def test_a_topic_never_compacted_reads_whole_and_reports_not_run(client, standalone, topic):
    _produce(client, topic, [("k", b"1"), ("k", b"2")])
    assert httpx.get(f"{_rest(standalone, topic)}/compaction").json() == {"status": "NOT_RUN", "lastError": ""}
    assert _read_all(client, topic, compacted=True) == [("k", b"1"), ("k", b"2")]


def test_compaction_of_a_missing_topic_is_404(standalone):
    missing = "persistent://public/default/never-created"
    assert httpx.put(f"{_rest(standalone, missing)}/compaction").status_code == 404
    assert httpx.get(f"{_rest(standalone, missing)}/compaction").status_code == 404


def test_the_compacted_view_survives_a_restart_and_goes_with_its_topic(standalone, topic):
    client = pulsar.Client(standalone.service_url, logger=LOG)
    _produce(client, topic, [("x", b"1"), ("x", b"2")])
    _compact(standalone, topic)
    client.close()
    assert standalone.stop() == 0
    standalone.restart()
    client = pulsar.Client(standalone.service_url, logger=LOG)
    try:
        assert _read_all(client, topic, compacted=True) == [("x", b"2")]
        assert httpx.get(f"{_rest(standalone, topic)}/compaction").json()["status"] == "SUCCESS"
    finally:
        client.close()
    assert httpx.delete(_rest(standalone, topic), params={"force": "true"}).status_code == 204
    client = pulsar.Client(standalone.service_url, logger=LOG)
    try:  # a topic made again under the same name has no compacted view left from the old one
        _produce(client, topic, [("y", b"1")])
        assert _read_all(client, topic, compacted=True) == [("y", b"1")]
        assert httpx.get(f"{_rest(standalone, topic)}/compaction").json()["status"] == "NOT_RUN"
    finally:
        client.close()


def test_automatic_compaction_at_the_namespace_threshold(client, standalone):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/auto-compact"
    assert httpx.put(ns).status_code == 204
    assert httpx.put(f"{ns}/compactionThreshold", json=-5).status_code == 400
    assert httpx.put(f"{ns}/compactionThreshold", json=2048).status_code == 204
    assert httpx.get(f"{ns}/compactionThreshold").json() == 2048
    topic = "persistent://public/auto-compact/prices"
    _produce(client, topic, [(f"k{i % 3}", b"v" * 100 + str(i).encode()) for i in range(60)])
    _wait_success(standalone, topic)
    compacted = _read_all(client, topic, compacted=True)
    assert sorted(k for k, _ in compacted) == ["k0", "k1", "k2"]
    assert dict(compacted)["k2"].endswith(b"59")


def test_cli_compact_and_threshold(standalone, topic, client):
    _produce(client, topic, [("k", b"1"), ("k", b"2")])
    base = [sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", standalone.admin_url]
    started = subprocess.run([*base, "topics", "compact", topic], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    _wait_success(standalone, topic)
    status = subprocess.run([*base, "topics", "compaction-status", topic], capture_output=True, text=True)
    assert status.returncode == 0 and '"SUCCESS"' in status.stdout
    threshold = subprocess.run([*base, "namespaces", "set-compaction-threshold", "public/default", "-t", "10M"],
                               capture_output=True, text=True)
    assert threshold.returncode == 0, threshold.stderr
    got = subprocess.run([*base, "namespaces", "get-compaction-threshold", "public/default"],
                         capture_output=True, text=True)
    assert got.returncode == 0 and got.stdout.strip() == str(10 * 1024 * 1024)
    bad = subprocess.run([*base, "namespaces", "set-compaction-threshold", "public/default", "-t", "ten"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not a size" in bad.stderr and "Traceback" not in bad.stderr
    removed = subprocess.run([*base, "namespaces", "remove-compaction-threshold", "public/default"],
                             capture_output=True, text=True)
    assert removed.returncode == 0
