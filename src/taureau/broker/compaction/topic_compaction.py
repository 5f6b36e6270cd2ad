"""TopicCompaction: one topic's compacted view and the compactions that renew it.

A compaction reads the topic through its current compacted view (the previous compaction's
result, then the entries after its horizon), in two passes: the first finds the latest message
of every key, the second writes the entries holding them to a new compacted managed ledger.
Then, in this order: the pointer in the metadata store names the new ledger and horizon
(a crash before this keeps the old view), the view switches, the `__compaction` cursor
acknowledges up to the horizon (so the topic's retention may drop what compaction has read)
and the old compacted ledger is deleted. One compaction at a time per topic, and at most
MAX_RUNNING in the broker; reads go in chunks that yield to the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from taureau.broker.compaction import keys
from taureau.broker.compaction.view import CompactedView, unwrap, wrap
from taureau.common.errors import BrokerError, NoSuchEntryError, NotFoundError, TaureauError
from taureau.metadata.store import MetadataStore
from taureau.storage.managed_ledger.api import (
    InitialPosition,
    ManagedLedger,
    ManagedLedgerConfig,
    ManagedLedgerFactoryBase,
)
from taureau.storage.position import Entry, Position

log = logging.getLogger(__name__)

ROOT = "/compaction"
CURSOR = "__compaction"  # Pulsar's name: it holds what the next compaction must read
RETRY_AFTER_FAILURE_S = 60.0  # an automatic compaction that failed is not retried sooner
CHUNK = 256  # entries per read and per write
MAX_KEYS = 5_000_000  # keys one compaction may track (about 0.5 GB of memory at the limit)


def compacted_name(storage_name: str, generation: int) -> str:
    """`tenant/namespace/persistent-compacted/topic/N`: beside the topic, never listed as one."""
    tenant, namespace, domain, local = storage_name.split("/", 3)
    return f"{tenant}/{namespace}/{domain}-compacted/{local}/{generation}"


class CompactionInProgressError(BrokerError):
    """A compaction of the topic is already running."""


class TopicCompaction:
    def __init__(self, storage_name: str, ledger: ManagedLedger, factory: ManagedLedgerFactoryBase,
                 store: MetadataStore, running: asyncio.Semaphore) -> None:
        self._name = storage_name
        self._running = running  # the broker's: compactions are CPU work on its event loop
        self._ledger = ledger
        self._factory = factory
        self._store = store
        self.view: CompactedView | None = None  # owned here; replaced whole by each compaction
        self.status = "NOT_RUN"  # NOT_RUN, RUNNING, SUCCESS, ERROR (Pulsar's names)
        self.last_error = ""
        self._generation = 0
        self._task: asyncio.Task | None = None
        self._failed_at = 0.0  # monotonic time of the last failure: automatic runs wait after one

    @property
    def _pointer(self) -> str:
        return f"{ROOT}/{self._name}"

    async def load(self) -> None:
        """Find the last finished compaction (a topic that loads keeps its compacted view)."""
        found = await self._store.get(self._pointer)
        if found is None:
            return
        record = json.loads(found[0])
        self._generation = int(record["generation"])
        compacted = await self._factory.open(record["ledger"], self._compacted_config())
        self.view = CompactedView(compacted, Position(*record["horizon"]))
        self.status = "SUCCESS"

    def pending_bytes(self) -> int:
        """About how many bytes were added since the last compaction's horizon."""
        ledger = self._ledger
        if ledger.entries_count == 0:
            return 0
        since = self.view.horizon if self.view is not None else Position(-1, -1)
        pending = ledger.count_entries(since, ledger.last_confirmed)
        return pending * ledger.total_size // ledger.entries_count

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def may_start_automatically(self) -> bool:
        return not self.running and time.monotonic() - self._failed_at >= RETRY_AFTER_FAILURE_S

    def trigger(self) -> None:
        if self.running:
            raise CompactionInProgressError(f"a compaction of {self._name} is already running")
        self.status, self.last_error = "RUNNING", ""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            async with self._running:
                await self._compact()
            self.status = "SUCCESS"
        except asyncio.CancelledError:
            self.status, self.last_error = "ERROR", "cancelled (the topic was closed)"
            raise
        except Exception as exc:
            if not isinstance(exc, TaureauError):
                log.exception("compaction of %s failed", self._name)
            else:
                log.warning("compaction of %s failed: %s", self._name, exc)
            self.status, self.last_error = "ERROR", str(exc) or type(exc).__name__
            self._failed_at = time.monotonic()

    async def _compact(self) -> None:
        ledger = self._ledger
        horizon = ledger.last_confirmed
        cursor = await ledger.open_cursor(CURSOR, InitialPosition.EARLIEST)
        previous = self.view
        latest: dict[str, keys.MessageRef] = {}
        async for position, data in self._source(previous, horizon):
            keys.fold(latest, position, data)
            if len(latest) > MAX_KEYS:
                raise BrokerError(f"more than {MAX_KEYS} keys: the topic is too large to compact")
        generation = self._generation + 1
        out = await self._factory.open(compacted_name(self._name, generation), self._compacted_config())
        try:
            pending: list[bytes] = []
            async for position, data in self._source(previous, horizon):
                kept = keys.kept(latest, position, data)
                if kept is not None:
                    pending.append(wrap(position, kept))
                if len(pending) >= CHUNK:
                    await out.add_entries(pending)
                    pending = []
            if pending:
                await out.add_entries(pending)
            record = {"ledger": out.name, "horizon": list(horizon), "generation": generation}
            await self._store.put(self._pointer, json.dumps(record).encode())
        except BaseException:
            await out.delete()
            raise
        self._generation, self.view = generation, CompactedView(out, horizon)
        if horizon.entry_id >= 0:
            await cursor.mark_delete(horizon)
        if previous is not None:
            await previous.ledger.delete()

    async def _source(self, previous: CompactedView | None, horizon: Position) -> AsyncIterator[tuple[Position, bytes]]:
        """The topic as a compacted reader sees it, up to `horizon`."""
        if previous is not None:
            async for stored in _scan(previous.ledger, previous.ledger.first_position, previous.ledger.last_confirmed):
                original = unwrap(stored)
                yield original.position, original.data
        start = previous.horizon.next() if previous is not None else self._ledger.first_position
        async for entry in _scan(self._ledger, max(start, self._ledger.first_position), horizon):
            yield entry.position, entry.data

    def _compacted_config(self) -> ManagedLedgerConfig:
        # Kept whole until the next compaction deletes it, whatever the namespace retention.
        return replace(self._ledger.config, retention_time_s=-1, retention_size_bytes=-1)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def delete(self) -> None:
        """The topic is deleted: its compacted ledger and pointer go with it."""
        await self.close()
        if self.view is not None:
            await self.view.ledger.delete()
            self.view = None
        try:
            await self._store.delete(self._pointer)
        except NotFoundError:
            pass


async def _scan(ledger: ManagedLedger, start: Position, end: Position) -> AsyncIterator[Entry]:
    """Entries of `ledger` from `start` through `end`, a chunk per event-loop turn."""
    position = start
    while position <= end:
        try:
            chunk = await ledger.read_entries(position, CHUNK)
        except NoSuchEntryError:
            return
        if not chunk:
            return
        for entry in chunk:
            if entry.position > end:
                return
            yield entry
        position = chunk[-1].position.next()
        await asyncio.sleep(0)
