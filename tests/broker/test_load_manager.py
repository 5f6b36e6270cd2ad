"""The load manager: split arithmetic, the shedding and auto split decisions (pure), and
splits, leadership and shedding on a real ZooKeeper (one metadata session per broker)."""

from __future__ import annotations

import asyncio
import json

import pytest

from taureau.broker.ownership.bundles import (
    FULL,
    Bundle,
    bundle_at,
    bundle_for,
    bundles_of,
    split_edges,
    topic_hash,
)
from taureau.broker.ownership.cluster import ClusterOwnership, assignment_path, bundle_path
from taureau.broker.ownership.layout import layout_path
from taureau.broker.ownership.loadmanager import LEADER, LoadManager
from taureau.broker.ownership.registry import BrokerLoad, BrokerRecord, BrokerUrls, BundleStats
from taureau.broker.ownership.settings import LoadBalancerSettings
from taureau.broker.ownership.shedding import Unload, pick_splits, pick_unloads
from taureau.broker.resources import PreconditionFailedError, ResourceNotFoundError
from taureau.common.errors import ServiceNotReadyError
from taureau.common.names import NamespaceName, TopicName
from taureau.metadata.zookeeper import ZooKeeperMetadataStore

NS = NamespaceName("public", "default")
EDGES4 = [0, 0x40000000, 0x80000000, 0xC0000000, FULL]


# -- split arithmetic ------------------------------------------------------------------------

def test_a_split_cuts_a_bundle_at_the_middle_of_its_range_as_range_equally_divide():
    whole = Bundle(NS, 0, FULL)
    assert split_edges([0, FULL], whole, 128) == [0, 0x7FFFFFFF, FULL]  # Pulsar's halves of the full range
    second = Bundle(NS, 0x40000000, 0x80000000)
    assert split_edges(EDGES4, second, 128) == [0, 0x40000000, 0x60000000, 0x80000000, 0xC0000000, FULL]
    # Topics fall in the half holding their hash; the last range still holds 0xffffffff.
    edges = split_edges(EDGES4, second, 128)
    for i in range(300):
        name = TopicName.parse(f"t{i}")
        found = bundle_at(NS, edges, name)
        assert found.holds(topic_hash(name)) and edges.index(found.lower) + 1 == edges.index(found.upper)
    assert bundle_at(NS, edges, TopicName.parse("x")).namespace == NS
    assert Bundle(NS, 0xC0000000, FULL).holds(FULL)


def test_a_split_is_refused_for_a_range_that_is_not_a_bundle_past_the_cap_or_too_small():
    with pytest.raises(ResourceNotFoundError, match="not a bundle"):
        split_edges(EDGES4, Bundle(NS, 0, 0x80000000), 128)  # two bundles' range
    with pytest.raises(ResourceNotFoundError, match="not a bundle"):
        split_edges(EDGES4, Bundle(NS, 0x10000000, 0x40000000), 128)
    with pytest.raises(PreconditionFailedError, match="at most 4"):
        split_edges(EDGES4, Bundle(NS, 0, 0x40000000), 4)
    with pytest.raises(PreconditionFailedError, match="too small"):
        split_edges([0, 1, FULL], Bundle(NS, 0, 1), 128)


# -- the shedding decision ---------------------------------------------------------------------

def _record(broker: str, bundles: dict[str, float]) -> BrokerRecord:
    stats = {name: BundleStats(rate, 1) for name, rate in bundles.items()}
    return BrokerRecord(BrokerUrls(broker), BrokerLoad(len(bundles), len(bundles), sum(bundles.values())), stats)


SETTINGS = LoadBalancerSettings(threshold_pct=10, min_unload_msg_rate=50, grace_s=600)


def test_an_overloaded_broker_sheds_its_hottest_bundle_to_the_lightest_broker():
    records = [_record("a", {"ns/x": 300, "ns/y": 100, "ns/z": 50}), _record("b", {"ns/w": 20}), _record("c", {})]
    # Average 156.7: only a is above it by more than 10 %. Its hottest goes to c (the lightest);
    # y would take the shed rate (400) past a's excess (313): one move.
    assert pick_unloads(records, {}, 1000.0, SETTINGS) == [Unload("ns/x", "a", "c")]


def test_no_shedding_within_the_threshold_below_the_minimum_rate_or_from_a_broker_alone():
    balanced = [_record("a", {"ns/x": 105, "ns/y": 5}), _record("b", {"ns/z": 100})]
    assert pick_unloads(balanced, {}, 0.0, SETTINGS) == []  # 110 vs an average of 105: under 10 %
    small = [_record("a", {"ns/x": 30, "ns/y": 30}), _record("b", {})]
    assert pick_unloads(small, {}, 0.0, SETTINGS) == []  # 30 above the average: under the minimum 50
    assert pick_unloads([_record("a", {"ns/x": 900, "ns/y": 900})], {}, 0.0, SETTINGS) == []


def test_a_broker_never_sheds_its_only_bundle_nor_moves_the_hot_spot_elsewhere():
    assert pick_unloads([_record("a", {"ns/x": 1000}), _record("b", {})], {}, 0.0, SETTINGS) == []
    # Moving x (900) to b (200) would leave b at 1100, above the 1000 a carried: no move; y goes.
    records = [_record("a", {"ns/x": 900, "ns/y": 100}), _record("b", {"ns/w": 200})]
    assert pick_unloads(records, {}, 0.0, SETTINGS) == [Unload("ns/y", "a", "b")]


def test_a_bundle_shed_within_the_grace_period_stays_and_the_next_hottest_goes():
    records = [_record("a", {"ns/x": 300, "ns/y": 200, "ns/z": 10}), _record("b", {})]
    # a's excess is 255: y (200) and then z (10) fit in it.
    assert pick_unloads(records, {"ns/x": 900.0}, 1000.0, SETTINGS) == [Unload("ns/y", "a", "b"),
                                                                         Unload("ns/z", "a", "b")]
    # Once the grace period is over, x may go again.
    assert pick_unloads(records, {"ns/x": 900.0}, 1600.0, SETTINGS) == [Unload("ns/x", "a", "b")]
    # Idle bundles are never moved.
    idle = [_record("a", {"ns/x": 300, "ns/y": 0, "ns/z": 0}), _record("b", {})]
    assert [m.bundle for m in pick_unloads(idle, {"ns/x": 900.0}, 1000.0, SETTINGS)] == []


def test_bundles_past_the_topic_or_rate_limits_are_split_within_the_namespace_cap():
    settings = LoadBalancerSettings(split_max_topics=10, split_max_msg_rate=500, max_bundles=5)
    four = bundles_of(NS, 4)
    stats = {four[0]: BundleStats(10, 11), four[1]: BundleStats(600, 2), four[2]: BundleStats(900, 1),
             four[3]: BundleStats(100, 5)}
    # Hottest first; four[2] has one topic (splitting cannot spread it); the cap of 5 lets one.
    assert pick_splits(stats, {str(NS): 4}, settings) == [four[1]]
    assert pick_splits(stats, {str(NS): 3}, settings) == [four[1], four[0]]
    assert pick_splits(stats, {str(NS): 5}, settings) == []


# -- on a real ZooKeeper -----------------------------------------------------------------------

class Broker:
    """One broker's ownership on its own ZooKeeper session, with topics t0..t39 loaded and
    the message rates the test gives them; unloads are recorded."""

    def __init__(self, store: ZooKeeperMetadataStore, port: int) -> None:
        self.store = store
        self.urls = BrokerUrls(f"127.0.0.1:{port}", f"pulsar://127.0.0.1:{port + 1}", "", f"http://127.0.0.1:{port}")
        self.unloaded: list[TopicName] = []
        self.rates: dict[TopicName, float] = {}
        self.ownership = ClusterOwnership(store, self._unload, self._loads, default_bundles=4, report_interval_s=0.2)

    def _loads(self) -> list[tuple[TopicName, float]]:
        return [(name, rate) for name, rate in self.rates.items()
                if bundle_for_owned(self.ownership, name)]

    async def _unload(self, which) -> int:
        picked = [name for name in self.rates if which(name)]
        self.unloaded += picked
        return len(picked)

    @classmethod
    async def start(cls, zk_url: str, port: int) -> Broker:
        broker = cls(await ZooKeeperMetadataStore.open(zk_url, session_timeout_s=2.0), port)
        await broker.ownership.start(broker.urls, wait_s=5)
        return broker

    async def close(self) -> None:
        await self.ownership.close()
        await self.store.close()


def bundle_for_owned(ownership: ClusterOwnership, name: TopicName) -> bool:
    bundle = ownership.layouts.cached_bundle_for(name)
    return bundle is not None and bundle in ownership.owned()


async def _eventually(check, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time given"
        await asyncio.sleep(0.05)


def _topic_in(bundle: Bundle) -> TopicName:
    return next(TopicName.parse(f"t{i}") for i in range(400) if bundle.holds(topic_hash(TopicName.parse(f"t{i}"))))


@pytest.mark.anyio
async def test_a_split_is_stored_atomically_and_every_broker_sees_it(zk_url):
    a = await Broker.start(zk_url, 9400)
    b = await Broker.start(zk_url, 9500)
    try:
        name = TopicName.parse("t1")
        bundle = bundle_for(name, 4)
        assert await a.ownership.owner_of(name, authoritative=True) is None
        assert len(await b.ownership.bundles(NS)) == 4  # B has read (and watches) the layout
        a.rates = {TopicName.parse(f"t{i}"): 1.0 for i in range(40)}
        before = await a.store.get(layout_path(NS))
        halves = await a.ownership.split(bundle, 128)
        assert [(h.lower, h.upper) for h in halves] == [
            (bundle.lower, bundle.lower + (bundle.upper - bundle.lower) // 2),
            (bundle.lower + (bundle.upper - bundle.lower) // 2, bundle.upper)]
        # Its topics were closed, and it was let go: nobody owns the old range.
        assert name in a.unloaded and all(bundle.holds(topic_hash(t)) for t in a.unloaded)
        assert await a.store.get(bundle_path(bundle)) is None and bundle not in a.ownership.owned()
        after = await a.store.get(layout_path(NS))
        assert after[1].version == before[1].version + 1
        stored = json.loads(after[0])
        assert stored["numBundles"] == 5 and len(stored["boundaries"]) == 6

        async def b_sees_five() -> bool:
            return len(await b.ownership.bundles(NS)) == 5

        await _eventually(b_sees_five)  # through its watch, without a call of its own
        assert await b.ownership.owner_of(name, authoritative=True) is None
        assert b.ownership.owned() == [h for h in halves if h.holds(topic_hash(name))]

        # Refusals change nothing: a range that is not a bundle, past the cap.
        with pytest.raises(ResourceNotFoundError):
            await b.ownership.split(bundle, 128)
        with pytest.raises(PreconditionFailedError):
            await b.ownership.split(b.ownership.owned()[0], 5)
        assert (await a.store.get(layout_path(NS)))[1].version == after[1].version
        assert b.ownership.owned() == [h for h in halves if h.holds(topic_hash(name))]
    finally:
        await a.close()
        await b.close()


@pytest.mark.anyio
async def test_a_broker_behind_on_a_split_never_takes_the_bundle_that_is_gone(zk_url):
    a = await Broker.start(zk_url, 9600)
    c = await Broker.start(zk_url, 9700)
    try:
        name = TopicName.parse("t2")
        old = bundle_for(name, 4)
        assert len(await c.ownership.bundles(NS)) == 4
        c.ownership.layouts.close()  # C stops watching: its cache stays at four bundles
        assert await a.ownership.owner_of(name, authoritative=True) is None
        await a.ownership.split(old, 128)
        with pytest.raises(ServiceNotReadyError, match="changed"):
            await c.ownership.owner_of(name, authoritative=True)
        assert await c.store.get(bundle_path(old)) is None  # the stale claim was withdrawn
        assert await c.ownership.owner_of(name, authoritative=True) is None  # re-read: its half
        assert c.ownership.owned()[0] != old and c.ownership.owned()[0].holds(topic_hash(name))
    finally:
        await a.close()
        await c.close()


@pytest.mark.anyio
async def test_an_unreadable_layout_fails_lookups_clearly(zk_url):
    a = await Broker.start(zk_url, 9800)
    try:
        await a.store.put(layout_path(NS), b'{"numBundles": 2, "boundaries": ["0x0", "0x10", "0x5"]}')
        with pytest.raises(ServiceNotReadyError, match="bundle boundaries"):
            await a.ownership.owner_of(TopicName.parse("t1"), authoritative=True)
    finally:
        await a.close()


@pytest.mark.anyio
async def test_the_leader_sheds_the_hottest_bundle_and_its_next_lookup_goes_where_it_was_sent(zk_url):
    settings = LoadBalancerSettings(interval_s=3600, threshold_pct=10, min_unload_msg_rate=50, grace_s=600,
                                    auto_split_enabled=False)
    a = await Broker.start(zk_url, 9900)
    b = await Broker.start(zk_url, 10000)
    c = await Broker.start(zk_url, 10100)
    managers = [LoadManager(x.ownership, settings, cluster=x.ownership, auth_headers=dict) for x in (a, b, c)]
    try:
        four = bundles_of(NS, 4)
        hot, warm, cool = (_topic_in(x) for x in four[:3])
        for name in (hot, warm, cool):
            assert await a.ownership.owner_of(name, authoritative=True) is None
        a.rates = {hot: 300.0, warm: 100.0, cool: 50.0}

        async def reported() -> bool:
            got = await a.store.get(f"/loadbalance/brokers/{a.urls.broker_id}")
            return got is not None and BrokerRecord.decode("", got[0]).load.msg_rate == 450.0

        await _eventually(reported)
        await managers[0].run_once()  # A leads (first to ask), sees itself at 450 vs an average of 150
        assert json.loads((await a.store.get(LEADER))[0])["brokerId"] == a.urls.broker_id
        assert managers[0].leading
        assert four[0] not in a.ownership.owned() and hot in a.unloaded and warm not in a.unloaded
        hint = json.loads((await a.store.get(assignment_path(four[0])))[0])
        assert hint["broker"] == b.urls.broker_id  # the lightest, ties to the smallest id

        # Any broker's lookup follows the hint, though C is as light as B.
        assert await c.ownership.owner_of(hot) == b.urls
        assert await b.ownership.owner_of(hot, authoritative=True) is None
        assert await a.store.get(assignment_path(four[0])) is None  # taken: the hint is gone

        # The others do not lead while A does. The hot bundle now loads B alone (300), above the
        # average (150) but its only bundle, and A is at the average: the next round moves nothing.
        await managers[1].run_once()
        assert not managers[1].leading
        a.unloaded.clear()
        b.rates = {hot: 300.0}
        await _eventually(lambda: _reported_rate(a, 150.0))
        await _eventually(lambda: _reported_rate(b, 300.0))
        await managers[0].run_once()
        assert a.unloaded == []

        # A dies: its session ends with its leader node, and B leads from its next round.
        await a.store.close()
        await _eventually(lambda: _no_leader(b))
        await managers[1].run_once()
        assert managers[1].leading
    finally:
        for m in managers:
            await m.close()
        await a.ownership.close()
        await b.close()
        await c.close()


async def _reported_rate(broker: Broker, rate: float) -> bool:
    got = await broker.store.get(f"/loadbalance/brokers/{broker.urls.broker_id}")
    return got is not None and BrokerRecord.decode("", got[0]).load.msg_rate == rate


async def _no_leader(broker: Broker) -> bool:
    return await broker.store.get(LEADER) is None


@pytest.mark.anyio
async def test_a_broker_alone_reports_its_bundles_load_and_splits_as_a_cluster_does():
    from taureau.broker.ownership.api import SingleBroker
    from taureau.broker.ownership.layout import BundleLayouts
    from taureau.metadata.embedded import EmbeddedMetadataStore

    store = EmbeddedMetadataStore(None)
    topics = [TopicName.parse(f"t{i}") for i in range(40)]
    closed: list[TopicName] = []

    async def unload(which) -> int:
        closed.extend(t for t in topics if which(t))
        return len(closed)

    alone = SingleBroker(lambda: BrokerUrls("me"), unload, BundleLayouts(store, 4, watch=False),
                         lambda: [(t, 2.0) for t in topics])
    # Nothing asked for the namespace's bundles before: the stats read its boundaries.
    stats = await alone.bundle_stats()
    assert sum(st.topics for st in stats.values()) == 40 and set(stats) == set(bundles_of(NS, 4))
    first = bundles_of(NS, 4)[0]
    assert stats[first] == BundleStats(2.0 * stats[first].topics, stats[first].topics)
    halves = await alone.split(first, 128)
    assert closed and all(first.holds(topic_hash(t)) for t in closed)
    assert await alone.bundles(NS) == [*halves, *bundles_of(NS, 4)[1:]]
    assert json.loads((await store.get(layout_path(NS)))[0])["numBundles"] == 5
    with pytest.raises(ResourceNotFoundError):
        await alone.split(first, 128)
    await store.close()


@pytest.mark.anyio
async def test_records_written_by_something_else_are_ignored_and_the_brokers_go_on(zk_url):
    settings = LoadBalancerSettings(interval_s=3600, min_unload_msg_rate=50, auto_split_enabled=False)
    a = await Broker.start(zk_url, 10200)
    manager = LoadManager(a.ownership, settings, cluster=a.ownership, auth_headers=dict)
    try:
        # A load report that is not one (never a candidate, never a destination), a placement
        # hint that is not one (placement by load instead), a leader node that is not one.
        await a.store.put("/loadbalance/brokers/junk:1", b'{"brokerId": "junk:1", "bundleStats": {"x": 5}}',
                          ephemeral=True)
        name = TopicName.parse("t1")
        await a.store.put(assignment_path(bundle_for(name, 4)), b"not json")
        assert [r.urls.broker_id for r in await a.ownership.brokers()] == [a.urls.broker_id]
        assert await a.ownership.owner_of(name) is None  # placed by load: on A, the only broker
        assert await a.store.get(assignment_path(bundle_for(name, 4))) is None  # taken: dropped
        await a.store.put(LEADER, b"\xff")
        await manager.run_once()
        assert not manager.leading  # nobody leads while it is there
        await a.store.delete(LEADER)
        await manager.run_once()
        assert manager.leading
    finally:
        await manager.close()
        await a.close()


@pytest.mark.anyio
async def test_closed_layouts_follow_no_split_not_even_one_whose_event_was_already_queued():
    from taureau.broker.ownership.layout import BundleLayouts
    from taureau.metadata.embedded import EmbeddedMetadataStore

    store = EmbeddedMetadataStore(None)
    mine = BundleLayouts(store, 4, watch=True)
    other = BundleLayouts(store, 4, watch=False)  # another broker
    four = bundles_of(NS, 4)
    assert await mine.bundles(NS) == four  # read, and watched
    await other.split(four[0], 128)  # its watch event is queued on the loop, not run yet
    mine.close()
    await asyncio.sleep(0.05)  # the queued event runs after close: it must not re-read
    await other.split(four[1], 128)
    await asyncio.sleep(0.05)
    assert await mine.bundles(NS) == four  # still its cached four
    assert len(await other.bundles(NS)) == 6
    await store.close()
