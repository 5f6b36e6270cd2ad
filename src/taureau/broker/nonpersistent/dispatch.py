"""Dispatchers of non-persistent subscriptions: each published entry goes to one consumer
picked as the persistent dispatchers pick (the selection is theirs, shared), or nowhere.

There is no read loop, replay set or pending list: `send` runs in the publish call, and an
entry the chosen consumer cannot take now (no permits, or its connection's send buffer is
full) is dropped for this subscription, as Pulsar does. Nothing waits, so nothing grows.
"""

from __future__ import annotations

from taureau.broker.consumer import Consumer
from taureau.broker.dispatch.key_shared import KeySelector
from taureau.broker.dispatch.shared import RoundRobin
from taureau.broker.dispatch.single import announce_active, check_exclusive, choose_active
from taureau.storage.position import Position


class NonPersistentDispatcher:
    """Owns the consumer list of one subscription; subclasses pick the consumer of an entry."""

    def __init__(self) -> None:
        self.consumers: list[Consumer] = []  # attach order; owned here

    def add_consumer(self, consumer: Consumer) -> None:
        self._check_new(consumer)
        self.consumers.append(consumer)
        self._consumers_changed()

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        self._consumers_changed()

    def _check_new(self, consumer: Consumer) -> None:
        """Raise if `consumer` may not join (nothing changed then)."""

    def _consumers_changed(self) -> None:
        """Hook: a consumer joined or left."""

    def _pick(self, key: bytes | None) -> Consumer | None:
        raise NotImplementedError

    def send(self, position: Position, data: bytes, messages: int, key: bytes | None) -> bool:
        """Deliver one entry (a batch goes whole); False when it is dropped."""
        consumer = self._pick(key)
        if consumer is None or not consumer.ready:
            return False
        consumer.send(position, data, messages)
        return True


class SingleActive(NonPersistentDispatcher):
    """Exclusive and Failover: the active consumer takes everything it has room for."""

    def __init__(self, *, exclusive: bool, partition: int) -> None:
        super().__init__()
        self.exclusive = exclusive
        self.partition = partition
        self.active: Consumer | None = None

    def _check_new(self, consumer: Consumer) -> None:
        check_exclusive(self.exclusive, self.consumers)

    def _consumers_changed(self) -> None:
        active = choose_active(self.consumers, self.partition)
        changed = active is not self.active
        self.active = active
        if changed and active is not None and not self.exclusive:
            announce_active(self.consumers, active)

    def _pick(self, key: bytes | None) -> Consumer | None:
        return self.active


class Shared(NonPersistentDispatcher):
    def __init__(self) -> None:
        super().__init__()
        self._round_robin = RoundRobin()

    def _pick(self, key: bytes | None) -> Consumer | None:
        return self._round_robin.pick(self.consumers)


class KeyShared(NonPersistentDispatcher):
    """Each key goes to the consumer that owns its hash; dropped if that one has no room
    (no other consumer takes it: a key stays with its owner)."""

    def __init__(self, *, sticky: bool) -> None:
        super().__init__()
        self.selector = KeySelector(sticky)

    def _check_new(self, consumer: Consumer) -> None:
        self.selector.check_ranges(consumer, self.consumers)

    def _consumers_changed(self) -> None:
        self.selector.rebuild(self.consumers)

    def _pick(self, key: bytes | None) -> Consumer | None:
        return self.selector.select(key)
