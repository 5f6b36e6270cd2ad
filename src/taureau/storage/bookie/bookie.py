"""The bookie: stores ledger entries (journal for durability, entry log + index for reads).

Theory of operation:
- `add_entry` encodes the record once, buffers it in the entry log, indexes it in the
  memtable, then awaits the journal's group commit: it returns only once the record is
  fsynced in the journal (when journal_fsync). Nothing else is on the add path.
- A checkpoint (periodic, or every `checkpoint_entries` adds, or on demand) takes the
  journal's durable position, flushes and fsyncs the entry logs, writes the index cut and
  that position to the KV, then trims journal files before it and removes entry logs whose
  ledgers are all deleted. `start` rebuilds the rest by replaying the journal from there.
- Fencing and deletion are journal marker records, so they survive a crash like entries.

States (one guarded setter, `_set_state`):
    NEW --start--> RUNNING <--> READ_ONLY      (read-only after a disk error; a checkpoint
     |               |              |           that succeeds with a healthy journal
     +------------- CLOSED <--------+           brings it back)
Reads are served in RUNNING and READ_ONLY; adds, fences and deletes only in RUNNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Sequence
from enum import Enum

from taureau.common.bytes_like import BYTES_LIKE, Bytes, Parts
from taureau.common.errors import (
    CorruptedDataError,
    DiskFullError,
    LedgerFencedError,
    NoSuchEntryError,
    NoSuchLedgerError,
    StorageError,
)
from taureau.common.histogram import Histogram
from taureau.storage.bookie import records
from taureau.storage.bookie.entry_log import EntryLog
from taureau.storage.bookie.files import FileIO, OSFiles, storage_error
from taureau.storage.bookie.index import Index, LedgerInfo
from taureau.storage.bookie.journal import Journal, JournalPosition

log = logging.getLogger(__name__)

_MAX_ID = 2**63 - 1


class BookieState(Enum):
    NEW = "new"
    RUNNING = "running"
    READ_ONLY = "read_only"
    CLOSED = "closed"


_TRANSITIONS = {
    BookieState.NEW: {BookieState.RUNNING, BookieState.CLOSED},
    BookieState.RUNNING: {BookieState.READ_ONLY, BookieState.CLOSED},
    BookieState.READ_ONLY: {BookieState.RUNNING, BookieState.CLOSED},
    BookieState.CLOSED: set(),
}


def _entry_parts(data: Bytes | Parts) -> Parts:
    """An entry's parts, each checked to be bytes-like (what reaches the files must be)."""
    parts = data if isinstance(data, tuple) else (data,)
    for part in parts:
        if not isinstance(part, BYTES_LIKE):
            raise TypeError(f"entry data must be bytes, not {type(part).__name__}")
    return parts


def _check_ids(ledger_id: int, entry_id: int | None = None) -> None:
    if type(ledger_id) is not int or not 0 <= ledger_id <= _MAX_ID:
        raise ValueError(f"ledger id must be an int in [0, 2**63), not {ledger_id!r}")
    if entry_id is not None and (type(entry_id) is not int or not 0 <= entry_id <= _MAX_ID):
        raise ValueError(f"entry id must be an int in [0, 2**63), not {entry_id!r}")


class Bookie:
    """One bookie's storage in `data_dir`.

    >>> bookie = Bookie("/var/lib/taureau/bookie-0")
    >>> await bookie.start()
    >>> await bookie.add_entry(7, 0, b"hello")
    >>> await bookie.read_entry(7, 0)
    b'hello'
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        journal_fsync: bool = True,
        files: FileIO | None = None,
        checkpoint_interval_s: float | None = 30.0,
        checkpoint_entries: int = 500_000,
        journal_max_file_size: int = 64 << 20,
        entry_log_max_file_size: int = 256 << 20,
    ) -> None:
        self.data_dir = os.fspath(data_dir)
        self._files = files if files is not None else OSFiles()
        self._journal = Journal(
            self._files,
            os.path.join(self.data_dir, "journal"),
            fsync=journal_fsync,
            max_file_size=journal_max_file_size,
        )
        self._entry_log = EntryLog(
            self._files, os.path.join(self.data_dir, "ledgers"), max_file_size=entry_log_max_file_size
        )
        self._index: Index | None = None  # opened by start()
        self._state = BookieState.NEW
        self._read_only_reason: StorageError | None = None  # why adds are refused in READ_ONLY
        self._checkpoint_interval_s = checkpoint_interval_s
        self._checkpoint_entries = checkpoint_entries
        self._adds_since_checkpoint = 0
        self._checkpoint_running: asyncio.Task[None] | None = None  # the checkpoint in progress
        # Adds held while the entry log's writer thread is backlogged, in arrival order: a
        # fair lock, and a count of those inside or waiting, so none overtakes another.
        self._room_gate = asyncio.Lock()
        self._room_waiters = 0
        self._timer: asyncio.Task[None] | None = None

    @property
    def journal_sync_seconds(self) -> Histogram:
        """How long each journal round's fsync took (the journal's thread observes it)."""
        return self._journal.sync_seconds

    @property
    def journal_add_seconds(self) -> Histogram:
        """How long each batch of adds took from the loop's hand-over to the journal's thread
        until it was delivered back durable: what a publish waits on the disk for."""
        return self._journal.add_seconds

    @property
    def journal_inbox_seconds(self) -> Histogram:
        """How long each batch waited for the journal's thread to take it: the rest of the
        round in progress (its write and fsync)."""
        return self._journal.inbox_seconds

    @property
    def journal_hand_back_seconds(self) -> Histogram:
        """How long each durable batch waited for the loop to run its delivery."""
        return self._journal.hand_back_seconds

    @property
    def state(self) -> BookieState:
        return self._state

    def _set_state(self, new: BookieState) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise StorageError(
                f"bookie {self.data_dir}: illegal state change {self._state.value} -> {new.value}"
            )
        self._state = new

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the files and recover: index from the last checkpoint, then journal replay."""
        try:
            self._files.makedirs(self.data_dir)
            self._index = Index(self._files.open_kv(os.path.join(self.data_dir, "index.sqlite")))
            sizes, log_ledgers, mark = self._index.load()
            self._entry_log.open(sizes, log_ledgers)
            start = JournalPosition.decode(mark) if mark is not None else JournalPosition(0, 0)
            replayed = 0
            for ledger_id, entry_id, data in self._journal.replay(start):
                self._replay(ledger_id, entry_id, data)
                replayed += 1
        except OSError as exc:
            raise storage_error(exc, f"starting bookie in {self.data_dir}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"starting bookie in {self.data_dir}: index database: {exc}") from exc
        log.info("bookie %s started, %d journal records replayed", self.data_dir, replayed)
        self._set_state(BookieState.RUNNING)
        if self._checkpoint_interval_s:
            self._timer = asyncio.get_running_loop().create_task(
                self._checkpoint_timer(self._checkpoint_interval_s)
            )

    def _replay(self, ledger_id: int, entry_id: int, data: bytes) -> None:
        assert self._index is not None
        info = self._index.info(ledger_id)
        if entry_id == records.DELETE_ENTRY_ID:
            self._index.delete_ledger(ledger_id)
        elif entry_id == records.FENCE_ENTRY_ID:
            info.fenced = True
            self._index.changed(ledger_id)
        elif entry_id >= 0 and not info.deleted:
            self._store(ledger_id, entry_id, records.encode_parts(ledger_id, entry_id, (data,)), info)

    async def close(self) -> None:
        """Finish in-flight adds, checkpoint (so the next start is quick) and release."""
        if self._state is BookieState.CLOSED:
            return
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        if self._state is not BookieState.NEW:
            await self._journal.close()
            try:
                await self.checkpoint()
            except StorageError as exc:
                log.warning("bookie %s: final checkpoint failed: %s", self.data_dir, exc)
        self._set_state(BookieState.CLOSED)
        self._entry_log.close()
        if self._index is not None:
            self._index.close()

    # -- the data path ----------------------------------------------------------------------

    def _store(self, ledger_id: int, entry_id: int, record: list[Bytes], info: LedgerInfo) -> None:
        assert self._index is not None
        location = self._entry_log.add(ledger_id, record)
        self._index.put(ledger_id, entry_id, location)
        if entry_id > info.last_entry_id:
            info.last_entry_id = entry_id

    async def add_entry(
        self, ledger_id: int, entry_id: int, data: Bytes | Parts, *, recovery_add: bool = False
    ) -> None:
        """Store an entry; return once it is in the journal (fsynced when journal_fsync).

        Raises LedgerFencedError (fenced, unless recovery_add), NoSuchLedgerError (deleted),
        DiskFullError / StorageError (nothing was acknowledged; the bookie turns read-only).
        """
        await self.add_entries(ledger_id, entry_id, [data], recovery_add=recovery_add)

    async def add_entries(
        self, ledger_id: int, first_entry_id: int, datas: Sequence[Bytes | Parts], *, recovery_add: bool = False
    ) -> None:
        """Store entries first_entry_id, first_entry_id + 1, ... of one ledger; return once all
        are in the journal. They join the same journal batch, so a publisher sending many
        entries in one read waits on one fsync through one coroutine instead of one each.

        An entry given as parts (a tuple: the ledger client's header and the data) is stored
        as their concatenation, written as it is: no copy of the data on the way to disk."""
        if self._room_waiters or self._entry_log.backlogged:
            await self._entry_log_room()
        if self._state is not BookieState.RUNNING:
            raise self._not_writable()
        _check_ids(ledger_id, first_entry_id)
        entries = [_entry_parts(data) for data in datas]
        assert self._index is not None
        info = self._index.info(ledger_id)
        if info.deleted:
            raise NoSuchLedgerError(f"ledger {ledger_id} was deleted")
        if info.fenced and not recovery_add:
            raise LedgerFencedError(f"ledger {ledger_id} is fenced")
        journal_add = self._journal.add
        durable = None
        try:
            for offset, parts in enumerate(entries):
                entry_id = first_entry_id + offset
                record = records.encode_parts(ledger_id, entry_id, parts)
                self._store(ledger_id, entry_id, record, info)
                durable = journal_add(record)
        except OSError as exc:
            raise self._turn_read_only(storage_error(exc, "entry log write")) from exc
        except StorageError as exc:
            raise self._turn_read_only(exc) from None
        self._adds_since_checkpoint += len(datas)
        if self._adds_since_checkpoint >= self._checkpoint_entries and self._checkpoint_running is None:
            self._adds_since_checkpoint = 0
            asyncio.get_running_loop().create_task(self._background_checkpoint())
        if durable is not None:
            try:
                await durable  # every record of this call is in the same or an earlier batch
            except StorageError as exc:
                raise self._turn_read_only(exc) from None

    async def _journaled(self, record: bytes) -> None:
        try:
            # Shielded: the record shares its batch's future with the publishes of this loop
            # turn, and a cancelled fence or delete (its caller's task cancelled) must not
            # cancel their wait too.
            await asyncio.shield(self._journal.add(record))
        except StorageError as exc:
            raise self._turn_read_only(exc) from None

    async def read_entry(self, ledger_id: int, entry_id: int) -> bytes:
        """The entry's bytes; NoSuchLedgerError / NoSuchEntryError if absent."""
        self._check_readable()
        _check_ids(ledger_id, entry_id)
        assert self._index is not None
        info = self._index.ledgers.get(ledger_id)
        if info is None or info.deleted:
            raise NoSuchLedgerError(f"ledger {ledger_id} is not on this bookie")
        location = self._index.get(ledger_id, entry_id)
        if location is None:
            raise NoSuchEntryError(f"entry {ledger_id}:{entry_id} is not on this bookie")
        try:
            found_ledger, found_entry, data = self._entry_log.read(location)
        except OSError as exc:
            raise storage_error(exc, f"reading entry {ledger_id}:{entry_id}") from exc
        if (found_ledger, found_entry) != (ledger_id, entry_id):
            raise CorruptedDataError(f"index points {ledger_id}:{entry_id} at {found_ledger}:{found_entry}")
        return data

    async def read_entries(
        self, ledger_id: int, first: int, last: int, max_bytes: int = 8 * 1024 * 1024
    ) -> list[bytes]:
        """Entries first..last as stored here, stopping early at the first one absent or
        once `max_bytes` are taken (never fewer than one: NoSuchEntryError if `first` is absent)."""
        if type(first) is not int or type(last) is not int or first > last:
            raise ValueError(f"bad entry range [{first!r}, {last!r}]")
        entries: list[bytes] = []
        total = 0
        for entry_id in range(first, last + 1):
            try:
                data = await self.read_entry(ledger_id, entry_id)
            except NoSuchEntryError:
                if not entries:
                    raise
                break
            if entries and total + len(data) > max_bytes:
                break
            entries.append(data)
            total += len(data)
        return entries

    async def read_last_entry_id(self, ledger_id: int) -> int:
        """Highest entry id stored for the ledger; -1 if none (or never heard of)."""
        self._check_readable()
        _check_ids(ledger_id)
        assert self._index is not None
        info = self._index.ledgers.get(ledger_id)
        if info is not None and info.deleted:
            raise NoSuchLedgerError(f"ledger {ledger_id} was deleted")
        return -1 if info is None else info.last_entry_id

    async def _entry_log_room(self) -> None:
        """Wait, behind every add already waiting, until the entry log's writer thread has
        caught up (entry_log_writer.py); what follows up to the journal wait runs without
        awaiting, so the adds store their entries in the order they arrived."""
        self._room_waiters += 1
        try:
            async with self._room_gate:
                while self._entry_log.backlogged and self._state is BookieState.RUNNING:
                    await self._entry_log.room()
        finally:
            self._room_waiters -= 1

    async def fence(self, ledger_id: int) -> int:
        """Refuse further non-recovery adds to the ledger; return its last entry id."""
        if self._state is not BookieState.RUNNING:
            raise self._not_writable()
        _check_ids(ledger_id)
        assert self._index is not None
        info = self._index.info(ledger_id)
        if info.deleted:
            raise NoSuchLedgerError(f"ledger {ledger_id} was deleted")
        info.fenced = True  # at once: adds arriving while the marker is journaled are refused
        self._index.changed(ledger_id)
        await self._journaled(records.encode(ledger_id, records.FENCE_ENTRY_ID, b""))
        return info.last_entry_id

    async def delete_ledger(self, ledger_id: int) -> None:
        """Forget the ledger; its space is reclaimed by a later checkpoint."""
        if self._state is not BookieState.RUNNING:
            raise self._not_writable()
        _check_ids(ledger_id)
        assert self._index is not None
        self._index.delete_ledger(ledger_id)
        await self._journaled(records.encode(ledger_id, records.DELETE_ENTRY_ID, b""))

    # -- checkpoints ------------------------------------------------------------------------

    async def checkpoint(self) -> None:
        """Make everything added so far durable in the entry logs and index; trim the journal."""
        self._check_readable()
        while self._checkpoint_running is not None:
            with contextlib.suppress(StorageError):
                await asyncio.shield(self._checkpoint_running)
        # A task of its own, shielded: cancelling a caller (close cancels the timer's) cannot
        # stop the threads it runs, so the checkpoint stays "running" until they are done and
        # the next one waits (two commits at once on the index's sqlite connection failed
        # with "cannot start a transaction within a transaction", and once crashed the process).
        task = self._checkpoint_running = asyncio.get_running_loop().create_task(self._checkpoint_once())
        task.add_done_callback(self._checkpoint_ended)
        await asyncio.shield(task)

    def _checkpoint_ended(self, task: asyncio.Task[None]) -> None:
        if self._checkpoint_running is task:
            self._checkpoint_running = None
        if not task.cancelled():
            task.exception()  # raised to whoever awaited it; not "never retrieved" if nobody did

    async def _checkpoint_once(self) -> None:
        assert self._index is not None
        entry_log, index = self._entry_log, self._index
        # The cut, in one step of the loop: every record before `mark` is in the entry log
        # buffer and memtable already (they are stored before they are journaled).
        mark = self._journal.written
        through = entry_log.flush()  # hands the buffer to the writer thread; sync waits for it
        removed = [
            log_id
            for log_id, ledgers in entry_log.ledgers.items()
            if log_id != entry_log.current and all(index.info(x).deleted for x in ledgers)
        ]
        sizes = {k: v for k, v in entry_log.sizes().items() if k not in removed}
        cut = index.cut(sizes, entry_log.ledgers, removed, mark.encode())
        handles = entry_log.take_dirty()
        try:
            await asyncio.to_thread(entry_log.sync, handles, through)
            await asyncio.to_thread(index.commit, cut)
        except (OSError, sqlite3.Error) as exc:
            entry_log.mark_dirty(handles)
            index.failed()
            error = (
                storage_error(exc, "checkpoint")
                if isinstance(exc, OSError)
                else StorageError(f"checkpoint: {exc}")
            )
            raise self._turn_read_only(error) from exc
        index.committed()
        for log_id in removed:
            await entry_log.remove(log_id)
        await self._journal.trim(mark)
        if self._state is BookieState.READ_ONLY and self._journal.failed is None:
            log.warning("bookie %s: writable again after a successful checkpoint", self.data_dir)
            self._read_only_reason = None
            self._set_state(BookieState.RUNNING)

    async def _background_checkpoint(self) -> None:
        try:
            await self.checkpoint()
        except StorageError as exc:
            log.warning("bookie %s: checkpoint failed: %s", self.data_dir, exc)

    async def _checkpoint_timer(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self._background_checkpoint()

    # -- errors -----------------------------------------------------------------------------

    def _turn_read_only(self, error: StorageError) -> StorageError:
        if self._state is BookieState.RUNNING:
            log.error("bookie %s turns read-only: %s", self.data_dir, error)
            self._read_only_reason = error
            self._set_state(BookieState.READ_ONLY)
        return error

    def _not_writable(self) -> StorageError:
        if self._state is BookieState.READ_ONLY:
            reason = self._read_only_reason
            cls = DiskFullError if isinstance(reason, DiskFullError) else StorageError
            return cls(f"bookie {self.data_dir} is read-only: {reason}")
        return StorageError(f"bookie {self.data_dir} is {self._state.value}, not accepting writes")

    def _check_readable(self) -> None:
        if self._state not in (BookieState.RUNNING, BookieState.READ_ONLY):
            raise StorageError(f"bookie {self.data_dir} is {self._state.value}")
