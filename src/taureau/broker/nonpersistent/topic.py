"""NonPersistentTopic: its producers and subscriptions, and the publish path that hands each
entry to the consumers connected right now (nonpersistent/dispatch.py) and forgets it."""

from __future__ import annotations

import asyncio
import time

from taureau.broker.access import Admitted, ProducerAccess, Queued
from taureau.broker.consumer import Consumer
from taureau.broker.entries import entry_info
from taureau.broker.nonpersistent.dispatch import KeyShared
from taureau.broker.nonpersistent.meter import Meter
from taureau.broker.nonpersistent.subscription import SYNTHETIC_POSITION, NonPersistentSubscription
from taureau.broker.producer import Producer
from taureau.broker.rate_limit import PublishRateLimiter
from taureau.broker.subscription import SubType
from taureau.broker.topic import PublishItem, check_no_other_consumers, subscription_named
from taureau.common.errors import (
    ConsumerBusyError,
    NotAllowedError,
)
from taureau.common.names import TopicName
from taureau.metadata.store import MetadataStore
from taureau.storage.managed_ledger.api import InitialPosition
from taureau.storage.position import Position

YIELD_EVERY = 2000  # deliveries between two yields to the event loop


class NonPersistentTopic:
    def __init__(self, name: TopicName, store: MetadataStore) -> None:
        self.name = name
        self.producers: dict[str, Producer] = {}  # by producer name; owned here
        self.access = ProducerAccess(store, name.storage_name)  # exclusive producers and the topic epoch
        self.subscriptions: dict[str, NonPersistentSubscription] = {}  # by name; owned here
        # The namespace's limits (0: none) and publish throttle, set by the broker service.
        self.max_producers = 0
        self.max_consumers = 0
        self.max_subscriptions = 0
        self.publish_limiter: PublishRateLimiter | None = None
        self.msg_in = Meter()
        self.bytes_in = Meter()
        self.msg_out = Meter()  # over every subscription, those gone included
        self.bytes_out = Meter()
        self._publishing = asyncio.Lock()  # one publish_many at a time: see there
        self.last_used = time.monotonic()  # idle unloading, as a persistent topic's
        self._idle_from: float | None = None

    @property
    def partition(self) -> int:
        return self.name.partition

    def is_idle(self) -> bool:
        """No producer and no consumer: a consumer's schema may become the topic's."""
        return not self.producers and not self.subscriptions

    # -- producers ---------------------------------------------------------------------------

    def check_producer(self, producer: Producer, requested_epoch: int | None = None) -> None:
        self.access.check_new(producer, self.producers, self.max_producers, str(self.name), requested_epoch)

    async def add_producer(self, producer: Producer, requested_epoch: int | None = None) -> Admitted | Queued:
        """As a persistent topic's (access modes, fencing; the epoch kept in the store too)."""
        self.check_producer(producer, requested_epoch)
        return await self.access.add(producer, self.producers, requested_epoch)

    def remove_producer(self, producer: Producer) -> None:
        self.access.remove(producer, self.producers)

    def last_sequence_id(self, producer_name: str) -> int:
        return -1  # no de-duplication: nothing is stored to compare with

    async def publish_many(self, items: list[PublishItem]) -> list[Position | None]:
        """Dispatch each entry to every subscription now, and forget it. Every receipt
        carries the same synthetic id, as Pulsar's. Many subscriptions make this long, so it
        yields the loop now and then; the lock keeps entries in SEND order meanwhile (a
        later read of the same producer waits behind this one)."""
        async with self._publishing:
            sends = 0
            for item in items:
                data, messages = item.data, item.messages
                item.producer.msg_in += messages
                item.producer.bytes_in += len(data)
                self.msg_in.add(messages)
                self.bytes_in.add(len(data))
                subscriptions = list(self.subscriptions.values())
                keyed = any(isinstance(s.dispatcher, KeyShared) for s in subscriptions)
                key = entry_info(data).key if keyed else None
                for subscription in subscriptions:
                    if subscription.dispatch(data, messages, key):
                        self.msg_out.add(messages)
                        self.bytes_out.add(len(data))
                sends += len(subscriptions)
                if sends >= YIELD_EVERY:
                    sends = 0
                    await asyncio.sleep(0)
        return [SYNTHETIC_POSITION] * len(items)

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(
        self,
        *,
        subscription: str,
        consumer: Consumer,
        sub_type: SubType,
        durable: bool = True,
        initial_position: InitialPosition = InitialPosition.LATEST,
        start_position: Position | None = None,
        sticky: bool = False,
        read_compacted: bool = False,
        from_earliest: bool = False,
    ) -> NonPersistentSubscription:
        """Attach `consumer`; it gets what is published from now on, wherever it asked to
        start (nothing older exists)."""
        if self.max_consumers and self.consumer_count() >= self.max_consumers:
            raise ConsumerBusyError(f"Topic reached max consumers limit ({self.max_consumers}): {self.name}")
        sub = self.subscriptions.get(subscription)
        if sub is None:
            if self.max_subscriptions and len(self.subscriptions) >= self.max_subscriptions:
                raise NotAllowedError(
                    f"Exceed the maximum number of subscriptions of the topic ({self.max_subscriptions}): {self.name}"
                )
            sub = NonPersistentSubscription(subscription, partition=self.partition, durable=durable)
        sub.add_consumer(consumer, sub_type, sticky, read_compacted)  # raises before anything is kept
        self.subscriptions[subscription] = sub
        return sub

    def consumer_count(self) -> int:
        return sum(len(sub.consumers) for sub in self.subscriptions.values())

    async def remove_consumer(self, sub: NonPersistentSubscription, consumer: Consumer) -> None:
        """A subscription lives while it has consumers, as in Pulsar: messages published
        with none are nobody's."""
        sub.remove_consumer(consumer)
        if not sub.consumers and self.subscriptions.get(sub.name) is sub:
            del self.subscriptions[sub.name]

    def check_unsubscribe(self, name: str, requester: Consumer | None = None, force: bool = False) -> None:
        check_no_other_consumers(self.get_subscription(name), requester, force)

    async def unsubscribe(self, name: str, requester: Consumer | None = None, force: bool = False) -> None:
        self.check_unsubscribe(name, requester, force)
        sub = self.subscriptions.pop(name)
        if force:
            sub.disconnect_consumers()

    def get_subscription(self, name: str) -> NonPersistentSubscription:
        return subscription_named(self.subscriptions, name, self.name)

    # -- positions: there are none -----------------------------------------------------------

    def resolve_position(self, ledger_id: int, entry_id: int) -> Position:
        return SYNTHETIC_POSITION

    async def position_for_time(self, timestamp_ms: int) -> Position:
        return SYNTHETIC_POSITION

    async def last_message_id(self, compacted: bool = False) -> tuple[Position, int]:
        # Pulsar refuses it (the client's hasMessageAvailable then fails): nothing is kept.
        raise NotAllowedError(f"GetLastMessageId on a non-persistent topic is not allowed: {self.name}")

    # -- lifecycle ---------------------------------------------------------------------------

    def idle_for(self, now: float) -> float:
        """Seconds without a producer or a consumer, and since the last request for it."""
        if self.producers or self.access.has_waiting or self.subscriptions:
            self._idle_from = None
            return 0.0
        if self._idle_from is None:
            self._idle_from = now
        return now - max(self._idle_from, self.last_used)

    def disconnect_all(self) -> None:
        """The topic goes away: every producer and consumer is told to reconnect."""
        for producer in list(self.producers.values()):
            if producer.disconnect is not None:
                producer.disconnect()
        for sub in list(self.subscriptions.values()):
            sub.disconnect_consumers()
        self.producers.clear()
        self.subscriptions.clear()

    def tick(self, now: float) -> None:
        for meter in (self.msg_in, self.bytes_in, self.msg_out, self.bytes_out):
            meter.tick(now)
        for sub in self.subscriptions.values():
            sub.tick(now)

    def stats(self) -> dict:
        subs = self.subscriptions
        return {
            "msgRateIn": self.msg_in.rate,
            "msgThroughputIn": self.bytes_in.rate,
            "msgRateOut": self.msg_out.rate,
            "msgThroughputOut": self.bytes_out.rate,
            "msgInCounter": self.msg_in.count,
            "bytesInCounter": self.bytes_in.count,
            "msgOutCounter": self.msg_out.count,
            "bytesOutCounter": self.bytes_out.count,
            "msgDropRate": 0.0,  # a publisher's own drops; this broker takes every SEND
            "storageSize": 0,
            "backlogSize": 0,
            "publishers": [{**p.stats(), "msgDropRate": 0.0} for p in self.producers.values()],
            "subscriptions": {name: s.stats() for name, s in subs.items()},
            **({"topicEpoch": self.access.epoch} if self.access.epoch >= 0 else {}),
        }

