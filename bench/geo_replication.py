"""Geo-replication: how fast messages published on one cluster reach a consumer on the other,
against the same messages reaching a consumer on the cluster they were published to.

Two `taureau standalone` processes (clusters east and west) on this machine, linked as
docs/geo-replication.md shows. The official client publishes 1 KiB messages asynchronously
(batching on) to east; the peer, measured in the same run, is a consumer on east of a
namespace that is not replicated; the replicated run times a consumer on west. Catch-up: west
is stopped, the messages are published to east, west is started again; the replicator's
reconnect delay (its backoff) is timed apart from the rate at which its backlog then drains.

    python bench/geo_replication.py                 # 20,000 messages
    python bench/geo_replication.py --messages 50000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import pulsar  # noqa: E402

from tests.e2e.harness import Standalone  # noqa: E402

SIZE = 1024


def _client(server: Standalone) -> pulsar.Client:
    return pulsar.Client(server.service_url, operation_timeout_seconds=60,
                         logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def _call(server: Standalone, method: str, path: str, body: object = None) -> httpx.Response:
    response = httpx.request(method, server.admin_url + path, json=body, timeout=60)
    response.raise_for_status()
    return response


def _namespace(servers: list[Standalone], replicated: bool) -> str:
    ns = f"public/bench-{uuid.uuid4().hex[:8]}"
    for server in servers:
        _call(server, "PUT", f"/admin/v2/namespaces/{ns}")
        if replicated:
            _call(server, "POST", f"/admin/v2/namespaces/{ns}/replication", ["east", "west"])
    return ns


def _publish(server: Standalone, topic: str, messages: int) -> float:
    """Publish `messages` to `topic`; the seconds until the last is acknowledged."""
    client = _client(server)
    producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=5,
                                      max_pending_messages=5000, block_if_queue_full=True)
    payload = b"x" * SIZE
    started = time.perf_counter()
    for _ in range(messages):
        producer.send_async(payload, None)
    producer.flush()
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


def _delivery(publish_to: Standalone, consume_from: Standalone, topic: str, messages: int) -> float:
    """Messages per second from the first send on `publish_to` to the last receive on `consume_from`."""
    client = _client(consume_from)
    consumer = client.subscribe(topic, "bench", initial_position=pulsar.InitialPosition.Earliest,
                                receiver_queue_size=5000)
    started = time.perf_counter()
    _publish(publish_to, topic, messages)
    for _ in range(messages):
        consumer.acknowledge(consumer.receive(timeout_millis=120_000))
    elapsed = time.perf_counter() - started
    client.close()
    return messages / elapsed


def _catch_up(east: Standalone, west: Standalone, topic: str, messages: int) -> tuple[float, float, float]:
    """(publish rate while west is down, seconds from west ready to the replicator connected,
    rate at which the backlog then drains)."""
    client = _client(west)
    client.subscribe(topic, "bench", initial_position=pulsar.InitialPosition.Earliest).close()
    client.close()
    west.stop()
    published = _publish(east, topic, messages)
    west.start()
    ready = time.perf_counter()
    path = f"/admin/v2/{topic.replace('://', '/')}/stats"

    def replication() -> dict:
        return _call(east, "GET", path).json()["replication"]["west"]

    while not replication()["connected"]:
        time.sleep(0.02)
    connected = time.perf_counter()
    while replication()["replicationBacklog"] > 0:
        time.sleep(0.02)
    return messages / published, connected - ready, messages / (time.perf_counter() - connected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flags = ("--no-functions", "--no-dashboard")
        east = Standalone(Path(tmp) / "east", "--cluster-name", "east", *flags).start()
        west = Standalone(Path(tmp) / "west", "--cluster-name", "west", *flags).start()
        try:
            for server, other, name in ((east, west, "west"), (west, east, "east")):
                _call(server, "PUT", f"/admin/v2/clusters/{name}",
                      {"serviceUrl": other.admin_url, "brokerServiceUrl": other.service_url})
                _call(server, "POST", "/admin/v2/tenants/public", {"allowedClusters": ["east", "west"]})
            local = _delivery(east, east, f"persistent://{_namespace([east, west], False)}/t", a.messages)
            remote = _delivery(east, west, f"persistent://{_namespace([east, west], True)}/t", a.messages)
            publish, reconnect, catch_up = _catch_up(east, west, f"persistent://{_namespace([east, west], True)}/t", a.messages)
        finally:
            east.stop()
            west.stop()
    print(f"{a.messages} messages of {SIZE} B, async sends with batching, two standalones on this machine")
    print(f"published on east, consumed on east (peer, not replicated): {local:10,.0f} msg/s")
    print(f"published on east, consumed on west (replicated):           {remote:10,.0f} msg/s  {remote / local:.2f}x")
    print(f"west down: published on east at                             {publish:10,.0f} msg/s")
    print(f"west back: replicator reconnected after                     {reconnect:10.2f} s (backoff)")
    print(f"west back: backlog replicated at                            {catch_up:10,.0f} msg/s  "
          f"{catch_up / publish:.2f}x the publish rate")


if __name__ == "__main__":
    main()
