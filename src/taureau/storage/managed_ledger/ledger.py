"""ManagedLedgerImpl: a named log over a chain of ledgers, with rollover, recovery and trimming.

Theory of operation (states in MLState, changed only by `_set_state`):
- INITIALIZING -> OPEN once `open()` recovered the chain: the last ledger, left OPEN by a
  crashed owner, is opened with recovery (fenced and sealed at its last durable entry), an
  empty last ledger is dropped, a new current ledger is created and the ledger list is
  written with compare-and-set, so two owners cannot both extend the chain.
- OPEN: `add_entry` goes straight to the current ledger handle (the handle assigns entry
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
import time
from collections import deque
from collections.abc import Callable, Mapping
from enum import Enum
from types import MappingProxyType

from taureau.common.errors import (
    BadVersionError,
    CursorNotFoundError,
    LedgerFencedError,
    ManagedLedgerClosedError,
    ManagedLedgerFencedError,
    NoSuchEntryError,
    StorageArgumentError,
    StorageError,
)
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger.api import LedgerClient, LedgerHandle
from taureau.storage.managed_ledger import meta
from taureau.storage.managed_ledger.api import InitialPosition, ManagedLedger, ManagedLedgerConfig
from taureau.storage.managed_ledger.cache import EntryCache
from taureau.storage.managed_ledger.cursor import ManagedCursorImpl
from taureau.storage.managed_ledger.ledgers import LedgerList, plan_trim
from taureau.storage.managed_ledger.persist import SerialWriter
from taureau.storage.managed_ledger.reads import EntryReader
from taureau.storage.managed_ledger.recovery import delete_ledger_quietly, load_chain
from taureau.storage.managed_ledger.stats import ledger_stats
from taureau.storage.position import EARLIEST, LATEST, Entry, Position

log = logging.getLogger(__name__)


class MLState(Enum):
    INITIALIZING = "initializing"
    OPEN = "open"
    ROLLING = "rolling"
    FENCED = "fenced"
    CLOSED = "closed"
    DELETED = "deleted"


_ALLOWED = {
    MLState.INITIALIZING: {MLState.OPEN, MLState.FENCED, MLState.CLOSED},
    MLState.OPEN: {MLState.ROLLING, MLState.FENCED, MLState.CLOSED, MLState.DELETED},
    MLState.ROLLING: {MLState.OPEN, MLState.FENCED, MLState.CLOSED, MLState.DELETED},
    MLState.FENCED: {MLState.CLOSED, MLState.DELETED},
    MLState.CLOSED: {MLState.DELETED},
    MLState.DELETED: set(),
}


def _now_ms() -> int:
    return int(time.time() * 1000)


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
        trim_interval_s: float = 60.0,
        on_closed: Callable[[ManagedLedgerImpl], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.store = store  # shared with the cursors, which persist themselves
        self.path = meta.ledger_path(name)
        self.cursor_persist_interval_s = cursor_persist_interval_s
        self._client = client
        self._trim_interval_s = trim_interval_s
        self._on_closed = on_closed
        self._state = MLState.INITIALIZING
        self.ledgers = LedgerList([])  # the chain; cursors read it, only this object changes it
        self._version = -1  # metadata version of our ledger-list record
        self._handle: LedgerHandle | None = None  # the current ledger's write handle
        self._issued = 0  # adds issued to the current ledger
        self._issued_bytes = 0
        self._ledger_started = 0.0  # monotonic time the current ledger was created
        self._broken = False  # the current ledger failed an add: roll over on the next one
        self._inflight = 0  # adds issued and not yet completed
        self._drained: asyncio.Future | None = None  # set when _inflight drops to 0
        self._queued: deque[tuple[bytes, asyncio.Future]] = deque()  # adds waiting for a rollover
        self._rollover: asyncio.Task | None = None
        self._entries_added = 0
        self.cache = EntryCache(config.cache_size_bytes)
        self._reader = EntryReader(client, self.ledgers, self.cache, lambda: self._handle)
        self._cursors: dict[str, ManagedCursorImpl] = {}
        self._waiters: set[asyncio.Future] = set()  # readers waiting for the next add
        self._info_writer = SerialWriter(self._save_info, on_error=self._on_save_error)
        self._trimmer = SerialWriter(self._trim_once, on_error=lambda e: log.warning("%s: trim: %r", name, e))
        self._trim_timer: asyncio.TimerHandle | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> MLState:
        return self._state

    def _set_state(self, new: MLState) -> None:
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

    def _fence(self, why: str) -> None:
        if self._state in (MLState.OPEN, MLState.ROLLING, MLState.INITIALIZING):
            log.warning("managed ledger %s fenced: %s", self.name, why)
            self._set_state(MLState.FENCED)
        self._fail_queued(ManagedLedgerFencedError(f"managed ledger {self.name} fenced: {why}"))

    def _on_save_error(self, exc: BaseException) -> None:
        if isinstance(exc, BadVersionError):
            self._fence("its metadata was changed by another owner")

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
        await self._start_ledger()
        try:
            await self._info_writer.flush()
        except BadVersionError:
            await self._delete_ledger_quietly(self.ledgers.current.ledger_id)
            raise ManagedLedgerFencedError(
                f"managed ledger {self.name} was opened by another owner"
            ) from None
        for child in await self.store.children(self.path):
            cursor = await ManagedCursorImpl.load(self, meta.decode_name(child))
            self._cursors[cursor.name] = cursor
        self._set_state(MLState.OPEN)
        self._schedule_trim_timer()

    async def _start_ledger(self) -> None:
        cfg = self.config
        handle = await self._client.create_ledger(
            cfg.ensemble_size, cfg.write_quorum, cfg.ack_quorum, custom={"managed-ledger": self.name}
        )
        self.ledgers.append(meta.LedgerInfo(handle.ledger_id))
        self._handle = handle
        self._issued = self._issued_bytes = 0
        self._ledger_started = time.monotonic()
        self._broken = False

    async def _save_info(self) -> None:
        stat = await self.store.put(self.path, meta.encode_ledger_info(self.ledgers.infos), self._version)
        self._version = stat.version

    # -- add path ---------------------------------------------------------------------------

    async def add_entry(self, data: bytes) -> Position:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StorageArgumentError(f"entry data must be bytes, not {type(data).__name__}")
        if self._state is MLState.OPEN:
            if not self._broken and (
                self._issued == 0 or time.monotonic() - self._ledger_started < self.config.max_ledger_age_s
            ):
                return await self._issue(data)
            self._start_rollover()
        self.check_usable()
        fut = asyncio.get_running_loop().create_future()
        self._queued.append((data, fut))
        return await fut

    async def add_entries(self, datas: list[bytes]) -> list[Position]:
        """Append entries in order; their positions once all are durable.

        While the current ledger has room for all of them they go to it as one batch (one
        coroutine chain and one journal wait for the lot: the broker hands in everything a
        connection sent in one read). Otherwise each takes add_entry's path, which queues
        across a rollover.
        """
        for data in datas:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise StorageArgumentError(f"entry data must be bytes, not {type(data).__name__}")
        cfg = self.config
        if (
            datas
            and self._state is MLState.OPEN
            and not self._broken
            and (self._issued == 0 or time.monotonic() - self._ledger_started < cfg.max_ledger_age_s)
            and self._issued + len(datas) <= cfg.max_entries_per_ledger
            and self._issued_bytes + sum(map(len, datas)) <= cfg.max_size_per_ledger
        ):
            return await self._issue_many(datas)
        return list(await asyncio.gather(*(self.add_entry(data) for data in datas)))

    async def _issue_many(self, datas: list[bytes]) -> list[Position]:
        handle = self._handle
        count, size = len(datas), sum(map(len, datas))
        self._issued += count
        self._issued_bytes += size
        self._inflight += count
        if self._full():
            self._start_rollover()  # the rollover task starts after these adds are issued
        try:
            first = await handle.add_entries(datas)
        except LedgerFencedError:
            self._fence("its ledger was fenced by another owner")
            raise ManagedLedgerFencedError(
                f"managed ledger {self.name}: ledger fenced by another owner"
            ) from None
        except StorageError:
            self._broken = True
            raise
        finally:
            self._add_done(count)
        info = self.ledgers.current
        info.entries = max(info.entries, first + count)
        info.size += size
        ledger_id = handle.ledger_id
        positions = [Position(ledger_id, first + offset) for offset in range(count)]
        self._entries_added += count
        insert = self.cache.insert
        for position, data in zip(positions, datas, strict=True):
            insert(Entry(position, bytes(data)))
        self._wake_waiters()
        return positions

    def _wake_waiters(self) -> None:
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    async def _issue(self, data: bytes) -> Position:
        handle = self._handle
        self._issued += 1
        self._issued_bytes += len(data)
        self._inflight += 1
        if self._full():
            self._start_rollover()  # the rollover task starts after this add is issued
        try:
            entry_id = await handle.add_entry(data)
        except LedgerFencedError:
            self._fence("its ledger was fenced by another owner")
            raise ManagedLedgerFencedError(
                f"managed ledger {self.name}: ledger fenced by another owner"
            ) from None
        except StorageError:
            self._broken = True
            raise
        finally:
            self._add_done()
        info = self.ledgers.current
        info.entries = max(info.entries, entry_id + 1)
        info.size += len(data)
        position = Position(handle.ledger_id, entry_id)
        self._entries_added += 1
        self.cache.insert(Entry(position, bytes(data)))
        self._wake_waiters()
        return position

    def _start_rollover(self) -> None:
        if self._state is MLState.OPEN:
            self._set_state(MLState.ROLLING)
            self._rollover = asyncio.get_running_loop().create_task(self._roll())

    def _add_done(self, count: int = 1) -> None:
        self._inflight -= count
        if self._inflight == 0 and self._drained is not None:
            self._drained.set_result(None)
            self._drained = None

    def _full(self) -> bool:
        cfg = self.config
        return self._issued >= cfg.max_entries_per_ledger or self._issued_bytes >= cfg.max_size_per_ledger

    async def _roll(self) -> None:
        try:
            while await self._switch_ledger() and await self._drain_queue():
                pass  # the queue filled the new ledger too: switch again
        finally:
            self._rollover = None
        self._trimmer.request()

    async def _switch_ledger(self) -> bool:
        """Close the current ledger once its adds are done and start the next; False on failure."""
        try:
            if self._inflight:
                self._drained = asyncio.get_running_loop().create_future()
                await self._drained
            old, old_info = self._handle, self.ledgers.current
            await old.close()
            old_info.entries = old.last_add_confirmed + 1
            old_info.timestamp_ms = _now_ms()
            await self._start_ledger()
            # Drop an empty old ledger only once the new one exists: the list is never empty.
            if old_info.entries == 0:
                self.ledgers.remove(old_info.ledger_id)
            await self._info_writer.flush()
            if old_info.entries == 0:
                await self._delete_ledger_quietly(old_info.ledger_id)
            return True
        except Exception as exc:
            if isinstance(exc, LedgerFencedError | BadVersionError | ManagedLedgerFencedError):
                self._fence(f"rollover: {exc!r}")
            else:
                log.warning("managed ledger %s: rollover failed: %r", self.name, exc)
                self._broken = True
                self._fail_queued(exc)
                if self._state is MLState.ROLLING:
                    self._set_state(MLState.OPEN)
            return False

    async def _drain_queue(self) -> bool:
        """Issue the queued adds in order to the new ledger; True if it filled up first."""
        loop = asyncio.get_running_loop()
        while self._queued and self._state is MLState.ROLLING:
            if self._full():
                return True
            data, fut = self._queued.popleft()
            self._inflight += 1  # counted now so that _full() sees it; _issue_queued hands it over
            self._issued += 1
            self._issued_bytes += len(data)
            loop.create_task(self._issue_queued(data, fut))
            if not self._queued:
                # Tasks start in creation order, each issuing its add before suspending;
                # yielding once lets all of them issue before any add that arrives later.
                await asyncio.sleep(0)
        if self._state is MLState.ROLLING:
            self._set_state(MLState.OPEN)
        return False

    async def _issue_queued(self, data: bytes, fut: asyncio.Future) -> None:
        self._issued -= 1  # _issue counts it again
        self._issued_bytes -= len(data)
        self._add_done()
        try:
            self.check_usable()
            position = await self._issue(data)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
        else:
            if not fut.done():
                fut.set_result(position)

    def _fail_queued(self, exc: BaseException) -> None:
        queued, self._queued = self._queued, deque()
        for _, fut in queued:
            if not fut.done():
                fut.set_exception(exc)

    async def _wait_idle(self) -> None:
        if self._rollover is not None:
            await asyncio.shield(self._rollover)
        if self._inflight:
            self._drained = self._drained or asyncio.get_running_loop().create_future()
            await self._drained

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

    def resolve(self, position: Position) -> Position:
        """EARLIEST / LATEST / any position -> the stored entry at or after it (or the end)."""
        if position == EARLIEST:
            return self.first_position
        if position == LATEST:
            return self.ledgers.end
        return self.ledgers.normalize(position)

    def count_entries(self, after: Position, up_to: Position) -> int:
        return self.ledgers.count(after, up_to)

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

    def wait_for_entries(self) -> asyncio.Future:
        """A future resolved by the next completed add (ManagedLedgerClosedError on close)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        return fut

    def discard_waiter(self, fut: asyncio.Future) -> None:
        self._waiters.discard(fut)

    def evict_read_entries(self) -> None:
        """Drop cached entries every cursor has read past."""
        if self._cursors:
            self.cache.evict_before(min(c.read_position for c in self._cursors.values()))

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
        start = self.first_position if initial_position is InitialPosition.EARLIEST else self.ledgers.end
        cursor = await ManagedCursorImpl.create(self, name, self.ledgers.previous(start))
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
        """A durable cursor moved: trim when it left a ledger (the only moment it can free one)."""
        if old.ledger_id != new.ledger_id or new.entry_id >= self.ledgers.ledger_end(new.ledger_id):
            self._trimmer.request()

    # -- retention --------------------------------------------------------------------------

    def set_retention(self, retention_time_s: float, retention_size_bytes: int) -> None:
        self.config.retention_time_s = retention_time_s
        self.config.retention_size_bytes = retention_size_bytes
        if self._state in (MLState.OPEN, MLState.ROLLING):
            self._trimmer.request()

    async def trim(self) -> None:
        """Delete the ledgers retention lets go now (normally this runs by itself)."""
        self.check_usable()
        await self._trimmer.flush()

    def _schedule_trim_timer(self) -> None:
        def tick() -> None:
            if self._state in (MLState.OPEN, MLState.ROLLING):
                self._trimmer.request()
                self._schedule_trim_timer()

        self._trim_timer = asyncio.get_running_loop().call_later(self._trim_interval_s, tick)

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
            await self._delete_ledger_quietly(ledger_id)

    async def _delete_ledger_quietly(self, ledger_id: int) -> None:
        await delete_ledger_quietly(self._client, ledger_id, self.name)

    # -- stats, close, delete ---------------------------------------------------------------

    def internal_stats(self) -> dict:
        return ledger_stats(self, self._entries_added, self._state.value)

    async def close(self) -> None:
        if self._state in (MLState.CLOSED, MLState.DELETED):
            return
        if self._state is not MLState.INITIALIZING:
            await self._wait_idle()
        for cursor in list(self._cursors.values()):
            await cursor.close()
        was_fenced = self._state is MLState.FENCED
        self._shutdown(MLState.CLOSED)
        try:
            if self._handle is not None and not was_fenced:
                await self._handle.close()
                current = self.ledgers.current  # the sealed count includes adds whose caller gave up
                current.entries = max(current.entries, self._handle.last_add_confirmed + 1)
                current.timestamp_ms = _now_ms()
                await self._info_writer.flush()
            await self._reader.close()
        finally:
            if self._on_closed is not None:
                self._on_closed(self)

    async def delete(self) -> None:
        self.check_usable()
        await self._wait_idle()
        for cursor in list(self._cursors.values()):
            await cursor.remove()
        self._shutdown(MLState.DELETED)
        try:
            if self._handle is not None:
                await self._handle.close()  # seal before delete, so no client holds it open
            await self._reader.close()
            for info in list(self.ledgers.infos):
                await self._delete_ledger_quietly(info.ledger_id)
            await self.store.delete_recursive(self.path)
        finally:
            if self._on_closed is not None:
                self._on_closed(self)

    def _shutdown(self, state: MLState) -> None:
        self._set_state(state)
        if self._trim_timer is not None:
            self._trim_timer.cancel()
        self._trimmer.stop()
        error = ManagedLedgerClosedError(f"managed ledger {self.name} is {state.value}")
        self._fail_queued(error)
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
