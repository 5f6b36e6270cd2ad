"""Namespace bundles and their ownership by several brokers, on a real ZooKeeper (one
metadata session per broker, as separate processes have)."""

from __future__ import annotations

import asyncio

import pytest

from taureau.broker.ownership.bundles import FULL, bundle_for, bundles_of, parse_range, topic_hash
from taureau.broker.ownership.cluster import ClusterOwnership, bundle_path
from taureau.broker.ownership.placement import least_loaded
from taureau.broker.ownership.registry import BrokerLoad, BrokerRecord, BrokerUrls
from taureau.common.errors import NotAllowedError, ServiceNotReadyError
from taureau.common.names import NamespaceName, TopicName
from taureau.metadata.zookeeper import ZooKeeperMetadataStore

NS = NamespaceName("public", "default")


def test_bundles_cover_the_hash_space_and_each_topic_falls_in_the_one_holding_its_hash():
    for count in (1, 3, 4, 16):
        found = bundles_of(NS, count)
        assert found[0].lower == 0 and found[-1].upper == FULL and len(found) == count
        assert all(x.upper == y.lower for x, y in zip(found, found[1:], strict=False))
    four = bundles_of(NS, 4)
    assert [b.range for b in four] == ["0x00000000_0x40000000", "0x40000000_0x80000000",
                                       "0x80000000_0xc0000000", "0xc0000000_0xffffffff"]
    for i in range(200):
        name = TopicName.parse(f"t{i}")
        bundle = bundle_for(name, 4)
        assert bundle.holds(topic_hash(name)) and [b for b in four if b.holds(topic_hash(name))] == [bundle]
    # Each partition is placed by its own name, so a partitioned topic spreads over bundles.
    parts = {bundle_for(TopicName.parse(f"orders-partition-{i}"), 4) for i in range(16)}
    assert len(parts) > 1


def test_bundle_ranges_parse_as_pulsar_writes_them():
    assert parse_range(NS, "0x40000000_0x80000000") == bundles_of(NS, 4)[1]
    for bad in ("0x4_", "x", "0x80000000_0x40000000", "0x0_0x1ffffffff"):
        with pytest.raises(NotAllowedError):
            parse_range(NS, bad)


def test_the_least_loaded_broker_is_picked_and_ties_go_to_the_smallest_id():
    a, b, c = (BrokerUrls(f"h:{p}", f"pulsar://h:{p}") for p in (1, 2, 3))
    records = [BrokerRecord(b, BrokerLoad(1, 9, 0)), BrokerRecord(c, BrokerLoad(1, 2, 0))]
    assert least_loaded(records, a, BrokerLoad(2, 0, 0)) == c  # fewer bundles, then fewer topics
    assert least_loaded(records, a, BrokerLoad(1, 2, 0)) == a  # a tie: "h:1" < "h:3"
    assert least_loaded([], a, BrokerLoad(5, 5, 5)) == a  # alone: itself




class Broker:
    """One broker's ownership on its own ZooKeeper session; unloads are recorded."""

    def __init__(self, store: ZooKeeperMetadataStore, port: int, default_bundles: int = 4) -> None:
        self.store = store
        self.urls = BrokerUrls(f"127.0.0.1:{port}", f"pulsar://127.0.0.1:{port + 1}", "", f"http://127.0.0.1:{port}")
        self.unloaded: list[TopicName] = []
        self.loaded = [TopicName.parse(f"t{i}") for i in range(40)]
        self.ownership = ClusterOwnership(store, self._unload, lambda: [], default_bundles=default_bundles,
                                          report_interval_s=0.2)

    async def _unload(self, which) -> int:
        picked = [name for name in self.loaded if which(name)]
        self.unloaded += picked
        return len(picked)

    @classmethod
    async def start(cls, zk_url: str, port: int, default_bundles: int = 4) -> Broker:
        broker = cls(await ZooKeeperMetadataStore.open(zk_url, session_timeout_s=2.0), port, default_bundles)
        await broker.ownership.start(broker.urls, wait_s=5)
        return broker

    async def close(self) -> None:
        await self.ownership.close()
        await self.store.close()


async def _until_reported(broker: Broker, bundles: int, timeout_s: float = 10.0) -> None:
    """Wait until `broker`'s load report in ZooKeeper says it owns `bundles` bundles."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        got = await broker.store.get(f"/loadbalance/brokers/{broker.urls.broker_id}")
        if got is not None and BrokerRecord.decode(broker.urls.broker_id, got[0]).load.bundles == bundles:
            return
        assert asyncio.get_running_loop().time() < deadline, "the load report did not come"
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_one_owner_per_bundle_redirects_to_it_and_a_dead_owners_bundles_are_taken(zk_url):
    a = await Broker.start(zk_url, 9000)
    b = await Broker.start(zk_url, 9100)
    try:
        assert sorted(r.urls.broker_id for r in await a.ownership.brokers()) == [a.urls.broker_id, b.urls.broker_id]
        first = TopicName.parse("t0")
        assert await a.ownership.owner_of(first, authoritative=True) is None  # A takes t0's bundle
        await _until_reported(a, bundles=1)
        other = next(TopicName.parse(f"t{i}") for i in range(1, 40)
                     if bundle_for(TopicName.parse(f"t{i}"), 4) != bundle_for(first, 4))
        # A is the more loaded: a non-authoritative lookup at A points at B and takes nothing.
        assert await a.ownership.owner_of(other) == b.urls
        assert await a.store.get(bundle_path(bundle_for(other, 4))) is None
        assert await b.ownership.owner_of(other, authoritative=True) is None  # the redirect's lookup at B
        assert await a.ownership.owner_of(other) == b.urls
        with pytest.raises(ServiceNotReadyError, match="served by broker"):
            await a.ownership.check_serves(other)
        await b.ownership.check_serves(other)

        # Both take one free bundle at once: exactly one wins, the other points at it.
        free = next(x for x in bundles_of(NS, 4) if x not in (bundle_for(first, 4), bundle_for(other, 4)))
        name = next(TopicName.parse(f"t{i}") for i in range(40) if free.holds(topic_hash(TopicName.parse(f"t{i}"))))
        answers = await asyncio.gather(a.ownership.owner_of(name, True), b.ownership.owner_of(name, True))
        assert answers in ([None, a.urls], [b.urls, None])

        # B dies (its session ends): its bundles are free, and A takes them on the next lookup.
        await b.store.close()
        assert await a.ownership.owner_of(other) is None
        assert bundle_for(other, 4) in a.ownership.owned()
    finally:
        await a.close()
        await b.ownership.close()


@pytest.mark.anyio
async def test_unload_closes_only_that_bundles_topics_then_frees_it(zk_url):
    a = await Broker.start(zk_url, 9200)
    b = await Broker.start(zk_url, 9300, default_bundles=8)
    try:
        name = TopicName.parse("t3")
        bundle = bundle_for(name, 4)
        assert await a.ownership.owner_of(name, authoritative=True) is None
        assert len(await b.ownership.bundles(NS)) == 4  # fixed by the first broker to use it
        assert await a.ownership.unload(bundle) == len(a.unloaded) > 0
        assert all(bundle_for(t, 4) == bundle for t in a.unloaded) and name in a.unloaded
        assert await a.store.get(bundle_path(bundle)) is None
        assert await b.ownership.owner_of(name, authoritative=True) is None  # B may take it now
        assert await a.ownership.unload(bundle) == 0  # not A's any more
    finally:
        await a.close()
        await b.close()
