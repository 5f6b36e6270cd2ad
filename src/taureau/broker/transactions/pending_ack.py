"""PendingAcks: positions of one subscription acknowledged inside transactions not ended yet.

The subscription's dispatchers consult it (`position in pending`) and never hand such a
position to a consumer, so a consumer leaving cannot pass it to another one; a commit turns
the positions into real acknowledgements, an abort releases them for redelivery. One instance
per (topic, subscription), owned by the coordinator's `PendingAckRegistry`, which survives
the topic being unloaded (a reloaded subscription is handed the same instance).
"""

from __future__ import annotations

from collections.abc import Iterator

from taureau.broker.transactions.model import TransactionConflictError, TxnId
from taureau.storage.position import Position


class PendingAcks:
    def __init__(self) -> None:
        self._owner: dict[Position, TxnId] = {}

    def __contains__(self, position: object) -> bool:
        return position in self._owner

    def __len__(self) -> int:
        return len(self._owner)

    def check(self, txn: TxnId, positions: list[Position]) -> None:
        """Raise TransactionConflict if another transaction holds one of `positions`."""
        for position in positions:
            owner = self._owner.get(position)
            if owner is not None and owner != txn:
                raise TransactionConflictError(
                    f"{position} is already acknowledged in transaction {owner}"
                )

    def hold(self, txn: TxnId, positions: list[Position]) -> None:
        self.check(txn, positions)
        for position in positions:
            self._owner[position] = txn

    def release(self, txn: TxnId, positions: list[Position]) -> list[Position]:
        """Forget what `txn` held of `positions`; returns those."""
        freed = [p for p in positions if self._owner.get(p) == txn]
        for position in freed:
            del self._owner[position]
        return freed


class PendingAckRegistry:
    """The PendingAcks of every subscription that has any, by (topic, subscription)."""

    def __init__(self) -> None:
        self._subs: dict[tuple[str, str], PendingAcks] = {}

    def get(self, topic: str, subscription: str) -> PendingAcks:
        found = self._subs.get((topic, subscription))
        if found is None:
            found = self._subs[(topic, subscription)] = PendingAcks()
        return found

    def find(self, topic: str, subscription: str) -> PendingAcks | None:
        return self._subs.get((topic, subscription))

    def forget_empty(self, topic: str, subscription: str) -> None:
        found = self._subs.get((topic, subscription))
        if found is not None and not len(found):
            del self._subs[(topic, subscription)]

    def of_topic(self, topic: str) -> Iterator[tuple[str, PendingAcks]]:
        for (name, subscription), pending in self._subs.items():
            if name == topic:
                yield subscription, pending
