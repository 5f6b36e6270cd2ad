"""The managed ledger's add path: straight to the current ledger, queued across a rollover.

A mixin of ManagedLedgerImpl (ledger.py), kept apart because it is the write hot path and the
rollover state machine, which read best on their own. It uses the ledger's fields:
`_handle` (current ledger, single writer), `_state`, `_queued` (adds waiting for a rollover,
in arrival order), `_inflight`, `_issued` / `_issued_bytes` (what the current ledger was
given), `ledgers`, `cache` and `_waiters`. See ledger.py's theory of operation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping

from taureau.common.errors import (
    BadVersionError,
    LedgerFencedError,
    ManagedLedgerFencedError,
    StorageArgumentError,
    StorageError,
)
from taureau.storage.managed_ledger.state import MLState, _now_ms
from taureau.storage.position import Entry, Position

log = logging.getLogger("taureau.storage.managed_ledger.ledger")


class AppendPath:
    """add_entry / add_entries and the rollover that keeps them ordered."""

    _cursors: Mapping[str, object]  # the ledger's cursors (ledger.py owns them)

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
        if self._cursors:  # as Pulsar: with nobody to read them soon, caching only holds memory
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
        return (await self._issue_many([data]))[0]

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
