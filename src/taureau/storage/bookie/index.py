"""The location index: (ledger_id, entry_id) -> entry log location, plus per-ledger state.

Theory of operation: adds go into an in-memory memtable; a checkpoint `cut()`s it (the
frozen part stays readable), writes it to the KV in a worker thread, then `committed()`
drops the frozen part. Ledger state (fenced, last entry, deleted) is all in memory and
written for the ledgers that changed. Everything after the last committed checkpoint is
rebuilt from the journal on start.

The memtable keeps each ledger's locations as runs of consecutive entries in arrays of u64
(`EntryRuns`), not a dict per entry: an add in order appends one machine word, and the
checkpoint copies runs into pages with slice assignments, so no Python bytecode runs per
entry. Encoding 300,000 entries in a Python loop held the GIL long enough to delay the event
loop by up to 15 ms at every checkpoint (bench/checkpoint_lag.py).

On disk, locations are kept in pages of PAGE_ENTRIES consecutive entries of a ledger, one KV
row each (as BookKeeper's ledger index pages), not one row per entry: a checkpoint of 300,000
adds writes about 300 rows of 8 KiB instead of 300,000 small ones. That took sqlite 110-250
ms and ~15 MB of WAL and database writes, and the journal's fsyncs on the same disk waited
behind them (receipts 20-38 ms late at every such checkpoint). A page a checkpoint extends
(its first entries came in an earlier one) is read back and merged in the checkpoint's
thread. Rows of one entry each (`E` keys) are still read: bookies before pages wrote them.
"""

from __future__ import annotations

import struct
import sys
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain

from taureau.storage.bookie.kv import KV

# KV keys and values (integers in keys big-endian, so keys sort by ledger then entry):
#   b"P" ledger_id(u64) page(u64)      -> location(u64 little-endian)* -- entries page*PAGE_ENTRIES
#                                         onwards, in order; 0: not stored here (no record is at
#                                         offset 0 of an entry log: its header is)
#   b"E" ledger_id(u64) entry_id(u64)  -> location(u64) -- one entry (read only; older bookies)
#   b"L" ledger_id(u64)                -> fenced(u8) deleted(u8) last_entry_id(i64)
#   b"G" log_id(u64)                   -> size(u64) ledger_id(u64)*   -- an entry log: durable size, ledgers in it
#   b"J"                               -> journal seq(u64) offset(u64) -- replay starts here
_ENTRY = struct.Struct(">cQQ")
_PAGE = _ENTRY  # b"P", ledger, page number
_LEDGER = struct.Struct(">cQ")
_LEDGER_VALUE = struct.Struct(">BBq")
_U64 = struct.Struct(">Q")
JOURNAL_KEY = b"J"
PAGE_ENTRIES = 1024
# Pages built between two releases of the GIL by the checkpoint's thread: 300 pages in one go
# held it ~3 ms, and the event loop waited up to the interpreter's 5 ms switch interval.
PAUSE_PAGES = 32
_LITTLE = sys.byteorder == "little"


def _page_bytes(page: array[int]) -> bytes:
    if _LITTLE:
        return page.tobytes()
    swapped = array("Q", page)
    swapped.byteswap()
    return swapped.tobytes()


def _page_array(value: bytes) -> array[int]:
    page = array("Q")
    page.frombytes(value)
    if not _LITTLE:
        page.byteswap()
    return page


def _yield_gil() -> None:
    time.sleep(0)  # releases the GIL: a thread waiting for it (the event loop) takes it now


def _location_in_page(value: bytes, slot: int) -> int | None:
    """The location in slot `slot` of a page row, None if the page holds none there."""
    if 8 * slot + 8 > len(value):
        return None
    location = int.from_bytes(value[8 * slot : 8 * slot + 8], "little")
    return location or None


class LedgerInfo:
    __slots__ = ("fenced", "deleted", "last_entry_id")

    def __init__(self, fenced: bool = False, deleted: bool = False, last_entry_id: int = -1) -> None:
        self.fenced = fenced  # a recovery opener fenced it: only recovery adds from now on
        self.deleted = deleted  # tombstone: reads and adds get NoSuchLedgerError
        self.last_entry_id = last_entry_id  # highest entry id stored here, -1 if none


class EntryRuns:
    """One ledger's locations since a cut: runs of consecutive entry ids, each an array of
    u64 locations. Adds arrive in entry order from the ledger's one writer, so there is one
    run, or one per stripe when the ensemble is wider than the write quorum. A recovery may
    write an entry again: its run then starts at or before an earlier run's end, the runs are
    no longer ordered, and lookups search newest first (the newest location wins)."""

    __slots__ = ("firsts", "runs", "ordered")

    def __init__(self) -> None:
        self.firsts: list[int] = []
        self.runs: list[array[int]] = []
        self.ordered = True  # firsts ascend and runs do not overlap: lookups may bisect

    def put(self, entry_id: int, location: int) -> None:
        if self.runs:
            last = self.runs[-1]
            end = self.firsts[-1] + len(last)
            if entry_id == end:
                last.append(location)
                return
            if entry_id < end:
                self.ordered = False
        self.firsts.append(entry_id)
        self.runs.append(array("Q", (location,)))

    def get(self, entry_id: int) -> int | None:
        if self.ordered:
            i = bisect_right(self.firsts, entry_id) - 1
            if i >= 0 and entry_id - self.firsts[i] < len(self.runs[i]):
                return self.runs[i][entry_id - self.firsts[i]]
            return None
        for first, run in zip(reversed(self.firsts), reversed(self.runs), strict=True):
            if 0 <= entry_id - first < len(run):
                return run[entry_id - first]
        return None

    def extend(self, later: EntryRuns) -> None:
        """Append `later`'s runs after these (a failed cut going back before newer adds)."""
        for first, run in zip(later.firsts, later.runs, strict=True):
            if self.runs and first < self.firsts[-1] + len(self.runs[-1]):
                self.ordered = False
            self.firsts.append(first)
            self.runs.append(run)
        self.ordered = self.ordered and later.ordered

    def copy_into(self, pages: dict[int, array[int]], load: Callable[[int], array[int]],
                  pause: Callable[[], None]) -> None:
        """Write these locations into page arrays (page number -> locations, `load` gives a
        page not in `pages` yet), oldest run first so that a rewritten entry's newest
        location lands last. One slice assignment per run and page: no bytecode per entry.
        `pause` runs every PAUSE_PAGES pages (the caller lets the event loop have the GIL)."""
        copied = 0
        for first, run in zip(self.firsts, self.runs, strict=True):
            done = 0
            while done < len(run):
                number, slot = divmod(first + done, PAGE_ENTRIES)
                count = min(PAGE_ENTRIES - slot, len(run) - done)
                page = pages.get(number)
                if page is None:
                    page = pages[number] = load(number)
                if len(page) < slot + count:
                    page.frombytes(bytes(8 * (slot + count - len(page))))
                page[slot : slot + count] = run[done : done + count]
                done += count
                copied += 1
                if copied % PAUSE_PAGES == 0:
                    pause()

    def page_numbers(self) -> set[int]:
        out: set[int] = set()
        for first, run in zip(self.firsts, self.runs, strict=True):
            out.update(range(first // PAGE_ENTRIES, (first + len(run) - 1) // PAGE_ENTRIES + 1))
        return out


@dataclass(slots=True)
class Cut:
    """What one checkpoint writes: taken on the loop in one step, so it is consistent."""

    puts: list[tuple[bytes, bytes]] = field(default_factory=list)
    delete_prefixes: list[bytes] = field(default_factory=list)
    deletes: list[bytes] = field(default_factory=list)
    # The frozen memtable, (ledger, runs), paged by commit() in its thread: packing the
    # entries since the last checkpoint (300,000 at 10k adds/s every 30 s) in cut() took
    # ~80 ms of the event loop.
    entries: list[tuple[int, EntryRuns]] = field(default_factory=list)


class Index:
    def __init__(self, kv: KV) -> None:
        self._kv = kv
        self.ledgers: dict[int, LedgerInfo] = {}  # every ledger this bookie has heard of
        self._memtable: dict[int, EntryRuns] = {}  # ledger -> its entries' locations, since the cut
        self._frozen: dict[int, EntryRuns] = {}  # being written by the running checkpoint
        self._changed: set[int] = set()  # ledgers whose LedgerInfo changed since the cut

    def load(self) -> tuple[dict[int, int], dict[int, set[int]], bytes | None]:
        """Read the last checkpoint: (entry log sizes, entry log ledgers, journal mark)."""
        for key, value in self._kv.scan(b"L"):
            fenced, deleted, last = _LEDGER_VALUE.unpack(value)
            self.ledgers[_LEDGER.unpack(key)[1]] = LedgerInfo(bool(fenced), bool(deleted), last)
        sizes: dict[int, int] = {}
        ledgers: dict[int, set[int]] = {}
        for key, value in self._kv.scan(b"G"):
            log_id = _LEDGER.unpack(key)[1]
            sizes[log_id] = _U64.unpack_from(value, 0)[0]
            ledgers[log_id] = {_U64.unpack_from(value, o)[0] for o in range(8, len(value), 8)}
        return sizes, ledgers, self._kv.get(JOURNAL_KEY)

    def info(self, ledger_id: int) -> LedgerInfo:
        found = self.ledgers.get(ledger_id)
        if found is None:
            found = self.ledgers[ledger_id] = LedgerInfo()
        return found

    def changed(self, ledger_id: int) -> None:
        self._changed.add(ledger_id)

    def put(self, ledger_id: int, entry_id: int, location: int) -> None:
        runs = self._memtable.get(ledger_id)
        if runs is None:
            runs = self._memtable[ledger_id] = EntryRuns()
        runs.put(entry_id, location)

    def get(self, ledger_id: int, entry_id: int) -> int | None:
        for table in (self._memtable, self._frozen):
            runs = table.get(ledger_id)
            if runs is not None:
                location = runs.get(entry_id)
                if location is not None:
                    return location
        number, slot = divmod(entry_id, PAGE_ENTRIES)
        page = self._kv.get(_PAGE.pack(b"P", ledger_id, number))
        if page is not None:
            location = _location_in_page(page, slot)
            if location is not None:
                return location
        raw = self._kv.get(_ENTRY.pack(b"E", ledger_id, entry_id))
        return None if raw is None else _U64.unpack(raw)[0]

    def delete_ledger(self, ledger_id: int) -> None:
        self._memtable.pop(ledger_id, None)
        self._frozen.pop(ledger_id, None)
        info = self.info(ledger_id)
        info.deleted, info.fenced = True, True
        self._changed.add(ledger_id)

    def cut(
        self,
        log_sizes: dict[int, int],
        log_ledgers: dict[int, set[int]],
        removed_logs: list[int],
        mark: bytes,
    ) -> Cut:
        """Freeze the memtable and build the checkpoint's KV batch."""
        self._frozen, self._memtable = self._memtable, {}
        changed = self._changed | set(self._frozen)
        self._changed = set()
        # The runs are not written to once frozen (put() fills the new memtable, and
        # delete_ledger only drops a ledger from _frozen), so the thread may read them.
        cut = Cut(entries=list(self._frozen.items()))
        for ledger_id in changed:
            info = self.ledgers[ledger_id]
            cut.puts.append(
                (
                    _LEDGER.pack(b"L", ledger_id),
                    _LEDGER_VALUE.pack(info.fenced, info.deleted, info.last_entry_id),
                )
            )
            if info.deleted:
                cut.delete_prefixes.append(_LEDGER.pack(b"P", ledger_id))
                cut.delete_prefixes.append(_LEDGER.pack(b"E", ledger_id))
        for log_id, size in log_sizes.items():
            value = _U64.pack(size) + b"".join(_U64.pack(x) for x in sorted(log_ledgers.get(log_id, ())))
            cut.puts.append((_LEDGER.pack(b"G", log_id), value))
        cut.deletes.extend(_LEDGER.pack(b"G", log_id) for log_id in removed_logs)
        cut.puts.append((JOURNAL_KEY, mark))
        return cut

    def commit(self, cut: Cut) -> None:
        """Write a cut (worker thread): the entries' pages, merged into the pages they extend,
        and the rest, in one transaction."""
        self._kv.commit(chain(self._pages(cut), cut.puts), cut.deletes, cut.delete_prefixes)

    def _pages(self, cut: Cut) -> list[tuple[bytes, bytes]]:
        keys = [_PAGE.pack(b"P", ledger_id, n) for ledger_id, runs in cut.entries for n in runs.page_numbers()]
        stored = dict(zip(keys, self._kv.get_for_commit(keys), strict=True))
        out: list[tuple[bytes, bytes]] = []
        for ledger_id, runs in cut.entries:
            pages: dict[int, array[int]] = {}

            def load(number: int, ledger_id: int = ledger_id) -> array[int]:
                value = stored[_PAGE.pack(b"P", ledger_id, number)]
                return array("Q") if value is None else _page_array(value)

            runs.copy_into(pages, load, _yield_gil)
            for n, page in pages.items():
                out.append((_PAGE.pack(b"P", ledger_id, n), _page_bytes(page)))
                if len(out) % PAUSE_PAGES == 0:
                    _yield_gil()
        return out

    def committed(self) -> None:
        self._frozen = {}

    def failed(self) -> None:
        """Put a cut that could not be written back, so the next checkpoint retries it."""
        for ledger_id, runs in self._frozen.items():
            if not self.ledgers[ledger_id].deleted:
                newer = self._memtable.get(ledger_id)
                if newer is not None:
                    runs.extend(newer)
                self._memtable[ledger_id] = runs
        self._changed.update(self._frozen)
        self._changed.update(k for k in self.ledgers)
        self._frozen = {}

    def close(self) -> None:
        self._kv.close()
