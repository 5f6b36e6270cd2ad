"""Persistence policies (Pulsar's PersistencePolicies): the E/Qw/Qa of a namespace's or a
topic's ledgers, and its mark-delete rate.

A topic's own policy wins over its namespace's, which wins over the broker's flags
(`--ensemble-size`, `--write-quorum`, `--ack-quorum`). A change applies to the next ledger a
topic creates (a rollover, or its next load), as in Pulsar: the current ledger keeps the
quorums it was created with. `managedLedgerMaxMarkDeleteRate` is stored and shown but not
applied: the cursors of a broker share one save ticker (`--cursor-save-interval`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from taureau.broker.policy_json import integer, json_object
from taureau.storage.managed_ledger.api import ManagedLedgerConfig

TOPIC_PERSISTENCE = "persistence"  # a topic's own policy in its topic policies (Pulsar's name)
MAX_QUORUM = 64  # far above any ensemble a cluster has; bounds what is stored
FIELDS = {"bookkeeperEnsemble", "bookkeeperWriteQuorum", "bookkeeperAckQuorum", "managedLedgerMaxMarkDeleteRate"}


@dataclass(frozen=True, slots=True)
class PersistencePolicies:
    bookkeeperEnsemble: int  # noqa: N815 - Pulsar's JSON field names
    bookkeeperWriteQuorum: int  # noqa: N815
    bookkeeperAckQuorum: int  # noqa: N815
    managedLedgerMaxMarkDeleteRate: float = 0.0  # noqa: N815 - stored, not applied (module doc)

    @classmethod
    def from_json(cls, data: Any) -> PersistencePolicies:
        """Pulsar's body, checked as Pulsar does: E >= Qw >= Qa >= 1 (ValueError: 400)."""
        json_object(data, FIELDS, "persistence policies")
        missing = sorted(FIELDS - {"managedLedgerMaxMarkDeleteRate"} - set(data))
        if missing:
            raise ValueError(f"persistence policies need {', '.join(missing)}")
        ensemble = integer(data["bookkeeperEnsemble"], "bookkeeperEnsemble", 1, MAX_QUORUM)
        write = integer(data["bookkeeperWriteQuorum"], "bookkeeperWriteQuorum", 1, MAX_QUORUM)
        ack = integer(data["bookkeeperAckQuorum"], "bookkeeperAckQuorum", 1, MAX_QUORUM)
        if not ensemble >= write >= ack:
            raise ValueError(f"Bookkeeper Ensemble ({ensemble}) >= WriteQuorum ({write}) >= AckQuorum ({ack}) "
                             "must hold")
        rate = data.get("managedLedgerMaxMarkDeleteRate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
            raise ValueError(f"managedLedgerMaxMarkDeleteRate must be a number >= 0, got {rate!r}")
        return cls(ensemble, write, ack, float(rate))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def quorum_of(defaults: ManagedLedgerConfig, namespace: PersistencePolicies | None,
              own: Any) -> tuple[int, int, int]:
    """E/Qw/Qa for a topic: its own stored policy, else its namespace's, else the broker's."""
    chosen = PersistencePolicies.from_json(own) if own is not None else namespace
    if chosen is None:
        return defaults.ensemble_size, defaults.write_quorum, defaults.ack_quorum
    return chosen.bookkeeperEnsemble, chosen.bookkeeperWriteQuorum, chosen.bookkeeperAckQuorum
