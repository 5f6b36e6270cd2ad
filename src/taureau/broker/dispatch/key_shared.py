"""Key_Shared subscriptions: entries with the same key go to the same consumer, in order.

A key's hash is Murmur3 (x86, 32 bit, seed 0) of the key's bytes, mod 65536, as Pulsar's
(a message without a key hashes as b"NONE_KEY", as there), so STICKY ranges a client chooses
cover the same keys on both.
AUTO_SPLIT places consumers on a consistent-hash ring (100 points each) so a joining or
leaving consumer moves few keys. STICKY consumers bring their own hash ranges, which must
not overlap.

Ordering across a membership change: when consumer C joins while entries are in flight,
keys that move to C may still have unacked entries at their old consumer. C gets
`max_read_position` = the cursor's read position at join time and is sent only entries
before it until the mark-delete position passes it (Pulsar's "recently joined consumers").
Within a round, once an entry for a consumer is held, every later entry for that consumer
is held too, so per-key order survives permits running out.
"""

from __future__ import annotations

import bisect
from typing import Any

import mmh3

from taureau.broker.consumer import Consumer
from taureau.broker.dispatch.base import Dispatcher, DispatchItem
from taureau.common.errors import BrokerError

HASH_RANGE = 65536
RING_POINTS = 100
NONE_KEY = b"NONE_KEY"  # what Pulsar hashes for a message without a key


class ConsumerAssignError(BrokerError):
    """A STICKY consumer's hash ranges are missing, out of range or overlap another's."""


def key_hash(key: bytes | None) -> int:
    # Pulsar masks the sign bit, then takes the hash mod 65536: the low 16 bits.
    return mmh3.hash(NONE_KEY if key is None else key, 0, signed=False) % HASH_RANGE


class KeySelector:
    """Which consumer owns a key: STICKY ranges or the AUTO_SPLIT ring (module docstring).
    Shared by the persistent and the non-persistent Key_Shared dispatchers."""

    def __init__(self, sticky: bool) -> None:
        self.sticky = sticky
        self._ring_points: list[int] = []  # sorted hash points of the AUTO_SPLIT ring
        self._ring_owners: list[Consumer] = []  # consumer at the same index as its point
        self._consumers: list[Consumer] = []  # the dispatcher's list, as of the last rebuild

    def check_ranges(self, consumer: Consumer, consumers: list[Consumer]) -> None:
        """Raise unless a STICKY `consumer` brings valid ranges no one in `consumers` holds."""
        if not self.sticky:
            return
        ranges = consumer.hash_ranges or []
        if not ranges:
            raise ConsumerAssignError("a STICKY Key_Shared consumer must give hash ranges")
        for start, end in ranges:
            if not 0 <= start <= end < HASH_RANGE:
                raise ConsumerAssignError(f"hash range [{start}, {end}] is outside 0..{HASH_RANGE - 1}")
            for other in consumers:
                for o_start, o_end in other.hash_ranges or []:
                    if start <= o_end and o_start <= end:
                        raise ConsumerAssignError(
                            f"hash range [{start}, {end}] overlaps consumer {other.name}'s [{o_start}, {o_end}]"
                        )

    def rebuild(self, consumers: list[Consumer]) -> None:
        """The consumers changed: place them again."""
        self._consumers = consumers
        if self.sticky:
            return
        points = []
        for index, consumer in enumerate(consumers):
            for point in range(RING_POINTS):
                points.append((key_hash(f"{consumer.name}#{index}#{point}".encode()), id(consumer), consumer))
        points.sort(key=lambda p: (p[0], p[1]))
        self._ring_points = [p[0] for p in points]
        self._ring_owners = [p[2] for p in points]

    def select(self, key: bytes | None) -> Consumer | None:
        h = key_hash(key)
        if self.sticky:
            for consumer in self._consumers:
                for start, end in consumer.hash_ranges or []:
                    if start <= h <= end:
                        return consumer
            return None
        if not self._ring_points:
            return None
        index = bisect.bisect_left(self._ring_points, h)
        return self._ring_owners[index % len(self._ring_owners)]


class KeySharedDispatcher(Dispatcher):
    tracks_unacked = True
    delays_delivery = True

    def __init__(self, *args: Any, sticky: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # Dispatcher's: ledger, cursor, entry_info, limits
        self.selector = KeySelector(sticky)
        self._blocked: set[int] = set()  # ids of consumers holding entries this round

    def add_consumer(self, consumer: Consumer) -> None:
        self.selector.check_ranges(consumer, self.consumers)
        if not self.selector.sticky and self.cursor.read_position > self.cursor.mark_delete_position.next():
            consumer.max_read_position = self.cursor.read_position
        super().add_consumer(consumer)
        self.selector.rebuild(self.consumers)

    def remove_consumer(self, consumer: Consumer) -> None:
        super().remove_consumer(consumer)
        self.selector.rebuild(self.consumers)

    def select(self, key: bytes | None) -> Consumer | None:
        return self.selector.select(key)

    def _begin_round(self) -> None:
        self._blocked.clear()
        mark_delete_next = self.cursor.mark_delete_position.next()
        for consumer in self.consumers:
            if consumer.max_read_position is not None and mark_delete_next >= consumer.max_read_position:
                consumer.max_read_position = None

    def _assign(self, items: list[DispatchItem]) -> list[DispatchItem]:
        held = []
        for item in items:
            consumer = self.select(item.key)
            if (
                consumer is None
                or id(consumer) in self._blocked
                or not consumer.ready
                or (
                    consumer.max_read_position is not None
                    and item.entry.position >= consumer.max_read_position
                )
            ):
                if consumer is not None:
                    self._blocked.add(id(consumer))
                held.append(item)
                continue
            self._deliver(consumer, item)
        return held
