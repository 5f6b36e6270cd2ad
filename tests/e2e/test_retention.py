"""Retention: consumed ledgers are deleted unless the namespace keeps them."""

import time

import httpx
import pulsar
import pytest

from tests.e2e.harness import Standalone


def internal(server, topic):
    return httpx.get(f"{server.admin_url}/admin/v2/persistent/{topic.split('://')[1]}/internalStats").json()


@pytest.mark.parametrize("keep", [False, True], ids=["no-retention", "keep-forever"])
def test_consumed_ledgers_go_unless_retained(tmp_path, keep):
    server = Standalone(tmp_path / "data").start()
    topic = "persistent://public/default/retained"
    try:
        if keep:
            body = {"retentionTimeInMinutes": -1, "retentionSizeInMB": -1}
            r = httpx.post(f"{server.admin_url}/admin/v2/namespaces/public/default/retention", json=body)
            assert r.status_code == 204
        client = pulsar.Client(server.service_url)
        consumer = client.subscribe(topic, "s")
        producer = client.create_producer(topic)
        for i in range(20):
            producer.send(str(i).encode())
        for _ in range(20):
            consumer.acknowledge(consumer.receive(timeout_millis=5000))
        client.close()
        time.sleep(0.5)  # cursor state is saved at most every 100 ms
        assert server.stop() == 0
        server.restart()  # reopening rolls over to a new ledger; the old one is now consumed
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = internal(server, topic)
            if keep or stats["numberOfEntries"] == 0:
                break
            time.sleep(0.2)
        assert stats["numberOfEntries"] == (20 if keep else 0), stats
        reader_client = pulsar.Client(server.service_url)
        reader = reader_client.create_reader(topic, pulsar.MessageId.earliest)
        count = 0
        while reader.has_message_available():
            reader.read_next(timeout_millis=5000)
            count += 1
        reader_client.close()
        assert count == (20 if keep else 0)
    finally:
        server.kill()
