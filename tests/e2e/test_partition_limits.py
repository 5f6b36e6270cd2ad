"""Partitions are bounded (maxNumPartitionsPerPartitionedTopic), nothing walks 2^31 of them on
the event loop, and SIGTERM stops the broker within seconds even while heavy requests run."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import httpx
import pulsar
import pytest

from tests.e2e.harness import Standalone

ADMIN = "/admin/v2/persistent/public/default"


@pytest.fixture
def admin(standalone):
    with httpx.Client(base_url=standalone.admin_url, timeout=10) as c:
        yield c


def test_creating_more_partitions_than_the_limit_is_refused_and_stores_nothing(admin):
    answer = admin.put(f"{ADMIN}/too-many/partitions", json=2147483647)
    assert answer.status_code == 406
    assert answer.json()["reason"] == "Number of partitions should be less than or equal to 1024"
    assert admin.get(f"{ADMIN}/too-many/partitions").json() == {"partitions": 0}
    assert admin.put(f"{ADMIN}/at-limit/partitions", json=1024).status_code == 204


def test_growing_past_the_limit_is_refused(admin):
    assert admin.put(f"{ADMIN}/grows/partitions", json=2).status_code == 204
    answer = admin.post(f"{ADMIN}/grows/partitions", json=1025)
    assert answer.status_code == 406 and "less than or equal to 1024" in answer.json()["reason"]
    assert admin.get(f"{ADMIN}/grows/partitions").json() == {"partitions": 2}


def test_auto_creation_default_partitions_are_bounded(admin):
    assert admin.put("/admin/v2/namespaces/public/auto-bound").status_code == 204
    body = {"allowAutoTopicCreation": True, "topicType": "partitioned", "defaultNumPartitions": 2**40}
    answer = admin.post("/admin/v2/namespaces/public/auto-bound/autoTopicCreation", json=body)
    assert answer.status_code == 406
    assert admin.get("/admin/v2/namespaces/public/auto-bound/autoTopicCreation").json() == {
        "allowAutoTopicCreation": True,
        "topicType": "non-partitioned",
        "defaultNumPartitions": 1,
    }


async def _write_metadata(data_dir, path: str, value: dict) -> None:
    """Write a metadata record below the broker, as an older version may have stored it."""
    from taureau.metadata.factory import open_metadata_store

    store = await open_metadata_store(None, str(data_dir))
    try:
        await store.put(path, json.dumps(value).encode())
    finally:
        await store.close()


@pytest.fixture
def legacy(tmp_path):
    """A standalone whose metadata holds a partitioned topic of 2^31-1 partitions (stored
    before the limit existed) and a namespace policy auto-creating 2^40 partitions."""
    server = Standalone(tmp_path).start()
    assert server.stop() == 0  # bootstrap tenants and namespaces, then write below it
    asyncio.run(
        _write_metadata(
            tmp_path, "/admin/partitioned-topics/public/default/persistent/huge", {"partitions": 2**31 - 1}
        )
    )
    policies = {
        "autoTopicCreationOverride": {
            "allowAutoTopicCreation": True,
            "topicType": "partitioned",
            "defaultNumPartitions": 2**40,
        }
    }
    asyncio.run(_write_metadata(tmp_path, "/admin/policies/public/default", policies))
    server.start()
    yield server
    if server.proc is not None:
        server.kill()


def test_stored_huge_partition_counts_are_never_walked(legacy):
    with httpx.Client(base_url=legacy.admin_url, timeout=10) as admin:
        began = time.monotonic()
        stats = admin.get(f"{ADMIN}/huge/partitioned-stats")
        assert stats.status_code == 200 and stats.json()["partitions"] == {}
        topics = admin.get("/admin/v2/namespaces/public/default/topics")
        assert topics.status_code == 200 and len(topics.json()) == 1024  # capped at the limit
        assert admin.delete(f"{ADMIN}/huge/partitions").status_code == 204
        assert time.monotonic() - began < 5.0


def test_auto_creation_from_a_stored_oversized_policy_is_refused(legacy):
    client = pulsar.Client(legacy.service_url, operation_timeout_seconds=5)
    try:
        with pytest.raises(pulsar.NotAllowedError):
            client.create_producer("persistent://public/default/auto-huge")
    finally:
        client.close()
    with httpx.Client(base_url=legacy.admin_url, timeout=10) as admin:
        assert admin.get(f"{ADMIN}/auto-huge/partitions").json() == {"partitions": 0}


def test_sigterm_stops_within_seconds_while_heavy_requests_run(legacy):
    stop = threading.Event()
    errors: list[str] = []

    def hammer(path: str) -> None:
        with httpx.Client(base_url=legacy.admin_url, timeout=30) as admin:
            while not stop.is_set():
                try:
                    admin.get(path)
                except httpx.HTTPError:
                    return  # the server went away: expected once SIGTERM lands
                except Exception as exc:  # pragma: no cover - reported below
                    errors.append(repr(exc))
                    return

    paths = [f"{ADMIN}/huge/partitioned-stats", "/admin/v2/namespaces/public/default/topics"] * 3
    threads = [threading.Thread(target=hammer, args=(p,), daemon=True) for p in paths]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    began = time.monotonic()
    legacy.proc.send_signal(signal.SIGTERM)
    code = legacy.proc.wait(timeout=15)
    elapsed = time.monotonic() - began
    legacy.proc = None
    stop.set()
    assert code == 0, "".join(legacy.output[-20:])
    assert elapsed < 5.0
    assert errors == []
