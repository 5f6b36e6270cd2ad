"""What an idle topic costs the event loop: no task per subscription, no timer per ledger."""

import asyncio

import pytest

from taureau.broker.consumer import Consumer
from taureau.broker.subscription import SubType
from taureau.broker.topic import PersistentTopic
from taureau.common.names import TopicName
from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.protocol import pb
from taureau.protocol.metadata import encode_entry
from taureau.storage.managed_ledger.api import InitialPosition
from taureau.storage.managed_ledger.factory import ManagedLedgerFactory
from taureau.testing.memory_ledger import MemoryLedgerClient

pytestmark = pytest.mark.anyio


class Sink:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def send_message(self, consumer_id, position, partition, redelivery_count, data, ack_set=()):
        self.bodies.append(data[-1:])

    def send_close_consumer(self, consumer_id):
        pass

    def send_active_consumer_change(self, consumer_id, is_active):
        pass

    remote_address = "test"
    writable = True


def entry(body: bytes) -> bytes:
    return encode_entry(pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1), body)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def dispatcher_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "dispatcher" and not t.done()]


async def test_an_idle_subscription_holds_no_task_and_wakes_on_new_entries():
    store = EmbeddedMetadataStore(None)
    factory = ManagedLedgerFactory(store, MemoryLedgerClient())
    topics = []
    sinks = []
    for i in range(20):
        ledger = await factory.open(f"public/default/persistent/t{i}")
        topic = PersistentTopic(TopicName.parse(f"t{i}"), ledger, store)
        sink = Sink()
        c = Consumer(consumer_id=1, name="c", sink=sink)
        sub = await topic.subscribe(
            subscription="s", consumer=c, sub_type=SubType.EXCLUSIVE, initial_position=InitialPosition.EARLIEST
        )
        sub.flow(c, 10)
        topics.append(topic)
        sinks.append(sink)
    await settle()
    assert dispatcher_tasks() == []  # 20 subscriptions with consumers and permits, all idle
    for topic in topics:
        await topic.ledger.add_entry(entry(b"a"))
        for sub in topic.subscriptions.values():
            sub.notify_new_entries()
    await settle()
    assert [s.bodies for s in sinks] == [[b"a"]] * 20
    assert dispatcher_tasks() == []  # delivered, and gone again
    for topic in topics:
        await topic.close()
    await factory.close()


async def test_a_wake_with_nothing_to_send_starts_no_task():
    """FLOWs and acks of a caught-up subscription wake its dispatcher: with nothing to send,
    that costs no task (with many topics, every message paid for one or two empty rounds)."""
    store = EmbeddedMetadataStore(None)
    factory = ManagedLedgerFactory(store, MemoryLedgerClient())
    ledger = await factory.open("public/default/persistent/wake")
    topic = PersistentTopic(TopicName.parse("wake"), ledger, store)
    sink = Sink()
    c = Consumer(consumer_id=1, name="c", sink=sink)
    sub = await topic.subscribe(
        subscription="s", consumer=c, sub_type=SubType.EXCLUSIVE, initial_position=InitialPosition.EARLIEST
    )
    sub.flow(c, 10)
    await settle()
    position = await topic.ledger.add_entry(entry(b"a"))
    topic.ledger.cache.clear()  # not in memory: the round has to read the ledger
    sub.notify_new_entries()
    await asyncio.sleep(0)  # the wake's callback
    assert len(dispatcher_tasks()) == 1  # something to send, not from the cache: a task
    await settle()
    assert sink.bodies == [b"a"] and dispatcher_tasks() == []
    sub.flow(c, 5)
    assert dispatcher_tasks() == []  # caught up: a FLOW starts nothing
    sub.ack_cumulative(c, position)
    assert dispatcher_tasks() == []  # nor does an ack
    await topic.ledger.add_entry(entry(b"b"))
    sub.notify_new_entries()
    await settle()
    assert sink.bodies == [b"a", b"b"]
    await topic.close()
    await factory.close()


async def test_open_ledgers_share_one_periodic_trim_task():
    store = EmbeddedMetadataStore(None)
    factory = ManagedLedgerFactory(store, MemoryLedgerClient(), trim_interval_s=0.01)
    loop = asyncio.get_running_loop()
    timers = loop._scheduled  # the default loop's timer heap (private, but the thing to count)
    before = len(asyncio.all_tasks()), len(timers)
    ledgers = [await factory.open(f"public/default/persistent/t{i}") for i in range(50)]
    await asyncio.sleep(0.05)  # a few sweeps
    # Opening 50 ledgers adds the one sweep (a task asleep on one timer), nothing per ledger.
    assert len(asyncio.all_tasks()) - before[0] <= 1
    assert len([t for t in timers if not t.cancelled()]) - before[1] <= 1
    for ml in ledgers:
        await ml.close()
    await factory.close()


# -- idle topics unload, and load again on use ------------------------------------------------


@pytest.fixture
async def service():
    from taureau.broker.config import BrokerConfig
    from taureau.broker.service import BrokerService

    store = EmbeddedMetadataStore(None)
    factory = ManagedLedgerFactory(store, MemoryLedgerClient())
    svc = BrokerService(BrokerConfig(idle_topic_unload_s=0.2), store, factory)
    await svc.start()
    yield svc
    await svc.close()
    await factory.close()


async def wait_for(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_topic_left_by_its_clients_unloads_and_loads_again_with_its_subscription(service):
    name = TopicName.parse("persistent://public/default/idle")
    topic = await service.get_topic(name)
    sink = Sink()
    c = Consumer(consumer_id=1, name="c", sink=sink)
    await topic.subscribe(
        subscription="s", consumer=c, sub_type=SubType.EXCLUSIVE, initial_position=InitialPosition.EARLIEST
    )
    for body in (b"a", b"b", b"c"):
        await topic.ledger.add_entry(entry(body))
    await asyncio.sleep(0.6)  # three idle periods with a consumer attached
    assert service.loaded_topics() == [topic] and service.unloaded == 0
    await topic.remove_consumer(topic.subscriptions["s"], c)
    await wait_for(lambda: service.unloaded == 1)
    assert service.loaded_topics() == [] and topic.closed
    again = await service.get_topic(name, create=False)
    assert again is not topic
    assert list(again.subscriptions) == ["s"] and again.subscriptions["s"].cursor.backlog == 3
    sink2 = Sink()
    c2 = Consumer(consumer_id=2, name="c2", sink=sink2)
    sub = await again.subscribe(subscription="s", consumer=c2, sub_type=SubType.EXCLUSIVE)
    sub.flow(c2, 10)
    await wait_for(lambda: len(sink2.bodies) == 3)
    assert sink2.bodies == [b"a", b"b", b"c"]


async def test_a_request_for_a_topic_being_unloaded_waits_for_the_close_and_loads_it_afresh(service):
    name = TopicName.parse("persistent://public/default/racing")
    topic = await service.get_topic(name)
    await topic.create_subscription("s", None)  # at the end: the next entry is its backlog
    await topic.ledger.add_entry(entry(b"x"))
    close = topic.close

    async def slow_close() -> None:  # a slow disk: the request comes while the close runs
        await asyncio.sleep(0.2)
        await close()

    topic.close = slow_close
    key = str(name)
    service._unload(key, service._topics[key])  # the sweep's step
    again = await service.get_topic(name)  # while the close is in flight
    assert again is not topic and topic.closed and not again.closed
    assert again.ledger is not topic.ledger
    assert again.subscriptions["s"].cursor.backlog == 1
    assert await again.ledger.add_entry(entry(b"y"))  # the new ledger is writable


async def test_unloading_off_keeps_idle_topics_loaded():
    from taureau.broker.config import BrokerConfig
    from taureau.broker.service import BrokerService

    store = EmbeddedMetadataStore(None)
    factory = ManagedLedgerFactory(store, MemoryLedgerClient())
    svc = BrokerService(BrokerConfig(idle_topic_unload_s=0), store, factory)
    await svc.start()
    topic = await svc.get_topic(TopicName.parse("persistent://public/default/kept"))
    await asyncio.sleep(0.3)
    assert svc.loaded_topics() == [topic] and svc.unloaded == 0
    await svc.close()
    await factory.close()


@pytest.mark.parametrize("flag", ["--idle-topic-unload", "--cursor-save-interval"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_standalone_refuses_a_bad_duration_before_starting(flag, value, tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "taureau.cli.main", "standalone", "--data-dir", str(tmp_path / "d"), flag, value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"taureau standalone: error: argument {flag}:")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was made
