"""The ledger client contract (BookKeeper's LedgerHandle / BookKeeper client).

Theory of operation:
- A ledger is created OPEN with one writer. `add_entry` assigns entry ids 0, 1, 2, ...
  sends each entry to `write_quorum` bookies of the ensemble and completes once
  `ack_quorum` of them made it durable. Completions happen in entry-id order, and the
  last-add-confirmed (LAC) is the highest entry id acknowledged with all before it.
- `close` writes the final last entry id into the ledger metadata: state CLOSED, read-only.
- `open_ledger(recovery=True)` on a ledger still OPEN fences it on the bookies (the old
  writer's next add fails with LedgerFencedError), recovers the last entry that reached
  ack quorum, and closes it. Readers then see a stable ledger.
- Ledger metadata (ensembles, write/ack quorum, state, last entry id, length, custom
  metadata) lives in the metadata store under /ledgers/<id>.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from enum import Enum


class LedgerState(Enum):
    OPEN = "open"
    IN_RECOVERY = "in_recovery"
    CLOSED = "closed"


@dataclass(slots=True)
class LedgerMetadata:
    ledger_id: int
    ensemble: list[str]  # bookie ids, e.g. "bookie-0" or "127.0.0.1:3181"
    write_quorum: int
    ack_quorum: int
    state: LedgerState = LedgerState.OPEN
    last_entry_id: int = -1  # meaningful once CLOSED
    length: int = 0  # total bytes once CLOSED
    created_ms: int = 0
    custom: dict[str, str] = field(default_factory=dict)
    # (first entry id, bookies) per segment, in entry order: a recovery that loses a bookie
    # writes the entries it re-replicates from there on to a replacement (an ensemble change).
    # `ensemble` is the last segment's bookies.
    ensembles: list[tuple[int, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ensembles:
            self.ensembles = [(0, list(self.ensemble))]

    def all_bookies(self) -> list[str]:
        """Every bookie any segment names, each once."""
        return list(dict.fromkeys(b for _, bookies in self.ensembles for b in bookies))

    def change_ensemble(self, from_entry: int, failed: str, replacement: str) -> None:
        """Entries from `from_entry` on go to `replacement` where they went to `failed`."""
        first, current = self.ensembles[-1]
        changed = [replacement if b == failed else b for b in current]
        if first == from_entry:
            self.ensembles[-1] = (first, changed)
        else:
            self.ensembles.append((from_entry, changed))
        self.ensemble = changed


def check_create_args(
    ensemble_size: int, write_quorum: int, ack_quorum: int, custom: dict[str, str] | None
) -> None:
    """Validate create_ledger's arguments the same way for every LedgerClient."""
    for name, value in (
        ("ensemble_size", ensemble_size),
        ("write_quorum", write_quorum),
        ("ack_quorum", ack_quorum),
    ):
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be an int >= 1, not {value!r}")
    if not ack_quorum <= write_quorum <= ensemble_size:
        raise ValueError(
            f"need ack_quorum <= write_quorum <= ensemble_size, got A{ack_quorum} W{write_quorum} E{ensemble_size}"
        )
    if custom is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in custom.items()):
        raise TypeError("custom ledger metadata must map str to str")


class LedgerHandle(abc.ABC):
    """A handle on one ledger; writable only when returned by create_ledger."""

    ledger_id: int
    metadata: LedgerMetadata

    @property
    @abc.abstractmethod
    def last_add_confirmed(self) -> int:
        """Highest entry id durable at ack quorum with every lower id too; -1 if none."""

    @property
    @abc.abstractmethod
    def length(self) -> int:
        """Bytes added so far (sum of entry sizes)."""

    @property
    @abc.abstractmethod
    def is_closed(self) -> bool: ...

    @abc.abstractmethod
    async def add_entry(self, data: bytes) -> int:
        """Append; return the entry id once durable at ack quorum.

        Raises LedgerClosedError, LedgerFencedError, DiskFullError / StorageError.
        """

    async def add_entries(self, datas: list[bytes]) -> int:
        """Append several entries in order; return the first one's id once all are durable.

        Entry ids are taken in order before the first suspension, like add_entry. The
        default issues one add_entry per entry; a writer may batch them (WriteHandle does).
        """
        ids = await asyncio.gather(*(self.add_entry(data) for data in datas))
        return ids[0]

    @abc.abstractmethod
    async def read_entries(self, first: int, last: int) -> list[bytes]:
        """Entries first..last inclusive (NoSuchEntryError beyond the LAC)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Seal the ledger at its LAC (idempotent)."""


class LedgerClient(abc.ABC):
    """Creates, opens and deletes ledgers."""

    @abc.abstractmethod
    async def create_ledger(
        self,
        ensemble_size: int = 1,
        write_quorum: int = 1,
        ack_quorum: int = 1,
        custom: dict[str, str] | None = None,
    ) -> LedgerHandle: ...

    @abc.abstractmethod
    async def open_ledger(self, ledger_id: int, recovery: bool = True) -> LedgerHandle:
        """Open read-only. With recovery, an OPEN ledger is fenced, recovered and closed."""

    @abc.abstractmethod
    async def delete_ledger(self, ledger_id: int) -> None: ...

    @abc.abstractmethod
    async def available_bookies(self) -> int:
        """How many bookies a new ledger's ensemble may use now (the largest ensemble size
        create_ledger can take)."""

    @abc.abstractmethod
    async def get_metadata(self, ledger_id: int) -> LedgerMetadata: ...

    @abc.abstractmethod
    async def close(self) -> None: ...
