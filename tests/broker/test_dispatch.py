"""Dispatchers against a real managed ledger on the in-memory ledger client."""

import asyncio
import contextlib

import pytest

from taureau.broker.consumer import Consumer
from taureau.broker.dispatch.base import DispatchLimits
from taureau.broker.dispatch.key_shared import ConsumerAssignError
from taureau.broker.subscription import Subscription, SubType
from taureau.broker.topic import PersistentTopic
from taureau.common.errors import ConsumerBusyError, NotAllowedError
from taureau.common.names import TopicName
from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.protocol import pb, split_batch
from taureau.protocol.metadata import encode_entry
from taureau.storage.managed_ledger.api import InitialPosition
from taureau.storage.managed_ledger.factory import ManagedLedgerFactory
from taureau.testing.memory_ledger import MemoryLedgerClient

pytestmark = pytest.mark.anyio


class Sink:
    """Collects what a consumer's connection would have sent."""

    def __init__(self) -> None:
        self.messages = []  # (consumer_id, position, redelivery_count, data)
        self.closed = []
        self.active = []

    def send_message(self, consumer_id, position, partition, redelivery_count, data, ack_set=()):
        self.messages.append((consumer_id, position, redelivery_count, data))

    def send_close_consumer(self, consumer_id):
        self.closed.append(consumer_id)

    def send_active_consumer_change(self, consumer_id, is_active):
        self.active.append((consumer_id, is_active))

    remote_address = "test"
    writable = True


def message(body: bytes, key: str | None = None, batch: int | None = None) -> bytes:
    meta = pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1)
    if key is not None:
        meta.partition_key = key
    if batch is not None:
        meta.num_messages_in_batch = batch
        record = pb.SingleMessageMetadata(payload_size=len(body)).SerializeToString()
        body = (len(record).to_bytes(4, "big") + record + body) * batch
    return encode_entry(meta, body)


async def publish(topic, *bodies, key=None, batch=None):
    for body in bodies:
        await topic.ledger.add_entry(message(body, key, batch))
    for sub in topic.subscriptions.values():
        sub.notify_new_entries()


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def consumer(sink, cid, name=None, **kw):
    return Consumer(consumer_id=cid, name=name or f"c{cid}", sink=sink, **kw)


async def test_exclusive_delivers_in_order_within_permits(topic):
    sink = Sink()
    c = consumer(sink, 1)
    await topic.subscribe(
        subscription="s", consumer=c, sub_type=SubType.EXCLUSIVE, initial_position=InitialPosition.EARLIEST
    )
    await publish(topic, b"a", b"b", b"c", b"d")
    topic.subscriptions["s"].flow(c, 3)
    await settle()
    assert [m[3][-1:] for m in sink.messages] == [b"a", b"b", b"c"]
    topic.subscriptions["s"].flow(c, 5)
    await settle()
    assert [m[3][-1:] for m in sink.messages] == [b"a", b"b", b"c", b"d"]
    with pytest.raises(ConsumerBusyError):
        await topic.subscribe(subscription="s", consumer=consumer(sink, 2), sub_type=SubType.EXCLUSIVE)


async def test_batches_debit_their_message_count_from_permits(topic):
    sink = Sink()
    c = consumer(sink, 1)
    sub = await topic.subscribe(
        subscription="s", consumer=c, sub_type=SubType.EXCLUSIVE, initial_position=InitialPosition.EARLIEST
    )
    await publish(topic, b"x", b"y", b"z", batch=10)
    sub.flow(c, 15)
    await settle()
    # Two batches: the second overshoots the permits (as the Java broker allows), the third waits.
    assert len(sink.messages) == 2 and c.permits == -5
    sub.flow(c, 4)
    await settle()
    assert len(sink.messages) == 2  # -5 + 4 = -1: still nothing to give
    sub.flow(c, 2)
    await settle()
    assert len(sink.messages) == 3 and c.permits == -9


async def test_a_caught_up_flow_schedules_no_round_and_the_next_add_is_delivered(topic):
    sink = Sink()
    c = consumer(sink, 1)
    sub = await topic.subscribe(
        subscription="s", consumer=c, sub_type=SubType.EXCLUSIVE, initial_position=InitialPosition.EARLIEST
    )
    await publish(topic, b"a")
    sub.flow(c, 1)
    await settle()
    assert [m[3][-1:] for m in sink.messages] == [b"a"]
    dispatcher = sub.dispatcher
    sub.flow(c, 5)  # nothing left to read: no callback for the next loop turn
    assert not dispatcher._round_soon and dispatcher._task is None
    await publish(topic, b"b", b"c")
    await settle()
    assert [m[3][-1:] for m in sink.messages] == [b"a", b"b", b"c"] and c.permits == 3


async def test_shared_round_robin_and_redelivery_count(topic):
    sink = Sink()
    a, b = consumer(sink, 1), consumer(sink, 2)
    sub = await topic.subscribe(
        subscription="s", consumer=a, sub_type=SubType.SHARED, initial_position=InitialPosition.EARLIEST
    )
    await topic.subscribe(subscription="s", consumer=b, sub_type=SubType.SHARED)
    sub.flow(a, 10)
    sub.flow(b, 10)
    await publish(topic, *[bytes([65 + i]) for i in range(6)])
    await settle()
    by_consumer = {1: 0, 2: 0}
    for cid, *_ in sink.messages:
        by_consumer[cid] += 1
    assert by_consumer == {1: 3, 2: 3}
    first = [m for m in sink.messages if m[0] == 1][0][1]
    sub.redeliver(a, [first])
    await settle()
    assert sink.messages[-1][1] == first and sink.messages[-1][2] == 1
    with pytest.raises(NotAllowedError):
        sub.ack_cumulative(a, first)


async def test_consumer_leaving_hands_its_unacked_entries_to_others(topic):
    sink = Sink()
    a, b = consumer(sink, 1), consumer(sink, 2)
    sub = await topic.subscribe(
        subscription="s", consumer=a, sub_type=SubType.SHARED, initial_position=InitialPosition.EARLIEST
    )
    sub.flow(a, 10)
    await publish(topic, b"1", b"2", b"3")
    await settle()
    assert len(a.pending) == 3
    sub.ack_individual(a, [sink.messages[0][1]])
    await topic.subscribe(subscription="s", consumer=b, sub_type=SubType.SHARED)
    sub.flow(b, 10)
    await topic.remove_consumer(sub, a)
    await settle()
    redelivered = [m for m in sink.messages if m[0] == 2]
    assert [m[3][-1:] for m in redelivered] == [b"2", b"3"]
    assert all(m[2] == 1 for m in redelivered)


async def test_failover_switches_active_consumer_and_notifies(topic):
    sink = Sink()
    a, b = consumer(sink, 1, "a"), consumer(sink, 2, "b")
    sub = await topic.subscribe(
        subscription="s", consumer=a, sub_type=SubType.FAILOVER, initial_position=InitialPosition.EARLIEST
    )
    await topic.subscribe(subscription="s", consumer=b, sub_type=SubType.FAILOVER)
    sub.flow(a, 10)
    sub.flow(b, 10)
    await publish(topic, b"1", b"2")
    await settle()
    assert {m[0] for m in sink.messages} == {1}
    await topic.remove_consumer(sub, a)
    await settle()
    assert [m[0] for m in sink.messages] == [1, 1, 2, 2]
    assert (2, True) in sink.active


async def test_key_shared_holds_a_blocked_key_without_reordering(topic):
    sink = Sink()
    a, b = consumer(sink, 1, "a"), consumer(sink, 2, "b")
    sub = await topic.subscribe(
        subscription="s", consumer=a, sub_type=SubType.KEY_SHARED, initial_position=InitialPosition.EARLIEST
    )
    await topic.subscribe(subscription="s", consumer=b, sub_type=SubType.KEY_SHARED)
    keys = [f"k{i}" for i in range(20)]
    owner = {k: sub.dispatcher.select(k.encode()).consumer_id for k in keys}
    assert set(owner.values()) == {1, 2}
    sub.flow(a, 1)
    sub.flow(b, 100)
    for round_ in range(3):
        for k in keys:
            await publish(topic, f"{k}-{round_}".encode(), key=k)
    await settle()
    assert len([m for m in sink.messages if m[0] == 1]) == 1  # a has one permit
    assert len([m for m in sink.messages if m[0] == 2]) == 3 * list(owner.values()).count(2)
    sub.flow(a, 100)
    await settle()
    assert len(sink.messages) == 60
    rounds: dict[str, list[str]] = {}
    for cid, _, _, data in sink.messages:
        key, round_ = split_batch(data)[0][2].decode().rsplit("-", 1)
        assert owner[key] == cid
        rounds.setdefault(key, []).append(round_)
    assert all(r == ["0", "1", "2"] for r in rounds.values())


async def test_key_shared_sticky_ranges_must_not_overlap(topic):
    sink = Sink()
    a = consumer(sink, 1, hash_ranges=[(0, 30000)])
    await topic.subscribe(subscription="s", consumer=a, sub_type=SubType.KEY_SHARED, sticky=True)
    with pytest.raises(ConsumerAssignError):
        await topic.subscribe(
            subscription="s",
            consumer=consumer(sink, 2, hash_ranges=[(20000, 40000)]),
            sub_type=SubType.KEY_SHARED,
            sticky=True,
        )
    await topic.subscribe(
        subscription="s",
        consumer=consumer(sink, 3, hash_ranges=[(30001, 65535)]),
        sub_type=SubType.KEY_SHARED,
        sticky=True,
    )


async def test_subscription_type_is_fixed_while_consumers_are_attached(topic):
    sink = Sink()
    await topic.subscribe(subscription="s", consumer=consumer(sink, 1), sub_type=SubType.SHARED)
    with pytest.raises(ConsumerBusyError):
        await topic.subscribe(subscription="s", consumer=consumer(sink, 2), sub_type=SubType.FAILOVER)


async def test_reset_to_redelivers_from_a_position_and_disconnects(topic):
    sink = Sink()
    c = consumer(sink, 1)
    sub = await topic.subscribe(
        subscription="s", consumer=c, sub_type=SubType.EXCLUSIVE, initial_position=InitialPosition.EARLIEST
    )
    await publish(topic, b"1", b"2", b"3")
    sub.flow(c, 10)
    await settle()
    positions = [m[1] for m in sink.messages]
    sub.ack_cumulative(c, positions[-1])
    await sub.reset_to(positions[1])
    assert sink.closed == [1]
    c2 = consumer(sink, 2)
    await topic.subscribe(subscription="s", consumer=c2, sub_type=SubType.EXCLUSIVE)
    sub.flow(c2, 10)
    await settle()
    assert [m[3][-1:] for m in sink.messages if m[0] == 2] == [b"2", b"3"]


async def test_non_durable_subscription_vanishes_with_its_consumer(topic):
    sink = Sink()
    await publish(topic, b"1")
    c = consumer(sink, 1)
    sub = await topic.subscribe(
        subscription="reader-1",
        consumer=c,
        sub_type=SubType.EXCLUSIVE,
        durable=False,
        start_position=topic.ledger.first_position,
    )
    sub.flow(c, 10)
    await settle()
    assert len(sink.messages) == 1
    await topic.remove_consumer(sub, c)
    assert "reader-1" not in topic.subscriptions
    assert isinstance(sub, Subscription)


async def test_unacked_entries_come_back_after_every_consumer_left(topic):
    sink = Sink()
    a = consumer(sink, 1)
    sub = await topic.subscribe(
        subscription="s", consumer=a, sub_type=SubType.KEY_SHARED, initial_position=InitialPosition.EARLIEST
    )
    sub.flow(a, 10)
    await publish(topic, b"1", b"2", b"3", key="k")
    await settle()
    sub.ack_individual(a, [sink.messages[0][1]])
    await topic.remove_consumer(sub, a)
    # The next consumer may use another type (so another dispatcher): nothing unacked is lost.
    b = consumer(sink, 2)
    await topic.subscribe(subscription="s", consumer=b, sub_type=SubType.SHARED)
    sub.flow(b, 10)
    await settle()
    again = [(m[3][-1:], m[2]) for m in sink.messages if m[0] == 2]
    assert again == [(b"2", 1), (b"3", 1)]


async def test_a_backed_up_connection_gets_nothing_until_it_drains(topic):
    sink = Sink()
    slow, fast = consumer(sink, 1), consumer(Sink(), 2)
    sub = await topic.subscribe(
        subscription="s", consumer=slow, sub_type=SubType.SHARED, initial_position=InitialPosition.EARLIEST
    )
    await topic.subscribe(subscription="s", consumer=fast, sub_type=SubType.SHARED)
    sink.writable = False  # its socket's send buffer is over the high-water mark
    sub.flow(slow, 100)
    sub.flow(fast, 100)
    await publish(topic, b"1", b"2", b"3")
    await settle()
    assert sink.messages == [] and len(fast.sink.messages) == 3
    fast.permits = 0  # before the publish: new entries go out as the add completes
    await publish(topic, b"4")
    await settle()
    assert sink.messages == []
    sink.writable = True
    sub.dispatcher.wake()  # what the connection's resume_writing does
    await settle()
    assert [m[3][-1:] for m in sink.messages] == [b"4"]


@contextlib.asynccontextmanager
async def limited_topic(limits: DispatchLimits):
    store = EmbeddedMetadataStore(None)
    factory = ManagedLedgerFactory(store, MemoryLedgerClient())
    ledger = await factory.open("public/default/persistent/limited")
    t = PersistentTopic(TopicName.parse("limited"), ledger, store, limits)
    try:
        yield t
    finally:
        await t.close()
        await factory.close()


async def test_subscription_unacked_limit_holds_every_consumer_until_half_is_acked():
    """maxUnackedMessagesPerSubscription: 6 unacked over two Shared consumers stops dispatch
    although each consumer is under its own limit (10); acking down to 3 resumes it."""
    async with limited_topic(DispatchLimits(10, 6)) as t:
        sink = Sink()
        a, b = consumer(sink, 1), consumer(sink, 2)
        sub = await t.subscribe(
            subscription="s", consumer=a, sub_type=SubType.SHARED, initial_position=InitialPosition.EARLIEST
        )
        await t.subscribe(subscription="s", consumer=b, sub_type=SubType.SHARED)
        await publish(t, *[bytes([65 + i]) for i in range(12)])
        sub.flow(a, 100)
        sub.flow(b, 100)
        await settle()
        assert len(sink.messages) == 6 and sub.dispatcher.blocked
        assert sub.stats()["blockedSubscriptionOnUnackedMsgs"] is True
        delivered = [(cid, position) for cid, position, *_ in sink.messages]
        by_id = {1: a, 2: b}
        for cid, position in delivered[:2]:
            sub.ack_individual(by_id[cid], [position])
        await settle()
        assert len(sink.messages) == 6  # 4 unacked: still over half of 6
        sub.ack_individual(by_id[delivered[2][0]], [delivered[2][1]])
        await settle()
        assert len(sink.messages) == 9 and sub.dispatcher.blocked  # 3 more, then 6 again


async def test_consumer_unacked_limit_is_not_applied_to_exclusive_subscriptions():
    async with limited_topic(DispatchLimits(2, 2)) as t:
        sink = Sink()
        c = consumer(sink, 1)
        sub = await t.subscribe(
            subscription="s",
            consumer=c,
            sub_type=SubType.EXCLUSIVE,
            initial_position=InitialPosition.EARLIEST,
        )
        await publish(t, b"a", b"b", b"c", b"d", b"e")
        sub.flow(c, 100)
        await settle()
        assert len(sink.messages) == 5 and not c.blocked and c.unacked_messages == 5


def test_key_hash_is_murmur3_as_pulsar():
    from taureau.broker.dispatch.key_shared import key_hash

    # Reference vectors of Murmur3 x86 32-bit, seed 0, reduced as Pulsar does (mod 65536).
    assert key_hash(b"") == 0
    assert key_hash(b"hello") == 0x248BFA47 % 65536
    assert key_hash(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723 % 65536
    assert key_hash(None) == key_hash(b"NONE_KEY")  # a message without a key, as Pulsar


async def test_delayed_deliveries_come_due_in_time_order_and_are_bounded():
    from taureau.broker.dispatch.delayed import DelayedDeliveries, now_ms
    from taureau.storage.position import Position

    woken = asyncio.Event()
    delayed = DelayedDeliveries(woken.set, limit=3)
    start = now_ms()
    delayed.add(Position(1, 2), start + 200)
    delayed.add(Position(1, 1), start + 100)
    assert not delayed.full and delayed.pop_due(start) == []
    delayed.add(Position(1, 3), start + 60_000)
    assert delayed.full  # the dispatcher reads no fresh entries now
    await asyncio.wait_for(woken.wait(), 2)  # the timer fires for the earliest
    assert now_ms() >= start + 100
    assert delayed.pop_due(start + 250) == [Position(1, 1), Position(1, 2)]
    assert len(delayed) == 1 and not delayed.full
    delayed.clear()
    assert len(delayed) == 0
