"""Dispatch rate limits (namespace and topic, per topic and per subscription), end to end
through the official client: what a consumer receives per period, and the admin verbs."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.policy_helpers import Ran, admin, make_namespace, topic_url

STANDALONE = {"args": ("--policy-check-interval", "0.3", "--no-journal-fsync")}


def _fill(client, topic: str, subscriptions: tuple[str, ...], count: int) -> None:
    for sub in subscriptions:
        client.subscribe(topic, sub).close()  # durable, from here on
    producer = client.create_producer(topic, batching_enabled=False)
    for i in range(count):
        producer.send_async(f"m-{i}".encode(), None)
    producer.flush()
    producer.close()


def _received_within(consumer, seconds: float, stop_at: int | None = None) -> int:
    """Messages received in `seconds` (or until `stop_at` arrived: nothing more is expected)."""
    deadline = time.monotonic() + seconds
    got = 0
    while (left := deadline - time.monotonic()) > 0 and got != stop_at:
        try:
            consumer.receive(max(int(left * 1000), 1))
            got += 1
        except Exception:  # the client's Timeout: nothing more before the deadline
            break
    return got


def test_a_namespace_dispatch_rate_holds_delivery_to_its_budget_per_period(client, standalone):
    ns = make_namespace(standalone, "dispatch")
    rate = {"dispatchThrottlingRateInMsg": 50, "dispatchThrottlingRateInByte": -1, "ratePeriodInSecond": 1}
    assert httpx.post(f"{ns}/dispatchRate", json=rate).status_code == 204
    assert httpx.get(f"{ns}/dispatchRate").json() == rate
    assert httpx.get(ns).json()["topicDispatchRate"] == rate  # `namespaces policies` shows it
    topic = "persistent://public/dispatch/throttled"
    _fill(client, topic, ("s",), 300)
    consumer = client.subscribe(topic, "s")
    consumer.receive(5000)  # the first period begins
    first = 1 + _received_within(consumer, 0.5)
    # Counted from mid-period for 3 s: the periods starting 1, 2 and 3 s after the first one,
    # 50 each. A period let through early, or no limit, would show as more.
    throttled = _received_within(consumer, 3.0)
    assert 40 <= first <= 50 and 125 <= throttled <= 160, (first, throttled)
    started = time.monotonic()
    assert httpx.delete(f"{ns}/dispatchRate").status_code == 204  # unthrottled: the rest at once
    rest = _received_within(consumer, 1.0, stop_at=300 - first - throttled)
    assert first + throttled + rest == 300 and time.monotonic() - started < 1.5


def test_unthrottled_delivers_everything_at_once(client, standalone, topic):
    _fill(client, topic, ("s",), 300)
    consumer = client.subscribe(topic, "s")
    assert _received_within(consumer, 1.0, stop_at=300) == 300


def test_a_topic_subscription_dispatch_rate_limits_each_subscription_alone(client, standalone, topic):
    path = f"{standalone.admin_url}/admin/v2/{topic.replace('://', '/')}/subscriptionDispatchRate"
    _fill(client, topic, ("a", "b"), 200)
    # 20 messages per 1 s period, for each subscription on its own.
    rate = {"dispatchThrottlingRateInMsg": 20, "dispatchThrottlingRateInByte": -1, "ratePeriodInSecond": 1}
    assert httpx.post(path, json=rate).status_code == 204
    assert httpx.get(path).json()["dispatchThrottlingRateInMsg"] == 20
    a, b = client.subscribe(topic, "a"), client.subscribe(topic, "b")
    time.sleep(1.5)  # periods at 0 and 1 s: 40 each, had the limit been shared 20 each
    counts = [_received_within(c, 0.2) for c in (a, b)]
    assert all(35 <= n <= 45 for n in counts), counts
    assert httpx.delete(path).status_code == 204
    assert httpx.get(path).json() is None


def test_one_subscription_can_have_its_own_rate(client, standalone, topic, capsys):
    base = topic_url(standalone, topic)
    _fill(client, topic, ("own", "other"), 100)
    rate = {"dispatchThrottlingRateInMsg": 10, "dispatchThrottlingRateInByte": -1, "ratePeriodInSecond": 5}
    assert httpx.post(f"{base}/own/dispatchRate", json=rate).status_code == 204
    assert httpx.get(f"{base}/own/dispatchRate").json()["dispatchThrottlingRateInMsg"] == 10
    own, other = client.subscribe(topic, "own"), client.subscribe(topic, "other")
    assert _received_within(other, 1.5, stop_at=100) == 100  # the other subscription is not held back
    assert _received_within(own, 0.5) == 10
    ghost = httpx.post(f"{base}/ghost/dispatchRate", json=rate)
    assert ghost.status_code == 404 and "ghost" in ghost.json()["reason"]
    assert httpx.get(f"{base}/ghost/dispatchRate").json() is None
    ran = admin(capsys, standalone.admin_url, "topics", "get-subscription-dispatch-rate", topic, "-s", "own")
    assert ran.returncode == 0 and '"dispatchThrottlingRateInMsg": 10' in ran.stdout
    ran = admin(capsys, standalone.admin_url, "topics", "set-subscription-dispatch-rate", topic, "-s", "ghost", "-md", "5")
    assert ran.returncode == 1 and ran.stderr.count("\n") == 1 and "404" in ran.stderr
    assert admin(capsys, standalone.admin_url, "topics", "remove-subscription-dispatch-rate", topic,
                 "-s", "own").returncode == 0
    assert _received_within(own, 1.5, stop_at=90) == 90  # its own rate gone: the rest at once
    assert httpx.get(f"{base}/own/dispatchRate").json() is None


def test_a_byte_rate_counts_bytes(client, standalone, topic):
    path = f"{standalone.admin_url}/admin/v2/{topic.replace('://', '/')}/dispatchRate"
    _fill(client, topic, ("s",), 100)  # entries of ~4 bytes payload plus metadata
    rate = {"dispatchThrottlingRateInMsg": -1, "dispatchThrottlingRateInByte": 1, "ratePeriodInSecond": 1}
    assert httpx.post(path, json=rate).status_code == 204
    consumer = client.subscribe(topic, "s")
    # One byte per second: each period lets one read through (a read overshoots the byte
    # budget by at most itself), so far fewer than the 100 stored arrive in 1.5 s.
    assert 1 <= _received_within(consumer, 1.5) < 100
    assert httpx.delete(path).status_code == 204


@pytest.mark.parametrize("body", [
    {"dispatchThrottlingRateInMsg": -2},
    {"dispatchThrottlingRateInMsg": "10"},
    {"dispatchThrottlingRateInMsg": 10, "ratePeriodInSecond": 0},
    {"dispatchThrottlingRateInMsg": 10, "bogus": 1},
    {"dispatchThrottlingRateInMsg": True},
    [10],
    None,
], ids=["negative", "string", "zero-period", "unknown-field", "bool", "list", "null"])
def test_bad_dispatch_rates_are_refused_and_change_nothing(standalone, body):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/default"
    topic = f"{standalone.admin_url}/admin/v2/persistent/public/default/bad-rate"
    for path in (f"{ns}/dispatchRate", f"{ns}/subscriptionDispatchRate",
                 f"{topic}/dispatchRate", f"{topic}/subscriptionDispatchRate"):
        response = httpx.post(path, json=body)
        # FastAPI answers a missing (null) body itself: 422 with its "detail".
        expected = 422 if body is None else 400
        assert response.status_code == expected and response.text, (path, response.text)
        assert httpx.get(path).json() is None
    assert httpx.get(ns).json()["topicDispatchRate"] is None


@pytest.mark.parametrize("path", [
    "namespaces/public/default/dispatchRate", "namespaces/public/default/subscriptionDispatchRate",
    "namespaces/public/default/subscriptionExpirationTime", "namespaces/public/default/inactiveTopicPolicies",
    "namespaces/public/default/backlogQuota?backlogQuotaType=message_age",
    "persistent/public/default/big/dispatchRate", "persistent/public/default/big/subscriptionDispatchRate",
    "persistent/public/default/big/inactiveTopicPolicies", "persistent/public/default/big/s/dispatchRate",
])
def test_a_body_too_large_is_refused_and_changes_nothing(standalone, path):
    base = f"{standalone.admin_url}/admin/v2"
    before = httpx.get(f"{base}/namespaces/public/default").json()
    huge = {"limitTime": 60, "pad": "x" * (6 * 1024 * 1024)}
    response = httpx.post(f"{base}/{path}", json=huge)
    assert response.status_code == 413 and response.json()["reason"]
    assert httpx.get(f"{base}/namespaces/public/default").json() == before
    read = path.split("?")[0].replace("backlogQuota", "backlogQuotaMap")  # a quota is read in the map
    assert httpx.get(f"{base}/{read}").json() in (None, 0, {})


def test_a_topic_policy_in_an_unknown_namespace_is_refused(standalone):
    path = f"{standalone.admin_url}/admin/v2/persistent/public/nowhere/t/dispatchRate"
    response = httpx.post(path, json={"dispatchThrottlingRateInMsg": 5})
    assert response.status_code == 404 and "nowhere" in response.json()["reason"]
    assert httpx.get(path).json() is None


def test_cli_dispatch_rate_verbs(standalone, topic, capsys):
    def run(*args: str) -> Ran:
        return admin(capsys, standalone.admin_url, *args)

    assert run("namespaces", "set-dispatch-rate", "public/default", "-md", "100", "-bd", "2048", "-dt", "5"
               ).returncode == 0
    got = run("namespaces", "get-dispatch-rate", "public/default")
    assert got.returncode == 0 and '"ratePeriodInSecond": 5' in got.stdout and '"dispatchThrottlingRateInByte": 2048' in got.stdout
    assert run("namespaces", "remove-dispatch-rate", "public/default").returncode == 0
    assert run("namespaces", "get-dispatch-rate", "public/default").stdout.strip() == ""
    assert run("topics", "set-subscription-dispatch-rate", topic, "-md", "7").returncode == 0
    got = run("topics", "get-subscription-dispatch-rate", topic)
    assert got.returncode == 0 and '"dispatchThrottlingRateInMsg": 7' in got.stdout
    assert run("topics", "remove-subscription-dispatch-rate", topic).returncode == 0
    bad = run("namespaces", "set-dispatch-rate", "public/default", "-md", "lots")
    assert bad.returncode == 2 and "invalid rate" in bad.stderr
    refused = run("topics", "set-dispatch-rate", topic, "-md", "5", "-dt", "0")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "ratePeriodInSecond" in refused.stderr
