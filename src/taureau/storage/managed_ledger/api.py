"""The managed-ledger contract the broker codes against (Pulsar's ManagedLedger/ManagedCursor).

Theory of operation:
- A ManagedLedger is an always-writable named log. It writes to one current ledger and
  rolls over to a new one on size / entry count / age; the ordered list of ledgers and
  its cursors' state are its metadata (kept in the metadata store).
- `add_entry` returns the entry's Position once the ledger made it durable (journal fsync
  on an ack quorum of bookies). Concurrent adds complete in order.
- A ManagedCursor is a consumer's place in the log: the mark-delete position (everything
  at or before it is acknowledged), a set of individually deleted ranges after it, and a
  read position (the next entry to hand out). Reads skip acknowledged entries. Durable
  cursors persist their state; after a crash an acknowledgement may be replayed (at least
  once) but an unacknowledged entry is never lost.
- Ledgers whose entries every durable cursor has acknowledged, and which are past the
  retention time and size, are deleted. The current ledger is never deleted.
- Recent entries are kept in an in-memory cache so that tailing cursors never read disk.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from taureau.storage.ledger.api import LedgerClient
from taureau.storage.position import Entry, Position


class InitialPosition(Enum):
    LATEST = 0
    EARLIEST = 1


@dataclass(slots=True)
class ManagedLedgerConfig:
    max_entries_per_ledger: int = 50_000
    max_size_per_ledger: int = 256 * 1024 * 1024
    max_ledger_age_s: float = 4 * 3600.0
    # Pulsar's managedLedgerMinLedgerRolloverTimeMinutes: a ledger that reached its entry or
    # size limit is rolled over only once it is this old. A rollover queues the topic's adds
    # for three metadata writes; at 10k msgs/s and 50,000 entries that was every 5 s, each
    # time 10-40 ms of receipts. The broker uses Pulsar's 10 minutes; 0 rolls at the limit.
    min_ledger_rollover_s: float = 0.0
    # Retention after every cursor has acknowledged: 0/0 means delete at once,
    # -1 means keep forever.
    retention_time_s: float = 0.0
    retention_size_bytes: int = 0
    ensemble_size: int = 1
    write_quorum: int = 1
    ack_quorum: int = 1
    # Remote bookies only: seconds before an unanswered add replaces its bookie in the
    # ledger's ensemble, and before an unanswered read asks the next replica (docs/cluster.md).
    bookie_add_timeout_s: float = 5.0
    bookie_read_timeout_s: float = 5.0
    cache_size_bytes: int = 64 * 1024 * 1024


class ManagedCursor(abc.ABC):
    name: str
    durable: bool
    # Wall-clock ms a consumer last came or went, as the broker says through mark_active
    # (subscription expiration); a durable cursor keeps it across restarts.
    last_active_ms: int = 0

    def mark_active(self, now_ms: int) -> None:
        self.last_active_ms = now_ms

    @property
    @abc.abstractmethod
    def mark_delete_position(self) -> Position: ...

    @property
    @abc.abstractmethod
    def read_position(self) -> Position: ...

    @property
    @abc.abstractmethod
    def backlog(self) -> int:
        """Entries after the mark-delete position that are not individually deleted."""

    @abc.abstractmethod
    def individually_deleted_ranges(self) -> list[tuple[Position, Position]]:
        """Closed ranges [start, end] acknowledged beyond the mark-delete position."""

    @abc.abstractmethod
    def has_more_entries(self) -> bool:
        """True if read_position is at or before the last confirmed entry."""

    @abc.abstractmethod
    async def read_entries(self, max_entries: int) -> list[Entry]:
        """Up to max_entries unacknowledged entries from read_position (which advances);
        [] when nothing is available."""

    def read_cached_entries(self, max_entries: int) -> list[Entry] | None:
        """`read_entries` without awaiting, when every entry it would return is in memory
        (a consumer keeping up with its producers); None, with nothing changed, when it
        would have to read storage (or this cursor has no synchronous path)."""
        return None

    @abc.abstractmethod
    async def read_entries_or_wait(self, max_entries: int) -> list[Entry]:
        """Like read_entries but waits until at least one entry is available.
        Cancelling the awaiting task is the way to stop waiting."""

    @abc.abstractmethod
    def is_acked(self, position: Position) -> bool: ...

    # Acknowledgements change memory only (the save is rate-limited, in the background), so
    # each has a synchronous form: the broker applies an ACK inline, without a task per frame.
    # The async forms are kept for callers that await them.

    @abc.abstractmethod
    def mark_delete_now(self, position: Position) -> None:
        """Cumulative acknowledgement of everything up to and including position."""

    @abc.abstractmethod
    def delete_now(self, positions: list[Position]) -> None:
        """Individual acknowledgement; the mark-delete position advances over any
        contiguous run of acknowledged entries."""

    @abc.abstractmethod
    def ack_batch_indexes_now(self, position: Position, unacked: Sequence[int]) -> None:
        """Acknowledge part of a batch entry: `unacked` is the bit set (64-bit words, as Pulsar
        sends them) of its messages still not acknowledged; all zero acknowledges the entry."""

    async def mark_delete(self, position: Position) -> None:
        self.mark_delete_now(position)

    async def delete(self, positions: list[Position]) -> None:
        self.delete_now(positions)

    async def ack_batch_indexes(self, position: Position, unacked: Sequence[int]) -> None:
        self.ack_batch_indexes_now(position, unacked)

    @abc.abstractmethod
    def batch_unacked(self, position: Position) -> tuple[int, ...] | None:
        """The bit set of a partly acknowledged entry's unacknowledged messages, or None."""

    @abc.abstractmethod
    def seek(self, read_position: Position) -> None:
        """Move the read position only (used to rewind for redelivery)."""

    @abc.abstractmethod
    def rewind(self) -> None:
        """read_position := first entry after the mark-delete position."""

    @abc.abstractmethod
    async def reset(self, position: Position) -> None:
        """Reset the subscription so that `position` is the next entry delivered:
        mark-delete becomes the entry before it, acked ranges are cleared."""

    @abc.abstractmethod
    async def skip_entries(self, count: int) -> None:
        """Acknowledge the next `count` unacknowledged entries."""

    @abc.abstractmethod
    async def clear_backlog(self) -> None:
        """Acknowledge everything up to the last confirmed entry."""

    @abc.abstractmethod
    async def peek(self, count: int) -> list[Entry]:
        """The first `count` unacknowledged entries, without moving anything."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Persist (if durable) and detach from the managed ledger."""


class ManagedLedger(abc.ABC):
    name: str
    config: ManagedLedgerConfig

    @property
    @abc.abstractmethod
    def last_confirmed(self) -> Position:
        """Position of the last added entry; (current_ledger, -1) when nothing was added."""

    @property
    @abc.abstractmethod
    def first_position(self) -> Position:
        """Position of the first retained entry (may equal last_confirmed.next() if empty)."""

    @property
    @abc.abstractmethod
    def entries_count(self) -> int:
        """Retained entries in all ledgers."""

    @property
    @abc.abstractmethod
    def total_size(self) -> int:
        """Retained bytes in all ledgers."""

    @abc.abstractmethod
    def position_at(self, index: int) -> Position:
        """The index-th retained entry (0 = the first); IndexError past the last."""

    @property
    @abc.abstractmethod
    def estimated_backlog_size(self) -> int:
        """Bytes after the slowest durable cursor's mark-delete position (0 without one),
        estimated within a ledger by its average entry size, as Pulsar's backlogSize."""

    @property
    @abc.abstractmethod
    def cursors(self) -> Mapping[str, ManagedCursor]:
        """Open cursors by name (durable and non-durable)."""

    @abc.abstractmethod
    async def add_entry(self, data: bytes) -> Position:
        """Append and return the position once durable."""

    async def add_entries(self, datas: list[bytes]) -> list[Position]:
        """Append several entries in order; their positions once all are durable.
        (Implementations batch them; this default issues them concurrently, in order.)"""
        return list(await asyncio.gather(*(self.add_entry(data) for data in datas)))

    @abc.abstractmethod
    async def open_cursor(
        self, name: str, initial_position: InitialPosition = InitialPosition.LATEST
    ) -> ManagedCursor:
        """Open (or create, at initial_position) a durable cursor."""

    @abc.abstractmethod
    def new_non_durable_cursor(self, name: str, start: Position) -> ManagedCursor:
        """A cursor that is never persisted, reading from `start` (inclusive);
        EARLIEST / LATEST from taureau.storage.position are accepted."""

    @abc.abstractmethod
    async def delete_cursor(self, name: str) -> None: ...

    @abc.abstractmethod
    async def read_entry(self, position: Position) -> Entry: ...

    @abc.abstractmethod
    async def read_entries(self, start: Position, max_entries: int) -> list[Entry]:
        """Up to max_entries entries from start (inclusive), crossing ledgers."""

    @abc.abstractmethod
    async def find_position(self, predicate: Callable[[Entry], bool]) -> Position | None:
        """First retained position whose entry satisfies predicate, which must be false
        then true along the log (binary search); None if no entry does."""

    @abc.abstractmethod
    def count_entries(self, after: Position, up_to: Position) -> int:
        """Number of retained entries in (after, up_to]."""

    @abc.abstractmethod
    def set_retention(self, retention_time_s: float, retention_size_bytes: int) -> None: ...

    @abc.abstractmethod
    def set_quorum(self, ensemble_size: int, write_quorum: int, ack_quorum: int) -> None:
        """E/Qw/Qa of the ledgers created from now on (the next rollover); the current
        ledger keeps its own, as in Pulsar."""

    @abc.abstractmethod
    def internal_stats(self) -> dict:
        """Ledgers (id, entries, size, timestamp), cursors (mark-delete, read position,
        acked ranges), last confirmed entry: for the admin API's internalStats."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def delete(self) -> None:
        """Delete every ledger, cursor and the metadata of this managed ledger."""


class ManagedLedgerFactoryBase(abc.ABC):
    @property
    @abc.abstractmethod
    def ledgers(self) -> LedgerClient:
        """The ledger client the managed ledgers write through (its bookies, their metadata)."""

    @abc.abstractmethod
    async def open(self, name: str, config: ManagedLedgerConfig | None = None) -> ManagedLedger:
        """Open (or create) the managed ledger `name`; one instance per name."""

    @abc.abstractmethod
    async def exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    async def list(self, prefix: str = "") -> list[str]:
        """Names of existing managed ledgers starting with prefix."""

    @abc.abstractmethod
    async def delete(self, name: str) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...
