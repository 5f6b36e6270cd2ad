"""ManagedLedgerImpl: a named log over a chain of ledgers, with rollover, recovery and trimming.

Theory of operation (states in MLState, changed only by `set_state`):
- INITIALIZING -> OPEN once `open()` recovered the chain: the last ledger, left OPEN by a
  crashed owner, is opened with recovery (fenced and sealed at its last durable entry), an
  empty last ledger is dropped, a new current ledger is created and the ledger list is
  written with compare-and-set, so two owners cannot both extend the chain.
- OPEN: `add_entry` goes straight to the current ledger handle (appends.py, `Appender`) (the handle assigns entry
  ids in call order and confirms in that order). The add that fills the ledger (entries,
  bytes or age) moves the state to ROLLING.
- ROLLING: new adds wait in `_queued`, in arrival order. The rollover waits for the adds in
  flight, closes the old ledger, creates the next one, records both in the metadata, and
  issues the queued adds to the new ledger in order before the state is OPEN again, so no
  add is lost or reordered. If a step fails the queued adds fail and the next add retries.
- FENCED: another owner took over (our ledger was fenced or our metadata version is stale);
  adds fail with ManagedLedgerFencedError. CLOSED and DELETED are final.
Trimming runs after a cursor's mark-delete leaves a ledger, after rollover and on a timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from taureau.common.errors import (
    BadVersionError,
    CursorNotFoundError,
    ManagedLedgerClosedError,
    ManagedLedgerFencedError,
    NoSuchEntryError,
    StorageArgumentError,
    StorageError,
)
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger.api import LedgerClient
from taureau.storage.managed_ledger import meta
from taureau.storage.managed_ledger.api import InitialPosition, ManagedLedger, ManagedLedgerConfig
from taureau.storage.managed_ledger.appends import Appender
from taureau.storage.managed_ledger.budget import CacheBudget
from taureau.storage.managed_ledger.cache import EntryCache
from taureau.storage.managed_ledger.cursor import ManagedCursorImpl
from taureau.storage.managed_ledger.ledgers import LedgerList, plan_trim
from taureau.storage.managed_ledger.persist import SerialWriter
from taureau.storage.managed_ledger.reads import EntryReader
from taureau.storage.managed_ledger.recovery import delete_ledger_quietly, load_chain
from taureau.storage.managed_ledger.save_ticker import SaveTicker
from taureau.storage.managed_ledger.state import _ALLOWED, MLState, _now_ms
from taureau.storage.managed_ledger.stats import ledger_stats
from taureau.storage.position import EARLIEST, LATEST, Entry, Position

log = logging.getLogger(__name__)


class ManagedLedgerImpl(ManagedLedger):
    """Use `await ManagedLedgerImpl.open(...)` (or the factory), not the constructor."""

    def __init__(
        self,
        name: str,
        config: ManagedLedgerConfig,
        store: MetadataStore,
        client: LedgerClient,
        *,
        cursor_persist_interval_s: float = 0.1,
        on_closed: Callable[[ManagedLedgerImpl], None] | None = None,
        cache_budget: CacheBudget | None = None,
        cursor_save_ticker: SaveTicker | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.store = store  # shared with the cursors, which persist themselves
        self.path = meta.ledger_path(name)
        self.cursor_persist_interval_s = cursor_persist_interval_s
        # The factory's: its cursors' rate-limited saves share one timer and land together.
        self.cursor_save_ticker = cursor_save_ticker
        self._client = client
        self._on_closed = on_closed
        self._state = MLState.INITIALIZING
        self.ledgers = LedgerList([])  # the chain; cursors read it, only this object changes it
        self._version = -1  # metadata version of our ledger-list record
        # The current ledger, its adds and rollovers (appends.py); it changes our state only
        # through set_state, and the ledger list only at its tail.
        self._appender = Appender(self, client)
        self.cache = EntryCache(config.cache_size_bytes, cache_budget)
        self._reader = EntryReader(client, self.ledgers, self.cache, lambda: self._appender.handle)
        self._cursors: dict[str, ManagedCursorImpl] = {}
        self._opening_cursors: dict[str, asyncio.Future[ManagedCursorImpl]] = {}  # creates in flight
        self._waiters: set[asyncio.Future[None]] = set()  # readers waiting for the next add
        self._info_writer = SerialWriter(self._save_info, on_error=self._on_save_error)
        self._trimmer = SerialWriter(self._trim_once, on_error=lambda e: log.warning("%s: trim: %r", name, e))

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> MLState:
        return self._state

    def set_state(self, new: MLState) -> None:
        if new not in _ALLOWED[self._state]:
            raise StorageError(
                f"managed ledger {self.name}: illegal transition {self._state.name} -> {new.name}"
            )
        self._state = new

    def check_usable(self) -> None:
        if self._state in (MLState.OPEN, MLState.ROLLING):
            return
        if self._state is MLState.FENCED:
            raise ManagedLedgerFencedError(f"managed ledger {self.name} was taken over by another owner")
        raise ManagedLedgerClosedError(f"managed ledger {self.name} is {self._state.value}")

    def fence(self, why: str) -> None:
        if self._state in (MLState.OPEN, MLState.ROLLING, MLState.INITIALIZING):
            log.warning("managed ledger %s fenced: %s", self.name, why)
            self.set_state(MLState.FENCED)
        self._appender.fail_queued(ManagedLedgerFencedError(f"managed ledger {self.name} fenced: {why}"))

    def _on_save_error(self, exc: BaseException) -> None:
        if isinstance(exc, BadVersionError):
            self.fence("its metadata was changed by another owner")

    # -- open / recovery --------------------------------------------------------------------

    @classmethod
    async def open(
        cls, name: str, config: ManagedLedgerConfig, store: MetadataStore, client: LedgerClient, **kw
    ) -> ManagedLedgerImpl:
        ml = cls(name, config, store, client, **kw)
        await ml._initialize()
        return ml

    async def _initialize(self) -> None:
        infos, self._version = await load_chain(self.store, self._client, self.name)
        for info in infos:
            self.ledgers.append(info)
        await self._appender.start_ledger()
        try:
            await self._info_writer.flush()
        except BadVersionError:
            await self.delete_ledger_quietly(self.ledgers.current.ledger_id)
            raise ManagedLedgerFencedError(
                f"managed ledger {self.name} was opened by another owner"
            ) from None
        for child in await self.store.children(self.path):
            cursor = await ManagedCursorImpl.load(self, meta.decode_name(child))
            self._cursors[cursor.name] = cursor
        self.set_state(MLState.OPEN)
        # Opening rolled over to a new ledger: ledgers consumed before the restart may go now.
        self._trimmer.request()

    # -- the add path (appends.py) and what it asks of us (AppendHost) ---------------------

    async def add_entry(self, data: bytes) -> Position:
        return await self._appender.add_entry(data)

    def add_entries(self, datas: list[bytes]) -> Coroutine[Any, Any, list[Position]]:
        return self._appender.add_entries(datas)  # its coroutine: no frame of ours per add

    def entries_added(self, positions: list[Position], datas: Sequence[bytes]) -> None:
        if self._cursors:  # as Pulsar: with nobody to read them soon, caching only holds memory
            insert = self.cache.insert
            for position, data in zip(positions, datas, strict=True):
                insert(Entry(position, bytes(data)))
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    def rolled_over(self) -> None:
        self._trimmer.request()

    async def save_ledger_list(self) -> None:
        await self._info_writer.flush()

    async def _save_info(self) -> None:
        stat = await self.store.put(self.path, meta.encode_ledger_info(self.ledgers.infos), self._version)
        self._version = stat.version

    # -- positions and counts ---------------------------------------------------------------

    @property
    def last_confirmed(self) -> Position:
        return self.ledgers.last_entry

    @property
    def first_position(self) -> Position:
        return self.ledgers.normalize(Position(self.ledgers.infos[0].ledger_id, 0))

    @property
    def entries_count(self) -> int:
        return self.ledgers.total_entries

    @property
    def total_size(self) -> int:
        return self.ledgers.total_size

    @property
    def estimated_backlog_size(self) -> int:
        durable = [c.mark_delete_position for c in self._cursors.values() if c.durable]
        return self.ledgers.size_after(min(durable)) if durable else 0

    def resolve(self, position: Position) -> Position:
        """EARLIEST / LATEST / any position -> the stored entry at or after it (or the end)."""
        if position == EARLIEST:
            return self.first_position
        if position == LATEST:
            return self.ledgers.end
        return self.ledgers.normalize(position)

    def count_entries(self, after: Position, up_to: Position) -> int:
        return self.ledgers.count(after, up_to)

    def position_at(self, index: int) -> Position:
        return self.ledgers.position_at(index)

    # -- reads ------------------------------------------------------------------------------

    async def read_entry(self, position: Position) -> Entry:
        self.check_usable()
        if not self.ledgers.contains(position):
            raise NoSuchEntryError(f"no entry {position} in managed ledger {self.name}")
        return (await self._reader.read(position, 1, position, None))[0]

    async def read_entries(self, start: Position, max_entries: int) -> list[Entry]:
        self.check_usable()
        if max_entries < 1:
            raise StorageArgumentError(f"max_entries must be >= 1, got {max_entries}")
        if start > self.ledgers.end and start != LATEST:
            raise NoSuchEntryError(
                f"{start} is beyond the end {self.ledgers.end} of managed ledger {self.name}"
            )
        return await self._reader.read(self.resolve(start), max_entries, self.last_confirmed, None)

    async def read_span(self, start: Position, max_entries: int, stop: Position | None) -> list[Entry]:
        """Cursor reads: from normalised `start`, before `stop`, up to the last confirmed entry."""
        self.check_usable()
        return await self._reader.read(start, max_entries, self.last_confirmed, stop)

    def read_span_cached(self, start: Position, max_entries: int, stop: Position | None) -> list[Entry] | None:
        """`read_span` served from the cache alone, synchronously; None if it would read a ledger."""
        self.check_usable()
        return self._reader.read_cached(start, max_entries, self.last_confirmed, stop)

    def read_tail_cached(self, start: Position, max_entries: int) -> list[Entry] | None:
        """`read_span_cached` for a `start` in the ledger being written (the caller checked
        that, and that this ledger is usable): the entries from it to the last one, one cache
        slice; None if `start` is not cached."""
        available = self.ledgers.current.entries - start.entry_id
        if available <= 0:
            return []
        run = self.cache.get_run(start, min(max_entries, available))
        # The cache holds a contiguous tail of the log: from a cached start, all of it.
        return run if run else None

    async def find_position(self, predicate: Callable[[Entry], bool]) -> Position | None:
        self.check_usable()
        lo, hi = 0, self.entries_count
        total = hi
        while lo < hi:
            mid = (lo + hi) // 2
            if predicate(await self.read_entry(self.ledgers.position_at(mid))):
                hi = mid
            else:
                lo = mid + 1
        return None if lo == total else self.ledgers.position_at(lo)

    def wait_for_entries(self) -> asyncio.Future[None]:
        """A future resolved by the next completed add (ManagedLedgerClosedError on close)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        return fut

    def discard_waiter(self, fut: asyncio.Future[None]) -> None:
        self._waiters.discard(fut)

    def evict_read_entries(self) -> None:
        """Drop cached entries every cursor has read past."""
        cursors = self._cursors
        if len(cursors) == 1:  # the common case, once per dispatch round: no generator
            for cursor in cursors.values():
                self.cache.evict_before(cursor.read_position)
        elif cursors:
            self.cache.evict_before(min(c.read_position for c in cursors.values()))

    # -- cursors ----------------------------------------------------------------------------

    @property
    def cursors(self) -> Mapping[str, ManagedCursorImpl]:
        return MappingProxyType(self._cursors)

    async def open_cursor(
        self, name: str, initial_position: InitialPosition = InitialPosition.LATEST
    ) -> ManagedCursorImpl:
        self.check_usable()
        meta.cursor_path(self.name, name)  # validates the name
        cursor = self._cursors.get(name)
        if cursor is not None:
            if not cursor.durable:
                raise StorageArgumentError(f"cursor {name!r} exists and is not durable")
            return cursor
        # Two subscribers of a new subscription open its cursor at once: the second waits
        # for the first's create instead of racing it (its metadata create would fail).
        opening = self._opening_cursors.get(name)
        if opening is None:
            start = self.first_position if initial_position is InitialPosition.EARLIEST else self.ledgers.end
            opening = asyncio.ensure_future(
                ManagedCursorImpl.create(self, name, self.ledgers.previous(start))
            )
            self._opening_cursors[name] = opening
            opening.add_done_callback(lambda _: self._opening_cursors.pop(name, None))
        cursor = await asyncio.shield(opening)
        self._cursors[name] = cursor
        return cursor

    def new_non_durable_cursor(self, name: str, start: Position) -> ManagedCursorImpl:
        self.check_usable()
        meta.cursor_path(self.name, name)
        if name in self._cursors:
            raise StorageArgumentError(f"cursor name {name!r} is taken")
        if start != LATEST and start > self.ledgers.end:
            raise NoSuchEntryError(
                f"{start} is beyond the end {self.ledgers.end} of managed ledger {self.name}"
            )
        cursor = ManagedCursorImpl(self, name, False, self.ledgers.previous(self.resolve(start)))
        self._cursors[name] = cursor
        return cursor

    async def delete_cursor(self, name: str) -> None:
        self.check_usable()
        cursor = self._cursors.get(name)
        if cursor is None:
            raise CursorNotFoundError(f"managed ledger {self.name} has no cursor {name!r}")
        await cursor.remove()
        self._trimmer.request()

    def detach_cursor(self, cursor: ManagedCursorImpl) -> None:
        if self._cursors.get(cursor.name) is cursor:
            del self._cursors[cursor.name]

    def on_mark_delete_moved(self, old: Position, new: Position) -> None:
        """A durable cursor moved: trim when it left a ledger (the only moment it can free one).
        With one ledger there is nothing to free (`_trim_once` returns at once): a caught-up
        cursor sits at its ledger's end, so without that check every ack started a trim task."""
        if len(self.ledgers) < 2:
            return
        if old.ledger_id != new.ledger_id or new.entry_id >= self.ledgers.ledger_end(new.ledger_id):
            self._trimmer.request()

    # -- retention --------------------------------------------------------------------------

    def set_retention(self, retention_time_s: float, retention_size_bytes: int) -> None:
        self.config.retention_time_s = retention_time_s
        self.config.retention_size_bytes = retention_size_bytes
        if self._state in (MLState.OPEN, MLState.ROLLING):
            self._trimmer.request()

    def set_quorum(self, ensemble_size: int, write_quorum: int, ack_quorum: int) -> None:
        if not 1 <= ack_quorum <= write_quorum <= ensemble_size:
            raise StorageArgumentError("need 1 <= ack_quorum <= write_quorum <= ensemble_size")
        self.config.ensemble_size = ensemble_size
        self.config.write_quorum = write_quorum
        self.config.ack_quorum = ack_quorum

    async def trim(self) -> None:
        """Delete the ledgers retention lets go now (normally this runs by itself)."""
        self.check_usable()
        await self._trimmer.flush()

    def periodic_trim(self) -> None:
        """The factory's sweep (every trim_interval_s, one pass over every open ledger, no
        timer per ledger): retention by time frees ledgers with nothing else happening. A
        managed ledger of one ledger has nothing to trim and costs nothing here."""
        if self._state in (MLState.OPEN, MLState.ROLLING) and len(self.ledgers) >= 2:
            self._trimmer.request()

    async def _trim_once(self) -> None:
        if self._state not in (MLState.OPEN, MLState.ROLLING) or len(self.ledgers) < 2:
            return
        durable = [c.mark_delete_position for c in self._cursors.values() if c.durable]
        slowest = min(durable) if durable else self.last_confirmed
        cfg = self.config
        doomed = plan_trim(
            self.ledgers.infos, slowest, cfg.retention_time_s, cfg.retention_size_bytes, _now_ms()
        )
        if not doomed:
            return
        for ledger_id in doomed:
            self.ledgers.remove(ledger_id)
        await self._info_writer.flush()  # the list first: a crash now leaks ledgers, loses nothing
        first = self.first_position
        self.cache.evict_before(first)
        for cursor in self._cursors.values():
            cursor.on_trimmed(first)
        for ledger_id in doomed:
            self._reader.forget(ledger_id)
            await self.delete_ledger_quietly(ledger_id)

    async def delete_ledger_quietly(self, ledger_id: int) -> None:
        await delete_ledger_quietly(self._client, ledger_id, self.name)

    # -- stats, close, delete ---------------------------------------------------------------

    def internal_stats(self) -> dict:
        return ledger_stats(self, self._appender.entries_added, self._state.value)

    async def close(self) -> None:
        if self._state in (MLState.CLOSED, MLState.DELETED):
            return
        if self._state is not MLState.INITIALIZING:
            await self._appender.wait_idle()
        for cursor in list(self._cursors.values()):
            await cursor.close()
        was_fenced = self._state is MLState.FENCED
        self._shutdown(MLState.CLOSED)
        try:
            if self._appender.handle is not None and not was_fenced:
                await self._appender.seal()
                await self._info_writer.flush()
            await self._reader.close()
        finally:
            if self._on_closed is not None:
                self._on_closed(self)

    async def delete(self) -> None:
        self.check_usable()
        await self._appender.wait_idle()
        for cursor in list(self._cursors.values()):
            await cursor.remove()
        self._shutdown(MLState.DELETED)
        try:
            await self._appender.seal()  # seal before delete, so no client holds it open
            await self._reader.close()
            for info in list(self.ledgers.infos):
                await self.delete_ledger_quietly(info.ledger_id)
            await self.store.delete_recursive(self.path)
        finally:
            if self._on_closed is not None:
                self._on_closed(self)

    def _shutdown(self, state: MLState) -> None:
        self.set_state(state)
        self.cache.close()
        self._trimmer.stop()
        error = ManagedLedgerClosedError(f"managed ledger {self.name} is {state.value}")
        self._appender.fail_queued(error)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._waiters.clear()

    def abandon(self) -> None:
        """Stop every timer and background save without writing anything: what a crash
        leaves behind (for tests that reopen the same metadata and ledgers)."""
        if self._state not in (MLState.CLOSED, MLState.DELETED):
            self._shutdown(MLState.CLOSED)
        self._info_writer.stop()
        for cursor in self._cursors.values():
            cursor.abandon()
