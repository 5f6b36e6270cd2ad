"""Consumer: one client consumer attached to a subscription; owns its permits and unacked entries."""

from __future__ import annotations

import time
from typing import Protocol

from taureau.storage.position import Position


class ConsumerSink(Protocol):
    """What a consumer needs from its connection: the broker never touches a socket itself."""

    def send_message(
        self,
        consumer_id: int,
        position: Position,
        partition: int,
        redelivery_count: int,
        data: bytes,
        ack_set: tuple[int, ...] = (),
    ) -> None: ...

    def send_close_consumer(self, consumer_id: int) -> None: ...

    def send_active_consumer_change(self, consumer_id: int, is_active: bool) -> None: ...

    @property
    def remote_address(self) -> str: ...

    @property
    def writable(self) -> bool:
        """False while the socket's send buffer is over its high-water mark."""
        ...


class Consumer:
    """Per-consumer dispatch state. Only the subscription's dispatcher changes `permits`
    and, through the methods below, `pending`; the connection only reads them for stats.

    With `max_unacked` set (Shared and Key_Shared, as Pulsar's maxUnackedMessagesPerConsumer),
    a consumer holding that many unacknowledged messages is `blocked` (not `ready`) until
    acks or redeliveries bring it down to half.
    """

    def __init__(
        self,
        *,
        consumer_id: int,
        name: str,
        sink: ConsumerSink,
        partition: int = -1,
        priority: int = 0,
        metadata: dict[str, str] | None = None,
        hash_ranges: list[tuple[int, int]] | None = None,
    ) -> None:
        self.consumer_id = consumer_id
        self.name = name
        self.sink = sink
        self.partition = partition  # topic partition index stamped on message ids, -1 if none
        self.priority = priority  # lower value = served first (Shared)
        self.metadata = metadata or {}
        self.hash_ranges = hash_ranges  # Key_Shared STICKY ranges, inclusive, or None (AUTO_SPLIT)
        self.permits = 0  # messages the client can still take (FLOW adds, dispatch debits)
        self.pending: dict[Position, int] = {}  # entries sent and not acked -> messages in entry
        self.unacked_messages = 0  # sum of pending's values, kept as it changes
        self.max_unacked = 0  # 0: unbounded; set by the dispatcher when the consumer joins
        self.blocked = False  # hit max_unacked; cleared at half of it
        self.connected_since = time.time()
        # Key_Shared AUTO_SPLIT ordering: entries at or after this position may reach this
        # consumer only once the mark-delete position passes it (set by the dispatcher).
        self.max_read_position: Position | None = None
        self.msg_out = 0
        self.bytes_out = 0
        self.msg_acked = 0

    @property
    def ready(self) -> bool:
        """May take another entry: it has permits and its connection is not backed up
        (permits bound messages, not bytes: 1000 permits of 5 MB messages would otherwise
        pile up 5 GB in a slow client's send buffer)."""
        return self.permits > 0 and self.sink.writable and not self.blocked

    def deliver(
        self, position: Position, data: bytes, messages: int, redelivery_count: int, ack_set: tuple[int, ...] = ()
    ) -> None:
        """Hand one entry to the client and record it as pending; `ack_set`: the messages of a
        partly acknowledged batch still due."""
        self.unacked_messages += messages - self.pending.get(position, 0)
        self.pending[position] = messages
        if self.max_unacked and self.unacked_messages >= self.max_unacked:
            self.blocked = True
        self.send(position, data, messages, redelivery_count, ack_set)

    def send(
        self, position: Position, data: bytes, messages: int, redelivery_count: int = 0, ack_set: tuple[int, ...] = ()
    ) -> None:
        """Hand one entry to the client, spending permits, without recording it as pending:
        what a non-persistent topic sends is never redelivered, so it is not remembered."""
        self.permits -= messages
        self.msg_out += messages
        self.bytes_out += len(data)
        self.sink.send_message(self.consumer_id, position, self.partition, redelivery_count, data, ack_set)

    def settle(self, position: Position) -> bool:
        """Forget one pending entry (acked, or going back for redelivery); False if not pending."""
        messages = self.pending.pop(position, None)
        if messages is None:
            return False
        self._unacked_dropped(messages)
        return True

    def settle_up_to(self, position: Position) -> None:
        """Forget every pending entry at or before `position` (a cumulative ack)."""
        for pending in [p for p in self.pending if p <= position]:
            self._unacked_dropped(self.pending.pop(pending))

    def settle_all(self) -> list[Position]:
        """Forget every pending entry; return their positions."""
        positions = list(self.pending)
        self.pending.clear()
        self.unacked_messages = 0
        self.blocked = False
        return positions

    def _unacked_dropped(self, messages: int) -> None:
        self.unacked_messages -= messages
        if self.blocked and self.unacked_messages <= self.max_unacked // 2:
            self.blocked = False

    def stats(self) -> dict:
        return {
            "consumerName": self.name,
            "availablePermits": self.permits,
            "unackedMessages": self.unacked_messages,
            "blockedConsumerOnUnackedMsgs": self.blocked,
            "msgOutCounter": self.msg_out,
            "bytesOutCounter": self.bytes_out,
            "address": self.sink.remote_address,
            "connectedSince": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.connected_since)),
            "metadata": self.metadata,
        }
