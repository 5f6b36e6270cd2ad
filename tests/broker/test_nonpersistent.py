"""Non-persistent topics in process: each subscription type's choice of consumer, drops
when no consumer can take an entry, and that nothing is kept (no pending entries, no queue)."""

import pytest

from taureau.broker.consumer import Consumer
from taureau.broker.dispatch.key_shared import ConsumerAssignError, key_hash
from taureau.broker.nonpersistent.subscription import SYNTHETIC_POSITION
from taureau.broker.nonpersistent.topic import NonPersistentTopic
from taureau.broker.producer import Producer
from taureau.broker.subscription import SubType
from taureau.broker.topic import PublishItem, SubscriptionBusyError
from taureau.common.errors import ConsumerBusyError, NotAllowedError
from taureau.common.names import TopicName
from taureau.metadata.embedded import EmbeddedMetadataStore
from tests.broker.test_dispatch import Sink, message

pytestmark = pytest.mark.anyio


def make_topic(name: str = "non-persistent://public/default/t") -> NonPersistentTopic:
    return NonPersistentTopic(TopicName.parse(name), EmbeddedMetadataStore(None))


def consumer(cid: int, permits: int = 1000, name: str = "", **kwargs) -> Consumer:
    c = Consumer(consumer_id=cid, name=name or f"c{cid}", sink=Sink(), **kwargs)
    c.permits = permits
    return c


async def attach(topic, sub_type, *consumers, sub="s", **kwargs):
    for c in consumers:
        await topic.subscribe(subscription=sub, consumer=c, sub_type=sub_type, **kwargs)
    return topic.subscriptions[sub]


async def publish(topic, *bodies, key=None, batch=None):
    producer = Producer(producer_id=1, name="p", user_provided_name=True, remote_address="test")
    items = [PublishItem(producer, message(b, key, batch), 0, 0, batch or 1) for b in bodies]
    return await topic.publish_many(items)


def received(c: Consumer) -> list[bytes]:
    return [data for _, _, _, data in c.sink.messages]


async def test_receipts_carry_the_synthetic_id_and_nothing_is_kept():
    topic = make_topic()
    c = consumer(1)
    await attach(topic, SubType.EXCLUSIVE, c)
    positions = await publish(topic, b"a", b"b")
    assert positions == [SYNTHETIC_POSITION, SYNTHETIC_POSITION]
    assert len(c.sink.messages) == 2 and c.pending == {} and c.unacked_messages == 0
    assert c.permits == 998
    assert [m[1] for m in c.sink.messages] == [SYNTHETIC_POSITION] * 2


async def test_exclusive_takes_one_consumer_and_drops_past_its_permits():
    topic = make_topic()
    c = consumer(1, permits=2)
    sub = await attach(topic, SubType.EXCLUSIVE, c)
    with pytest.raises(ConsumerBusyError):
        await attach(topic, SubType.EXCLUSIVE, consumer(2))
    await publish(topic, b"1", b"2", b"3", b"4")
    assert len(received(c)) == 2
    assert sub.dropped.count == 2 and sub.msg_out.count == 2
    sub.flow(c, 1)
    await publish(topic, b"5")
    assert len(received(c)) == 3


async def test_a_consumer_whose_connection_is_backed_up_gets_nothing():
    topic = make_topic()
    c = consumer(1)
    sub = await attach(topic, SubType.SHARED, c)
    c.sink.writable = False
    await publish(topic, b"1", b"2")
    assert received(c) == [] and sub.dropped.count == 2


async def test_shared_round_robin_skips_consumers_without_permits():
    topic = make_topic()
    a, b, full = consumer(1), consumer(2), consumer(3, permits=0)
    sub = await attach(topic, SubType.SHARED, a, b, full)
    await publish(topic, *[str(i).encode() for i in range(6)])
    assert len(received(a)) == 3 and len(received(b)) == 3 and received(full) == []
    assert sub.dropped.count == 0


async def test_failover_active_consumer_by_partition_and_announced():
    topic = make_topic("non-persistent://public/default/t-partition-1")
    a, b = consumer(1, name="a"), consumer(2, name="b")
    await attach(topic, SubType.FAILOVER, a, b)
    # partition 1 of two consumers sorted by (priority, name): "b" is active
    await publish(topic, b"x")
    assert received(a) == [] and len(received(b)) == 1
    assert (2, True) in b.sink.active and (1, False) in a.sink.active
    await topic.remove_consumer(topic.subscriptions["s"], b)
    await publish(topic, b"y")
    assert len(received(a)) == 1


async def test_key_shared_keeps_a_key_on_its_owner_and_drops_when_it_is_full():
    topic = make_topic()
    lo = consumer(1, hash_ranges=[(0, 32767)])
    hi = consumer(2, hash_ranges=[(32768, 65535)])
    sub = await attach(topic, SubType.KEY_SHARED, lo, hi, sticky=True)
    with pytest.raises(ConsumerAssignError):
        await attach(topic, SubType.KEY_SHARED, consumer(3, hash_ranges=[(100, 200)]), sticky=True)
    key = next(k for k in (f"k{i}" for i in range(100)) if key_hash(k.encode()) < 32768)
    await publish(topic, b"1", b"2", key=key)
    assert len(received(lo)) == 2 and received(hi) == []
    lo.permits = 0
    await publish(topic, b"3", key=key)  # its owner is full: dropped, not given to the other
    assert received(hi) == [] and sub.dropped.count == 1


async def test_a_batch_goes_whole_and_spends_its_messages_in_permits():
    topic = make_topic()
    c = consumer(1, permits=10)
    await attach(topic, SubType.EXCLUSIVE, c)
    await publish(topic, b"m", batch=4)
    assert len(c.sink.messages) == 1 and c.permits == 6
    assert topic.stats()["msgOutCounter"] == 4


async def test_subscription_lives_while_it_has_consumers():
    topic = make_topic()
    c = consumer(1)
    sub = await attach(topic, SubType.SHARED, c)
    await topic.remove_consumer(sub, c)
    assert topic.subscriptions == {}
    await publish(topic, b"nobody")  # no subscription: nothing to deliver, nothing kept
    assert topic.stats()["msgInCounter"] == 1 and topic.stats()["msgOutCounter"] == 0


async def test_refusals_leave_nothing_behind():
    topic = make_topic()
    with pytest.raises(NotAllowedError):
        await attach(topic, SubType.EXCLUSIVE, consumer(1), read_compacted=True)
    assert topic.subscriptions == {}
    a = consumer(1)
    await attach(topic, SubType.SHARED, a)
    with pytest.raises(ConsumerBusyError):
        await attach(topic, SubType.FAILOVER, consumer(2))
    with pytest.raises(SubscriptionBusyError):
        await topic.unsubscribe("s")
    with pytest.raises(NotAllowedError):
        topic.subscriptions["s"].ack_cumulative(a, SYNTHETIC_POSITION)
    with pytest.raises(NotAllowedError):
        await topic.last_message_id()
    assert list(topic.subscriptions) == ["s"] and topic.subscriptions["s"].consumers == [a]


async def test_a_flood_without_consumers_keeps_nothing():
    topic = make_topic()
    slow = consumer(1, permits=5)
    sub = await attach(topic, SubType.SHARED, slow)
    for _ in range(20):
        await publish(topic, *[b"x" * 1000] * 500)
    assert len(slow.sink.messages) == 5 and slow.pending == {}
    assert sub.dropped.count == 10_000 - 5
    assert topic.stats()["msgInCounter"] == 10_000


async def test_publishes_that_yield_the_loop_keep_send_order():
    """50 subscriptions x 100 entries is past YIELD_EVERY: a second read's publish, started
    while the first one yields, must not overtake it."""
    import asyncio

    topic = make_topic()
    consumers = [consumer(i, permits=10_000) for i in range(50)]
    for index, c in enumerate(consumers):
        await attach(topic, SubType.EXCLUSIVE, c, sub=f"s{index}")
    first = asyncio.ensure_future(publish(topic, *[str(i).encode() for i in range(100)]))
    second = asyncio.ensure_future(publish(topic, *[str(i).encode() for i in range(100, 200)]))
    await asyncio.gather(first, second)
    from taureau.protocol import split_batch

    bodies = [int(split_batch(data)[0][2]) for data in received(consumers[-1])]
    assert bodies == list(range(200))
