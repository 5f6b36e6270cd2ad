"""An in-memory LedgerClient with BookKeeper's semantics (single writer, LAC, fencing), for fast tests.

Theory of operation (the same rules as taureau.storage.ledger.api, without disks or bookies):
- One `_Ledger` record per ledger holds the entries, the LAC and the metadata; the writer
  handle from `create_ledger` and every reader handle from `open_ledger` share it, so a
  recovery open is seen by the writer at once (its next add raises LedgerFencedError).
- `add_entry` assigns the entry id before its first suspension (callers rely on this for
  ordering) and, when `yield_on_add` is set, yields once before it confirms, so that adds
  from many tasks really are in flight together. Confirmations stay in id order because
  asyncio resumes tasks that yielded in FIFO order.
- `inject_add_failures(error, count)` makes the next `count` adds fail with `error` and
  leaves the ledger errored (later adds fail too, as a BookKeeper handle does after a
  failed add), which lets upper layers test their error paths.
- The client keeps its ledgers after `close()` of a handle, and a dropped client object is
  all a "crash" needs: hand the same client to the next owner.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from taureau.common.errors import (
    LedgerClosedError,
    LedgerFencedError,
    NoSuchEntryError,
    NoSuchLedgerError,
    NotEnoughBookiesError,
    StorageError,
)
from taureau.storage.ledger.api import (
    LedgerClient,
    LedgerHandle,
    LedgerMetadata,
    LedgerState,
    check_create_args,
)


class _Ledger:
    """Everything one ledger holds; shared by its writer and reader handles."""

    __slots__ = ("metadata", "entries", "length", "lac", "fenced", "deleted", "errored")

    def __init__(self, metadata: LedgerMetadata) -> None:
        self.metadata = metadata
        self.entries: list[bytes] = []  # entry id == index
        self.length = 0  # bytes in entries
        self.lac = -1  # last-add-confirmed
        self.fenced = False  # set by a recovery open; the writer may add no more
        self.deleted = False
        self.errored: StorageError | None = None  # set after an injected add failure


class MemoryLedgerHandle(LedgerHandle):
    """A handle on one in-memory ledger; writable only if it came from create_ledger."""

    def __init__(self, client: MemoryLedgerClient, ledger: _Ledger, writable: bool) -> None:
        self._client = client
        self._ledger = ledger
        self._writable = writable
        self.ledger_id = ledger.metadata.ledger_id

    @property
    def metadata(self) -> LedgerMetadata:  # type: ignore[override]
        return self._ledger.metadata

    @property
    def last_add_confirmed(self) -> int:
        return self._ledger.lac

    @property
    def length(self) -> int:
        return self._ledger.length

    @property
    def is_closed(self) -> bool:
        return self._ledger.metadata.state is LedgerState.CLOSED

    def _live(self) -> _Ledger:
        if self._ledger.deleted:
            raise NoSuchLedgerError(f"ledger {self.ledger_id} was deleted")
        return self._ledger

    async def add_entry(self, data: bytes) -> int:
        ledger = self._live()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"entry data must be bytes, not {type(data).__name__}")
        if not self._writable:
            raise LedgerClosedError(f"ledger {self.ledger_id} was opened read-only")
        if ledger.fenced:
            raise LedgerFencedError(f"ledger {self.ledger_id} was fenced by a recovery open")
        if ledger.metadata.state is LedgerState.CLOSED:
            raise LedgerClosedError(f"ledger {self.ledger_id} is closed")
        if ledger.errored is not None:
            raise ledger.errored
        failure = self._client._take_failure()
        if failure is not None:
            ledger.errored = failure
            raise failure
        entry_id = len(ledger.entries)
        ledger.entries.append(bytes(data))
        ledger.length += len(data)
        if self._client.yield_on_add:
            await asyncio.sleep(0)
        # A recovery open during the yield already counted this entry (it was "on the bookie").
        ledger.lac = max(ledger.lac, entry_id)
        return entry_id

    async def read_entries(self, first: int, last: int) -> list[bytes]:
        ledger = self._live()
        if first < 0 or last < first:
            raise NoSuchEntryError(f"bad entry range {first}..{last} in ledger {self.ledger_id}")
        if last > ledger.lac:
            raise NoSuchEntryError(
                f"entry {last} of ledger {self.ledger_id} is beyond the last-add-confirmed {ledger.lac}"
            )
        return ledger.entries[first : last + 1]

    async def close(self) -> None:
        ledger = self._ledger
        if not self._writable or ledger.deleted or ledger.metadata.state is LedgerState.CLOSED:
            return
        _seal(ledger, ledger.lac)


def _seal(ledger: _Ledger, last_entry_id: int) -> None:
    ledger.lac = last_entry_id
    ledger.metadata.state = LedgerState.CLOSED
    ledger.metadata.last_entry_id = last_entry_id
    ledger.metadata.length = sum(len(e) for e in ledger.entries[: last_entry_id + 1])


class MemoryLedgerClient(LedgerClient):
    """LedgerClient over a dict of ledgers.

    >>> client = MemoryLedgerClient(yield_on_add=True)
    >>> handle = await client.create_ledger()
    >>> await handle.add_entry(b"x")
    0
    """

    def __init__(self, num_bookies: int = 1, *, yield_on_add: bool = False, first_ledger_id: int = 1) -> None:
        self.yield_on_add = yield_on_add  # yield once inside every add (real clients always do)
        self._bookies = [f"bookie-{i}" for i in range(num_bookies)]
        self._ledgers: dict[int, _Ledger] = {}
        self._next_id = first_ledger_id  # ledger ids only grow, like ZooKeeper sequential nodes
        self._failures: list[StorageError] = []  # injected add failures, consumed one per add
        self._closed = False

    # -- test hooks -------------------------------------------------------------------------

    def inject_add_failures(self, error: StorageError, count: int = 1) -> None:
        """The next `count` adds (on any ledger) raise `error`."""
        self._failures.extend([error] * count)

    def _take_failure(self) -> StorageError | None:
        return self._failures.pop(0) if self._failures else None

    def ledger_ids(self) -> list[int]:
        """Ids of the ledgers that exist (not deleted), in creation order."""
        return list(self._ledgers)

    # -- LedgerClient -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("ledger client is closed")

    async def available_bookies(self) -> int:
        return len(self._bookies)

    async def create_ledger(
        self,
        ensemble_size: int = 1,
        write_quorum: int = 1,
        ack_quorum: int = 1,
        custom: dict[str, str] | None = None,
    ) -> LedgerHandle:
        self._check_open()
        check_create_args(ensemble_size, write_quorum, ack_quorum, custom)
        if ensemble_size > len(self._bookies):
            raise NotEnoughBookiesError(
                f"ensemble of {ensemble_size} needs more than {len(self._bookies)} bookies"
            )
        await asyncio.sleep(0)  # a real create is a metadata round trip
        ledger_id = self._next_id
        self._next_id += 1
        metadata = LedgerMetadata(
            ledger_id=ledger_id,
            ensemble=self._bookies[:ensemble_size],
            write_quorum=write_quorum,
            ack_quorum=ack_quorum,
            created_ms=int(time.time() * 1000),
            custom=dict(custom or {}),
        )
        ledger = _Ledger(metadata)
        self._ledgers[ledger_id] = ledger
        return MemoryLedgerHandle(self, ledger, writable=True)

    def _get(self, ledger_id: int) -> _Ledger:
        self._check_open()
        ledger = self._ledgers.get(ledger_id)
        if ledger is None:
            raise NoSuchLedgerError(f"no ledger {ledger_id}")
        return ledger

    async def open_ledger(self, ledger_id: int, recovery: bool = True) -> LedgerHandle:
        ledger = self._get(ledger_id)
        await asyncio.sleep(0)
        if recovery and ledger.metadata.state is not LedgerState.CLOSED:
            # Fence first so the writer's next add fails, then seal at everything stored.
            ledger.fenced = True
            _seal(ledger, len(ledger.entries) - 1)
        return MemoryLedgerHandle(self, ledger, writable=False)

    async def delete_ledger(self, ledger_id: int) -> None:
        ledger = self._get(ledger_id)
        await asyncio.sleep(0)
        ledger.deleted = True
        del self._ledgers[ledger_id]

    async def get_metadata(self, ledger_id: int) -> LedgerMetadata:
        ledger = self._get(ledger_id)
        return replace(
            ledger.metadata, ensemble=list(ledger.metadata.ensemble), custom=dict(ledger.metadata.custom)
        )

    async def close(self) -> None:
        self._closed = True
