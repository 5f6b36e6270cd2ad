"""Subscription: a named cursor on a topic plus the dispatcher that feeds its consumers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container
from enum import IntEnum

from taureau.broker.compaction.reader import CompactedReader
from taureau.broker.compaction.view import CompactedView
from taureau.broker.consumer import Consumer
from taureau.broker.dispatch.base import Dispatcher, DispatchLimits, EntryInfoFn
from taureau.broker.dispatch.key_shared import KeySharedDispatcher
from taureau.broker.dispatch.rate import DispatchRateLimiter, DispatchRates
from taureau.broker.dispatch.shared import SharedDispatcher
from taureau.broker.dispatch.single import SingleActiveDispatcher
from taureau.common.errors import ConsumerBusyError, NotAllowedError
from taureau.storage.managed_ledger.api import ManagedCursor, ManagedLedger
from taureau.storage.position import Position

log = logging.getLogger(__name__)


class SubType(IntEnum):
    """Pulsar's CommandSubscribe.SubType values."""

    EXCLUSIVE = 0
    SHARED = 1
    FAILOVER = 2
    KEY_SHARED = 3


class Subscription:
    """Owns exactly one cursor and one dispatcher. The subscription type is fixed while
    consumers are attached; a new type is taken when the last consumer has left."""

    def __init__(
        self,
        name: str,
        ledger: ManagedLedger,
        cursor: ManagedCursor,
        entry_info: EntryInfoFn,
        *,
        durable: bool,
        partition: int = -1,
        limits: DispatchLimits = DispatchLimits(),
        compacted_view: Callable[[], CompactedView | None] | None = None,
        rate_limiters: tuple[DispatchRateLimiter, ...] = (),
        dispatch_rates: DispatchRates | None = None,
    ) -> None:
        self.limits = limits
        self.rate_limiters = rate_limiters  # the topic's dispatch rate and this subscription's
        self.dispatch_rates = dispatch_rates  # the topic's rates, which those limiters read
        self._compacted_view = compacted_view  # the topic's current compacted view, if it has one
        self.read_compacted = False  # whether the current dispatcher reads the compacted view
        self.name = name
        self.ledger = ledger
        self.cursor = cursor  # the durable (or reader's non-durable) position; owned here
        self.entry_info = entry_info
        self.durable = durable
        self.partition = partition
        self.sub_type: SubType | None = None
        self.dispatcher: Dispatcher | None = None  # created for the current type
        self.msg_out_total = 0
        # Positions acknowledged in transactions not ended yet (broker.transactions owns them):
        # never dispatched until the transaction aborts.
        self.pending_acks: Container[Position] = frozenset()

    @property
    def consumers(self) -> list[Consumer]:
        return self.dispatcher.consumers if self.dispatcher else []

    @property
    def mark_delete_position(self) -> Position:
        return self.cursor.mark_delete_position

    def _make_dispatcher(self, sub_type: SubType, sticky: bool, read_compacted: bool,
                         from_earliest: bool = False) -> Dispatcher:
        if sub_type in (SubType.EXCLUSIVE, SubType.FAILOVER):
            compacted = None
            if read_compacted and self._compacted_view is not None:
                # From the compacted view's start, even when the topic's own entries up to
                # the horizon are gone (Pulsar's readFromEarliest): a durable subscription
                # only while it has acknowledged nothing.
                untouched = not self.durable or self.cursor.mark_delete_position < self.ledger.first_position
                compacted = CompactedReader(self._compacted_view, from_start=from_earliest and untouched)
            return SingleActiveDispatcher(
                self.ledger,
                self.cursor,
                self.entry_info,
                exclusive=sub_type == SubType.EXCLUSIVE,
                partition=self.partition,
                compacted=compacted,
            )
        if sub_type == SubType.SHARED:
            return SharedDispatcher(self.ledger, self.cursor, self.entry_info, self.limits)
        return KeySharedDispatcher(self.ledger, self.cursor, self.entry_info, self.limits, sticky=sticky)

    async def add_consumer(
        self, consumer: Consumer, sub_type: SubType, sticky: bool = False, read_compacted: bool = False,
        from_earliest: bool = False,
    ) -> None:
        if read_compacted and sub_type not in (SubType.EXCLUSIVE, SubType.FAILOVER):
            raise NotAllowedError("read_compacted is only allowed on Exclusive and Failover subscriptions")
        if self.dispatcher is not None and self.dispatcher.consumers:
            if sub_type != self.sub_type:
                current = self.sub_type.name if self.sub_type is not None else "of another type"
                raise ConsumerBusyError(
                    f"subscription {self.name} is {current}, cannot attach a {sub_type.name} consumer"
                )
        elif (self.dispatcher is None or sub_type != self.sub_type or sub_type == SubType.KEY_SHARED
              or read_compacted != self.read_compacted):
            previous = self.dispatcher
            self.dispatcher = self._make_dispatcher(sub_type, sticky, read_compacted, from_earliest)
            self.dispatcher.throttle.limiters = self.rate_limiters
            self.dispatcher.throttle.rates = self.dispatch_rates
            self.dispatcher.pending_acks = self.pending_acks
            self.read_compacted = read_compacted
            if previous is not None:
                await previous.close()
                self.dispatcher.adopt_redelivery_counts(previous)
            self.sub_type = sub_type
        self.dispatcher.add_consumer(consumer)
        self.cursor.mark_active(int(time.time() * 1000))  # subscription expiration counts from the last

    def remove_consumer(self, consumer: Consumer) -> None:
        if self.dispatcher is not None:
            self.msg_out_total += consumer.msg_out
            self.dispatcher.remove_consumer(consumer)
            self.cursor.mark_active(int(time.time() * 1000))

    def flow(self, consumer: Consumer, permits: int) -> None:
        if self.dispatcher is not None:
            self.dispatcher.flow(consumer, permits)

    def redeliver(self, consumer: Consumer, positions: list[Position] | None) -> None:
        if self.dispatcher is not None:
            self.dispatcher.redeliver(consumer, positions)

    # Acks are synchronous (the cursor saves in the background): the connection applies an
    # ACK as it reads it, like a FLOW, when no control command is ahead of it.

    def ack_individual(self, consumer: Consumer, positions: list[Position]) -> None:
        if self.dispatcher is not None:
            self.dispatcher.acked(consumer, positions)
        consumer.msg_acked += len(positions)
        self.cursor.delete_now(positions)

    def ack_batch(self, consumer: Consumer, position: Position, unacked: list[int]) -> None:
        """A batch-index ack: `unacked` are the batch's messages still not acknowledged."""
        self.cursor.ack_batch_indexes_now(position, unacked)
        if self.cursor.is_acked(position):  # that was its last message
            if self.dispatcher is not None:
                self.dispatcher.acked(consumer, [position])
            consumer.msg_acked += 1

    def hold_pending(self, pending: Container[Position]) -> None:
        """Skip the positions in `pending` (transactional acks) when dispatching."""
        self.pending_acks = pending
        if self.dispatcher is not None:
            self.dispatcher.pending_acks = pending

    async def ack_committed(self, positions: list[Position]) -> None:
        """A committed transaction's acknowledgements (acking twice is harmless)."""
        if self.dispatcher is not None:
            self.dispatcher.acked(None, positions)
        await self.cursor.delete(positions)

    def requeue(self, positions: list[Position]) -> None:
        """An aborted transaction's acknowledgements: deliver those positions again."""
        if self.dispatcher is not None:
            self.dispatcher.requeue(positions)

    def ack_cumulative(self, consumer: Consumer, position: Position) -> None:
        if self.sub_type in (SubType.SHARED, SubType.KEY_SHARED):
            raise NotAllowedError("cumulative ack is not allowed on Shared or Key_Shared subscriptions")
        if self.dispatcher is not None:
            self.dispatcher.acked_cumulative(consumer, position)
        self.cursor.mark_delete_now(position)

    def notify_new_entries(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.notify_new_entries()

    def disconnect_consumers(self) -> None:
        """Ask every client consumer to reconnect (after a seek), as Pulsar does."""
        for consumer in list(self.consumers):
            consumer.sink.send_close_consumer(consumer.consumer_id)
            self.remove_consumer(consumer)

    async def reset_to(self, position: Position) -> None:
        """Make `position` the next entry delivered, and restart delivery from there."""
        dispatcher = self.dispatcher
        if dispatcher is not None:
            await dispatcher.pause()
        try:
            self.disconnect_consumers()
            await self.cursor.reset(position)
        finally:
            if dispatcher is not None:
                dispatcher.reset()
                dispatcher.resume()

    async def expire_to(self, position: Position) -> None:
        """Acknowledge everything up to `position` (message TTL): as a cumulative ack."""
        await self.cursor.mark_delete(position)
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def skip(self, count: int) -> None:
        await self.cursor.skip_entries(count)
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def clear_backlog(self) -> None:
        await self.cursor.clear_backlog()
        if self.dispatcher is not None:
            self.dispatcher.reset()

    async def close(self) -> None:
        """Stop dispatching and detach the cursor (a durable one keeps its state)."""
        if self.dispatcher is not None:
            await self.dispatcher.close()
        await self.cursor.close()

    async def delete(self) -> None:
        """Stop dispatching and delete the cursor with its state."""
        if self.dispatcher is not None:
            await self.dispatcher.close()
        if self.durable:
            await self.ledger.delete_cursor(self.name)
        else:
            await self.cursor.close()

    @property
    def msg_out(self) -> int:
        """Messages dispatched, by consumers still attached and by those gone."""
        return self.msg_out_total + sum(c.msg_out for c in self.consumers)

    def stats(self) -> dict:
        consumers = self.consumers
        return {
            "type": self.sub_type.name.title() if self.sub_type is not None else "None",
            "msgBacklog": self.cursor.backlog,
            "unackedMessages": sum(c.unacked_messages for c in consumers),
            "msgDelayed": len(self.dispatcher.delayed) if self.dispatcher else 0,
            "blockedSubscriptionOnUnackedMsgs": self.dispatcher.blocked if self.dispatcher else False,
            "msgOutCounter": self.msg_out,
            "isDurable": self.durable,
            "consumers": [c.stats() for c in consumers],
            "markDeletePosition": str(self.cursor.mark_delete_position),
            "readPosition": str(self.cursor.read_position),
        }
