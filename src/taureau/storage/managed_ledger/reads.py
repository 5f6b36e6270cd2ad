"""EntryReader: read a span of a managed ledger, from the entry cache first, else in ledger batches."""

from __future__ import annotations

from collections.abc import Callable

from taureau.common.errors import NoSuchLedgerError
from taureau.storage.ledger.api import LedgerClient, LedgerHandle
from taureau.storage.managed_ledger.cache import EntryCache
from taureau.storage.managed_ledger.ledgers import LedgerList
from taureau.storage.position import Entry, Position


class EntryReader:
    """Turns "n entries from here" into cache slices and one ledger read per ledger touched."""

    def __init__(
        self,
        client: LedgerClient,
        ledgers: LedgerList,
        cache: EntryCache,
        writer: Callable[[], LedgerHandle | None],
    ) -> None:
        self._client = client
        self._ledgers = ledgers  # shared with (and mutated only by) the managed ledger
        self._cache = cache  # shared: the managed ledger inserts, this reads
        self._writer = writer  # the current write handle (it reads up to its LAC)
        self._handles: dict[int, LedgerHandle] = {}  # read-only handles on closed ledgers
        self.ledger_reads = 0  # batches read from ledgers (the cache missed)

    async def read(
        self, start: Position, max_entries: int, last: Position, stop: Position | None
    ) -> list[Entry]:
        """Up to max_entries stored entries from `start` (normalised) to `last` inclusive,
        ending before `stop` if given."""
        out: list[Entry] = []
        pos = self._take_cached(out, start, max_entries, last, stop)
        while pos is not None:
            run = await self._read_ledger(pos, max_entries - len(out), last, stop)
            out += run
            if not run:
                break
            pos = self._take_cached(out, self._ledgers.next_after(run[-1].position), max_entries, last, stop)
        return out

    def read_cached(
        self, start: Position, max_entries: int, last: Position, stop: Position | None
    ) -> list[Entry] | None:
        """`read` when every entry it would return is in the cache, without awaiting
        anything; None when one is not (the caller takes the async path)."""
        out: list[Entry] = []
        return out if self._take_cached(out, start, max_entries, last, stop) is None else None

    def _take_cached(
        self, out: list[Entry], pos: Position, max_entries: int, last: Position, stop: Position | None
    ) -> Position | None:
        """Append the cached runs from `pos` to `out`; return where a ledger read has to go
        on, or None once the read is complete."""
        while len(out) < max_entries and pos <= last and (stop is None or pos < stop):
            run = self._from_cache(pos, max_entries - len(out), last, stop)
            if run is None:
                return pos
            if not run:
                break
            out += run
            pos = self._ledgers.next_after(run[-1].position)
        return None

    def _from_cache(
        self, pos: Position, want: int, last: Position, stop: Position | None
    ) -> list[Entry] | None:
        """The cached run from `pos` (at most `want`, up to `last`, before `stop`); None on a miss."""
        run = self._cache.get_run(pos, want)
        if not run:
            return None
        if run[-1].position > last or (stop is not None and run[-1].position >= stop):
            run = [e for e in run if e.position <= last and (stop is None or e.position < stop)]
        return run

    async def _read_ledger(
        self, pos: Position, want: int, last: Position, stop: Position | None
    ) -> list[Entry]:
        ledger_id, first = pos
        end = min(first + want - 1, self._ledgers.ledger_end(ledger_id))
        if last.ledger_id == ledger_id:
            end = min(end, last.entry_id)
        # Stop before the next acked range, and before the cached tail (read from memory next).
        for bound in (stop, self._cache.first_position):
            if bound is not None and bound.ledger_id == ledger_id and bound > pos:
                end = min(end, bound.entry_id - 1)
        if end < first:
            return []
        handle = await self._handle(ledger_id)
        datas = await handle.read_entries(first, end)
        self.ledger_reads += 1
        return [Entry(Position(ledger_id, first + k), d) for k, d in enumerate(datas)]

    async def _handle(self, ledger_id: int) -> LedgerHandle:
        writer = self._writer()
        if writer is not None and writer.ledger_id == ledger_id:
            return writer
        handle = self._handles.get(ledger_id)
        if handle is None:
            if self._ledgers.get(ledger_id) is None:
                raise NoSuchLedgerError(f"ledger {ledger_id} is not part of this managed ledger")
            handle = await self._client.open_ledger(ledger_id, recovery=False)
            self._handles[ledger_id] = handle
        return handle

    def forget(self, ledger_id: int) -> None:
        """Drop the read handle of a deleted ledger."""
        self._handles.pop(ledger_id, None)

    async def close(self) -> None:
        handles, self._handles = self._handles, {}
        for handle in handles.values():
            await handle.close()
