"""Exclusive and Failover subscriptions: one active consumer receives everything, in order."""

from __future__ import annotations

from taureau.broker.compaction.reader import CompactedReader
from taureau.broker.consumer import Consumer
from taureau.broker.dispatch.base import Dispatcher, DispatchItem, EntryInfoFn
from taureau.common.errors import ConsumerBusyError
from taureau.storage.managed_ledger.api import ManagedCursor, ManagedLedger


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
        if self.exclusive and self.consumers:
            raise ConsumerBusyError("Exclusive consumer is already connected")
        super().add_consumer(consumer)
        self._choose_active()

    def remove_consumer(self, consumer: Consumer) -> None:
        super().remove_consumer(consumer)
        self._choose_active()

    def _choose_active(self) -> None:
        if not self.consumers:
            self.active = None
            return
        if self.partition >= 0:
            ordered = sorted(self.consumers, key=lambda c: (c.priority, c.name))
            active = ordered[self.partition % len(ordered)]
        else:
            active = min(self.consumers, key=lambda c: c.priority)
        if active is self.active:
            return
        previous, self.active = self.active, active
        if previous is not None and previous in self.consumers:
            self._redeliver_pending(previous, previous.settle_all())
        if not self.exclusive:
            for consumer in self.consumers:
                consumer.sink.send_active_consumer_change(consumer.consumer_id, consumer is active)
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
