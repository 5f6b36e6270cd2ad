"""The managed ledger's add path: straight to the current ledger, queued across a rollover.

`Appender` owns the current ledger's write handle and everything about it: what was issued to
it, the adds in flight, the adds queued across a rollover and the rollover task. It is kept
apart from ManagedLedgerImpl (ledger.py) because it is the write hot path and the rollover
state machine, which read best on their own; the ledger reaches it only through its methods,
and it reaches the ledger only through `AppendHost`. The ledger list is shared: the appender
adds and seals ledgers at its tail, the ledger's trimmer removes them from its head.
See ledger.py's theory of operation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from taureau.common.bytes_like import BYTES_LIKE
from taureau.common.errors import (
    BadVersionError,
    LedgerFencedError,
    ManagedLedgerFencedError,
    StorageArgumentError,
    StorageError,
)
from taureau.storage.ledger.api import LedgerClient, LedgerHandle
from taureau.storage.managed_ledger.api import ManagedLedgerConfig
from taureau.storage.managed_ledger.ledgers import LedgerList
from taureau.storage.managed_ledger.meta import LedgerInfo
from taureau.storage.managed_ledger.state import MLState, _now_ms
from taureau.storage.position import Position

log = logging.getLogger("taureau.storage.managed_ledger.ledger")

# Entries are typed as bytes, as in the ledger API; bytearray and memoryview pass too.
Data = bytes


class AppendHost(Protocol):
    """What the appender needs of its managed ledger."""

    name: str
    config: ManagedLedgerConfig
    ledgers: LedgerList

    @property
    def state(self) -> MLState: ...

    def set_state(self, new: MLState) -> None: ...

    def check_usable(self) -> None: ...

    def fence(self, why: str) -> None: ...

    def entries_added(self, positions: list[Position], datas: Sequence[Data]) -> None:
        """Adds completed: cache them and wake readers."""

    def rolled_over(self) -> None:
        """A rollover ended: old ledgers may be trimmed now."""

    async def save_ledger_list(self) -> None: ...

    async def delete_ledger_quietly(self, ledger_id: int) -> None: ...


def _check_data(data: object) -> None:
    if not isinstance(data, BYTES_LIKE):
        raise StorageArgumentError(f"entry data must be bytes, not {type(data).__name__}")


class Appender:
    """add_entry / add_entries and the rollover that keeps them ordered."""

    def __init__(self, host: AppendHost, client: LedgerClient) -> None:
        self._host = host
        self._client = client
        self.handle: LedgerHandle | None = None  # the current ledger's write handle
        self._issued = 0  # adds issued to the current ledger
        self._issued_bytes = 0
        self._ledger_started = 0.0  # monotonic time the current ledger was created
        self._broken = False  # the current ledger failed an add: roll over on the next one
        self._inflight = 0  # adds issued and not yet completed
        self._drained: asyncio.Future[None] | None = None  # set when _inflight drops to 0
        self._queued: deque[tuple[Data, asyncio.Future[Position]]] = deque()  # waiting for a rollover
        self._rollover: asyncio.Task[None] | None = None
        self.entries_added = 0

    # -- the current ledger -----------------------------------------------------------------

    async def start_ledger(self) -> None:
        """Create the next ledger and make it the current one (at open and at each rollover)."""
        host = self._host
        cfg = host.config
        handle = await self._client.create_ledger(
            cfg.ensemble_size, cfg.write_quorum, cfg.ack_quorum, custom={"managed-ledger": host.name}
        )
        host.ledgers.append(LedgerInfo(handle.ledger_id))
        self.handle = handle
        self._issued = self._issued_bytes = 0
        self._ledger_started = time.monotonic()
        self._broken = False

    async def seal(self) -> None:
        """Close the current ledger (managed ledger close or delete) and record its final count."""
        handle = self.handle
        if handle is None:
            return
        await handle.close()
        current = self._host.ledgers.current  # the sealed count includes adds whose caller gave up
        current.entries = max(current.entries, handle.last_add_confirmed + 1)
        current.timestamp_ms = _now_ms()

    def _room_for(self, count: int, size: int) -> bool:
        cfg = self._host.config
        return (
            self._host.state is MLState.OPEN
            and not self._broken
            and (self._issued == 0 or time.monotonic() - self._ledger_started < cfg.max_ledger_age_s)
            and not self._past_limits(count, size)
        )

    def _past_limits(self, count: int, size: int) -> bool:
        """`count` more entries of `size` bytes would pass the ledger's entry or size limit,
        and it is old enough to roll over (min_ledger_rollover_s)."""
        cfg = self._host.config
        if time.monotonic() - self._ledger_started < cfg.min_ledger_rollover_s:
            return False
        return (
            self._issued + count > cfg.max_entries_per_ledger
            or self._issued_bytes + size > cfg.max_size_per_ledger
        )

    # -- adds -------------------------------------------------------------------------------

    async def add_entry(self, data: Data) -> Position:
        _check_data(data)
        host = self._host
        if host.state is MLState.OPEN:
            cfg = host.config
            if not self._broken and (
                self._issued == 0 or time.monotonic() - self._ledger_started < cfg.max_ledger_age_s
            ):
                return await self._issue(data)
            self._start_rollover()
        host.check_usable()
        fut: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self._queued.append((data, fut))
        return await fut

    def add_entries(self, datas: Sequence[Data]) -> Coroutine[Any, Any, list[Position]]:
        """Append entries in order; their positions once all are durable.

        While the current ledger has room for all of them they go to it as one batch (one
        coroutine chain and one journal wait for the lot: the broker hands in everything a
        connection sent in one read). Otherwise each takes add_entry's path, which queues
        across a rollover. Not a coroutine itself: it hands back the one that adds (a frame
        less per publish); bad data is refused by that one, when awaited, as before.
        """
        for data in datas:
            if not isinstance(data, BYTES_LIKE):
                return self._add_each(datas)  # which refuses it
        if datas and self._room_for(len(datas), sum(map(len, datas))):
            return self._issue_many(datas)
        return self._add_each(datas)

    async def _add_each(self, datas: Sequence[Data]) -> list[Position]:
        for data in datas:
            _check_data(data)
        return list(await asyncio.gather(*(self.add_entry(data) for data in datas)))

    async def _issue_many(self, datas: Sequence[Data]) -> list[Position]:
        handle = self.handle
        assert handle is not None, "issued before the first ledger was started"
        host = self._host
        count, size = len(datas), sum(map(len, datas))
        self._issued += count
        self._issued_bytes += size
        self._inflight += count
        if self._full():
            self._start_rollover()  # the rollover task starts after these adds are issued
        try:
            first = await handle.add_entries(list(datas))
        except LedgerFencedError:
            host.fence("its ledger was fenced by another owner")
            raise ManagedLedgerFencedError(
                f"managed ledger {host.name}: ledger fenced by another owner"
            ) from None
        except StorageError:
            self._broken = True
            raise
        finally:
            self._add_done(count)
        info = host.ledgers.current
        info.entries = max(info.entries, first + count)
        info.size += size
        ledger_id = handle.ledger_id
        positions = [Position(ledger_id, first + offset) for offset in range(count)]
        self.entries_added += count
        host.entries_added(positions, datas)
        return positions

    async def _issue(self, data: Data) -> Position:
        return (await self._issue_many([data]))[0]

    def _add_done(self, count: int = 1) -> None:
        self._inflight -= count
        if self._inflight == 0 and self._drained is not None:
            self._drained.set_result(None)
            self._drained = None

    def _full(self) -> bool:
        """No room for one more entry (at its entry or size limit, and old enough)."""
        return self._past_limits(1, 1)

    # -- rollover ---------------------------------------------------------------------------

    def _start_rollover(self) -> None:
        if self._host.state is MLState.OPEN:
            self._host.set_state(MLState.ROLLING)
            self._rollover = asyncio.get_running_loop().create_task(self._roll())

    async def _roll(self) -> None:
        try:
            while await self._switch_ledger() and await self._drain_queue():
                pass  # the queue filled the new ledger too: switch again
        finally:
            self._rollover = None
        self._host.rolled_over()

    async def _switch_ledger(self) -> bool:
        """Close the current ledger once its adds are done and start the next; False on failure."""
        host = self._host
        try:
            if self._inflight:
                self._drained = asyncio.get_running_loop().create_future()
                await self._drained
            old, old_info = self.handle, host.ledgers.current
            assert old is not None
            await old.close()
            old_info.entries = old.last_add_confirmed + 1
            old_info.timestamp_ms = _now_ms()
            await self.start_ledger()
            # Drop an empty old ledger only once the new one exists: the list is never empty.
            if old_info.entries == 0:
                host.ledgers.remove(old_info.ledger_id)
            await host.save_ledger_list()
            if old_info.entries == 0:
                await host.delete_ledger_quietly(old_info.ledger_id)
            return True
        except Exception as exc:
            if isinstance(exc, LedgerFencedError | BadVersionError | ManagedLedgerFencedError):
                host.fence(f"rollover: {exc!r}")
            else:
                log.warning("managed ledger %s: rollover failed: %r", host.name, exc)
                self._broken = True
                self.fail_queued(exc)
                if host.state is MLState.ROLLING:
                    host.set_state(MLState.OPEN)
            return False

    async def _drain_queue(self) -> bool:
        """Issue the queued adds in order to the new ledger; True if it filled up first."""
        host = self._host
        loop = asyncio.get_running_loop()
        while self._queued and host.state is MLState.ROLLING:
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
        if host.state is MLState.ROLLING:
            host.set_state(MLState.OPEN)
        return False

    async def _issue_queued(self, data: Data, fut: asyncio.Future[Position]) -> None:
        self._issued -= 1  # _issue counts it again
        self._issued_bytes -= len(data)
        self._add_done()
        try:
            self._host.check_usable()
            position = await self._issue(data)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
        else:
            if not fut.done():
                fut.set_result(position)

    def fail_queued(self, exc: BaseException) -> None:
        """Fail every add waiting for a rollover (fenced, closed, or the rollover failed)."""
        queued, self._queued = self._queued, deque()
        for _, fut in queued:
            if not fut.done():
                fut.set_exception(exc)

    async def wait_idle(self) -> None:
        """Wait for a rollover in progress and every add in flight."""
        if self._rollover is not None:
            await asyncio.shield(self._rollover)
        if self._inflight:
            self._drained = self._drained or asyncio.get_running_loop().create_future()
            await self._drained
