"""A non-persistent subscription: a name, its consumers and their dispatcher. No cursor: it
holds no message, so acks are accepted and ignored, a seek has nothing to move (Pulsar
answers success), and there is no backlog."""

from __future__ import annotations

from taureau.broker.consumer import Consumer
from taureau.broker.nonpersistent.dispatch import KeyShared, NonPersistentDispatcher, Shared, SingleActive
from taureau.broker.nonpersistent.meter import Meter
from taureau.broker.subscription import SubType
from taureau.common.errors import ConsumerBusyError, NotAllowedError
from taureau.storage.position import Position

# What a non-persistent topic stamps on every message, in SEND_RECEIPTs and to consumers
# alike, as Pulsar does: there is no ledger, so no position.
SYNTHETIC_POSITION = Position(0, 0)
NO_POSITION = Position(-1, -1)


class NonPersistentSubscription:
    def __init__(self, name: str, *, partition: int, durable: bool) -> None:
        self.name = name
        self.partition = partition
        self.durable = durable  # what the client asked for; nothing survives either way
        self.read_compacted = False  # never: there is nothing compacted to read
        self.sub_type: SubType | None = None
        self.dispatcher: NonPersistentDispatcher | None = None  # for the current type; owned here
        self.msg_out = Meter()
        self.bytes_out = Meter()
        self.dropped = Meter()  # messages that found no consumer with room (Pulsar's msgDropRate)

    @property
    def consumers(self) -> list[Consumer]:
        return self.dispatcher.consumers if self.dispatcher is not None else []

    @property
    def mark_delete_position(self) -> Position:
        return NO_POSITION

    def _make_dispatcher(self, sub_type: SubType, sticky: bool) -> NonPersistentDispatcher:
        if sub_type in (SubType.EXCLUSIVE, SubType.FAILOVER):
            return SingleActive(exclusive=sub_type == SubType.EXCLUSIVE, partition=self.partition)
        if sub_type == SubType.SHARED:
            return Shared()
        return KeyShared(sticky=sticky)

    def add_consumer(self, consumer: Consumer, sub_type: SubType, sticky: bool, read_compacted: bool) -> None:
        if read_compacted:
            raise NotAllowedError("read_compacted is only allowed on persistent topics")
        if self.consumers and sub_type != self.sub_type:
            current = self.sub_type.name if self.sub_type is not None else "of another type"
            raise ConsumerBusyError(f"subscription {self.name} is {current}, cannot attach a {sub_type.name} consumer")
        if self.dispatcher is None or not self.consumers:
            dispatcher = self._make_dispatcher(sub_type, sticky)
            dispatcher.add_consumer(consumer)  # may refuse (STICKY ranges): nothing changed then
            self.dispatcher, self.sub_type = dispatcher, sub_type
            return
        self.dispatcher.add_consumer(consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        if self.dispatcher is not None:
            self.dispatcher.remove_consumer(consumer)

    def dispatch(self, data: bytes, messages: int, key: bytes | None) -> bool:
        """One published entry: to a consumer with room (True), or counted as dropped."""
        dispatcher = self.dispatcher
        if dispatcher is not None and dispatcher.send(SYNTHETIC_POSITION, data, messages, key):
            self.msg_out.add(messages)
            self.bytes_out.add(len(data))
            return True
        self.dropped.add(messages)
        return False

    def flow(self, consumer: Consumer, permits: int) -> None:
        consumer.permits += permits

    def notify_new_entries(self) -> None:
        """Nothing waits to be dispatched: a consumer ready again gets the next publish."""

    def redeliver(self, consumer: Consumer, positions: list[Position] | None) -> None:
        """Nothing was kept to send again."""

    def ack_individual(self, consumer: Consumer, positions: list[Position]) -> None:
        consumer.msg_acked += len(positions)

    def ack_batch(self, consumer: Consumer, position: Position, unacked: list[int]) -> None:
        """Accepted and ignored."""

    def ack_cumulative(self, consumer: Consumer, position: Position) -> None:
        if self.sub_type in (SubType.SHARED, SubType.KEY_SHARED):
            raise NotAllowedError("cumulative ack is not allowed on Shared or Key_Shared subscriptions")

    async def reset_to(self, position: Position) -> None:
        """A seek: nothing is stored to go back (or forward) to, so it changes nothing and
        succeeds, as Pulsar answers it; consumers keep getting what is published next."""

    def disconnect_consumers(self) -> None:
        for consumer in list(self.consumers):
            consumer.sink.send_close_consumer(consumer.consumer_id)
            self.remove_consumer(consumer)

    def tick(self, now: float) -> None:
        for meter in (self.msg_out, self.bytes_out, self.dropped):
            meter.tick(now)

    def stats(self) -> dict:
        consumers = self.consumers
        return {
            "type": self.sub_type.name.title() if self.sub_type is not None else "None",
            "msgRateOut": self.msg_out.rate,
            "msgThroughputOut": self.bytes_out.rate,
            "msgOutCounter": self.msg_out.count,
            "bytesOutCounter": self.bytes_out.count,
            "msgDropRate": self.dropped.rate,
            "msgDropCounter": self.dropped.count,  # Taureau's: the total behind msgDropRate
            "msgBacklog": 0,
            "isDurable": self.durable,
            "consumers": [c.stats() for c in consumers],
        }
