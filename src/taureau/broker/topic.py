"""PersistentTopic: owns its managed ledger, its producers and its subscriptions; the publish path."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import NamedTuple, Protocol, TypeVar

from taureau.broker import validated
from taureau.broker.access import Admitted, ProducerAccess, Queued
from taureau.broker.compaction.topic_compaction import CURSOR as COMPACTION_CURSOR
from taureau.broker.compaction.topic_compaction import TopicCompaction
from taureau.broker.compaction.view import CompactedView, unwrap
from taureau.broker.consumer import Consumer
from taureau.broker.dedup import Deduplication
from taureau.broker.dispatch.base import DispatchLimits
from taureau.broker.dispatch.rate import DispatchRateLimiter, DispatchRates
from taureau.broker.entries import (
    EntryInfo,
    batch_index_of_last,
    checked_entry_info,
    entry_info,
    producer_info,
    publish_time,
)
from taureau.broker.producer import Producer
from taureau.broker.rate_limit import PublishRateLimiter
from taureau.broker.replication.replicator import is_replication_cursor
from taureau.broker.replication.topic_replication import TopicReplication
from taureau.broker.subscription import Subscription, SubType
from taureau.common.errors import (
    BrokerError,
    ConsumerBusyError,
    MetadataError,
    NotAllowedError,
    ServiceNotReadyError,
    StorageError,
    SubscriptionNotFoundError,
)
from taureau.common.names import TopicName
from taureau.metadata.store import MetadataStore
from taureau.storage.managed_ledger.api import InitialPosition, ManagedCursor, ManagedLedger
from taureau.storage.position import EARLIEST, LATEST, Entry, Position

log = logging.getLogger(__name__)

WRITE_FAILURE_HOLD_S = 5.0


class PublishItem(NamedTuple):
    """One SEND on its way to the log."""

    producer: Producer
    data: bytes
    sequence_id: int
    highest_sequence_id: int
    messages: int


class SubscriptionBusyError(BrokerError):
    """A subscription with consumers connected cannot be dropped without force."""


class _Attached(Protocol):
    name: str

    @property
    def consumers(self) -> list[Consumer]: ...


A = TypeVar("A", bound=_Attached)


def subscription_named(subscriptions: Mapping[str, A], name: str, topic: TopicName) -> A:
    """`name` of a topic's subscriptions (either kind of topic), or SubscriptionNotFoundError."""
    sub = subscriptions.get(name)
    if sub is None:
        raise SubscriptionNotFoundError(f"subscription {name} does not exist on {topic}")
    return sub


def check_subscription_name(name: str) -> None:
    """Pulsar reserves the replicator prefix: such a subscription would take a replicator's cursor."""
    if is_replication_cursor(name):
        raise NotAllowedError(f"subscription name {name!r} is reserved for replication")


def check_no_other_consumers(sub: _Attached, requester: Consumer | None, force: bool) -> None:
    """Raise unless, without force, `sub` has no consumer but `requester`."""
    others = [c for c in sub.consumers if c is not requester]
    if others and not force:
        raise SubscriptionBusyError(f"subscription {sub.name} has {len(others)} other consumer(s) connected")


class PersistentTopic:
    def __init__(
        self,
        name: TopicName,
        ledger: ManagedLedger,
        store: MetadataStore,
        limits: DispatchLimits = DispatchLimits(),
    ) -> None:
        self.name = name
        self.limits = limits  # for every subscription's dispatcher
        self.ledger = ledger  # the topic's log; owned here
        self.store = store
        self.producers: dict[str, Producer] = {}  # by producer name; owned here
        self.access = ProducerAccess(store, ledger.name)  # exclusive producers and the topic epoch
        self.subscriptions: dict[str, Subscription] = {}  # by name; owned here
        self.dedup: Deduplication | None = None  # set while de-duplication is enabled
        self.compaction: TopicCompaction | None = None  # set by the broker when it loads the topic
        self.compaction_threshold = 0  # bytes added since the last compaction that start one (0: never)
        self.replication: TopicReplication | None = None  # set by the broker when it loads the topic
        # The namespace's limits (0: none) and publish throttle, set by the broker service.
        self.max_producers = 0
        self.max_consumers = 0
        self.max_subscriptions = 0  # durable subscriptions a topic may have (0: any number)
        self.publish_limiter: PublishRateLimiter | None = None
        self.dispatch_rates = DispatchRates()  # set by the broker service (dispatch/rate.py)
        self.dispatch_limiter = DispatchRateLimiter(lambda: self.dispatch_rates.topic)  # all subscriptions'
        self.msg_in = 0
        self.bytes_in = 0
        self.closed = False
        # Idle-topic unloading (service.py): when the broker last handed this topic out, and
        # since when a sweep has seen it without producers or consumers.
        self.last_used = time.monotonic()
        self._idle_from: float | None = None
        # The last storage failure and when it happened: for a while after one, new
        # producers are refused with a retryable error, so clients back off instead of
        # reconnecting and resending in a tight loop (their send timeouts then fire).
        self._write_error: Exception | None = None
        self._write_failed_at = 0.0
        # Entries up to here were stored without publish-time validation (broker.validated).
        self.unchecked_until = EARLIEST

    def _compacted_view(self) -> CompactedView | None:
        return self.compaction.view if self.compaction is not None else None

    @property
    def partition(self) -> int:
        return self.name.partition

    async def load_validation_mark(self) -> None:
        self.unchecked_until = await validated.load_unchecked_until(self.store, self.ledger)

    async def forget_validation_mark(self) -> None:
        await validated.forget(self.store, self.ledger)

    def dispatch_info(self, entry: Entry) -> EntryInfo:
        """What dispatch reads from a stored entry (0 messages: skip it)."""
        if entry.position <= self.unchecked_until:
            return checked_entry_info(entry.data)
        return entry_info(entry.data)

    # -- producers ---------------------------------------------------------------------------

    async def set_deduplication(self, enabled: bool) -> None:
        if enabled and self.dedup is None:
            dedup = Deduplication(self.store, self.ledger, producer_info)
            await dedup.load()
            self.dedup = dedup
        elif not enabled and self.dedup is not None:
            self.dedup = None

    def is_idle(self) -> bool:
        """No producer, no consumer, nothing stored: a consumer's schema may become the topic's."""
        busy = self.producers or any(s.consumers for s in self.subscriptions.values())
        return not busy and self.ledger.total_size == 0

    def check_producer(self, producer: Producer, requested_epoch: int | None = None) -> None:
        """Raise if `producer` could not be added now; changes nothing."""
        if self._write_error is not None and time.monotonic() - self._write_failed_at < WRITE_FAILURE_HOLD_S:
            raise ServiceNotReadyError(f"topic {self.name} cannot store messages now: {self._write_error}")
        self.access.check_new(producer, self.producers, self.max_producers, str(self.name), requested_epoch)

    async def add_producer(self, producer: Producer, requested_epoch: int | None = None) -> Admitted | Queued:
        """Add a producer by its access mode (ProducerAccess.add)."""
        self.check_producer(producer, requested_epoch)
        return await self.access.add(producer, self.producers, requested_epoch)

    def remove_producer(self, producer: Producer) -> None:
        self.access.remove(producer, self.producers)

    def last_sequence_id(self, producer_name: str) -> int:
        return self.dedup.last_sequence_id(producer_name) if self.dedup is not None else -1

    async def publish(
        self, producer: Producer, data: bytes, sequence_id: int, highest_sequence_id: int, messages: int
    ) -> Position | None:
        """Store one entry; its position, or None for a duplicate that is already stored."""
        dedup = self.dedup
        position: Position | None
        try:
            if dedup is None:
                position = await self.ledger.add_entry(data)
            else:
                position = await dedup.add(
                    producer.dedup_name(data), sequence_id, highest_sequence_id, lambda: self.ledger.add_entry(data)
                )
                if position is None:
                    return None
        except (StorageError, MetadataError) as exc:  # as in _append
            self._write_failed(exc)
            raise
        producer.msg_in += messages
        producer.bytes_in += len(data)
        self.msg_in += messages
        self.bytes_in += len(data)
        for subscription in self.subscriptions.values():
            subscription.notify_new_entries()
        return position

    def publish_many(self, items: list[PublishItem]) -> Awaitable[Sequence[Position | None]]:
        """Store entries sent together (one socket read), in order, as one batch.
        Positions in item order; None for a duplicate (de-duplication only).

        Not a coroutine itself (see transactions.sends.store): it hands back the one that
        stores them."""
        if self.dedup is not None:
            return self._publish_deduplicated(items)
        return self._append([item.data for item in items], sum(item.messages for item in items), items)

    async def _publish_deduplicated(self, items: list[PublishItem]) -> list[Position | None]:
        return list(
            await asyncio.gather(
                *(self.publish(i.producer, i.data, i.sequence_id, i.highest_sequence_id, i.messages) for i in items)
            )
        )

    async def append_committed(self, datas: list[bytes], messages: int) -> list[Position]:
        """Entries of a committed transaction (broker.transactions), stored as their SENDs
        were sent; outside de-duplication, since their producer was answered at the SEND."""
        return await self._append(datas, messages)

    async def _append(self, datas: list[bytes], messages: int, sent: Sequence[PublishItem] = ()) -> list[Position]:
        """Store `datas`; count them in the topic's stats and in those of the producers that
        `sent` them once stored."""
        try:
            positions = await self.ledger.add_entries(datas)
        except (StorageError, MetadataError) as exc:
            # A metadata write of the add path failing (a rollover's ledger list on a full
            # disk) is a failed write too: without the hold, the official client reconnected
            # and resent every 100 ms, and a disk-full test's sends took minutes.
            self._write_failed(exc)
            raise
        self.msg_in += messages
        self.bytes_in += sum(len(data) for data in datas)
        for item in sent:
            producer = item.producer
            producer.msg_in += item.messages
            producer.bytes_in += len(item.data)
        for subscription in self.subscriptions.values():
            subscription.notify_new_entries()
        return positions

    def _write_failed(self, exc: Exception) -> None:
        self._write_error = exc
        self._write_failed_at = time.monotonic()

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
    ) -> Subscription:
        check_subscription_name(subscription)
        if self.max_consumers and self.consumer_count() >= self.max_consumers:
            raise ConsumerBusyError(f"Topic reached max consumers limit ({self.max_consumers}): {self.name}")
        sub = self.subscriptions.get(subscription)
        created = False
        if sub is None:
            if durable:
                self._check_subscription_room()
                cursor = await self.ledger.open_cursor(subscription, initial_position)
            else:
                cursor = self.ledger.new_non_durable_cursor(subscription, start_position or LATEST)
            sub = self.subscriptions.get(subscription)
            if sub is None:
                sub = self._new_subscription(subscription, cursor, durable)
                created = True
        try:
            await sub.add_consumer(consumer, sub_type, sticky, read_compacted, from_earliest)
        except BaseException:
            if created and not sub.consumers:
                await self._drop_new_subscription(sub)
            raise
        return sub

    def _check_subscription_room(self) -> None:
        """Pulsar's maxSubscriptionsPerTopic: durable subscriptions, compaction's own not counted."""
        if not self.max_subscriptions:
            return
        durable = sum(1 for name, sub in self.subscriptions.items() if sub.durable and name != COMPACTION_CURSOR)
        if durable >= self.max_subscriptions:
            raise NotAllowedError(
                f"Exceed the maximum number of subscriptions of the topic ({self.max_subscriptions}): {self.name}"
            )

    def consumer_count(self) -> int:
        return sum(len(sub.consumers) for sub in self.subscriptions.values())

    def restore_subscriptions(self) -> None:
        """Take back every durable subscription the ledger's cursors remember (the topic just
        loaded): admin calls, stats and backlogs must see them before any consumer returns."""
        for name, cursor in self.ledger.cursors.items():
            # Replication cursors are the replicators' (self.replication), hidden as Pulsar hides them.
            if cursor.durable and name not in self.subscriptions and not is_replication_cursor(name):
                self._new_subscription(name, cursor, durable=True)

    def _new_subscription(self, name: str, cursor: ManagedCursor, durable: bool) -> Subscription:
        sub = Subscription(
            name,
            self.ledger,
            cursor,
            self.dispatch_info,
            durable=durable,
            partition=self.partition,
            limits=self.limits,
            compacted_view=self._compacted_view,
            rate_limiters=(self.dispatch_limiter, DispatchRateLimiter(lambda: self.dispatch_rates.of_subscription(name))),
            dispatch_rates=self.dispatch_rates,
        )
        self.subscriptions[name] = sub
        return sub

    async def remove_consumer(self, sub: Subscription, consumer: Consumer) -> None:
        sub.remove_consumer(consumer)
        if not sub.durable and not sub.consumers and self.subscriptions.get(sub.name) is sub:
            del self.subscriptions[sub.name]
            await sub.delete()

    async def create_subscription(self, name: str, position: Position | None) -> None:
        """Admin: create a durable subscription starting at `position` (None = latest)."""
        check_subscription_name(name)
        if name in self.subscriptions:
            from taureau.broker.resources import ConflictError

            raise ConflictError(f"subscription {name} already exists on {self.name}")
        initial = InitialPosition.EARLIEST if position == EARLIEST else InitialPosition.LATEST
        cursor = await self.ledger.open_cursor(name, initial)
        sub = self._new_subscription(name, cursor, durable=True)
        if position is None or position in (EARLIEST, LATEST):
            return
        try:
            await sub.reset_to(self.resolve_position(*position))
        except BaseException:
            await self._drop_new_subscription(sub)
            raise

    async def _drop_new_subscription(self, sub: Subscription) -> None:
        """Undo a subscription created by a request that fails: an error answer must leave
        no subscription (nor its cursor) behind."""
        if self.subscriptions.get(sub.name) is sub:
            del self.subscriptions[sub.name]
        await sub.delete()

    def check_unsubscribe(self, name: str, requester: Consumer | None = None, force: bool = False) -> None:
        """Raise unless `name` exists and (without force) has no consumer but `requester`."""
        check_no_other_consumers(self.get_subscription(name), requester, force)

    async def unsubscribe(self, name: str, requester: Consumer | None = None, force: bool = False) -> None:
        self.check_unsubscribe(name, requester, force)
        sub = self.subscriptions[name]
        if force:
            sub.disconnect_consumers()
        del self.subscriptions[name]
        await sub.delete()

    def get_subscription(self, name: str) -> Subscription:
        return subscription_named(self.subscriptions, name, self.name)

    # -- positions ---------------------------------------------------------------------------

    def resolve_position(self, ledger_id: int, entry_id: int) -> Position:
        """A client message id as a cursor position: earliest/latest sentinels resolved, a
        position past the last entry clamped to the end."""
        if ledger_id < 0 or (ledger_id, entry_id) == tuple(EARLIEST):
            return self.ledger.first_position
        end = self.ledger.last_confirmed.next()
        position = Position(ledger_id, max(entry_id, 0))
        # Past every stored entry (LATEST included): the end, as Pulsar clamps a reset.
        return end if position >= end else position

    async def position_for_time(self, timestamp_ms: int) -> Position:
        """First entry published at or after `timestamp_ms`; the end of the log if none."""
        found = await self.ledger.find_position(lambda entry: publish_time(entry.data) >= timestamp_ms)
        return found if found is not None else self.ledger.last_confirmed.next()

    async def last_message_id(self, compacted: bool = False) -> tuple[Position, int]:
        """(position, batch index) of the last message; entry id -1 when empty. A compacted
        reader whose view covers the whole topic is told the compacted view's last message
        (else it would wait for messages compaction removed)."""
        last = self.ledger.last_confirmed
        view = self._compacted_view() if compacted else None
        if view is not None and (last <= view.horizon or self.ledger.count_entries(view.horizon, last) == 0):
            kept = view.ledger.last_confirmed
            if kept.entry_id < 0 or view.ledger.entries_count == 0:
                return Position(last.ledger_id, -1), -1
            original = unwrap(await view.ledger.read_entry(kept))
            return original.position, batch_index_of_last(original.data)
        if last.entry_id < 0 or self.ledger.entries_count == 0:
            return Position(last.ledger_id, -1), -1
        entry = await self.ledger.read_entry(last)
        return last, batch_index_of_last(entry.data)

    # -- lifecycle ---------------------------------------------------------------------------

    def idle_for(self, now: float) -> float:
        """Seconds without a producer (active or waiting), a consumer or a compaction running,
        as far as the sweeps calling this can tell, and since the last request for the topic;
        0 while in use."""
        compacting = self.compaction is not None and self.compaction.running
        # Entries still to replicate keep the topic loaded: its replicators run only while it is.
        replicating = self.replication is not None and self.replication.backlog > 0
        if (self.producers or self.access.has_waiting or compacting or replicating
                or any(s.consumers for s in self.subscriptions.values())):
            self._idle_from = None
            return 0.0
        if self._idle_from is None:
            self._idle_from = now
        return now - max(self._idle_from, self.last_used)

    async def close(self) -> None:
        self.closed = True
        if self.replication is not None:
            await self.replication.close()
        if self.compaction is not None:
            await self.compaction.close()
        for sub in list(self.subscriptions.values()):
            await sub.close()
        if self.dedup is not None:
            try:
                await self.dedup.snapshot()
            except Exception:
                log.exception("dedup snapshot of %s failed at close", self.name)
        await self.ledger.close()

    def stats(self) -> dict:
        return {
            "msgInCounter": self.msg_in,
            "bytesInCounter": self.bytes_in,
            "msgOutCounter": sum(s.msg_out for s in self.subscriptions.values()),
            "storageSize": self.ledger.total_size,
            "backlogSize": self.ledger.estimated_backlog_size,
            "entriesCount": self.ledger.entries_count,
            "publishers": [p.stats() for p in self.producers.values()],
            "subscriptions": {name: s.stats() for name, s in self.subscriptions.items()},
            "deduplicationEnabled": self.dedup is not None,
            "replication": self.replication.stats() if self.replication is not None else {},
            **({"topicEpoch": self.access.epoch} if self.access.epoch >= 0 else {}),
        }
