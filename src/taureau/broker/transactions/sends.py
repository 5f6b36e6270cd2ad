"""Transactional SENDs on the publish path: told apart, checked, stored in the buffer.

The connection groups a read's SENDs per topic and stores them in one task (connection.py);
`store` is that step. Without a transactional SEND among them it is `publish_many`, unchanged.
A transactional SEND is admitted (its transaction open, its topic added to it, room in the
buffer) just before it is stored, in the same task, so a decision to end the transaction waits
for exactly the SENDs admitted before it. A refused one gets a `TxnRefused` in its place: the
connection answers SEND_ERROR(NotAllowedError), with which Pulsar clients fail that message
alone; nothing of it is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, NamedTuple, cast

from taureau.broker.error_codes import ServerError, server_error
from taureau.broker.producer import Producer
from taureau.broker.transactions.model import TxnId
from taureau.common.errors import TaureauError
from taureau.storage.position import Position

if TYPE_CHECKING:
    from taureau.broker.client_topic import AnyClientTopic
    from taureau.broker.topic import PublishItem
    from taureau.broker.transactions.coordinator import TransactionCoordinator


class TxnSend(NamedTuple):
    """A SEND inside a transaction (the fields of PublishItem, and the transaction)."""

    producer: Producer
    data: bytes
    sequence_id: int
    highest_sequence_id: int
    messages: int
    txn: TxnId


class TxnRefused(NamedTuple):
    code: int
    reason: str


Stored = Position | None | TxnRefused


def store(
    topic: AnyClientTopic,
    items: list[PublishItem | TxnSend],
    coordinator: TransactionCoordinator | None,
) -> Awaitable[Sequence[Stored]]:
    """Store `items` (plain ones in the topic, transactional ones in the buffer); a result
    per item, in item order.

    Without a transactional SEND (the hot path) this is the topic's publish_many itself, not
    a coroutine around it: each layer of the publish chain is a frame created, suspended and
    resumed per publish."""
    if TxnSend not in map(type, items):  # no generator per publish
        return topic.publish_many(items)  # type: ignore[arg-type]  # no TxnSend here
    return _store_mixed(topic, items, coordinator)


async def _store_mixed(
    topic: AnyClientTopic,
    items: list[PublishItem | TxnSend],
    coordinator: TransactionCoordinator | None,
) -> list[Stored]:
    name = str(topic.name)
    results: list[Stored | None] = [None] * len(items)
    work = []
    plain = [item for item in items if not isinstance(item, TxnSend)]
    for index, item in enumerate(items):
        if not isinstance(item, TxnSend):
            continue
        if coordinator is None:
            results[index] = TxnRefused(ServerError.NotAllowedError, "Transactions are not enabled.")
            continue
        if topic.name.domain != "persistent":
            # As Pulsar: a transaction's messages wait in durable storage until it ends.
            results[index] = TxnRefused(
                ServerError.NotAllowedError, "Transactions are not supported on non-persistent topics."
            )
            continue
        try:
            coordinator.admit_send(item.txn, name, len(item.data))
        except TaureauError as exc:
            # Every refusal is NotAllowedError on the wire: any other code makes Pulsar clients
            # drop the connection and send the message again, forever.
            results[index] = TxnRefused(ServerError.NotAllowedError, f"{server_error(exc).name}: {exc}")
            continue
        work.append((index, coordinator.store_send(item.txn, name, item.data, item.messages)))
    # Everything admitted runs to its end, even when another part fails: an admitted SEND
    # must be counted out of its transaction before the transaction can end.
    outcomes = await asyncio.gather(
        topic.publish_many(plain) if plain else _nothing(), *(w for _, w in work), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    plain_positions = iter(cast(list[Position | None], outcomes[0]))
    for (index, _), position in zip(work, outcomes[1:], strict=True):
        results[index] = cast(Position, position)
    return [next(plain_positions) if result is None else result for result in results]


async def _nothing() -> list[Position | None]:
    return []
