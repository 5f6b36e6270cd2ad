"""PolicyWatcher on a real ZooKeeper: a policy record changed through another session (another
broker) is re-applied here, for what is loaded here only."""

from __future__ import annotations

import asyncio

import pytest

from taureau.broker.policy_watch import PolicyWatcher
from taureau.broker.resources import NamespacePolicies, Resources
from taureau.common.names import NamespaceName, TopicName
from taureau.metadata.zookeeper import ZooKeeperMetadataStore

NS = NamespaceName("public", "default")


async def _until(check, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time given"
        await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_changes_made_elsewhere_are_reapplied_to_what_is_loaded_here(zk_url):
    here = await ZooKeeperMetadataStore.open(zk_url)
    there = await ZooKeeperMetadataStore.open(zk_url)
    other_broker = Resources(there)
    await other_broker.bootstrap()
    loaded = [TopicName.parse("orders-partition-1"), TopicName.parse("orders-partition-2")]
    applied: list[object] = []

    async def apply_namespace(ns: NamespaceName) -> None:
        applied.append(ns)

    async def apply_topic(name: TopicName) -> None:
        applied.append(name)

    watcher = PolicyWatcher(here, lambda: list(loaded), apply_namespace, apply_topic)
    try:
        watcher.reconcile()
        base = TopicName.parse("orders")
        # Arming re-applies once (a change between the load and the watch is not missed); the
        # partitions share their topic's record.
        await _until(lambda: sorted(map(str, applied)) == sorted([str(NS), str(base)]))
        applied.clear()

        await other_broker.update_policies(NS, lambda p: setattr(p, "message_ttl_in_seconds", 60))
        await _until(lambda: applied == [NS], timeout_s=2.0)
        await other_broker.set_topic_policy(base, "messageTTL", 30)
        await _until(lambda: applied == [NS, base], timeout_s=2.0)

        # Unloaded here: its record is no longer watched.
        loaded.clear()
        watcher.reconcile()
        await other_broker.set_topic_policy(base, "messageTTL", 40)
        await other_broker.update_policies(NS, lambda p: setattr(p, "message_ttl_in_seconds", 70))
        await asyncio.sleep(1.0)
        assert applied == [NS, base]
    finally:
        await watcher.close()
        await here.close()
        await there.close()


@pytest.mark.anyio
async def test_a_deleted_namespace_is_no_error_and_the_watcher_goes_on(zk_url):
    here = await ZooKeeperMetadataStore.open(zk_url)
    resources = Resources(here)
    await resources.bootstrap()
    ns = NamespaceName("public", "gone")
    await resources.create_namespace(ns, NamespacePolicies())
    topic_applies: list[TopicName] = []

    async def apply_namespace(name: NamespaceName) -> None:
        await resources.get_policies(name)  # raises ResourceNotFoundError once deleted

    async def apply_topic(name: TopicName) -> None:
        topic_applies.append(name)

    topic = TopicName.parse("persistent://public/gone/t")
    watcher = PolicyWatcher(here, lambda: [topic], apply_namespace, apply_topic)
    try:
        watcher.reconcile()
        await _until(lambda: watcher.applied == 2)
        await resources.delete_namespace(ns)
        await asyncio.sleep(0.5)  # the namespace's re-apply fails (not counted), quietly
        assert watcher.applied == 2
        await resources.set_topic_policy(topic, "messageTTL", 5)  # the watcher still serves
        await _until(lambda: topic_applies == [topic, topic])
        assert watcher.applied == 3
    finally:
        await watcher.close()
        await here.close()
