"""Pulsar parity (issue 8): what a program written for Apache Pulsar expects, driven by the
official Python client and the admin REST API, each test a regression test of one bug."""

from __future__ import annotations

import httpx
import pulsar
import pytest

from tests.e2e.harness import Standalone


def _client(server: Standalone) -> pulsar.Client:
    return pulsar.Client(
        server.service_url, operation_timeout_seconds=10, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
    )


def _rest(topic: str) -> str:
    return "/admin/v2/" + topic.replace("://", "/")


# -- subscriptions after a restart -------------------------------------------------------------


def test_subscriptions_are_restored_when_a_topic_loads_after_a_restart(tmp_path):
    topic = "persistent://public/default/restored"
    server = Standalone(tmp_path / "data").start()
    try:
        client = _client(server)
        consumer = client.subscribe(topic, "sub", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(5):
            producer.send(f"m{i}".encode())
        for _ in range(2):
            consumer.acknowledge(consumer.receive(5000))
        client.close()
        assert server.stop() == 0
        server.restart()

        with httpx.Client(base_url=server.admin_url, timeout=10) as admin:
            path = _rest(topic)
            assert admin.get(f"{path}/subscriptions").json() == ["sub"]
            stats = admin.get(f"{path}/stats").json()
            assert stats["subscriptions"]["sub"]["msgBacklog"] == 3
            peek = admin.get(f"{path}/subscription/sub/position/1")
            assert peek.status_code == 200 and peek.content == b"m2"
            # Creating it again is a conflict and keeps its position, as Pulsar.
            again = admin.put(f"{path}/subscription/sub", json={"ledgerId": -1, "entryId": -1})
            assert again.status_code == 409
            assert admin.get(f"{path}/stats").json()["subscriptions"]["sub"]["msgBacklog"] == 3
            assert admin.delete(f"{path}/subscription/sub").status_code == 204
            assert admin.get(f"{path}/subscriptions").json() == []
    finally:
        server.kill()
