"""Subscription expiration, inactive-topic deletion and time-based backlog quotas, applied by
the policy check (0.3 s here), with idle topics unloaded after 2 s so that the policies are
seen to survive an unload (and, for expiration, a restart)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.admin_cli import admin

STANDALONE = {"args": ("--policy-check-interval", "0.3", "--idle-topic-unload", "2", "--no-journal-fsync", "-v")}


def _ns(standalone, name: str) -> str:
    url = f"{standalone.admin_url}/admin/v2/namespaces/public/{name}"
    assert httpx.put(url).status_code == 204
    return url


def _topic_url(standalone, topic: str) -> str:
    return f"{standalone.admin_url}/admin/v2/{topic.replace('://', '/')}"


def _subscriptions(standalone, topic: str) -> set[str]:
    return set(httpx.get(f"{_topic_url(standalone, topic)}/stats").json()["subscriptions"])


def _eventually(check, timeout: float) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "the policy was not applied in time"
        time.sleep(0.1)
    return time.monotonic() - started


def _unloaded(standalone, topic: str) -> bool:
    return any(f"unloaded idle topic {topic}" in line for line in standalone.output)


# -- subscription expiration ------------------------------------------------------------------


def test_a_subscription_without_consumers_expires_and_a_busy_one_stays(client, standalone):
    ns = _ns(standalone, "expire")
    assert httpx.post(f"{ns}/subscriptionExpirationTime", json=0.05).status_code == 204  # 3 s
    assert httpx.get(f"{ns}/subscriptionExpirationTime").json() == 0.05
    assert httpx.get(ns).json()["subscription_expiration_time_minutes"] == 0.05
    topic = "persistent://public/expire/t"
    client.subscribe(topic, "idle").close()
    busy = client.subscribe(topic, "busy")
    producer = client.create_producer(topic)
    for i in range(5):
        producer.send(f"m-{i}".encode())
    assert _subscriptions(standalone, topic) == {"idle", "busy"}
    _eventually(lambda: _subscriptions(standalone, topic) == {"busy"}, 10.0)
    cursors = httpx.get(f"{_topic_url(standalone, topic)}/internalStats").json()["cursors"]
    assert "idle" not in cursors  # its cursor is gone: its backlog holds no ledger
    assert busy.receive(5000).data() == b"m-0"
    assert httpx.delete(f"{ns}/subscriptionExpirationTime").status_code == 204
    assert httpx.get(f"{ns}/subscriptionExpirationTime").json() == 0


def test_the_last_active_time_survives_an_idle_unload(client, standalone):
    ns = _ns(standalone, "expire-unload")
    assert httpx.post(f"{ns}/subscriptionExpirationTime", json=0.1).status_code == 204  # 6 s
    topic = "persistent://public/expire-unload/t"
    client.subscribe(topic, "s").close()
    closed = time.monotonic()
    _eventually(lambda: _unloaded(standalone, topic), 6.0)  # unloaded before it expired
    time.sleep(max(0.0, closed + 6.5 - time.monotonic()))
    loaded = time.monotonic()
    # Loaded again by this call: counting from the load, it would live 6 s more.
    assert _subscriptions(standalone, topic) == {"s"}
    waited = _eventually(lambda: not _subscriptions(standalone, topic), 10.0)
    assert time.monotonic() - loaded < 4.0, waited


def test_the_last_active_time_survives_a_restart(client, standalone):
    ns = _ns(standalone, "expire-restart")
    assert httpx.post(f"{ns}/subscriptionExpirationTime", json=0.1).status_code == 204  # 6 s
    topic = "persistent://public/expire-restart/t"
    client.subscribe(topic, "s").close()
    closed = time.monotonic()
    standalone.stop()
    standalone.restart()
    time.sleep(max(0.0, closed + 6.5 - time.monotonic()))
    loaded = time.monotonic()
    assert _subscriptions(standalone, topic) == {"s"}
    _eventually(lambda: not _subscriptions(standalone, topic), 10.0)
    assert time.monotonic() - loaded < 4.0


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
