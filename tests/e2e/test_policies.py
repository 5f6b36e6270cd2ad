"""Message TTL and backlog quotas, applied by the broker on its policy timer (0.3 s here)."""

from __future__ import annotations

import httpx
import pulsar
import pytest

from taureau.protocol import pb
from tests.e2e.policy_helpers import Ran, admin, eventually, make_namespace, topic_url
from tests.e2e.raw import RawClient, T

STANDALONE = {"args": ("--policy-check-interval", "0.3", "--no-journal-fsync")}


def _stats(standalone, topic: str) -> dict:
    return httpx.get(f"{topic_url(standalone, topic)}/stats").json()


def test_messages_older_than_the_ttl_are_acknowledged(client, standalone):
    ns = make_namespace(standalone, "ttl")
    assert httpx.post(f"{ns}/messageTTL", json=1).status_code == 204
    assert httpx.get(f"{ns}/messageTTL").json() == 1
    topic = "persistent://public/ttl/events"
    consumer = client.subscribe(topic, "slow", receiver_queue_size=1)
    producer = client.create_producer(topic, batching_enabled=False)
    consumer.close()
    for i in range(5):
        producer.send(f"old-{i}".encode())
    assert _stats(standalone, topic)["subscriptions"]["slow"]["msgBacklog"] == 5
    eventually(lambda: _stats(standalone, topic)["subscriptions"]["slow"]["msgBacklog"] == 0)
    producer.send(b"fresh")
    consumer = client.subscribe(topic, "slow")
    assert consumer.receive(5000).data() == b"fresh"  # the expired ones are gone for it


def test_a_topic_ttl_overrides_its_namespace(client, standalone, topic):
    path = f"{standalone.admin_url}/admin/v2/{topic.replace('://', '/')}/messageTTL"
    client.subscribe(topic, "s").close()
    assert httpx.post(path, params={"messageTTL": 1}).status_code == 204
    assert httpx.get(path).json() == 1
    client.create_producer(topic).send(b"x")
    eventually(lambda: _stats(standalone, topic)["subscriptions"]["s"]["msgBacklog"] == 0)
    assert httpx.post(path, params={"messageTTL": -1}).status_code == 400
    assert httpx.delete(path).status_code == 204


def _over_quota(client, standalone, namespace: str, policy: str, kib: int) -> tuple[str, pulsar.Producer]:
    """A topic in a new namespace with a subscription that reads nothing and `kib` KiB
    published to it, then a 4 KiB quota of `policy` set on the namespace: (topic, its producer).

    The backlog is written before the quota exists: with the quota first, the broker's periodic
    check could act (disconnect or hold the producer) in the middle of the synchronous sends,
    which would then wait out their send timeout on a busy machine."""
    ns = make_namespace(standalone, namespace)
    topic = f"persistent://public/{namespace}/t"
    client.subscribe(topic, "lagging").close()
    producer = client.create_producer(topic, batching_enabled=False)
    for _ in range(kib):
        producer.send(b"q" * 1024)
    quota = {"limitSize": 4096, "limitTime": -1, "policy": policy}
    assert httpx.post(f"{ns}/backlogQuota", json=quota).status_code == 204
    assert httpx.get(f"{ns}/backlogQuotaMap").json() == {"destination_storage": quota}
    return topic, producer


def test_producer_exception_refuses_producers_until_the_backlog_fits(client, standalone):
    topic, _ = _over_quota(client, standalone, "quota-exception", "producer_exception", 16)
    with pytest.raises(pulsar.exceptions.ProducerBlockedQuotaExceededException):
        client.create_producer(topic)
    assert httpx.post(f"{standalone.admin_url}/admin/v2/{topic.replace('://', '/')}/subscription/lagging/skip_all"
                      ).status_code == 204
    client.create_producer(topic).send(b"fits again")


def test_producer_request_hold_answers_the_retryable_error(client, standalone):
    topic, producer = _over_quota(client, standalone, "quota-hold", "producer_request_hold", 16)
    eventually(lambda: not _stats(standalone, topic)["publishers"])  # disconnected by the check
    raw = RawClient(standalone.broker_port)
    refused = raw.producer(topic)
    assert refused.type == T.ERROR and refused.error.error == pb.ProducerBlockedQuotaExceededError
    raw.close()
    producer.close()


def test_consumer_backlog_eviction_moves_the_slowest_subscription(client, standalone):
    topic, producer = _over_quota(client, standalone, "quota-evict", "consumer_backlog_eviction", 32)
    eventually(lambda: _stats(standalone, topic)["subscriptions"]["lagging"]["msgBacklog"] <= 5)
    producer.send(b"still accepted")  # producers are never held under eviction


@pytest.mark.parametrize(
    "body, params",
    [
        ({"limitSize": 1, "limitTime": -1, "policy": "bogus"}, {}),
        ({"limitSize": 1, "limitTime": 60, "policy": "producer_exception"}, {}),
        ({"limitSize": "big", "policy": "producer_exception"}, {}),
        ({"limitSize": 1, "policy": "producer_exception", "extra": 1}, {}),
        ({"limitSize": 1, "policy": "producer_exception"}, {"backlogQuotaType": "message_age"}),
        ([1, 2], {}),
    ],
    ids=["policy", "limit-time", "size-type", "unknown-field", "quota-type", "not-an-object"],
)
def test_bad_backlog_quotas_are_refused_and_change_nothing(standalone, body, params):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/default"
    assert httpx.post(f"{ns}/backlogQuota", json=body, params=params).status_code == 400
    assert httpx.get(f"{ns}/backlogQuotaMap").json() == {}


def test_bad_ttls_are_refused(standalone):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/default"
    for bad in (-1, "10", True, 1.5):
        assert httpx.post(f"{ns}/messageTTL", json=bad).status_code == 400
    assert httpx.get(f"{ns}/messageTTL").json() == 0


def test_cli_ttl_and_quota_verbs(standalone, capsys):
    make_namespace(standalone, "cli-policies")

    def run(*args: str) -> Ran:
        return admin(capsys, standalone.admin_url, "namespaces", *args)

    assert run("set-message-ttl", "public/cli-policies", "-ttl", "3600").returncode == 0
    got = run("get-message-ttl", "public/cli-policies")
    assert got.returncode == 0 and got.stdout.strip() == "3600"
    assert run("set-backlog-quota", "public/cli-policies", "-l", "2G", "-p", "producer_request_hold").returncode == 0
    quotas = run("get-backlog-quotas", "public/cli-policies")
    assert quotas.returncode == 0 and str(2 * 1024**3) in quotas.stdout
    bad = run("set-backlog-quota", "public/cli-policies", "-l", "lots", "-p", "producer_exception")
    assert bad.returncode == 2 and "not a size" in bad.stderr
    assert run("remove-backlog-quota", "public/cli-policies").returncode == 0
    assert run("remove-message-ttl", "public/cli-policies").returncode == 0
