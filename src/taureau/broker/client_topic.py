"""What a client connection needs of a topic and of a subscription, whichever kind of topic
serves it: persistent (topic.py, subscription.py) or non-persistent (nonpersistent/).
control.py, session.py and connection.py see topics only through these protocols."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from taureau.broker.access import Admitted, Queued
from taureau.broker.consumer import Consumer
from taureau.broker.producer import Producer
from taureau.broker.rate_limit import PublishRateLimiter
from taureau.common.names import TopicName
from taureau.storage.managed_ledger.api import InitialPosition
from taureau.storage.position import Position

if TYPE_CHECKING:
    from taureau.broker.subscription import SubType
    from taureau.broker.topic import PublishItem


class ClientSubscription(Protocol):
    name: str
    read_compacted: bool

    @property
    def consumers(self) -> list[Consumer]: ...

    @property
    def mark_delete_position(self) -> Position: ...

    def flow(self, consumer: Consumer, permits: int) -> None: ...

    def notify_new_entries(self) -> None: ...

    def remove_consumer(self, consumer: Consumer) -> None: ...

    def redeliver(self, consumer: Consumer, positions: list[Position] | None) -> None: ...

    def ack_individual(self, consumer: Consumer, positions: list[Position]) -> None: ...

    def ack_batch(self, consumer: Consumer, position: Position, unacked: list[int]) -> None: ...

    def ack_cumulative(self, consumer: Consumer, position: Position) -> None: ...

    async def reset_to(self, position: Position) -> None: ...


S = TypeVar("S", bound=ClientSubscription)


class ClientTopic(Protocol[S]):
    """Generic in its subscription type: a topic takes back only subscriptions it made."""

    name: TopicName
    publish_limiter: PublishRateLimiter | None

    @property
    def partition(self) -> int: ...

    def is_idle(self) -> bool: ...

    def check_producer(self, producer: Producer, requested_epoch: int | None = None) -> None: ...

    async def add_producer(self, producer: Producer, requested_epoch: int | None = None) -> Admitted | Queued: ...

    def remove_producer(self, producer: Producer) -> None: ...

    def last_sequence_id(self, producer_name: str) -> int: ...

    def publish_many(self, items: list[PublishItem]) -> Awaitable[Sequence[Position | None]]: ...

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
    ) -> S: ...

    async def remove_consumer(self, sub: S, consumer: Consumer) -> None: ...

    def check_unsubscribe(self, name: str, requester: Consumer | None = None, force: bool = False) -> None: ...

    async def unsubscribe(self, name: str, requester: Consumer | None = None, force: bool = False) -> None: ...

    def resolve_position(self, ledger_id: int, entry_id: int) -> Position: ...

    async def position_for_time(self, timestamp_ms: int) -> Position: ...

    async def last_message_id(self, compacted: bool = False) -> tuple[Position, int]: ...


AnyClientTopic = ClientTopic[Any]  # what a session holds: either kind of topic
