"""Subscription expiration, inactive-topic deletion and time-based backlog quotas, applied by
the policy check (0.3 s here), with idle topics unloaded after 2 s so that the policies are
seen to survive an unload (and, for expiration, a restart)."""

from __future__ import annotations

import time

import httpx
import pulsar
import pytest

from tests.e2e.policy_helpers import admin, eventually, make_namespace, topic_url

STANDALONE = {"args": ("--policy-check-interval", "0.3", "--idle-topic-unload", "2", "--no-journal-fsync", "-v")}


def _subscriptions(standalone, topic: str) -> set[str]:
    return set(httpx.get(f"{topic_url(standalone, topic)}/stats").json()["subscriptions"])


def _unloaded(standalone, topic: str) -> bool:
    return any(f"unloaded idle topic {topic}" in line for line in standalone.output)


def _deleted_by_a_check(standalone, topic: str) -> bool:
    return any(f"subscription s of {topic} had no consumer" in line for line in standalone.output)


# -- subscription expiration ------------------------------------------------------------------


def test_a_subscription_without_consumers_expires_and_a_busy_one_stays(client, standalone):
    ns = make_namespace(standalone, "expire")
    assert httpx.post(f"{ns}/subscriptionExpirationTime", json=0.03).status_code == 204  # 1.8 s
    assert httpx.get(f"{ns}/subscriptionExpirationTime").json() == 0.03
    assert httpx.get(ns).json()["subscription_expiration_time_minutes"] == 0.03
    topic = "persistent://public/expire/t"
    busy = client.subscribe(topic, "busy")
    producer = client.create_producer(topic)
    for i in range(5):
        producer.send(f"m-{i}".encode())
    client.subscribe(topic, "idle").close()
    assert _subscriptions(standalone, topic) == {"idle", "busy"}
    eventually(lambda: _subscriptions(standalone, topic) == {"busy"}, 10.0)
    cursors = httpx.get(f"{topic_url(standalone, topic)}/internalStats").json()["cursors"]
    assert "idle" not in cursors  # its cursor is gone: its backlog holds no ledger
    assert busy.receive(5000).data() == b"m-0"
    assert httpx.delete(f"{ns}/subscriptionExpirationTime").status_code == 204
    assert httpx.get(f"{ns}/subscriptionExpirationTime").json() == 0


def _expires_by_its_saved_time(client, standalone, namespace: str, interrupt) -> None:
    """A subscription left idle in a namespace expiring them after 4.2 s, then `interrupt(topic)`
    (an unload, a restart): loaded again past its 4.2 s, it goes at the next check, not 4.2 s
    after the load."""
    ns = make_namespace(standalone, namespace)
    assert httpx.post(f"{ns}/subscriptionExpirationTime", json=0.07).status_code == 204
    topic = f"persistent://public/{namespace}/t"
    client.subscribe(topic, "s").close()
    closed = time.monotonic()
    interrupt(topic)
    time.sleep(max(0.0, closed + 4.5 - time.monotonic()))
    loaded = time.monotonic()
    # Loaded again by this call, with its saved last-active time. A policy check (every 0.3 s)
    # may run between the load and the stats read and delete it at once, as it should; before
    # the interruption it was too young to expire, so that deletion shows it was restored too.
    assert _subscriptions(standalone, topic) == {"s"} or _deleted_by_a_check(standalone, topic)
    waited = eventually(lambda: not _subscriptions(standalone, topic), 10.0)
    assert time.monotonic() - loaded < 2.5, waited


def test_the_last_active_time_survives_an_idle_unload(client, standalone):
    _expires_by_its_saved_time(client, standalone, "expire-unload",
                               lambda topic: eventually(lambda: _unloaded(standalone, topic), 4.0))


def test_the_last_active_time_survives_a_restart(client, standalone):
    def restart(_: str) -> None:
        standalone.stop()
        standalone.restart()

    _expires_by_its_saved_time(client, standalone, "expire-restart", restart)


@pytest.mark.parametrize("body", [-1, "10", True, [1], 1e12, {"minutes": 1}], ids=[
    "negative", "string", "bool", "list", "too-large", "object"])
def test_bad_expiration_times_are_refused(standalone, body):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/default"
    response = httpx.post(f"{ns}/subscriptionExpirationTime", json=body)
    assert response.status_code == 400 and "minutes" in response.json()["reason"]
    assert httpx.get(f"{ns}/subscriptionExpirationTime").json() == 0


def test_cli_expiration_verbs(standalone, capsys):
    def run(*args: str):
        return admin(capsys, standalone.admin_url, "namespaces", *args)

    assert run("set-subscription-expiration-time", "public/default", "-t", "120").returncode == 0
    got = run("get-subscription-expiration-time", "public/default")
    assert got.returncode == 0 and got.stdout.strip() == "120"
    assert run("remove-subscription-expiration-time", "public/default").returncode == 0
    assert run("get-subscription-expiration-time", "public/default").stdout.strip() == "0"
    bad = run("set-subscription-expiration-time", "public/default", "-t", "soon")
    assert bad.returncode == 2 and "invalid time 'soon'" in bad.stderr
    missing = run("set-subscription-expiration-time", "public/nowhere", "-t", "5")
    assert missing.returncode == 1 and missing.stderr.strip().count("\n") == 0 and "404" in missing.stderr


# -- inactive-topic deletion ------------------------------------------------------------------

INACTIVE = {"deleteWhileInactive": True, "maxInactiveDurationSeconds": 2,
            "inactiveTopicDeleteMode": "delete_when_no_subscriptions"}


def _topics(standalone, ns: str) -> list[str]:
    return httpx.get(f"{standalone.admin_url}/admin/v2/persistent/public/{ns}").json()


def _publish(client, topic: str, count: int = 3) -> None:
    producer = client.create_producer(topic)
    for i in range(count):
        producer.send(f"m-{i}".encode())
    producer.close()


def test_inactive_topics_are_deleted_by_mode_and_partitioned_ones_whole(client, standalone):
    ns = make_namespace(standalone, "inactive")
    assert httpx.post(f"{ns}/inactiveTopicPolicies", json=INACTIVE).status_code == 204
    assert httpx.get(f"{ns}/inactiveTopicPolicies").json() == INACTIVE
    assert httpx.get(ns).json()["inactive_topic_policies"] == INACTIVE
    gone, kept = "persistent://public/inactive/gone", "persistent://public/inactive/subscribed"
    _publish(client, gone)
    client.subscribe(kept, "s").close()
    _publish(client, kept)
    # A partitioned topic goes whole once every partition qualifies; one whose partition 0
    # has a subscription keeps both partitions.
    whole, held = "persistent://public/inactive/whole", "persistent://public/inactive/held"
    for name in (whole, held):
        assert httpx.put(f"{topic_url(standalone, name)}/partitions", json=2).status_code == 204
    assert httpx.put(f"{topic_url(standalone, held)}-partition-0/subscription/s").status_code == 204
    for name in (whole, held):
        producer = client.create_producer(name, batching_enabled=False)  # round robin: both partitions
        for i in range(4):
            producer.send(f"m-{i}".encode())
        producer.close()
    # Topic-level: caught-up subscriptions allow deletion, in a namespace without the policy.
    caught, behind = "persistent://public/default/caught-up", "persistent://public/default/behind"
    for name in (caught, behind):
        policy = {**INACTIVE, "inactiveTopicDeleteMode": "delete_when_subscriptions_caught_up"}
        assert httpx.post(f"{topic_url(standalone, name)}/inactiveTopicPolicies", json=policy).status_code == 204
        client.subscribe(name, "s").close()
        _publish(client, name)
    reader = client.subscribe(caught, "s")
    for _ in range(3):
        reader.acknowledge(reader.receive(5000))
    reader.close()
    untouched = "persistent://public/default/no-policy"
    _publish(client, untouched)
    eventually(lambda: gone not in _topics(standalone, "inactive")
                and caught not in _topics(standalone, "default"), 15.0)
    eventually(lambda: whole not in httpx.get(f"{ns.replace('namespaces', 'persistent')}/partitioned").json(), 5.0)
    assert httpx.get(f"{topic_url(standalone, whole)}/partitions").json() == {"partitions": 0}
    left = _topics(standalone, "inactive")
    assert kept in left and f"{held}-partition-0" in left and f"{held}-partition-1" in left
    assert not [t for t in left if t.startswith(whole)]
    assert behind in _topics(standalone, "default") and untouched in _topics(standalone, "default")
    assert not _unloaded(standalone, gone)  # held loaded while it waited out its duration
    for name in (caught, behind):
        httpx.delete(f"{topic_url(standalone, name)}/inactiveTopicPolicies")
    assert httpx.delete(f"{ns}/inactiveTopicPolicies").status_code == 204
    assert httpx.get(f"{ns}/inactiveTopicPolicies").json() is None


@pytest.mark.parametrize("body", [
    {**INACTIVE, "inactiveTopicDeleteMode": "delete_always"},
    {**INACTIVE, "maxInactiveDurationSeconds": -5},
    {**INACTIVE, "maxInactiveDurationSeconds": "5m"},
    {**INACTIVE, "deleteWhileInactive": "yes"},
    {**INACTIVE, "extra": 1},
    "delete",
], ids=["mode", "negative", "string", "not-bool", "unknown-field", "not-an-object"])
def test_bad_inactive_topic_policies_are_refused(standalone, body):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/default"
    topic = f"{standalone.admin_url}/admin/v2/persistent/public/default/bad-inactive"
    for path in (f"{ns}/inactiveTopicPolicies", f"{topic}/inactiveTopicPolicies"):
        response = httpx.post(path, json=body)
        assert response.status_code == 400 and response.json()["reason"], response.text
        assert httpx.get(path).json() is None


def test_cli_inactive_topic_verbs(standalone, capsys):
    def run(*args: str):
        return admin(capsys, standalone.admin_url, *args)

    assert run("namespaces", "set-inactive-topic-policies", "public/default", "-e", "-t", "5m",
               "-m", "delete_when_subscriptions_caught_up").returncode == 0
    got = run("namespaces", "get-inactive-topic-policies", "public/default")
    assert got.returncode == 0 and '"maxInactiveDurationSeconds": 300' in got.stdout
    assert run("namespaces", "remove-inactive-topic-policies", "public/default").returncode == 0
    assert run("topics", "set-inactive-topic-policies", "cli-inactive", "-d", "-t", "1h",
               "-m", "delete_when_no_subscriptions").returncode == 0
    got = run("topics", "get-inactive-topic-policies", "cli-inactive")
    assert got.returncode == 0 and '"maxInactiveDurationSeconds": 3600' in got.stdout
    assert run("topics", "remove-inactive-topic-policies", "cli-inactive").returncode == 0
    bad = run("namespaces", "set-inactive-topic-policies", "public/default", "-e", "-t", "5m", "-m", "sometimes")
    assert bad.returncode == 2 and "invalid choice: 'sometimes'" in bad.stderr
    both = run("namespaces", "set-inactive-topic-policies", "public/default", "-e", "-d", "-t", "5m",
               "-m", "delete_when_no_subscriptions")
    assert both.returncode == 1 and both.stderr.count("\n") == 1 and "exactly one" in both.stderr
    assert run("namespaces", "set-inactive-topic-policies", "public/default", "-e", "-t", "-5m",
               "-m", "delete_when_no_subscriptions").returncode == 2
    assert httpx.get(f"{standalone.admin_url}/admin/v2/namespaces/public/default/inactiveTopicPolicies").json() is None


def test_broker_defaults_are_checked_before_anything_starts(capsys):
    from taureau.cli.app import run

    with pytest.raises(SystemExit) as exited:
        run(["standalone", "--broker-delete-inactive-topics-mode", "delete_sometimes"])
    assert exited.value.code == 2 and "delete_when_no_subscriptions" in capsys.readouterr().err


# -- time-based backlog quotas ----------------------------------------------------------------


def _age_quota(standalone, namespace: str, policy: str, seconds: int) -> str:
    ns = make_namespace(standalone, namespace)
    quota = {"limitSize": -1, "limitTime": seconds, "policy": policy}
    assert httpx.post(f"{ns}/backlogQuota", json=quota, params={"backlogQuotaType": "message_age"}).status_code == 204
    assert httpx.get(f"{ns}/backlogQuotaMap").json() == {"message_age": quota}
    return ns


def test_a_message_age_quota_refuses_producers_while_the_oldest_message_is_too_old(client, standalone):
    _age_quota(standalone, "age-exception", "producer_exception", 2)
    topic = "persistent://public/age-exception/t"
    client.subscribe(topic, "lagging").close()
    _publish(client, topic)
    client.create_producer(topic).close()  # young enough yet
    time.sleep(2.5)
    with pytest.raises(pulsar.exceptions.ProducerBlockedQuotaExceededException):
        client.create_producer(topic)
    assert httpx.post(f"{topic_url(standalone, topic)}/subscription/lagging/skip_all").status_code == 204
    client.create_producer(topic).send(b"no backlog, no age")


def test_message_age_eviction_moves_subscriptions_past_the_old_messages(client, standalone):
    ns = _age_quota(standalone, "age-evict", "consumer_backlog_eviction", 3)
    topic = "persistent://public/age-evict/t"
    client.subscribe(topic, "lagging").close()
    _publish(client, topic, 3)
    time.sleep(2.0)
    producer = client.create_producer(topic)
    producer.send(b"young-0")
    producer.send(b"young-1")

    def backlog() -> int:
        return httpx.get(f"{topic_url(standalone, topic)}/stats").json()["subscriptions"]["lagging"]["msgBacklog"]

    assert backlog() == 5
    eventually(lambda: backlog() <= 2, 5.0)
    assert backlog() == 2  # the young ones stay (for 3 s)
    consumer = client.subscribe(topic, "lagging")
    assert consumer.receive(5000).data() == b"young-0"
    assert httpx.delete(f"{ns}/backlogQuota", params={"backlogQuotaType": "message_age"}).status_code == 204
    assert httpx.get(f"{ns}/backlogQuotaMap").json() == {}


@pytest.mark.parametrize("body, kind", [
    ({"limitSize": -1, "limitTime": 0, "policy": "producer_exception"}, "message_age"),
    ({"limitSize": -1, "limitTime": -5, "policy": "producer_exception"}, "message_age"),
    ({"limitSize": -1, "limitTime": "1h", "policy": "producer_exception"}, "message_age"),
    ({"limitSize": 1024, "limitTime": 60, "policy": "producer_exception"}, "message_age"),
    ({"limitSize": -1, "limitTime": 60, "policy": "drop_everything"}, "message_age"),
    ({"limitSize": -1, "limitTime": 60, "policy": "producer_exception"}, "message_count"),
], ids=["zero", "negative", "string", "with-size", "policy", "unknown-type"])
def test_bad_message_age_quotas_are_refused(standalone, body, kind):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/default"
    response = httpx.post(f"{ns}/backlogQuota", json=body, params={"backlogQuotaType": kind})
    assert response.status_code == 400 and response.json()["reason"]
    assert httpx.get(f"{ns}/backlogQuotaMap").json() == {}


def test_cli_message_age_quota_verbs(standalone, capsys):
    def run(*args: str):
        return admin(capsys, standalone.admin_url, "namespaces", *args)

    assert run("set-backlog-quota", "public/default", "-lt", "1h", "-p", "producer_request_hold",
               "-t", "message_age").returncode == 0
    got = run("get-backlog-quotas", "public/default")
    assert got.returncode == 0 and '"limitTime": 3600' in got.stdout and "message_age" in got.stdout
    assert run("remove-backlog-quota", "public/default", "-bqt", "message_age").returncode == 0
    assert run("get-backlog-quotas", "public/default").stdout.strip() == "{}"
    bad = run("set-backlog-quota", "public/default", "-lt", "soon", "-p", "producer_exception", "-t", "message_age")
    assert bad.returncode == 2 and "not a duration: 'soon'" in bad.stderr
    refused = run("set-backlog-quota", "public/default", "-p", "producer_exception", "-t", "message_age")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "limitTime" in refused.stderr
