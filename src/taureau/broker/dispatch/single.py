"""Exclusive and Failover subscriptions: one active consumer receives everything, in order."""

from __future__ import annotations

from taureau.broker.compaction.reader import CompactedReader
from taureau.broker.consumer import Consumer
from taureau.broker.dispatch.base import Dispatcher, DispatchItem, EntryInfoFn
from taureau.common.errors import ConsumerBusyError
from taureau.storage.managed_ledger.api import ManagedCursor, ManagedLedger


def check_exclusive(exclusive: bool, consumers: list[Consumer]) -> None:
    """An Exclusive subscription takes one consumer at a time."""
    if exclusive and consumers:
        raise ConsumerBusyError("Exclusive consumer is already connected")


def choose_active(consumers: list[Consumer], partition: int) -> Consumer | None:
    """The consumer that receives (rules in SingleActiveDispatcher's docstring); shared with
    the non-persistent dispatcher, so both kinds of topic pick the same one."""
    if not consumers:
        return None
    if partition >= 0:
        ordered = sorted(consumers, key=lambda c: (c.priority, c.name))
        return ordered[partition % len(ordered)]
    return min(consumers, key=lambda c: c.priority)


def announce_active(consumers: list[Consumer], active: Consumer) -> None:
    """Tell every Failover consumer whether it is the active one (ACTIVE_CONSUMER_CHANGE)."""
    for consumer in consumers:
        consumer.sink.send_active_consumer_change(consumer.consumer_id, consumer is active)


class SingleActiveDispatcher(Dispatcher):
    """Exclusive: at most one consumer. Failover: many, one active at a time.

    The active Failover consumer is, for a partition N of a partitioned topic, the N-th
    (mod count) of the consumers sorted by (priority, name), which spreads partitions over
    consumers; for a non-partitioned topic it is the first consumer by priority, then by
    attach order. When the active consumer changes, its unacked entries go to the new one
    and every consumer is told through ACTIVE_CONSUMER_CHANGE.
    """

    def __init__(
        self,
        ledger: ManagedLedger,
        cursor: ManagedCursor,
        entry_info: EntryInfoFn,
        *,
        exclusive: bool,
        partition: int = -1,
        compacted: CompactedReader | None = None,
    ) -> None:
        super().__init__(ledger, cursor, entry_info)
        self.compacted = compacted
        self.exclusive = exclusive
        self.partition = partition
        self.active: Consumer | None = None  # the one consumer that receives; owned here

    def add_consumer(self, consumer: Consumer) -> None:
        check_exclusive(self.exclusive, self.consumers)
        super().add_consumer(consumer)
        self._choose_active()

    def remove_consumer(self, consumer: Consumer) -> None:
        super().remove_consumer(consumer)
        self._choose_active()

    def _choose_active(self) -> None:
        active = choose_active(self.consumers, self.partition)
        if active is None:
            self.active = None
            return
        if active is self.active:
            return
        previous, self.active = self.active, active
        if previous is not None and previous in self.consumers:
            self._redeliver_pending(previous, previous.settle_all())
        if not self.exclusive:
            announce_active(self.consumers, active)
        self.wake()

    def _available_permits(self) -> int:
        active = self.active
        return active.permits if active is not None and active.ready else 0

    def _assign(self, items: list[DispatchItem]) -> list[DispatchItem]:
        active = self.active
        for index, item in enumerate(items):
            if active is None or not active.ready:
                return items[index:]
            self._deliver(active, item)
        return []
