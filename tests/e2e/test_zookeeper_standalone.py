"""`taureau standalone --metadata-store zk://...`: topics end to end with the official client,
their metadata in a real ZooKeeper, and a stop of the process when its session expires."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pulsar

from taureau.metadata.zookeeper import ZooKeeperMetadataStore
from tests.e2e.harness import Standalone


def _client(server: Standalone) -> pulsar.Client:
    return pulsar.Client(
        server.service_url, operation_timeout_seconds=10, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
    )


async def _tree(url: str) -> tuple[list[str], list[str]]:
    store = await ZooKeeperMetadataStore.open(url)
    try:
        return await store.children("/"), await store.children("/admin/tenants")
    finally:
        await store.close()


def test_topics_run_end_to_end_with_metadata_in_zookeeper(tmp_path, zk_url):
    topic = "persistent://public/default/zk-e2e"
    server = Standalone(tmp_path / "data", "--metadata-store", zk_url, "--no-functions").start()
    try:
        client = _client(server)
        consumer = client.subscribe(topic, "sub", consumer_type=pulsar.ConsumerType.Shared)
        producer = client.create_producer(topic)
        for i in range(100):
            producer.send(f"m{i}".encode())
        got = []
        for _ in range(60):
            msg = consumer.receive(10_000)
            got.append(msg.data())
            consumer.acknowledge(msg)
        client.close()
    finally:
        assert server.stop() == 0
    assert got == [f"m{i}".encode() for i in range(60)]
    root, tenants = asyncio.run(_tree(zk_url))
    assert "admin" in root and "public" in tenants  # the broker's metadata went to ZooKeeper
    assert not os.path.exists(tmp_path / "data" / "metadata")  # and not into the data dir

    # A restart on the same ZooKeeper and data directory finds the cursor where it was.
    server.restart()
    try:
        client = _client(server)
        consumer = client.subscribe(topic, "sub", consumer_type=pulsar.ConsumerType.Shared)
        rest = []
        for _ in range(40):
            msg = consumer.receive(10_000)
            rest.append(msg.data())
            consumer.acknowledge(msg)
        client.close()
    finally:
        assert server.stop() == 0
    assert sorted(rest, key=lambda m: int(m[1:])) == [f"m{i}".encode() for i in range(60, 100)]


def test_an_expired_session_stops_the_standalone_with_one_clear_line(tmp_path, zk_url):
    server = Standalone(
        tmp_path / "data", "--metadata-store", zk_url, "--metadata-session-timeout", "1", "--no-functions"
    ).start()
    proc = server.proc
    assert proc is not None
    # Frozen past its session timeout, the process cannot ping: ZooKeeper expires the session.
    proc.send_signal(signal.SIGSTOP)
    time.sleep(4)
    proc.send_signal(signal.SIGCONT)
    code = proc.wait(30)
    server.proc = None
    output = "".join(server.output)
    assert code == 1, output
    assert "metadata store session expired" in output
    assert "Traceback" not in output


def test_one_broker_per_metadata_store_and_a_killed_one_is_replaced(tmp_path, zk_url):
    first = Standalone(tmp_path / "one", "--metadata-store", zk_url, "--metadata-session-timeout", "1",
                       "--no-functions").start()
    second = subprocess.run(
        [sys.executable, "-m", "taureau.cli.main", "standalone", "--data-dir", str(tmp_path / "two"),
         "--metadata-store", zk_url, "--metadata-session-timeout", "1", "--no-functions", "--no-state",
         "--broker-port", "0", "--web-port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 1
    lines = [line for line in second.stderr.splitlines() if line.startswith("taureau standalone:")]
    assert len(lines) == 1 and "held by another live process" in lines[0], second.stderr[-2000:]
    # kill -9: the claim goes with the dead process's session, so a restart takes over.
    first.kill()
    first.restart()
    try:
        client = _client(first)
        client.create_producer("persistent://public/default/after-takeover").send(b"x")
        client.close()
    finally:
        assert first.stop() == 0
