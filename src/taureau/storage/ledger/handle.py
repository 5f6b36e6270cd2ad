"""Ledger handles: reads for any handle, and the single writer's quorum adds, LAC and close.

Theory of operation (writer): `add_entry` takes the next entry id before it first
suspends, stores `lac + length + data` on the entry's write set (ensemble[(e+i) % E],
i < write_quorum) and counts acks. An entry is confirmed once ack_quorum bookies acked it
*and* every earlier entry is confirmed: `_pending` holds the unconfirmed entries in id
order, and `_drain` confirms from its head, so completions and the LAC move in entry
order. A bookie that fails is dropped from the write set; when the client can name a spare
bookie, an ensemble change replaces it (a new segment in the ledger metadata from the first
unconfirmed entry, written before anything more is confirmed; then the unconfirmed entries
are re-sent to the spare). Without a spare, adds go on while the others still form an ack
quorum; when they cannot, or a bookie says the ledger is fenced, the handle fails every
pending and later add with that error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace

from taureau.common.bytes_like import BYTES_LIKE, Bytes, Parts
from taureau.common.errors import (
    BadVersionError,
    LedgerClosedError,
    LedgerFencedError,
    NoSuchEntryError,
    NotEnoughBookiesError,
    StorageError,
)
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger import format as fmt
from taureau.storage.ledger.api import LedgerHandle, LedgerMetadata, LedgerState
from taureau.storage.ledger.reads import BookieClient, read_stored

log = logging.getLogger(__name__)


class ReadHandle(LedgerHandle):
    """Read-only: entries 0..last_add_confirmed."""

    def __init__(
        self, bookies: Mapping[str, BookieClient], md: LedgerMetadata, lac: int, length: int
    ) -> None:
        self._bookies = bookies  # shared with the client: bookie id -> bookie
        self.ledger_id = md.ledger_id
        self.metadata = md
        self._lac = lac  # the highest entry readers may see
        self._length = length  # bytes in entries 0.._lac

    @property
    def last_add_confirmed(self) -> int:
        return self._lac

    @property
    def length(self) -> int:
        return self._length

    @property
    def is_closed(self) -> bool:
        return self.metadata.state is LedgerState.CLOSED

    async def add_entry(self, data: bytes) -> int:
        raise LedgerClosedError(f"ledger {self.ledger_id} was opened read-only")

    async def read_entries(self, first: int, last: int) -> list[bytes]:
        if type(first) is not int or type(last) is not int or first < 0 or first > last:
            raise ValueError(f"bad entry range [{first!r}, {last!r}] for ledger {self.ledger_id}")
        if last > self._lac:
            raise NoSuchEntryError(
                f"entry {self.ledger_id}:{last} is beyond the last-add-confirmed {self._lac}"
            )
        out = await self._read_ranged(first, last)
        for entry_id in range(first + len(out), last + 1):
            stored, _ = await read_stored(self._bookies, self.metadata, entry_id)
            if stored is None:
                raise NoSuchEntryError(f"entry {self.ledger_id}:{entry_id} is on none of its bookies")
            out.append(fmt.decode_entry(stored)[2])
        return out

    async def _read_ranged(self, first: int, last: int) -> list[bytes]:
        """As many of first..last as one bookie gives in ranged reads (one round trip per
        8 MiB over the wire), when every bookie of the ensemble holds every entry (E = W);
        the caller reads the rest entry by entry from each entry's write set."""
        md = self.metadata
        if len(md.ensembles) != 1 or len(md.ensemble) != md.write_quorum or last == first:
            return []
        for bookie_id in md.ensemble:
            bookie = self._bookies.get(bookie_id)
            if bookie is None:
                continue
            try:
                stored = await bookie.read_entries(self.ledger_id, first, last)
            except StorageError as exc:
                log.debug("ranged read of ledger %d from %s failed: %s", self.ledger_id, bookie_id, exc)
                continue
            return [fmt.decode_entry(s)[2] for s in stored]
        return []

    async def close(self) -> None:
        pass


class _Pending:
    """One add in flight."""

    __slots__ = ("entry_id", "size", "acks", "outstanding", "ready", "done", "error", "waiter", "stored", "sent_to")

    def __init__(self, entry_id: int, size: int, outstanding: int, stored: Parts = ()) -> None:
        self.entry_id = entry_id
        self.size = size
        self.stored = stored  # kept while unconfirmed: an ensemble change re-sends it
        self.sent_to: set[str] = set()
        self.acks = 0  # bookies that made it durable
        self.outstanding = outstanding  # bookies that have not answered yet
        self.ready = False  # reached ack quorum (but maybe waits for earlier entries)
        self.done = False  # confirmed, or failed with `error`
        self.error: StorageError | None = None
        self.waiter: asyncio.Future[None] | None = None  # made only if the adder has to wait


class WriteHandle(ReadHandle):
    """The single writer of a ledger it created."""

    def __init__(
        self,
        bookies: Mapping[str, BookieClient],
        md: LedgerMetadata,
        metadata: MetadataStore,
        md_version: int,
        spare: Callable[[set[str]], str | None] | None = None,
    ) -> None:
        super().__init__(bookies, md, -1, 0)
        self._spare = spare  # names a bookie to replace a failed one; None: no ensemble change
        self._changing = 0  # ensemble changes in progress: nothing is confirmed meanwhile
        self._change_lock = asyncio.Lock()  # one change at a time: each writes the next version
        self._last_failure: BaseException | None = None  # what the last failed bookie said
        self._store = metadata
        self._md_version = md_version  # version of /ledgers/<id> this handle last wrote
        self._next_entry_id = 0
        self._sent_length = 0  # bytes of every entry handed out an id
        self._pending: deque[_Pending] = deque()  # unconfirmed adds, in entry order
        self._failed_bookies: set[str] = set()  # dropped from the write set
        self._error: StorageError | None = None  # once set, every add fails with it
        self._closed = False
        self._tasks: set[asyncio.Future[None]] = set()  # sends to W > 1 bookies, kept from the GC

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def add_entry(self, data: bytes) -> int:
        if self._closed:
            raise LedgerClosedError(f"ledger {self.ledger_id} is closed")
        if self._error is not None:
            raise self._error
        if not isinstance(data, BYTES_LIKE):
            raise TypeError(f"entry data must be bytes, not {type(data).__name__}")
        entry_id = self._next_entry_id
        self._next_entry_id += 1
        self._sent_length += len(data)
        stored = fmt.encode_entry_parts(self._lac, self._sent_length, data)
        targets = [b for b in fmt.write_set(self.metadata, entry_id) if b not in self._failed_bookies]
        pending = _Pending(entry_id, len(data), len(targets), stored)
        pending.sent_to.update(targets)
        self._pending.append(pending)
        if len(targets) < self.metadata.ack_quorum and not self._changing:
            self._fail_all(self._quorum_lost(entry_id))
        elif len(targets) == 1:
            # The common case (standalone, E1 W1 A1): no task, await the bookie directly.
            await self._send(pending, targets[0], stored)
        else:
            for bookie_id in targets:
                task = asyncio.ensure_future(self._send(pending, bookie_id, stored))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if not pending.done:
            pending.waiter = asyncio.get_running_loop().create_future()
            await pending.waiter
        if pending.error is not None:
            raise pending.error
        return entry_id

    async def add_entries(self, datas: list[bytes]) -> int:
        """Append entries in order; the first one's id once all are confirmed.

        When every bookie of the ensemble stores every entry (E = W: standalone's 1/1/1, a
        cluster's 2/2/2) the whole list goes to each bookie in one call and waits on one
        journal batch there; otherwise (striping, a bookie lost, an ensemble change under
        way) each entry is added as add_entry would.
        """
        md = self.metadata
        if len(md.ensemble) != md.write_quorum or self._failed_bookies or self._changing or not datas:
            return await super().add_entries(datas)
        if self._closed:
            raise LedgerClosedError(f"ledger {self.ledger_id} is closed")
        if self._error is not None:
            raise self._error
        for data in datas:
            if not isinstance(data, BYTES_LIKE):
                raise TypeError(f"entry data must be bytes, not {type(data).__name__}")
        first = self._next_entry_id
        stored: list[Bytes | Parts] = []
        batch = []
        for data in datas:
            self._sent_length += len(data)
            encoded = fmt.encode_entry_parts(self._lac, self._sent_length, data)
            stored.append(encoded)
            pending = _Pending(self._next_entry_id, len(data), len(md.ensemble), encoded)
            pending.sent_to.update(md.ensemble)
            self._next_entry_id += 1
            self._pending.append(pending)
            batch.append(pending)
        if len(md.ensemble) == 1:
            await self._send_batch(batch, md.ensemble[0], stored)  # no task for the common case
        else:
            for bookie_id in md.ensemble:
                task = asyncio.ensure_future(self._send_batch(batch, bookie_id, stored))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        last = batch[-1]
        if not last.done:
            last.waiter = asyncio.get_running_loop().create_future()
            await last.waiter
        if last.error is not None:
            raise last.error
        return first

    async def _send_batch(self, batch: list[_Pending], bookie_id: str, stored: list[Bytes | Parts]) -> None:
        try:
            await self._bookies[bookie_id].add_entries(self.ledger_id, batch[0].entry_id, stored)
        except BaseException as exc:
            for pending in batch:
                self._bookie_failed(pending, bookie_id, exc)
            if not isinstance(exc, Exception):
                raise
            return
        quorum = self.metadata.ack_quorum
        for pending in batch:
            pending.outstanding -= 1
            pending.acks += 1
            if pending.acks >= quorum:
                pending.ready = True
        self._drain()

    async def _send(self, pending: _Pending, bookie_id: str, stored: Parts) -> None:
        try:
            await self._bookies[bookie_id].add_entry(self.ledger_id, pending.entry_id, stored)
        except BaseException as exc:
            self._bookie_failed(pending, bookie_id, exc)
            if not isinstance(exc, Exception):
                raise
            return
        pending.outstanding -= 1
        pending.acks += 1
        if pending.acks >= self.metadata.ack_quorum and not pending.ready:
            pending.ready = True
            self._drain()

    def _drain(self) -> None:
        if self._changing:
            return  # entries wait until the metadata names the bookies that hold them
        queue = self._pending
        while queue and queue[0].ready:
            head = queue.popleft()
            self._lac = head.entry_id
            self._length += head.size
            head.done = True
            head.stored = ()
            if head.waiter is not None and not head.waiter.done():
                head.waiter.set_result(None)

    def _bookie_failed(self, pending: _Pending, bookie_id: str, exc: BaseException) -> None:
        pending.outstanding -= 1
        if isinstance(exc, LedgerFencedError):
            self._fail_all(
                LedgerFencedError(f"ledger {self.ledger_id} was fenced by a recovery (bookie {bookie_id})")
            )
            return
        self._last_failure = exc
        if bookie_id not in self._failed_bookies:
            log.warning(
                "ledger %d: dropping bookie %s from the write set: %r", self.ledger_id, bookie_id, exc
            )
            self._failed_bookies.add(bookie_id)
            if self._spare is not None and self._error is None:
                self._changing += 1
                task = asyncio.ensure_future(self._change_ensemble(bookie_id, exc))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if self._changing:
            return  # the change re-sends what this bookie had, or fails everything
        if (
            not pending.done
            and not pending.ready
            and pending.acks + pending.outstanding < self.metadata.ack_quorum
        ):
            self._fail_all(self._quorum_lost(pending.entry_id, exc))

    async def _change_ensemble(self, failed: str, cause: BaseException) -> None:
        """Replace `failed` by a spare bookie for every entry not yet confirmed (BookKeeper's
        ensemble change): record the new segment in the ledger metadata first, then re-send
        the unconfirmed entries of its write sets to the spare."""
        try:
            async with self._change_lock:
                await self._record_change(failed, cause)
        except StorageError as exc:
            self._changing -= 1
            self._fail_all(exc)
            return
        except BaseException:
            self._changing -= 1
            raise
        self._changing -= 1
        for pending in list(self._pending):
            self._resend(pending)
        self._fail_short_of_quorum()
        self._drain()

    async def _record_change(self, failed: str, cause: BaseException) -> None:
        md = self.metadata
        replacement = self._spare(set(md.all_bookies()) | self._failed_bookies) if self._spare else None
        if replacement is None or replacement not in self._bookies:
            # No spare: go on without the bookie while the others still make an ack quorum.
            log.warning("ledger %d: no spare bookie to replace %s (%r)", self.ledger_id, failed, cause)
            return
        while True:
            md = self.metadata
            changed = replace(md, ensemble=list(md.ensemble), ensembles=list(md.ensembles))
            changed.change_ensemble(self._lac + 1, failed, replacement)
            try:
                stat = await self._store.put(
                    fmt.ledger_path(self.ledger_id), fmt.encode_metadata(changed), self._md_version
                )
                break
            except BadVersionError:
                if not await self._adopt_rereplicated():
                    raise LedgerFencedError(
                        f"ledger {self.ledger_id}: its metadata changed under the writer (a recovery)"
                    ) from None
        self.metadata, self._md_version = changed, stat.version
        log.warning("ledger %d: entries from %d go to %s instead of %s",
                    self.ledger_id, self._lac + 1, replacement, failed)  # fmt: skip

    async def _adopt_rereplicated(self) -> bool:
        """After a compare-and-set of the metadata failed: if the only change is re-replication
        of earlier segments (the ledger still OPEN, its last segment this writer's), take those
        segments and the new version, so the write can be tried again; False for anything else
        (a recovery fenced this writer)."""
        found = await self._store.get(fmt.ledger_path(self.ledger_id))
        if found is None:
            return False
        stored, mine = fmt.decode_metadata(found[0]), self.metadata
        if (
            stored.state is not LedgerState.OPEN
            or len(stored.ensembles) != len(mine.ensembles)
            or stored.ensembles[-1] != mine.ensembles[-1]
        ):
            return False
        self.metadata = replace(mine, ensembles=list(stored.ensembles))
        self._md_version = found[1].version
        log.info("ledger %d: adopted re-replicated earlier segments (version %d)", self.ledger_id, self._md_version)
        return True

    def _resend(self, pending: _Pending) -> None:
        if pending.done:
            return
        for bookie_id in fmt.write_set(self.metadata, pending.entry_id):
            if bookie_id in pending.sent_to or bookie_id in self._failed_bookies:
                continue
            pending.sent_to.add(bookie_id)
            pending.outstanding += 1
            task = asyncio.ensure_future(self._send(pending, bookie_id, pending.stored))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _fail_short_of_quorum(self) -> None:
        if self._changing:
            return
        for pending in self._pending:
            if not pending.ready and pending.acks + pending.outstanding < self.metadata.ack_quorum:
                self._fail_all(self._quorum_lost(pending.entry_id, self._last_failure))
                return

    def _quorum_lost(self, entry_id: int, cause: BaseException | None = None) -> StorageError:
        msg = (
            f"ledger {self.ledger_id} entry {entry_id}: fewer than ack quorum {self.metadata.ack_quorum} "
            f"bookies can store it (failed: {sorted(self._failed_bookies)})"
        )
        if cause is None:
            return NotEnoughBookiesError(msg)
        # Keep the bookie's error class (DiskFullError...) so callers see why.
        cls = type(cause) if isinstance(cause, StorageError) else NotEnoughBookiesError
        return cls(f"{msg}; last error: {cause}")

    def _fail_all(self, error: StorageError) -> None:
        self._error = error
        while self._pending:
            pending = self._pending.popleft()
            pending.done, pending.error = True, error
            if pending.waiter is not None and not pending.waiter.done():
                pending.waiter.set_exception(error)

    async def close(self) -> None:
        """Wait for adds in flight, then record CLOSED at the LAC in the ledger metadata."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            last = self._pending[-1]
            if last.waiter is None:
                last.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.shield(last.waiter)
            except StorageError:
                pass
        try:
            while True:
                md = self.metadata
                closed = LedgerMetadata(
                    md.ledger_id, md.ensemble, md.write_quorum, md.ack_quorum, LedgerState.CLOSED,
                    self._lac, self._length, md.created_ms, md.custom, md.ensembles,
                )  # fmt: skip
                try:
                    await self._store.put(
                        fmt.ledger_path(self.ledger_id), fmt.encode_metadata(closed), self._md_version
                    )
                    break
                except BadVersionError:
                    if not await self._adopt_rereplicated():
                        raise
        except BadVersionError:
            # Someone else (a recovery) changed it: their CLOSED metadata is authoritative.
            found = await self._store.get(fmt.ledger_path(self.ledger_id))
            if found is not None:
                closed = fmt.decode_metadata(found[0])
            if closed.state is not LedgerState.CLOSED:
                raise StorageError(f"ledger {self.ledger_id} is being recovered by another client") from None
            if closed.last_entry_id < self._lac:
                log.error("ledger %d: recovery closed it at %d below this writer's LAC %d",
                          self.ledger_id, closed.last_entry_id, self._lac)  # fmt: skip
        self.metadata = closed
