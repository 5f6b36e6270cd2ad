"""What a transaction is: its id, its status, what it touched; and the errors clients get.

`TxnMeta` is the record the transaction log stores (one per open or ending transaction); it is
changed only by the coordinator. Errors map to Pulsar's ServerError codes in error_codes.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from taureau.common.errors import BrokerError
from taureau.storage.position import Position

TC_ASSIGN_TOPIC = "persistent://pulsar/system/transaction_coordinator_assign"


class TxnId(NamedTuple):
    """Pulsar's TxnID: most = the coordinator's id (a partition of TC_ASSIGN_TOPIC), least = a
    sequence number unique within the broker."""

    most: int
    least: int

    def __str__(self) -> str:
        return f"({self.most},{self.least})"


class TxnStatus(Enum):
    """Pulsar's TxnStatus names (the admin REST API shows them)."""

    OPEN = "OPEN"
    COMMITTING = "COMMITTING"
    COMMITTED = "COMMITTED"
    ABORTING = "ABORTING"
    ABORTED = "ABORTED"


class TransactionNotFoundError(BrokerError):
    """The transaction was never opened here, or has ended (an ended one is forgotten)."""


class InvalidTxnStatusError(BrokerError):
    """The transaction is not in a status that allows the request (e.g. abort while committing)."""


class TransactionConflictError(BrokerError):
    """A position is already acknowledged, in another transaction or outside any."""


class CoordinatorNotFoundError(BrokerError):
    """No transaction coordinator with that id (or the coordinator is disabled)."""


class TransactionsDisabledError(BrokerError):
    """The broker runs without --transaction-coordinator-enabled (Pulsar: NotAllowed)."""


class TxnLimitError(BrokerError):
    """A transaction bound was reached (open transactions, buffered bytes, pending acks...)."""


def sub_key(topic: str, subscription: str) -> str:
    return f"{topic}\x00{subscription}"


@dataclass(slots=True)
class TxnMeta:
    """One transaction, as the log stores it."""

    txn: TxnId
    status: TxnStatus
    timeout_at_ms: int  # wall clock: a restarted broker keeps the deadline
    partitions: list[str] = field(default_factory=list)  # topics it produced to, in order added
    subscriptions: list[tuple[str, str]] = field(default_factory=list)  # (topic, subscription)
    acks: dict[str, list[Position]] = field(default_factory=dict)  # sub_key -> pending positions
    applied: list[str] = field(default_factory=list)  # partitions whose entries a commit appended
    owner: str | None = None  # the role that opened it (authentication on): only it, or a superuser, may use it

    def to_json(self) -> bytes:
        return json.dumps({
            "status": self.status.value,
            "timeout_at_ms": self.timeout_at_ms,
            "partitions": self.partitions,
            "subscriptions": [list(s) for s in self.subscriptions],
            "acks": {k: [list(p) for p in v] for k, v in self.acks.items()},
            "applied": self.applied,
            "owner": self.owner,
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, txn: TxnId, data: bytes) -> TxnMeta:
        raw = json.loads(data)
        return cls(
            txn=txn,
            status=TxnStatus(raw["status"]),
            timeout_at_ms=int(raw["timeout_at_ms"]),
            partitions=[str(p) for p in raw["partitions"]],
            subscriptions=[(str(t), str(s)) for t, s in raw["subscriptions"]],
            acks={k: [Position(int(le[0]), int(le[1])) for le in v] for k, v in raw["acks"].items()},
            applied=[str(p) for p in raw.get("applied", [])],
            owner=raw.get("owner"),
        )

    def pending_ack_count(self) -> int:
        return sum(len(v) for v in self.acks.values())
