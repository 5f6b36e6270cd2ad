"""Bundles on a standalone (one broker, embedded store): `namespaces bundles`, `namespaces
unload` (its topics closed, their clients reconnect, the topics load again), `brokers list`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from taureau.broker.ownership.bundles import bundle_for
from taureau.common.names import TopicName


def cli(url: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", url, *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def test_unload_closes_a_bundles_topics_and_clients_carry_on(standalone, client, topic):
    url = standalone.admin_url
    assert get(f"{url}/admin/v2/namespaces/public/default/bundles")["numBundles"] == 4
    assert get(f"{url}/admin/v2/brokers/standalone") == [f"127.0.0.1:{standalone.web_port}"]
    consumer = client.subscribe(topic, "s")
    producer = client.create_producer(topic, batching_enabled=False)
    for i in range(5):
        producer.send(f"m{i}".encode())
    stats = f"{url}/admin/v2/persistent/public/default/{TopicName.parse(topic).local_name}/stats"
    assert get(stats)["msgInCounter"] == 5

    cli(url, "namespaces", "unload", "public/default", "--bundle", bundle_for(TopicName.parse(topic), 4).range)
    for i in range(5, 8):
        producer.send(f"m{i}".encode())
    # A new topic object counts from zero: the old one was closed and the topic loaded again.
    assert get(stats)["msgInCounter"] == 3
    assert [consumer.receive(10_000).data().decode() for _ in range(8)] == [f"m{i}" for i in range(8)]

    bad = subprocess.run([sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", url, "namespaces",
                          "unload", "public/default", "--bundle", "0x1_0x0"], capture_output=True, text=True)
    assert bad.returncode == 1 and "invalid bundle range" in bad.stderr
