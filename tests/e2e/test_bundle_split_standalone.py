"""Bundle splits on a standalone (one broker, embedded store): `namespaces split-bundle` and
its refusals, and the automatic split of a bundle with too many topics, while the official
client's producers and consumers carry on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

from taureau.broker.ownership.bundles import bundle_for, bundles_of
from taureau.common.names import NamespaceName, TopicName
from tests.e2e.harness import receive_until

# Rounds every 3 s; a bundle with more than 3 loaded topics is split; at most 6 per namespace.
STANDALONE = {"args": ["--load-balancer-shedding-interval-minutes", "0.05",
                       "--load-balancer-namespace-bundle-max-topics", "3",
                       "--load-balancer-namespace-maximum-bundles", "6", "--no-functions"]}


def _admin(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", url, *args],
                          capture_output=True, text=True, timeout=60)


def _put(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="PUT"), timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _boundaries(url: str, ns: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/admin/v2/namespaces/{ns}/bundles", timeout=10) as answer:
        return json.loads(answer.read())["boundaries"]


def _namespace(url: str) -> str:
    ns = f"public/split-{uuid.uuid4().hex[:8]}"
    assert _admin(url, "namespaces", "create", ns).returncode == 0
    return ns


def test_split_bundle_on_a_standalone_and_its_refusals(standalone, client):
    url = standalone.admin_url
    ns = _namespace(url)
    topic = f"persistent://{ns}/t"
    bundle = bundle_for(TopicName.parse(topic), 4)
    consumer = client.subscribe(topic, "s")
    producer = client.create_producer(topic, batching_enabled=False)
    producer.send(b"before")
    seen: set[bytes] = set()
    receive_until(consumer, b"before", seen)

    done = _admin(url, "namespaces", "split-bundle", ns, "--bundle", bundle.range)
    assert done.returncode == 0, done.stderr
    middle = bundle.lower + (bundle.upper - bundle.lower) // 2
    five = _boundaries(url, ns)
    assert len(five) == 6 and f"0x{middle:08x}" in five
    producer.send(b"after")  # its topic was closed: the client reconnected
    receive_until(consumer, b"after", seen)

    # Refusals: 404 for a range that is not a bundle (any more) or a namespace that is not,
    # 400 for a range that does not parse, 412 past the cap; the boundaries stay.
    base = f"{url}/admin/v2/namespaces/{ns}"
    assert _put(f"{base}/{bundle.range}/split")[0] == 404
    assert _put(f"{base}/0x00000000_0xffffffff/split")[0] == 404
    assert _put(f"{url}/admin/v2/namespaces/public/none-{uuid.uuid4().hex[:6]}/{bundle.range}/split")[0] == 404
    assert _put(f"{base}/0x9_0x1/split")[0] == 400
    done = _admin(url, "namespaces", "split-bundle", ns, "--bundle", "junk")
    assert done.returncode == 1 and "invalid bundle range" in done.stderr and len(done.stderr.splitlines()) == 1
    others = [x for x in bundles_of(NamespaceName.parse(ns), 4) if x != bundle]
    assert _admin(url, "namespaces", "split-bundle", ns, "--bundle", others[0].range).returncode == 0  # the 6th
    status, body = _put(f"{base}/{others[1].range}/split")
    assert status == 412 and "at most 6" in body["reason"]
    assert len(_boundaries(url, ns)) == 7
    producer.send(b"served")
    receive_until(consumer, b"served", seen)


def test_a_bundle_with_too_many_topics_is_split_by_itself(standalone, client):
    url = standalone.admin_url
    ns = _namespace(url)
    first = bundle_for(TopicName.parse(f"persistent://{ns}/auto-0"), 4)
    names = [f"persistent://{ns}/auto-{i}" for i in range(200)
             if bundle_for(TopicName.parse(f"persistent://{ns}/auto-{i}"), 4) == first][:6]
    producers = [client.create_producer(name, batching_enabled=False) for name in names]  # 6 loaded > 3
    for producer in producers:
        producer.send(b"x")
    started = time.monotonic()
    while len(_boundaries(url, ns)) < 6:  # 5 bundles or more
        assert time.monotonic() - started < 60, "the bundle was not split within 60 s"
        time.sleep(0.5)
    split = _boundaries(url, ns)
    assert len(split) <= 7  # never past loadBalancerNamespaceMaximumBundles
    # Only the crowded bundle was cut: the other three are as they were.
    untouched = [x for x in bundles_of(NamespaceName.parse(ns), 4) if x != first]
    assert all(f"0x{x.lower:08x}" in split and f"0x{x.upper:08x}" in split for x in untouched)
    inside = [edge for edge in split if first.lower < int(edge, 16) < first.upper]
    assert inside, "the crowded bundle has no new boundary"
    for producer in producers:  # each reconnected after its topic was closed
        producer.send(b"y")
