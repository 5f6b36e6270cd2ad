"""Producer de-duplication: drop a resent message whose (producer name, sequence id) is stored.

Theory of operation (Pulsar's MessageDeduplication, simplified):
- `highest_pushed[name]` is the highest sequence id handed to the managed ledger,
  `highest_persisted[name]` the highest one whose add completed. An entry whose highest
  sequence id is <= highest_pushed is a duplicate: if it is also <= highest_persisted, the
  receipt goes back at once; otherwise it waits for the add in flight. (A batch that only
  partly overlaps what is stored is stored: a duplicate beats a loss.)
- Every SNAPSHOT_INTERVAL entries the persisted map and the position it covers are written
  to the metadata store. On load the snapshot is read and every entry after its position is
  replayed (producer name + highest sequence id parsed from the entry), so the map is exact
  after a crash: nothing acknowledged is stored twice when a producer resends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from taureau.common.errors import BrokerError
from taureau.metadata.store import MetadataStore
from taureau.storage.managed_ledger.api import ManagedLedger
from taureau.storage.position import Position

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 1000
# (producer_name, highest_sequence_id) of a stored entry.
ProducerInfo = Callable[[bytes], tuple[str, int]]


class Deduplication:
    def __init__(self, store: MetadataStore, ledger: ManagedLedger, producer_info: ProducerInfo) -> None:
        self.store = store
        self.ledger = ledger
        self.producer_info = producer_info
        self.path = f"/dedup/{ledger.name}"
        self.highest_pushed: dict[str, int] = {}  # owned here; updated on publish
        self.highest_persisted: dict[str, int] = {}  # owned here; updated on add completion
        self._since_snapshot = 0
        # Position of the newest add whose completion was recorded: a snapshot covers exactly
        # the entries up to here (adds complete in order), never one still resuming.
        self._covered: Position | None = None
        self._last_add_done: asyncio.Future[None] | None = None  # completes with the newest add

    async def load(self) -> None:
        """Rebuild the maps from the last snapshot plus the entries written after it."""
        found = await self.store.get(self.path)
        start = self.ledger.first_position
        if found is not None:
            snapshot = json.loads(found[0])
            self.highest_persisted = {k: int(v) for k, v in snapshot["producers"].items()}
            start = max(start, Position(*snapshot["position"]).next())
        last = self.ledger.last_confirmed
        replayed = 0
        while start <= last and self.ledger.entries_count:
            entries = await self.ledger.read_entries(start, 500)
            if not entries:
                break
            for entry in entries:
                name, sequence_id = self.producer_info(entry.data)
                if sequence_id > self.highest_persisted.get(name, -1):
                    self.highest_persisted[name] = sequence_id
            replayed += len(entries)
            start = entries[-1].position.next()
        self.highest_pushed = dict(self.highest_persisted)
        if replayed:
            log.info("dedup for %s rebuilt from %d entries after the snapshot", self.ledger.name, replayed)

    def last_sequence_id(self, producer_name: str) -> int:
        return self.highest_persisted.get(producer_name, -1)

    def is_duplicate(self, producer_name: str, sequence_id: int) -> bool:
        return sequence_id <= self.highest_pushed.get(producer_name, -1)

    def is_persisted(self, producer_name: str, sequence_id: int) -> bool:
        return sequence_id <= self.highest_persisted.get(producer_name, -1)

    async def add(
        self,
        producer_name: str,
        sequence_id: int,
        highest_sequence_id: int,
        store: Callable[[], Awaitable[Position]],
    ) -> Position | None:
        """Store an entry through `store` unless it is a duplicate; None for a duplicate that
        is stored (answered once the original is durable: it may still be in flight)."""
        name = producer_name
        # A duplicate only if the whole entry is: a batch that reaches past what is stored
        # (re-batched differently on a resend) is stored again rather than partly dropped.
        if self.is_duplicate(name, highest_sequence_id):
            while not self.is_persisted(name, highest_sequence_id) and self._last_add_done is not None:
                await asyncio.shield(self._last_add_done)
            if not self.is_persisted(name, highest_sequence_id):
                raise BrokerError(f"the original of sequence id {sequence_id} was not stored; resend it")
            return None
        self.highest_pushed[name] = highest_sequence_id
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._last_add_done = done
        try:
            position = await store()
        except BaseException:
            # Not stored: let the producer's resend through.
            self.highest_pushed[name] = self.highest_persisted.get(name, -1)
            raise
        finally:
            done.set_result(None)
            if self._last_add_done is done:
                self._last_add_done = None
        if self.persisted(name, highest_sequence_id, position):
            loop.create_task(self.snapshot())
        return position

    def persisted(self, producer_name: str, highest_sequence_id: int, position: Position) -> bool:
        """Record a completed add; True when a snapshot is due."""
        if highest_sequence_id > self.highest_persisted.get(producer_name, -1):
            self.highest_persisted[producer_name] = highest_sequence_id
        self._covered = position
        self._since_snapshot += 1
        return self._since_snapshot >= SNAPSHOT_INTERVAL

    async def snapshot(self) -> None:
        self._since_snapshot = 0
        if self._covered is None:
            return
        body = json.dumps({"position": list(self._covered), "producers": self.highest_persisted})
        await self.store.put(self.path, body.encode())

    async def delete(self) -> None:
        await self.store.delete_recursive(self.path)
