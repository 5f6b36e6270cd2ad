"""ManagedCursorImpl: a consumer's place in a managed ledger, durable (persisted) or not.

Theory of operation: the cursor owns its mark-delete position (everything at or before it
is acknowledged), the RangeSet of entries acknowledged after it, the bit sets of batch
entries acknowledged in part (Pulsar's batch-index acks: which of their messages are still
due), and its read position (the next entry to hand out). Acks change memory and ask the SerialWriter to save within
`cursor_persist_interval_s`; close and reset save at once. After a crash the saved state is
at most one interval old: some acks come back (redelivered), nothing unacked is skipped,
because only acknowledged positions are ever saved. States: OPEN -> CLOSED, via `_set_state`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING

from taureau.common.errors import (
    ManagedLedgerClosedError,
    ManagedLedgerFencedError,
    NodeExistsError,
    NoSuchEntryError,
    NotFoundError,
    StorageArgumentError,
)
from taureau.storage.managed_ledger import meta
from taureau.storage.managed_ledger.api import ManagedCursor
from taureau.storage.managed_ledger.persist import SerialWriter
from taureau.storage.managed_ledger.ranges import RangeSet
from taureau.storage.position import LATEST, Entry, Position

if TYPE_CHECKING:
    from taureau.storage.managed_ledger.ledger import ManagedLedgerImpl

log = logging.getLogger(__name__)

# Partly acknowledged batch entries a cursor keeps at most; past this a partial ack is not
# recorded, and the entry comes back whole (at least once, never lost).
MAX_BATCH_ACKS = 100_000


class CursorState(Enum):
    OPEN = "open"
    CLOSED = "closed"


def _position(value: object) -> Position:
    if isinstance(value, Position):
        return value
    if isinstance(value, tuple | list) and len(value) == 2:
        ledger_id, entry_id = value
        if type(ledger_id) is int and type(entry_id) is int:
            return Position(ledger_id, entry_id)
    raise StorageArgumentError(f"not a position: {value!r}")


def _count(value: object, what: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise StorageArgumentError(f"{what} must be an int >= {minimum}, got {value!r}")
    return value


class ManagedCursorImpl(ManagedCursor):
    def __init__(
        self,
        ml: ManagedLedgerImpl,
        name: str,
        durable: bool,
        mark_delete: Position,
        ranges: RangeSet | None = None,
        version: int = -1,
        batches: meta.BatchAcks | None = None,
    ) -> None:
        self.name = name
        self.durable = durable
        self._ml = ml
        self._ledgers = ml.ledgers  # read-only here; the managed ledger owns the chain
        self._state = CursorState.OPEN
        self._md = mark_delete  # mark-delete position; only this cursor changes it
        self._ranges = ranges if ranges is not None else RangeSet()  # acked after _md
        # Partly acknowledged batch entries after _md (not in _ranges) -> unacked bit set.
        self._batches: meta.BatchAcks = batches if batches is not None else {}
        self._read = self._ledgers.next_after(mark_delete)  # next entry to hand out
        self._moves = 0  # bumped by seek/rewind/reset so a read in flight does not undo them
        self._waiter: asyncio.Future | None = None  # the pending read_entries_or_wait
        self.messages_consumed = 0  # entries acknowledged through this cursor object
        self._version = version  # metadata version of the saved record (durable only)
        self.last_active_ms = int(time.time() * 1000)  # a loaded cursor takes its saved one
        self._writer: SerialWriter | None = None
        if durable:
            self._path = meta.cursor_path(ml.name, name)
            self._writer = SerialWriter(
                self._save, ml.cursor_persist_interval_s, on_error=self._on_save_error,
                ticker=ml.cursor_save_ticker,
            )  # fmt: skip

    # -- creation, persistence --------------------------------------------------------------

    @classmethod
    async def create(cls, ml: ManagedLedgerImpl, name: str, mark_delete: Position) -> ManagedCursorImpl:
        cursor = cls(ml, name, True, mark_delete)
        try:
            record = meta.encode_cursor_info(mark_delete, cursor._ranges, last_active_ms=cursor.last_active_ms)
            stat = await ml.store.put(cursor._path, record, -1)
        except NodeExistsError:
            raise ManagedLedgerFencedError(f"cursor {name!r} was created by another owner") from None
        cursor._version = stat.version
        return cursor

    @classmethod
    async def load(cls, ml: ManagedLedgerImpl, name: str) -> ManagedCursorImpl:
        found = await ml.store.get(meta.cursor_path(ml.name, name))
        if found is None:
            raise NotFoundError(f"cursor {name!r} vanished while loading")
        md, ranges, batches = meta.decode_cursor_info(found[0])
        cursor = cls(ml, name, True, md, ranges, found[1].version, batches)
        # A record from before last-active times were kept counts as active now.
        cursor.last_active_ms = meta.decode_cursor_last_active(found[0]) or cursor.last_active_ms
        cursor.on_trimmed(ml.first_position)
        return cursor

    def mark_active(self, now_ms: int) -> None:
        self.last_active_ms = now_ms
        if self._writer is not None and self._state is CursorState.OPEN:
            self._writer.request()  # saved with the position, at the cursor's save rate

    async def _save(self) -> None:
        data = meta.encode_cursor_info(self._md, self._ranges, self._batches, self.last_active_ms)
        stat = await self._ml.store.put(self._path, data, self._version)
        self._version = stat.version

    def _on_save_error(self, exc: BaseException) -> None:
        log.warning("cursor %s of %s: could not save its position: %r", self.name, self._ml.name, exc)

    @property
    def saves(self) -> int:
        return self._writer.saves if self._writer is not None else 0

    # -- state ------------------------------------------------------------------------------

    def _set_state(self, new: CursorState) -> None:
        if self._state is CursorState.CLOSED and new is not CursorState.CLOSED:
            raise ManagedLedgerClosedError(f"cursor {self.name} is closed and cannot reopen")
        self._state = new

    def _check_open(self) -> None:
        if self._state is CursorState.CLOSED:
            raise ManagedLedgerClosedError(f"cursor {self.name} of {self._ml.name} is closed")
        self._ml.check_usable()

    # -- positions --------------------------------------------------------------------------

    @property
    def mark_delete_position(self) -> Position:
        return self._md

    @property
    def read_position(self) -> Position:
        return self._ledgers.normalize(self._read)

    @property
    def backlog(self) -> int:
        return self._ledgers.count(self._md, self._ml.last_confirmed) - self._ranges.entry_count

    def individually_deleted_ranges(self) -> list[tuple[Position, Position]]:
        return self._ranges.ranges()

    def has_more_entries(self) -> bool:
        read, current = self._read, self._ledgers.current
        if read.ledger_id == current.ledger_id and not self._ranges:
            # The common case, asked after every add and dispatch round: reading the ledger
            # being written with nothing acked ahead, so no position arithmetic is needed.
            return max(read.entry_id, 0) < current.entries
        return self._skip_acked(self._ledgers.normalize(self._read)) <= self._ml.last_confirmed

    def is_acked(self, position: Position) -> bool:
        return position <= self._md or position in self._ranges

    def _skip_acked(self, pos: Position) -> Position:
        while self._ranges:
            found = self._ranges.range_containing(pos)
            if found is None:
                break
            pos = self._ledgers.next_after(found[1])
        return pos

    # -- reads ------------------------------------------------------------------------------

    async def _collect(self, start: Position, max_entries: int) -> tuple[list[Entry], Position]:
        pos = self._skip_acked(self._ledgers.normalize(start))
        out: list[Entry] = []
        while len(out) < max_entries and pos <= self._ml.last_confirmed:
            batch = await self._ml.read_span(pos, max_entries - len(out), self._acked_after(pos))
            if not batch:
                break
            out += batch
            pos = self._skip_acked(self._ledgers.next_after(batch[-1].position))
        return out, pos

    def _collect_cached(self, start: Position, max_entries: int) -> tuple[list[Entry], Position] | None:
        """`_collect` from the entry cache alone; None as soon as a span is not cached."""
        pos = self._skip_acked(self._ledgers.normalize(start))
        out: list[Entry] = []
        while len(out) < max_entries and pos <= self._ml.last_confirmed:
            batch = self._ml.read_span_cached(pos, max_entries - len(out), self._acked_after(pos))
            if batch is None:
                return None
            if not batch:
                break
            out += batch
            pos = self._skip_acked(self._ledgers.next_after(batch[-1].position))
        return out, pos

    def _acked_after(self, pos: Position) -> Position | None:
        """Where the next individually acknowledged range starts: a read stops before it."""
        return self._ranges.next_start_after(pos) if self._ranges else None

    def _read_start(self) -> Position:
        # Normally the read position is already past the mark-delete one (no next_after per
        # read); a position between two ledgers is normalised by _collect.
        return self._read if self._read > self._md else self._ledgers.next_after(self._md)

    async def read_entries(self, max_entries: int) -> list[Entry]:
        _count(max_entries, "max_entries", 1)
        self._check_open()
        moves = self._moves
        entries, pos = await self._collect(self._read_start(), max_entries)
        if moves == self._moves:
            self._read = pos
        self._ml.evict_read_entries()
        return entries

    def read_cached_entries(self, max_entries: int) -> list[Entry] | None:
        _count(max_entries, "max_entries", 1)
        self._check_open()
        read = self._read
        if (
            not self._ranges
            and read > self._md
            and read.entry_id >= 0
            and read.ledger_id == self._ledgers.current.ledger_id
        ):
            # A cursor tailing the ledger being written, nothing acked ahead of it (with 1,000
            # topics, every message's dispatch round): one cache slice, none of `_collect`'s
            # position arithmetic.
            entries = self._ml.read_tail_cached(read, max_entries)
            if entries:
                self._read = Position(read.ledger_id, entries[-1].position.entry_id + 1)
                self._ml.evict_read_entries()
            return entries
        collected = self._collect_cached(self._read_start(), max_entries)
        if collected is None:
            return None
        entries, self._read = collected
        self._ml.evict_read_entries()
        return entries

    async def read_entries_or_wait(self, max_entries: int) -> list[Entry]:
        if self._waiter is not None:
            raise StorageArgumentError(f"cursor {self.name} already has a read waiting")
        while True:
            entries = await self.read_entries(max_entries)
            if entries:
                return entries
            waiter = self._waiter = self._ml.wait_for_entries()
            try:
                await waiter
            finally:
                self._waiter = None
                self._ml.discard_waiter(waiter)

    async def peek(self, count: int) -> list[Entry]:
        _count(count, "count", 1)
        self._check_open()
        entries, _ = await self._collect(self._ledgers.next_after(self._md), count)
        return entries

    # -- acknowledgements -------------------------------------------------------------------

    def mark_delete_now(self, position: Position) -> None:
        position = _position(position)
        self._check_open()
        md, current = self._md, self._ledgers.current
        # A consumer keeping up acknowledges cumulatively in the ledger being written, with
        # nothing acknowledged ahead (with 1,000 topics, once per message): no range to cut,
        # no count across ledgers and no last-entry position to build, only entry ids.
        tailing = (
            position.ledger_id == md.ledger_id == current.ledger_id
            and position.entry_id >= 0
            and md.entry_id >= -1
            and not self._ranges
        )
        beyond = position.entry_id >= current.entries if tailing else position > self._ml.last_confirmed
        if beyond:
            raise NoSuchEntryError(
                f"cannot acknowledge {position}: beyond the last entry {self._ml.last_confirmed}"
            )
        if not tailing:
            if position > md:
                self._move_mark_delete(position)
        elif position.entry_id > md.entry_id:
            self.messages_consumed += position.entry_id - md.entry_id
            self._md = position
            self._changed(md)

    def delete_now(self, positions: list[Position]) -> None:
        checked = [_position(p) for p in positions]
        self._check_open()
        if self._acks_next_in_order(checked):
            # A consumer keeping up acks the entries right after the mark-delete position: it
            # moves, and no range is made only to be folded into it again.
            old = self._md
            self._md = checked[-1]
            self.messages_consumed += len(checked)
            self._changed(old)
            return
        last = self._ml.last_confirmed
        for p in checked:  # all or nothing: validate before changing anything
            if p > self._md and (p > last or not self._ledgers.contains(p)):
                raise NoSuchEntryError(f"cannot acknowledge {p}: no such entry in {self._ml.name}")
        old = self._md
        for p in checked:
            if p > self._md and self._ranges.add(p):
                self.messages_consumed += 1
                if self._batches:
                    self._batches.pop(p, None)
        self._advance()
        self._changed(old)

    def _acks_next_in_order(self, positions: list[Position]) -> bool:
        """Whether `positions` are exactly the stored entries that follow the mark-delete
        position in the ledger being written, in order, with nothing acked beyond them."""
        md, current = self._md, self._ledgers.current
        if self._ranges or not positions or md.ledger_id != current.ledger_id:
            return False
        ledger_id, entry_id = md
        for position in positions:
            entry_id += 1
            if position.entry_id != entry_id or position.ledger_id != ledger_id:
                return False
        return entry_id < current.entries

    def ack_batch_indexes_now(self, position: Position, unacked: Sequence[int]) -> None:
        position = _position(position)
        self._check_open()
        if self.is_acked(position):
            return
        if not self._ledgers.contains(position) or position > self._ml.last_confirmed:
            raise NoSuchEntryError(f"cannot acknowledge {position}: no such entry in {self._ml.name}")
        words = tuple(unacked)
        known = self._batches.get(position)
        if known is not None:  # both are "still unacked" sets: what neither acked is left
            width = max(len(words), len(known))
            words = tuple(
                (words[i] if i < len(words) else 0) & (known[i] if i < len(known) else 0) for i in range(width)
            )
        if not any(words):
            self._batches.pop(position, None)
            self.delete_now([position])
            return
        if known is None and len(self._batches) >= MAX_BATCH_ACKS:
            return  # bounded: this entry comes back whole (at least once), never lost
        self._batches[position] = words
        if self._writer is not None:
            self._writer.request()

    def batch_unacked(self, position: Position) -> tuple[int, ...] | None:
        return self._batches.get(position) if self._batches else None

    def _forget_batches(self) -> None:
        """Drop the bit sets of entries acknowledged whole since."""
        if self._batches:
            self._batches = {p: w for p, w in self._batches.items() if not self.is_acked(p)}

    def _move_mark_delete(self, position: Position) -> None:
        old = self._md
        removed = self._ranges.remove_up_to(position)
        self.messages_consumed += self._ledgers.count(old, position) - removed
        self._md = position
        self._advance()
        self._changed(old)

    def _advance(self) -> None:
        """Fold acked ranges that start right after the mark-delete position into it."""
        while self._ranges:
            start, end = self._ranges.first()  # type: ignore[misc]
            if start != self._ledgers.next_after(self._md):
                break
            self._ranges.pop_first()
            self._md = end

    def _changed(self, old_md: Position) -> None:
        if self._batches and self._md != old_md:
            self._forget_batches()
        if self._read <= self._md:
            self._read = self._ledgers.next_after(self._md)
        if self._writer is not None:
            self._writer.request()
            if self._md != old_md:
                self._ml.on_mark_delete_moved(old_md, self._md)

    async def skip_entries(self, count: int) -> None:
        remaining = _count(count, "count", 0)
        self._check_open()
        pos, last = self._md, self._ml.last_confirmed
        while remaining > 0:
            nxt = self._ledgers.next_after(pos)
            if nxt > last:
                break
            found = self._ranges.range_containing(nxt)
            if found is not None:
                pos = found[1]
                continue
            gap_end = (
                last.entry_id if nxt.ledger_id == last.ledger_id else self._ledgers.ledger_end(nxt.ledger_id)
            )
            after = self._ranges.next_start_after(nxt)
            if after is not None and after.ledger_id == nxt.ledger_id:
                gap_end = min(gap_end, after.entry_id - 1)
            take = min(remaining, gap_end - nxt.entry_id + 1)
            pos = Position(nxt.ledger_id, nxt.entry_id + take - 1)
            remaining -= take
        if pos > self._md:
            self._move_mark_delete(pos)

    async def clear_backlog(self) -> None:
        self._check_open()
        last = self._ml.last_confirmed
        if last > self._md:
            self._move_mark_delete(last)

    # -- moving the read position -----------------------------------------------------------

    def _target(self, position: Position) -> Position:
        position = _position(position)
        self._check_open()
        if position != LATEST and position > self._ledgers.end:
            raise NoSuchEntryError(f"{position} is beyond the end {self._ledgers.end} of {self._ml.name}")
        return self._ml.resolve(position)

    def seek(self, read_position: Position) -> None:
        target = self._target(read_position)
        self._read = max(target, self._ledgers.next_after(self._md))
        self._moves += 1

    def rewind(self) -> None:
        self._check_open()
        self._read = self._ledgers.next_after(self._md)
        self._moves += 1

    async def reset(self, position: Position) -> None:
        target = self._target(position)
        old = self._md
        self._md = self._ledgers.previous(target)
        self._ranges.clear()
        self._batches.clear()
        self._read = target
        self._moves += 1
        if self._writer is not None:
            await self._writer.flush()
            self._ml.on_mark_delete_moved(old, self._md)

    def on_trimmed(self, first: Position) -> None:
        """The ledgers before `first` are gone: nothing before it can be read or acked."""
        floor = self._ledgers.previous(first)
        if self._md < floor:
            self._md = floor
            self._ranges.remove_up_to(floor)
            self._advance()
            self._forget_batches()
        if self._read < first:
            self._read = first

    # -- close ------------------------------------------------------------------------------

    def _stop_waiter(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ManagedLedgerClosedError(f"cursor {self.name} was closed"))

    async def close(self) -> None:
        if self._state is CursorState.CLOSED:
            return
        self._set_state(CursorState.CLOSED)
        self._stop_waiter()
        try:
            if self._writer is not None and self._writer.error is None:
                await self._writer.flush()
        finally:
            self._ml.detach_cursor(self)

    async def remove(self) -> None:
        """Close without saving and delete the saved record (delete_cursor)."""
        self._set_state(CursorState.CLOSED)
        self._stop_waiter()
        self._ml.detach_cursor(self)
        if self._writer is not None:
            self._writer.stop()
            try:
                await self._ml.store.delete(self._path)
            except NotFoundError:
                pass

    def abandon(self) -> None:
        """Stop without saving (a simulated crash)."""
        self._set_state(CursorState.CLOSED)
        if self._writer is not None:
            self._writer.stop()
